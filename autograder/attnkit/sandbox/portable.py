"""The portable runner: student code in a spawned process, where Linux or fork is missing.

macOS and Windows have no Linux namespaces, no ``prctl`` and no seccomp;
Windows has no fork, and forking a process that has loaded torch is unsafe on
macOS. There ``Zygote`` is a ``PortableZygote``: the same interface for
the grader, the same data-only protocol and the same request server
(``child.Child``), in a process started with ``subprocess`` that imports torch
itself (``spawned.py``). ``ATTNKIT_SANDBOX=portable`` forces it anywhere.

What it keeps: each submission in a process of its own; the wall-clock limit
on the grader's clock, enforced by killing the process (a process handle:
``killpg`` of its own session on POSIX, ``TerminateProcess`` on Windows); the
output limit (its output comes back through a pipe, capped in the child and
again here, where a process that writes past the cap is killed); the
data-only channel. What it cannot give: an allowlist filesystem, no network,
a PID namespace, no privilege, the syscall filter, and, except on Linux, the
memory limit. ``ready()`` says so, ``notice()`` gives the one line,
``confined()`` is false and ``not_for_credit()`` the reason class grading and
Gradescope refuse it.

A spawned process costs a torch import (about 1.5 s), so the runner keeps one
spare warming: started with the runner, while the grader prepares, and again
whenever a child ends (killed at a limit, or its session over), so the fresh
child after a kill, or the next session, finds it ready or under way.

The channel is a socket: one end of a socketpair inherited as a descriptor
(POSIX); where descriptors cannot be passed (Windows), a loopback connection
the child makes to a one-off listener, proved with a token it reads from its
stdin. Its stdin stays open as a lifeline: when the grader dies, the child
reads end of file and exits.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from attnkit.sandbox import confine, protocol
from attnkit.sandbox.contract import SandboxError, runner
from attnkit.sandbox.forking import PACKAGE_PARENT, ForkZygote, remove_stale_sessions
from attnkit.sandbox.protocol import Kind, Op

# Where the output pipe can be non-blocking and waited on with select() (not
# Windows), output() drains it itself instead of waiting for the reader thread.
DRAINABLE = os.name == "posix"
STARTUP_SECONDS = 120.0  # a spawned process's torch import, on a slow laptop
BOOT_TAIL = 4096  # what a process that failed to start printed, kept for the error message
# Written by the child to its output just before it says it is warm: what came
# before is the interpreter's and torch's (discarded), what follows is the student's.
MARKER = b"\n[attnkit: student output from here]\n"
ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TMPDIR", "TEMP", "TMP", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
            # Windows: a Python without SYSTEMROOT cannot start its sockets or its random source
            "SYSTEMROOT", "SYSTEMDRIVE", "WINDIR", "PATHEXT", "COMSPEC")


def default_transport() -> str:
    return "fds" if os.name == "posix" else "tcp"


class _Alive:
    """``Zygote.proc`` for the portable runner: ``poll()`` is None while it can spawn."""

    def __init__(self):
        self.returncode = None

    def poll(self):
        return self.returncode


class PortableZygote(ForkZygote):
    """The portable runner, behind the fork runner's interface (``runners.Zygote``
    returns one where it must). ``transport``: "fds" or "tcp" (the Windows
    channel; any platform can use it, which is how it is tested on Linux)."""

    def __init__(self, hide=(), channels: int = 1, transport: str | None = None, spares: int = 1):
        confine.set_dumpable(False)  # Linux (forced): the grader's /proc files stay its own
        remove_stale_sessions()
        kind, why = runner()
        self.why = why if kind == "portable" else "the portable runner"
        self.transport = transport or default_transport()
        self.proc = _Alive()
        self._owner = os.getpid()
        self._spares: list[SpawnedChild] = []
        self.spares = max(1, spares)  # more than one only where sessions follow each other fast (tests)
        self.spawned = 0  # processes started, spare or not (for tests and benchmarks)
        self._replenish()

    def _replenish(self) -> None:
        while self.proc.returncode is None and len(self._spares) < self.spares and os.getpid() == self._owner:
            self._spares.append(SpawnedChild(self.transport))
            self.spawned += 1

    def use_channel(self, index: int) -> None:
        pass  # one process per session already; class grading refuses this runner

    def keep_spare(self, keep: bool = True) -> None:
        pass  # this runner always keeps one warming

    def release_spares(self) -> None:
        pass  # closed with the runner

    def ready(self) -> dict:
        return {"runner": "portable", "mode": "portable", "why": self.why,
                "filesystem": False, "network": False, "processes": False, "user": False, "seccomp": False,
                "memory": confine.linux() and confine.resource is not None}

    def new_uid(self) -> int | None:
        return None

    def spawn(self, request: dict) -> SpawnedChild:
        """The warm spare, started for ``request``; the next spare starts when it ends."""
        if self.proc.returncode is not None:
            raise SandboxError("the grading worker was closed")
        for attempt in (1, 2):  # a spare that died while idle gets one replacement
            self._replenish()
            child = self._spares.pop(0)
            try:
                child.start(request, time.monotonic() + STARTUP_SECONDS)
            except SandboxError:
                child.close()
                if attempt == 2:
                    raise
                continue
            child.on_end = self._replenish
            return child
        raise AssertionError("unreachable")

    def close(self) -> None:
        if os.getpid() != self._owner:
            return
        self.proc.returncode = 0
        while self._spares:
            self._spares.pop().close()


def _loopback_listener() -> socket.socket:
    """A listener on loopback only; on Windows no other socket may share its port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    return listener


class SpawnedChild:
    """One spawned process: its socket, its output (read here, capped) and a way to kill it."""

    def __init__(self, transport: str):
        self.lock = threading.Lock()
        self.kill_lock = threading.Lock()
        # Whoever reads the pipe holds this, from the read to the keeping of what
        # was read: the reader thread, or output() draining what is already there.
        self.read_lock = threading.Lock()
        self.closed = False
        self.cap = 64 << 10  # set by start() before any student code runs
        self.kept = bytearray()
        self.boot = b""
        self.total = 0
        self.student_output = False  # the MARKER was seen
        self.overflowed = False
        self.on_end = None
        self.sock: socket.socket | None = None
        self.listener: socket.socket | None = None
        self.token = ""
        config = {"parent": os.getpid(), "marker": MARKER.decode()}
        env = {k: os.environ[k] for k in ENV_KEEP if k in os.environ}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HOME=tempfile.gettempdir())
        options: dict = {}
        theirs = None
        if transport == "fds":
            self.sock, theirs = socket.socketpair()
            config["channel"] = f"fd:{theirs.fileno()}"
            options["pass_fds"] = [theirs.fileno()]
        else:
            self.listener = _loopback_listener()
            self.token = secrets.token_hex(16)
            config["channel"] = "tcp"
        if os.name == "posix":
            options["start_new_session"] = True  # its own process group: a kill takes what it started
        else:
            options["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # no console pops up
        # -I: no PYTHONPATH, user site or current folder; the child comes from this grader's tree.
        boot = (f"import sys; sys.path.insert(0, {PACKAGE_PARENT!r}); "
                f"from attnkit.sandbox.spawned import main; main({json.dumps(config)!r})")
        try:
            self.proc = subprocess.Popen([sys.executable, "-I", "-c", boot], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                         cwd=tempfile.gettempdir(), **options)
        finally:
            if theirs is not None:
                theirs.close()
        if self.listener is not None:
            port = self.listener.getsockname()[1]
            try:
                self.proc.stdin.write(json.dumps({"port": port, "token": self.token}).encode() + b"\n")
                self.proc.stdin.flush()
            except OSError:
                pass  # it died at once: start() reports it
        self.pid = self.proc.pid
        if DRAINABLE:
            os.set_blocking(self.proc.stdout.fileno(), False)
        # The reader owns the pipe and closes it at end of file: closing it from
        # here while it reads could hand its descriptor number to another file.
        threading.Thread(target=self._read_output, name=f"attnkit-output-{self.pid}", daemon=True).start()

    # -- start
    def start(self, request: dict, deadline: float) -> None:
        """Wait until the process is warm, then give it its limits and folder."""
        try:
            if self.listener is not None:
                self._accept(deadline)
            header, _ = protocol.recv(self.sock, deadline, 1 << 10)
            if header.get("kind") != Kind.WARM:
                raise protocol.ProtocolError("no warm-up report")
            with self.lock:
                self.cap = int(request.get("limits", {}).get("output_bytes", 64 << 10))
            protocol.send(self.sock, {"op": Op.START, "request": request}, deadline=deadline)
        except protocol.Timeout:
            raise SandboxError(f"a process for student code did not start within {STARTUP_SECONDS:g} s; "
                               f"try `python -c 'import torch'`{self._boot_text()}") from None
        except (protocol.PeerClosed, protocol.ProtocolError, OSError) as exc:
            raise SandboxError(f"a process for student code ended while starting ({exc}); "
                               f"try `python -c 'import torch'`{self._boot_text()}") from None

    def _accept(self, deadline: float) -> None:
        """The loopback channel: the first connection that proves the token."""
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or self._exited():
                    raise protocol.PeerClosed("the process exited before it connected")
                self.listener.settimeout(min(left, 0.5))
                try:
                    conn, _ = self.listener.accept()
                except socket.timeout:
                    continue
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    hello, _ = protocol.recv(conn, min(deadline, time.monotonic() + 10), 1 << 10)
                except (protocol.Timeout, protocol.PeerClosed, protocol.ProtocolError):
                    conn.close()
                    continue
                if secrets.compare_digest(str(hello.get("token", "")), self.token):
                    self.sock = conn
                    return
                conn.close()
        finally:
            self.listener.close()
            self.listener = None

    def _boot_text(self) -> str:
        self.kill()
        if DRAINABLE:
            self._drain()  # what it wrote before it died is in the pipe: no need to wait for the reader
        else:
            time.sleep(0.1)  # the reader's last chunk
        with self.lock:
            text = self.boot.decode("utf-8", "replace").strip()
        return f"; it printed:\n{text[-BOOT_TAIL:]}" if text else ""

    # -- output
    def _read_output(self) -> None:
        stream = self.proc.stdout
        fd = stream.fileno()
        try:
            while True:
                if DRAINABLE:
                    select.select([fd], [], [])  # wait without the lock: output() may drain meanwhile
                with self.read_lock:
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        continue  # output() took it first
                    if not chunk:
                        break
                    over = self._take(chunk)
                if over:
                    self.kill(overflow=True)
        except (OSError, ValueError):
            pass
        finally:
            with self.read_lock:
                self.closed = True
                stream.close()

    def _drain(self) -> None:
        """Keep what the process has written and this side not yet read. What
        it printed before its last reply is in the pipe by then, so a reader
        thread still waiting for its turn (the GIL: up to 5 ms) loses nothing."""
        over = False
        with self.read_lock:
            if self.closed:
                return
            fd = self.proc.stdout.fileno()
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # BlockingIOError among them: nothing more written yet
                    break
                if not chunk:
                    break  # the end: the reader thread sees it too, and closes
                over = self._take(chunk) or over
        if over:
            self.kill(overflow=True)

    def _take(self, chunk: bytes) -> bool:
        """Keep output up to the cap; True when the process wrote past it."""
        with self.lock:
            if not self.student_output:
                self.boot += chunk
                at = self.boot.find(MARKER)
                if at < 0:
                    self.boot = self.boot[-(BOOT_TAIL + len(MARKER)):]
                    return False
                chunk, self.boot = self.boot[at + len(MARKER):], self.boot[:at][-BOOT_TAIL:]
                self.student_output = True
            self.total += len(chunk)
            self.kept += chunk[:max(0, self.cap - len(self.kept))]
            return self.total > self.cap and not self.overflowed

    def pause(self) -> None:
        """Nothing here: the portable runner gives no grades for credit (see README)."""

    def resume(self) -> None:
        pass

    def ended_by(self) -> str | None:
        """"output" when this runner killed the process for writing past the cap."""
        return "output" if self.overflowed else None

    def fresh_output(self) -> None:
        """Count output from zero again (the child resets its own budget on the
        request that says so); what the process wrote so far is read first."""
        if DRAINABLE:
            self._drain()
        with self.lock:
            if self.student_output:
                self.total, self.kept = 0, bytearray()

    def output(self, limit: int) -> str:
        if DRAINABLE:
            self._drain()
        with self.lock:
            return bytes(self.kept[:limit]).decode("utf-8", "replace")

    # -- end
    def kill(self, overflow: bool = False) -> None:
        """Kill the process (and, on POSIX, its process group); the runner then
        starts the next spare."""
        with self.kill_lock:
            if overflow:
                self.overflowed = True
            if os.name == "posix" and self.proc.returncode is None:
                # Not reaped yet, so the pid, and the group it leads, are still this child's.
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                self.proc.kill()
            except OSError:
                pass
            self._cut_lifeline()  # and should the kill miss a process (a launcher's child), it ends itself
        if not overflow:  # the reader thread only signals; the grader's thread reaps
            with self.kill_lock:
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        on_end, self.on_end = self.on_end, None
        if on_end is not None and not overflow:
            on_end()

    def _exited(self) -> bool:
        with self.kill_lock:  # reaping frees the pid: never while a kill is under way
            return self.proc.poll() is not None

    def _cut_lifeline(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def close(self) -> None:
        self.kill()
        for end in (self.sock, self.listener):
            if end is not None:
                end.close()
