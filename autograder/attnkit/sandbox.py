"""The grader's side of the sandbox: a warm worker, and one session per submission.

The grader process never imports student code. It starts ``attnkit.worker``
once (that pays the torch import), asks it to fork a fresh child for each
submission, and talks to the child over a socket pair with the data-only
codec. Time is enforced from here: a child that overruns its item's budget is
killed with its whole process group, the item scores zero, and the next
request gets a fresh child.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from attnkit import codec
from attnkit.outcomes import GraderError, LimitExceeded, StudentError


PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Limits:
    """Per-item limits. Defaults follow the design; every one is configurable."""

    seconds: float = 10.0
    memory_bytes: int = 2 << 30
    output_bytes: int = 64 << 10
    processes: int = 8
    reply_bytes: int = 64 << 20

    def for_child(self) -> dict:
        return {"memory_bytes": self.memory_bytes, "output_bytes": self.output_bytes,
                "processes": self.processes}


class Zygote:
    """The warm worker. Starting it is cheap for the caller: the torch import
    runs in the worker while the grader goes on with its own start-up."""

    def __init__(self):
        self._sock, theirs = socket.socketpair()
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR",
                                          "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
               if k in os.environ}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
        # -I: no PYTHONPATH, user site or cwd for the worker; the worker comes
        # from the same tree as this grader, whatever is installed.
        boot = (f"import sys; sys.path.insert(0, {PACKAGE_PARENT!r}); "
                f"from attnkit.worker import zygote; zygote({theirs.fileno()})")
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", boot],
            pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
            cwd=tempfile.gettempdir(), start_new_session=True)
        theirs.close()
        self._lock = threading.Lock()
        self._ready = False
        self._buf = b""

    def _line(self, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            self._sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self._sock.recv(4096)
            except socket.timeout:
                raise GraderError("the grading worker did not answer (is torch installed?)") from None
            if not chunk:
                raise GraderError("the grading worker exited; run `python -m attnkit.worker` to see why")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def spawn(self, workdir: str, output: str, limits: dict) -> tuple[int, socket.socket]:
        ours, theirs = socket.socketpair()
        with self._lock:
            if not self._ready:
                self._line()
                self._ready = True
            request = json.dumps({"workdir": workdir, "output": output, "limits": limits}).encode()
            socket.send_fds(self._sock, [request], [theirs.fileno()])
            theirs.close()
            pid = self._line()["pid"]
        return pid, ours

    def close(self) -> None:
        try:
            self._sock.close()
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()


def kill_tree(pid: int) -> None:
    """Kill a child and everything in its process group."""
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except OSError:
            pass


@dataclass
class CallResult:
    value: object
    args_after: list = field(default_factory=list)


class Session:
    """One submission, graded in a child process of its own.

    ``items`` maps every graded "module.name" to "function" or "class", so the
    child can stand reference results in for the stages not under test.
    ``upcall`` computes those reference results here, in the grader; without
    it (the public checker, which has no reference) nothing is stood in.
    """

    def __init__(self, zygote: Zygote, submission_dir: str, items: dict[str, str],
                 upcall=None, limits: Limits | None = None):
        self.zygote = zygote
        self.limits = limits or Limits()
        self.items = items
        self.upcall = upcall
        self.tmp = tempfile.mkdtemp(prefix="attnkit-")
        self.workdir = os.path.join(self.tmp, "submission")
        self.source = submission_dir
        copy_submission(submission_dir, self.workdir)
        self.pid: int | None = None
        self.sock: socket.socket | None = None
        self.used: dict[str, float] = {}
        self.spawned = 0

    # -- lifecycle
    def _start(self) -> None:
        self.spawned += 1
        output = os.path.join(self.tmp, f"output-{self.spawned}.txt")
        self.pid, self.sock = self.zygote.spawn(self.workdir, output, self.limits.for_child())
        self.output_path = output
        stand_ins = sorted(self.items.items()) if self.upcall else []
        self._exchange({"op": "hello", "items": stand_ins}, [], time.monotonic() + 60)

    def _stop(self) -> None:
        if self.pid is not None:
            kill_tree(self.pid)
        if self.sock is not None:
            self.sock.close()
        self.pid = self.sock = None

    def close(self) -> None:
        self._stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def output(self) -> str:
        """What the student's code printed in the current child, capped."""
        try:
            with open(self.output_path, "rb") as f:
                return f.read(self.limits.output_bytes).decode("utf-8", "replace")
        except (OSError, AttributeError):
            return ""

    # -- requests
    def request(self, item: str, op: str, args=(), kwargs=None):
        """Run one operation for ``item``; returns the decoded value or raises
        StudentError / LimitExceeded."""
        module = item.split(".", 1)[0]
        if not os.path.exists(os.path.join(self.workdir, module + ".py")):
            raise StudentError("missing_file", f"missing file: expected {module}.py in {self.source}")
        used = self.used.get(item, 0.0)
        if used >= self.limits.seconds:
            raise LimitExceeded("time", self._time_message())
        if self.sock is None:
            self._start()
        bufs: list = []
        header = {"op": op, "item": item,
                  "args": codec.encode_value(list(args), bufs),
                  "kwargs": codec.encode_value(dict(kwargs or {}), bufs)}
        start = time.monotonic()
        try:
            reply, rbufs = self._exchange(header, bufs, start + self.limits.seconds - used)
        finally:
            self.used[item] = used + time.monotonic() - start
        if reply.get("kind") == "error":
            kind = str(reply.get("error"))
            message = str(reply.get("message", ""))[:2000]
            if kind == "memory":
                self._stop()
                raise LimitExceeded("memory", f"memory limit exceeded ({self.limits.memory_bytes >> 20} MiB "
                                              f"above the worker's baseline): {message}")
            if kind == "output":
                self._stop()
                raise LimitExceeded("output", f"output limit exceeded: your code printed more than "
                                              f"{self.limits.output_bytes >> 10} KiB")
            raise StudentError(kind, message, str(reply.get("traceback", ""))[:6000])
        try:
            return codec.decode_value(reply.get("value"), rbufs)
        except codec.ProtocolError as exc:
            self._stop()
            raise StudentError("protocol", f"the grading process sent back malformed data ({exc})") from None

    def _exchange(self, header: dict, bufs: list, deadline: float):
        try:
            codec.send(self.sock, header, bufs)
            while True:
                reply, rbufs = codec.recv(self.sock, deadline, self.limits.reply_bytes)
                if reply.get("kind") != "upcall":
                    return reply, rbufs
                self._answer_upcall(reply, rbufs)
        except codec.Timeout:
            self._stop()
            raise LimitExceeded("time", self._time_message()) from None
        except (codec.PeerClosed, BrokenPipeError, ConnectionResetError):
            self._stop()
            raise LimitExceeded("crash", "the process running your code ended unexpectedly "
                                         "(os._exit, a crash, or a signal); nothing was returned") from None
        except codec.ProtocolError as exc:
            self._stop()
            raise LimitExceeded("protocol", f"the process running your code sent malformed data ({exc})") from None

    def _answer_upcall(self, header: dict, bufs: list) -> None:
        try:
            tensors = codec.decode_value(header.get("tensors"), bufs)
            grads = codec.decode_value(header.get("grads"), bufs)
            value = self.upcall(header.get("spec"), tensors, grads)
            out: list = []
            codec.send(self.sock, {"kind": "upcall_result", "value": codec.encode_value(value, out)}, out)
        except (codec.ProtocolError, ValueError, TypeError, KeyError, RuntimeError, IndexError) as exc:
            codec.send(self.sock, {"kind": "upcall_error",
                                   "message": f"the grader's reference could not run on these arguments: {exc}"})

    def _time_message(self) -> str:
        return (f"time limit exceeded: this item took more than {self.limits.seconds:g} s "
                f"(an infinite loop?); it scores 0")


PY_LIMIT = 512 << 10  # a .py file larger than this is not a hand-written exercise


def copy_submission(src: str, dst: str) -> None:
    """Copy the submission's Python files, so student code never touches the originals."""
    os.makedirs(dst, exist_ok=True)
    for name in sorted(os.listdir(src)):
        path = os.path.join(src, name)
        if name.endswith(".py") and os.path.isfile(path) and not os.path.islink(path) \
                and os.path.getsize(path) <= PY_LIMIT:
            shutil.copyfile(path, os.path.join(dst, name))
    os.chmod(dst, 0o755)
