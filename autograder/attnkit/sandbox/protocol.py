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

import hashlib
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
MAX_KEY = 200  # characters of a mapping's key

# Every dtype we accept on the wire; anything else is described, not shipped.
DTYPES = {
    "float64": np.float64, "float32": np.float32, "float16": np.float16,
    "int64": np.int64, "int32": np.int32, "int16": np.int16, "int8": np.int8,
    "uint8": np.uint8, "bool": np.bool_,
}


class _Word(str, Enum):
    """A word of the protocol: ``str()`` and f-strings give its value on every
    Python (a ``str, Enum`` member gives ``Fault.MISSING_FILE`` there, and a
    message built from it read "raised missing file: ..."), as ``StrEnum`` does
    from 3.11 on; the kit runs on 3.10 too."""

    __str__ = str.__str__
    __format__ = str.__format__


# An import's reply where the file flipped a global switch of torch at its top
# level ("switched:autograd,dtype"; each request starts from torch's defaults
# again): the grader says so in a note, and nothing else.
SWITCHED = "switched:"


class Op(_Word):
    """What the grader asks of a child (the ``op`` of a request frame)."""

    HELLO = "hello"  # the submission's files, the stand-ins, the modules to stand in: once, first
    IMPORT = "import"  # import one exercise module
    CALL = "call"  # call a graded function
    MODULE = "module"  # build a graded class and run it
    START = "start"  # the portable runner's spawn request (limits, folder): a forked child has it from the worker
    GRADIENT = "gradient"  # call a graded function and backpropagate through its result


class Kind(_Word):
    """What a frame from the child is (its ``kind``), and the grader's answers to stand-ins."""

    READY = "ready"  # the child is confined and has the files: its answer to HELLO
    WARM = "warm"  # a spawned child (portable runner) has imported torch and waits for START
    RESULT = "result"
    ERROR = "error"
    UPCALL = "upcall"  # a stand-in asks for a reference result
    UPCALL_RESULT = "upcall_result"
    UPCALL_ERROR = "upcall_error"  # refused or failed: the stand-in falls back to the student's own code


class Fault(_Word):
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


class Limit(_Word):
    """Which limit an item hit (``contract.LimitHit.kind``); any of them scores the item 0."""

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


_TORCH = None
_NAMES: dict = {}  # type -> "module.qualname", dtype -> its name: the same few, described again and again


def _torch():
    global _TORCH
    if _TORCH is None:
        import torch  # imported lazily: codec users always have torch, but not at import time

        _TORCH = torch
    return _TORCH


def _name(key, make) -> str:
    name = _NAMES.get(key)
    if name is None:
        name = _NAMES[key] = make(key)
    return name


def _type_name(tp) -> str:
    return f"{tp.__module__}.{tp.__qualname__}"


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


# How values travel: JSON's own None, booleans, finite floats and integers
# below 2**62 as themselves; everything else as a list whose first element
# says what it is (so a value is never mistaken for another):
#   ["s", text]  a string           ["l", item, ...]  a list          ["t", item, ...]  a tuple
#   ["d", {key: item}]  a dict (string keys)
#   ["T" | "A", dtype, shape, buffer index or null]  a torch tensor / numpy array
#   ["f", "nan" | "inf" | "-inf"]  a float JSON cannot write
#   ["o", type name]  anything else, described, never rebuilt
# Lists rather than objects: the headers are half the size, and encoding and
# decoding them a third cheaper (every module run and stand-in answer pays it).
_NP_DTYPES = {name: np.dtype(t) for name, t in DTYPES.items()}
_INT_BOUND = 2 ** 62


def encode_value(value, bufs: list, depth: int = 0):
    """Describe ``value`` as JSON, appending raw array bytes to ``bufs``."""
    if depth > MAX_DEPTH:
        return ["o", "nested too deeply"]
    tp = type(value)
    # the common cases first, by exact type; anything else takes the general path below
    if tp is str:
        return ["s", value[:MAX_STR]]
    if tp is float:
        return value if math.isfinite(value) else ["f", repr(value)]
    if tp is int:
        return value if -_INT_BOUND < value < _INT_BOUND else ["o", "int"]
    if value is None or tp is bool:
        return value
    if tp is dict:
        return ["d", {str(k)[:MAX_KEY]: encode_value(v, bufs, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]}]
    if tp is list:
        return ["l", *[encode_value(v, bufs, depth + 1) for v in value[:MAX_ITEMS]]]
    if tp is tuple:
        return ["t", *[encode_value(v, bufs, depth + 1) for v in value[:MAX_ITEMS]]]
    torch = _torch()
    if isinstance(value, torch.Tensor):
        t = value.detach()
        dtype = _name(t.dtype, _dtype_name)
        if dtype not in DTYPES:
            return ["T", dtype, list(t.shape), None]
        bufs.append(t.cpu().contiguous().numpy().tobytes())
        return ["T", dtype, list(t.shape), len(bufs) - 1]
    if isinstance(value, np.ndarray):
        dtype = str(value.dtype)
        if dtype not in DTYPES:
            return ["A", dtype, list(value.shape), None]
        bufs.append(np.ascontiguousarray(value).tobytes())
        return ["A", dtype, list(value.shape), len(bufs) - 1]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value) if -_INT_BOUND < value < _INT_BOUND else ["o", "int"]
    if isinstance(value, float):
        return encode_value(float(value), bufs, depth)
    if isinstance(value, str):
        return ["s", str(value)[:MAX_STR]]
    if isinstance(value, tuple):
        return ["t", *[encode_value(v, bufs, depth + 1) for v in list(value)[:MAX_ITEMS]]]
    if isinstance(value, list):
        return ["l", *[encode_value(v, bufs, depth + 1) for v in list(value)[:MAX_ITEMS]]]
    if isinstance(value, dict):
        return ["d", {str(k)[:MAX_KEY]: encode_value(v, bufs, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]}]
    return ["o", _type_name(tp)]


def decode_value(node, bufs: list[bytes], as_torch: bool = True, depth: int = 0, used: set | None = None):
    """Rebuild a value from its description; raises ProtocolError on anything
    malformed. Tensors come back as plain, contiguous, freshly allocated tensors.

    Each buffer is read at most once per value (``used``): the encoder gives
    every array a buffer of its own, and a frame whose descriptions named one
    8 MiB buffer 200 times made the grader allocate 1.6 GB, past every bound
    on the frame's bytes."""
    if used is None:
        used = set()
    tp = type(node)
    if tp is int or tp is float or tp is bool or node is None:
        return node  # json.loads makes nothing else of these (big integers included: described as "o")
    if tp is not list or not node or depth > MAX_DEPTH:
        raise ProtocolError("malformed value")
    tag = node[0]
    if tag == "s":
        if len(node) != 2 or type(node[1]) is not str:
            raise ProtocolError("malformed string")
        return node[1][:MAX_STR]
    if tag == "l" or tag == "t":
        if len(node) > MAX_ITEMS + 1:
            raise ProtocolError("malformed sequence")
        out = [decode_value(v, bufs, as_torch, depth + 1, used) for v in node[1:]]
        return tuple(out) if tag == "t" else out
    if tag == "d":
        if len(node) != 2 or type(node[1]) is not dict or len(node[1]) > MAX_ITEMS:
            raise ProtocolError("malformed mapping")
        if any(len(k) > MAX_KEY for k in node[1]):  # the encoder cuts keys there: a longer one was forged
            raise ProtocolError("malformed mapping key")
        return {k: decode_value(v, bufs, as_torch, depth + 1, used) for k, v in node[1].items()}
    if tag == "T" or tag == "A":
        if len(node) != 4:
            raise ProtocolError("malformed array header")
        _, dtype, shape, idx = node
        if type(dtype) is not str or type(shape) is not list or len(shape) > MAX_DIMS:
            raise ProtocolError("malformed array header")
        for n in shape:
            if type(n) is not int or not 0 <= n < 2 ** 31:
                raise ProtocolError("malformed array shape")
        if idx is None or dtype not in DTYPES:
            return Foreign(f"{'torch tensor' if tag == 'T' else 'numpy array'} of dtype {dtype}"[:200])
        if type(idx) is not int or not 0 <= idx < len(bufs):
            raise ProtocolError("bad buffer index")
        if idx in used:
            raise ProtocolError("a buffer described twice")
        used.add(idx)
        np_dtype = _NP_DTYPES[dtype]
        if math.prod(shape) * np_dtype.itemsize != len(bufs[idx]):
            raise ProtocolError("array bytes do not match dtype and shape")
        try:
            arr = np.frombuffer(bufs[idx], dtype=np_dtype).reshape(shape).copy()
        except (ValueError, MemoryError):  # no bytes, and sizes whose product numpy cannot index
            raise ProtocolError("malformed array shape") from None
        if tag == "A" or not as_torch:
            return Foreign("numpy.ndarray", arr) if tag == "A" and as_torch else arr
        return _torch().from_numpy(arr)
    if tag == "f":
        if len(node) != 2 or node[1] not in ("nan", "inf", "-inf"):
            raise ProtocolError("malformed float")
        return float(node[1])
    if tag == "o":
        if len(node) != 2 or type(node[1]) is not str:
            raise ProtocolError("malformed description")
        return Foreign(node[1][:200])
    raise ProtocolError(f"unknown value kind {str(tag)[:40]!r}")


def question_key(spec, tensors, grads, bufs: list[bytes]) -> bytes:
    """A stand-in question, byte for byte (its spec, and the tensors' and
    gradients' descriptions and bytes), as a short digest: equal questions get
    equal answers (train-mode ones aside, which nobody keeps)."""
    text = _KEY_JSON.encode([spec, tensors, grads])
    digest = hashlib.blake2b(text.encode(), digest_size=20)
    for b in bufs:
        digest.update(len(b).to_bytes(8, "little"))
        digest.update(b)
    return digest.digest()


# --------------------------------------------------------------------------- frames

# Made once: json.dumps with any option builds a new encoder at every call.
_JSON = json.JSONEncoder(allow_nan=False)
_KEY_JSON = json.JSONEncoder(separators=(",", ":"))  # NaN allowed: a key only has to be the same each time


def pack(header: dict, bufs: list[bytes]) -> bytes:
    header = dict(header, bufs=[len(b) for b in bufs])
    body = _JSON.encode(header).encode()
    return b"".join([_HEAD.pack(MAGIC, len(body)), body, *bufs])


def send(sock: socket.socket, header: dict, bufs: list[bytes] = (), deadline: float | None = None) -> None:
    """Send one frame; with a deadline, a peer that stops reading cannot hold us."""
    send_packed(sock, pack(header, list(bufs)), deadline)


def send_packed(sock: socket.socket, data: bytes, deadline: float | None = None) -> None:
    """Send a frame made by ``pack``."""
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


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytearray:
    data = bytearray(n)
    view, got = memoryview(data), 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout()
            sock.settimeout(left)
        try:
            k = sock.recv_into(view[got:], min(n - got, 1 << 20))
        except socket.timeout:
            raise Timeout() from None
        except OSError as exc:
            raise PeerClosed(str(exc)) from None
        if not k:
            raise PeerClosed("channel closed")
        got += k
    return data


def _not_a_number(name: str):
    """NaN and Infinity: JSON has no such numbers, and neither side writes them
    (``allow_nan=False``; a float that is not finite travels as ["f", ...]).
    One in a frame would pass every size bound it reaches (NaN > n is False)."""
    raise ValueError(f"{name} in a frame")


def recv(sock: socket.socket, deadline: float | None = None,
         max_bytes: int = 256 << 20) -> tuple[dict, list[bytes]]:
    """Read one frame. Sizes are checked before anything is allocated; the
    buffers are read in one go (each read waits on the peer's clock: fewer of
    them is most of what a frame costs here)."""
    magic, size = _HEAD.unpack(_recv_exact(sock, _HEAD.size, deadline))
    if magic != MAGIC or size > MAX_JSON:
        raise ProtocolError("bad frame header")
    try:
        header = json.loads(_recv_exact(sock, size, deadline), parse_constant=_not_a_number)
    except (ValueError, UnicodeDecodeError, RecursionError):  # nested too deeply for the decoder, too
        raise ProtocolError("frame header is not JSON") from None
    sizes = header.get("bufs") if isinstance(header, dict) else None
    if not isinstance(sizes, list) or len(sizes) > 4 * MAX_ITEMS or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in sizes):
        raise ProtocolError("bad buffer table")
    total = sum(sizes)
    if total > max_bytes:
        raise ProtocolError(f"frame of {total} bytes is over the {max_bytes}-byte limit")
    if not sizes:
        return header, []
    body, bufs, at = memoryview(_recv_exact(sock, total, deadline)), [], 0
    for n in sizes:
        bufs.append(body[at:at + n].tobytes())
        at += n
    return header, bufs
