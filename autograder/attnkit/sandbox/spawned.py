"""The portable runner's child: a spawned process that serves one submission.

Started by ``portable.SpawnedChild`` with ``python -I -c "...; main(CONFIG)"``,
it connects its channel, imports torch (the 1.5 s the grader hides by starting
it early), says it is warm, and waits. The grader's START brings the limits
and the session's folder; then, exactly as a forked child does after its
confinement (``zygote._child``), it receives the submission's files, writes
them into that folder and serves ``child.Child`` requests until it is killed.

It confines nothing the OS would have to enforce beyond what every platform
has: its output is capped (a write past the cap fails, as with the fork
runner's file-size limit, and the grader kills a process that writes past it
by other means), rlimits apply where ``resource`` exists (on Linux the memory
limit too), and the kit's package is taken off its import path. When the
grader goes away its stdin ends, and so does this process.

Runs next to student code: nothing of the grader outside ``attnkit.sandbox``.
"""

from __future__ import annotations

import errno
import io
import json
import os
import socket
import sys
import threading

from attnkit.sandbox import confine, protocol
from attnkit.sandbox.child import Child, receive_hello
from attnkit.sandbox.protocol import Kind, Op


def main(config_json: str) -> None:
    config = json.loads(config_json)
    confine.die_with_parent(config.get("parent"))  # Linux; elsewhere the lifeline below
    channel = str(config.get("channel", ""))
    if channel.startswith("fd:"):
        sock = socket.socket(fileno=int(channel[3:]))
    else:
        sock = _connect(json.loads(_read_line(0)))
    _lifeline()
    import torch

    from attnkit.sandbox.zygote import warm_up

    torch.set_num_threads(1)
    warm_up(torch)
    sock.setblocking(True)
    sys.stdout.flush()
    sys.stderr.flush()
    _write_all(1, str(config.get("marker", "")).encode())
    protocol.send(sock, {"kind": Kind.WARM})
    header, _ = protocol.recv(sock)
    if header.get("op") != Op.START:
        return
    _serve(sock, dict(header.get("request") or {}), torch)


def _read_line(fd: int) -> bytes:
    """One line from ``fd``, unbuffered: the rest of the stream is the lifeline's."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line


def _connect(info: dict) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", int(info["port"])), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    protocol.send(sock, {"token": str(info["token"])})
    return sock


def _lifeline() -> None:
    """Exit when the grader does: it holds our stdin open for as long as it lives."""

    def watch():
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        os._exit(70)

    threading.Thread(target=watch, name="attnkit-lifeline", daemon=True).start()


def _serve(sock: socket.socket, request: dict, torch) -> None:
    workdir = request.get("workdir")
    if not workdir:  # the grader always sends a folder: the child has no root of its own
        return
    limits = dict(request.get("limits") or {})
    header = receive_hello(sock, workdir)
    if header is None:
        return
    os.environ.update(HOME=workdir)
    excluded = {os.path.normcase(os.path.realpath(p)) for p in request.get("exclude", [])}
    sys.path[:] = [workdir] + [p for p in sys.path if p and os.path.normcase(os.path.realpath(p)) not in excluded]
    _unimportable_kit()
    budget = [int(limits.get("output_bytes", 64 << 10))]
    sys.stdout = sys.__stdout__ = _capped(1, budget)
    sys.stderr = sys.__stderr__ = _capped(2, budget)
    applied = {"runner": "portable", "memory": _limit(limits)}
    child = Child(sock, workdir, torch, tuple(header.get("modules", ())))
    cap = budget[0]
    child.fresh_output = lambda: budget.__setitem__(0, cap)  # each item's output is its own
    child.hello(header)
    protocol.send(sock, {"kind": Kind.READY, "applied": applied})
    child.serve()


def _unimportable_kit() -> None:
    """The kit's modules that are not loaded already cannot be imported any more
    (as where the fork runner's new root hides them); its files stay readable."""
    kit = sys.modules.get("attnkit")
    if kit is not None:
        kit.__path__ = []


def _limit(limits: dict) -> bool:
    """The rlimits this OS has (none on Windows); True when the memory limit applies."""
    if confine.resource is None:
        return False
    baseline = confine.memory_baseline() if confine.linux() else 0  # elsewhere RLIMIT_AS is not enforced
    try:
        confine.limit_resources(baseline, int(limits.get("memory_bytes", 0)), int(limits.get("output_bytes", 0)),
                                int(limits.get("files", 64)))
    except (OSError, ValueError):
        return False
    return bool(baseline and limits.get("memory_bytes"))


class _CappedOutput(io.RawIOBase):
    """fd 1 or 2, sharing one byte budget: a write past it fails with EFBIG, as a
    write past the fork runner's file-size limit does."""

    def __init__(self, fd: int, budget: list[int]):
        super().__init__()
        self.fd, self.budget = fd, budget

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def write(self, data) -> int:
        data = bytes(data)
        room = self.budget[0]
        if len(data) > room:
            if room > 0:
                _write_all(self.fd, data[:room])
            self.budget[0] = 0
            raise OSError(errno.EFBIG, "output limit reached")
        self.budget[0] -= len(data)
        _write_all(self.fd, data)
        return len(data)


def _capped(fd: int, budget: list[int]) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BufferedWriter(_CappedOutput(fd, budget)), encoding="utf-8",
                            errors="backslashreplace", line_buffering=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
