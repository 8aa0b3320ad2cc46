"""The data-only wire format between the grader and a student process, and
the messages that travel on it.

A frame is ``MAGIC | json length (4 bytes) | JSON header | raw array bytes``.
The header describes every value as plain JSON; arrays travel as raw bytes
with their dtype and shape, and the receiver checks both against the byte
count and the size limits before it allocates anything. Nothing is ever
pickled, so a hostile sender can make the grader read bad data, never run code.

This module is imported by the untrusted worker too, so it must not import
anything of the grader's beyond the standard library and numpy.
"""

from __future__ import annotations

import json
import math
import socket
import struct
import time
from enum import Enum

import numpy as np

MAGIC = b"AKv1"
_HEAD = struct.Struct(">4sI")
MAX_JSON = 4 << 20
MAX_DIMS = 8
MAX_ITEMS = 256
MAX_DEPTH = 12
MAX_STR = 4000

# Every dtype we accept on the wire; anything else is described, not shipped.
DTYPES = {
    "float64": np.float64, "float32": np.float32, "float16": np.float16,
    "int64": np.int64, "int32": np.int32, "int16": np.int16, "int8": np.int8,
    "uint8": np.uint8, "bool": np.bool_,
}


class Op(str, Enum):
    """What the grader asks of a child (the ``op`` of a request frame)."""

    HELLO = "hello"  # the submission's files, the stand-ins, the modules to stand in: once, first
    IMPORT = "import"  # import one exercise module
    CALL = "call"  # call a graded function
    MODULE = "module"  # build a graded class and run it
    START = "start"  # the portable runner's spawn request (limits, folder): a forked child has it from the worker


class Kind(str, Enum):
    """What a frame from the child is (its ``kind``), and the grader's answers to stand-ins."""

    READY = "ready"  # the child is confined and has the files: its answer to HELLO
    WARM = "warm"  # a spawned child (portable runner) has imported torch and waits for START
    RESULT = "result"
    ERROR = "error"
    UPCALL = "upcall"  # a stand-in asks for a reference result
    UPCALL_RESULT = "upcall_result"
    UPCALL_ERROR = "upcall_error"  # refused or failed: the stand-in falls back to the student's own code


class Fault(str, Enum):
    """Why the student's code did not answer (the ``error`` of an ERROR frame)."""

    NOT_IMPLEMENTED = "not_implemented"  # the stub's own NotImplementedError
    MISSING_FILE = "missing_file"
    MISSING = "missing"  # the file has no such function or class
    IMPORT = "import"
    EXIT = "exit"  # sys.exit
    EXCEPTION = "exception"
    MEMORY = "memory"
    OUTPUT = "output"  # wrote past the output limit
    PROTOCOL = "protocol"


class Limit(str, Enum):
    """Which limit an item hit (``client.LimitHit.kind``); any of them scores the item 0."""

    TIME = "time"
    MEMORY = "memory"
    OUTPUT = "output"
    CRASH = "crash"  # the process ended (os._exit, a signal, a crash)
    PROTOCOL = "protocol"  # it sent what is not a frame of this protocol


class ProtocolError(Exception):
    """The other side sent something that is not a valid frame."""


class Timeout(Exception):
    """No complete frame arrived before the deadline."""


class PeerClosed(Exception):
    """The other side closed the channel (it exited or was killed)."""


# --------------------------------------------------------------------------- values

class Foreign:
    """A value the student returned that is not a torch tensor, as decoded by
    the grader: its type name and, for arrays, its data."""

    def __init__(self, type_name: str, array: np.ndarray | None = None, text: str = ""):
        self.type_name = type_name
        self.array = array
        self.text = text

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


def _torch():
    import torch  # imported lazily: codec users always have torch, but not at import time

    return torch


def encode_value(value, bufs: list, depth: int = 0) -> dict:
    """Describe ``value`` as JSON, appending raw array bytes to ``bufs``."""
    if depth > MAX_DEPTH:
        return {"t": "other", "type": "nested too deeply"}
    torch = _torch()
    if isinstance(value, torch.Tensor):
        t = value.detach()
        dtype = str(t.dtype).replace("torch.", "")
        node = {"t": "tensor", "dtype": dtype, "shape": list(t.shape),
                "cls": type(value).__module__ + "." + type(value).__qualname__}
        if dtype in DTYPES:
            arr = t.cpu().contiguous().numpy()
            node["buf"] = len(bufs)
            bufs.append(arr.tobytes())
        return node
    if isinstance(value, np.ndarray):
        node = {"t": "ndarray", "dtype": str(value.dtype), "shape": list(value.shape)}
        if str(value.dtype) in DTYPES:
            node["buf"] = len(bufs)
            bufs.append(np.ascontiguousarray(value).tobytes())
        return node
    if value is None:
        return {"t": "none"}
    if isinstance(value, bool):
        return {"t": "bool", "v": value}
    if isinstance(value, int):
        return {"t": "int", "v": int(value)} if abs(value) < 2 ** 62 else {"t": "other", "type": "int"}
    if isinstance(value, float):
        return {"t": "float", "v": value if math.isfinite(value) else repr(value)}
    if isinstance(value, str):
        return {"t": "str", "v": value[:MAX_STR]}
    if isinstance(value, (list, tuple)):
        items = [encode_value(v, bufs, depth + 1) for v in list(value)[:MAX_ITEMS]]
        return {"t": "tuple" if isinstance(value, tuple) else "list", "items": items}
    if isinstance(value, dict):
        return {"t": "dict", "items": {str(k)[:200]: encode_value(v, bufs, depth + 1)
                                       for k, v in list(value.items())[:MAX_ITEMS]}}
    tp = type(value)
    return {"t": "other", "type": f"{tp.__module__}.{tp.__qualname__}"}


def decode_value(node, bufs: list[bytes], as_torch: bool = True, depth: int = 0):
    """Rebuild a value from its description; raises ProtocolError on anything
    malformed. Tensors come back as plain, contiguous, freshly allocated tensors."""
    if depth > MAX_DEPTH or not isinstance(node, dict):
        raise ProtocolError("malformed value")
    kind = node.get("t")
    if kind in ("tensor", "ndarray"):
        dtype, shape = node.get("dtype"), node.get("shape")
        if not isinstance(dtype, str) or not isinstance(shape, list) or len(shape) > MAX_DIMS:
            raise ProtocolError("malformed array header")
        if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2 ** 31 for n in shape):
            raise ProtocolError("malformed array shape")
        idx = node.get("buf")
        if idx is None or dtype not in DTYPES:
            return Foreign(f"{'torch tensor' if kind == 'tensor' else 'numpy array'} of dtype {dtype}")
        if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(bufs):
            raise ProtocolError("bad buffer index")
        np_dtype = np.dtype(DTYPES[dtype])
        count = math.prod(shape)
        if count * np_dtype.itemsize != len(bufs[idx]):
            raise ProtocolError("array bytes do not match dtype and shape")
        arr = np.frombuffer(bufs[idx], dtype=np_dtype).reshape(shape).copy()
        if kind == "ndarray" or not as_torch:
            return Foreign("numpy.ndarray", arr) if kind == "ndarray" and as_torch else arr
        return _torch().from_numpy(arr)
    if kind == "none":
        return None
    if kind == "bool":
        return bool(node.get("v"))
    if kind == "int":
        v = node.get("v")
        if not isinstance(v, int) or isinstance(v, bool):
            raise ProtocolError("malformed int")
        return v
    if kind == "float":
        v = node.get("v")
        if isinstance(v, str) and v in ("nan", "inf", "-inf"):
            return float(v)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise ProtocolError("malformed float")
        return float(v)
    if kind == "str":
        return str(node.get("v", ""))[:MAX_STR]
    if kind in ("list", "tuple"):
        items = node.get("items")
        if not isinstance(items, list) or len(items) > MAX_ITEMS:
            raise ProtocolError("malformed sequence")
        out = [decode_value(v, bufs, as_torch, depth + 1) for v in items]
        return tuple(out) if kind == "tuple" else out
    if kind == "dict":
        items = node.get("items")
        if not isinstance(items, dict) or len(items) > MAX_ITEMS:
            raise ProtocolError("malformed mapping")
        return {str(k): decode_value(v, bufs, as_torch, depth + 1) for k, v in items.items()}
    if kind == "other":
        return Foreign(str(node.get("type", "object"))[:200])
    raise ProtocolError(f"unknown value kind {kind!r}")


# --------------------------------------------------------------------------- frames

def pack(header: dict, bufs: list[bytes]) -> bytes:
    header = dict(header, bufs=[len(b) for b in bufs])
    body = json.dumps(header, allow_nan=False).encode()
    return b"".join([_HEAD.pack(MAGIC, len(body)), body, *bufs])


def send(sock: socket.socket, header: dict, bufs: list[bytes] = (), deadline: float | None = None) -> None:
    """Send one frame; with a deadline, a peer that stops reading cannot hold us."""
    data = pack(header, list(bufs))
    if deadline is None:
        sock.settimeout(None)
        sock.sendall(data)
        return
    view = memoryview(data)
    while view:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout()
        sock.settimeout(left)
        try:
            view = view[sock.send(view):]
        except socket.timeout:
            raise Timeout() from None


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout()
            sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - got, 1 << 20))
        except socket.timeout:
            raise Timeout() from None
        except OSError as exc:
            raise PeerClosed(str(exc)) from None
        if not chunk:
            raise PeerClosed("channel closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv(sock: socket.socket, deadline: float | None = None,
         max_bytes: int = 256 << 20) -> tuple[dict, list[bytes]]:
    """Read one frame. Sizes are checked before anything is allocated."""
    magic, size = _HEAD.unpack(_recv_exact(sock, _HEAD.size, deadline))
    if magic != MAGIC or size > MAX_JSON:
        raise ProtocolError("bad frame header")
    try:
        header = json.loads(_recv_exact(sock, size, deadline))
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("frame header is not JSON") from None
    sizes = header.get("bufs") if isinstance(header, dict) else None
    if not isinstance(sizes, list) or len(sizes) > 4 * MAX_ITEMS or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in sizes):
        raise ProtocolError("bad buffer table")
    if sum(sizes) > max_bytes:
        raise ProtocolError(f"frame of {sum(sizes)} bytes is over the {max_bytes}-byte limit")
    return header, [_recv_exact(sock, s, deadline) for s in sizes]
