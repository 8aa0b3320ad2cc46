"""The grader's side of the sandbox: a warm worker, and one session per submission.

The grader process never imports student code. It starts ``attnkit.worker``
once (that pays the torch import), asks it to fork a fresh child for each
submission, and talks to the child over a socket pair with the data-only
codec. Limits are enforced from here: a child that overruns its item's time
budget is killed with everything it started, the item scores zero, and the
next request gets a fresh child.
"""

from __future__ import annotations

import itertools
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
from dataclasses import dataclass

from attnkit import codec, confine
from attnkit.worker import MODULES
from attnkit.outcomes import GraderError, LimitExceeded, StudentError

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KIT_ROOT = os.path.dirname(PACKAGE_PARENT)
# What a student process must not read: the solutions, the source notebooks
# (they hold the solution cells) and the repository history.
SECRET_PATHS = [os.path.join(KIT_ROOT, p) for p in ("solutions", "source", ".git")]
UID_BASE = 200_000  # users of our own for student processes; they need no passwd entry


@dataclass
class Limits:
    """Per-item limits. Defaults follow the design; every one is configurable."""

    seconds: float = 10.0
    memory_bytes: int = 2 << 30
    output_bytes: int = 64 << 10
    processes: int = 16  # counts threads too
    reply_bytes: int = 64 << 20

    def for_child(self) -> dict:
        return {"memory_bytes": self.memory_bytes, "output_bytes": self.output_bytes,
                "processes": self.processes}


class _Channel:
    """One control connection to the worker; one per grading job process."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.lock = threading.Lock()
        self.buf = b""
        self.ready: dict | None = None

    def line(self, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                raise GraderError("the grading worker did not answer (is torch installed?)") from None
            except OSError:
                chunk = b""
            if not chunk:
                raise GraderError("the grading worker exited unexpectedly; try `python -c 'import torch'`")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


class Zygote:
    """The warm worker. Starting it is cheap for the caller: the torch import
    runs in the worker while the grader goes on with its own start-up.

    With ``channels`` > 1, processes forked from this one after construction
    share the worker, each on its own channel (``use_channel``)."""

    def __init__(self, hide: list[str] | None = None, channels: int = 1):
        # The grader holds the hidden-case secret: keep its /proc files unreadable.
        confine.set_dumpable(False)
        self.hide = [p for p in SECRET_PATHS + list(hide or []) if os.path.isdir(p)]
        pairs = [socket.socketpair() for _ in range(max(1, channels))]
        fds = [theirs.fileno() for _, theirs in pairs]
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR",
                                          "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
               if k in os.environ}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
        # -I: no PYTHONPATH, user site or cwd for the worker; the worker comes
        # from the same tree as this grader, whatever is installed.
        boot = (f"import sys; sys.path.insert(0, {PACKAGE_PARENT!r}); "
                f"from attnkit.worker import zygote; zygote({','.join(map(str, fds))!r})")
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", boot],
            pass_fds=fds, env=env, stdin=subprocess.DEVNULL,
            cwd=tempfile.gettempdir(), start_new_session=True)
        for _, theirs in pairs:
            theirs.close()
        self._channels = [_Channel(ours) for ours, _ in pairs]
        self._index = 0
        self._owner = os.getpid()
        self._uids = itertools.count()

    def use_channel(self, index: int) -> None:
        self._index = index % len(self._channels)

    @property
    def _ch(self) -> _Channel:
        return self._channels[self._index]

    def ready(self) -> dict:
        """Wait for the worker; returns what isolation this machine allows."""
        ch = self._ch
        with ch.lock:
            if ch.ready is None:
                ch.ready = ch.line()
        return ch.ready.get("isolation", {})

    def notice(self) -> str:
        """What isolation the OS refused, as a once-per-run notice ('' if none)."""
        return confine.missing(self.ready())

    def new_uid(self) -> int | None:
        if not self.ready().get("user"):
            return None
        return UID_BASE + (os.getpid() % 25_000) * 32 + next(self._uids) % 32

    def spawn(self, workdir: str, output: str, limits: dict, hide: list[str]) -> tuple[int, socket.socket]:
        ours, theirs = socket.socketpair()
        self.ready()
        ch = self._ch
        with ch.lock:
            request = json.dumps({"op": "spawn", "workdir": workdir, "output": output, "limits": limits,
                                  "hide": self.hide + hide, "kit_path": PACKAGE_PARENT}).encode()
            socket.send_fds(ch.sock, [request], [theirs.fileno()])
            theirs.close()
            pid = ch.line()["pid"]
        return pid, ours

    def reap(self, pid: int) -> None:
        """Let the worker kill whatever the finished child left behind."""
        ch = self._ch
        with ch.lock:
            try:
                ch.sock.sendall(json.dumps({"op": "reap", "pid": pid}).encode())
                ch.line(timeout=10)
            except (OSError, GraderError):
                pass

    def close(self) -> None:
        if os.getpid() != self._owner:
            return  # a forked job process: the worker belongs to the process that started it
        for ch in self._channels:
            ch.sock.close()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait()


def kill_tree(pid: int, uid: int | None = None) -> None:
    """Kill a child, its process group and, with a user of its own, every
    process of that user (which catches those that left with setsid)."""
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except OSError:
            pass
    if uid is None:
        return
    for _ in range(100):  # the killed child disappears within a few ms
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.001)
    for _ in range(5):
        found = processes_of(uid)
        if not found:
            return
        for p in found:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)


def processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    for line in f:
                        if line.startswith("Uid:"):
                            if int(line.split()[1]) == uid:
                                found.append(int(entry))
                            break
            except (OSError, ValueError, IndexError):
                continue
    return found


class Session:
    """One submission, graded in a child process of its own.

    ``items`` maps every graded "module.name" to "function" or "class", so the
    child can stand reference results in for the stages not under test.
    ``upcall`` computes those reference results here, in the grader; without
    it (the public checker, which has no reference) nothing is stood in.
    """

    def __init__(self, zygote: Zygote, files: dict[str, bytes], items: dict[str, str],
                 upcall=None, limits: Limits | None = None, hide: list[str] | None = None):
        self.zygote = zygote
        self.limits = limits or Limits()
        self.items = items
        self.upcall = upcall
        self.hide = [p for p in (hide or []) if os.path.isdir(p)]
        self.tmp = tempfile.mkdtemp(prefix="attnkit-")
        self.workdir = os.path.join(self.tmp, "submission")
        os.makedirs(self.workdir)
        for name, data in files.items():
            with open(os.path.join(self.workdir, os.path.basename(name)), "wb") as f:
                f.write(data)
        os.chmod(self.workdir, 0o755)
        self.uid = zygote.new_uid()
        if self.uid is not None:
            os.chmod(self.tmp, 0o711)  # the student user may enter, not list
            for path in [self.workdir] + [os.path.join(self.workdir, f) for f in os.listdir(self.workdir)]:
                os.chown(path, self.uid, self.uid)
        self.pid: int | None = None
        self.sock: socket.socket | None = None
        self.used: dict[str, float] = {}
        self.spawned = 0
        self.loading: str | None = None  # the module the child is importing right now
        self.hung: dict[str, str] = {}  # modules whose import never finished or ended the process
        self.last_hung: str | None = None

    # -- lifecycle
    def _start(self) -> None:
        self.spawned += 1
        output = os.path.join(self.tmp, f"output-{self.spawned}.txt")
        limits = dict(self.limits.for_child(), uid=self.uid)
        self.pid, self.sock = self.zygote.spawn(self.workdir, output, limits, self.hide)
        self.output_path = output
        stand_ins = sorted(self.items.items()) if self.upcall else []
        self._exchange({"op": "hello", "items": stand_ins, "hung": sorted(self.hung)}, [],
                       time.monotonic() + 60)

    def _stop(self) -> None:
        if self.pid is not None:
            kill_tree(self.pid, self.uid)
            self.zygote.reap(self.pid)
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
            raise StudentError("missing_file", f"missing file: expected {module}.py in the submission")
        if module in self.hung:
            raise LimitExceeded("time" if "time" in self.hung[module] else "crash", self.hung[module])
        used = self.used.get(item, 0.0)
        if used >= self.limits.seconds:
            raise LimitExceeded("time", self._time_message())
        bufs: list = []
        header = {"op": op, "item": item,
                  "args": codec.encode_value(list(args), bufs),
                  "kwargs": codec.encode_value(dict(kwargs or {}), bufs)}
        for _ in range(len(MODULES) + 1):
            if self.sock is None:
                self._start()
            start = time.monotonic()
            self.last_hung = None
            try:
                reply, rbufs = self._exchange(header, bufs, start + self.limits.seconds - used)
                self.used[item] = used + time.monotonic() - start
                break
            except LimitExceeded:
                if self.last_hung in (None, module):
                    self.used[item] = used + time.monotonic() - start
                    raise
                # Another exercise file hung or crashed while this one imported it: that
                # file is stood in from now on, and this item is not charged for it.
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
        self.loading = None
        try:
            codec.send(self.sock, header, bufs)
            while True:
                reply, rbufs = codec.recv(self.sock, deadline, self.limits.reply_bytes)
                kind = reply.get("kind")
                if kind == "progress":
                    self.loading = reply.get("importing") if isinstance(reply.get("importing"), str) else None
                elif kind == "upcall":
                    self._answer_upcall(reply, rbufs)
                else:
                    return reply, rbufs
        except codec.Timeout:
            self._fail_loading("did not finish within the time limit (an infinite loop at top level?)")
            self._stop()
            raise LimitExceeded("time", self._time_message()) from None
        except (codec.PeerClosed, BrokenPipeError, ConnectionResetError):
            self._fail_loading("ended the grading process (os._exit, sys.exit or a crash at top level)")
            self._stop()
            raise LimitExceeded("crash", "the process running your code ended unexpectedly "
                                         "(os._exit, a crash, a signal or the process limit); "
                                         "nothing was returned") from None
        except codec.ProtocolError as exc:
            self._stop()
            raise LimitExceeded("protocol", f"the process running your code sent malformed data ({exc})") from None

    def _fail_loading(self, what: str) -> None:
        """A module whose import hangs or kills the process is not imported again."""
        module = self.loading
        if module in MODULES:
            self.hung[module] = f"importing {module}.py {what}"
            self.last_hung = module

    def _answer_upcall(self, header: dict, bufs: list) -> None:
        try:
            tensors = codec.decode_value(header.get("tensors"), bufs)
            grads = codec.decode_value(header.get("grads"), bufs)
            value = self.upcall(header.get("spec"), tensors, grads)
            out: list = []
            codec.send(self.sock, {"kind": "upcall_result", "value": codec.encode_value(value, out)}, out)
        except Exception as exc:  # noqa: BLE001 - any failure must still answer, or the channel desyncs
            codec.send(self.sock, {"kind": "upcall_error",
                                   "message": f"the grader's reference could not run on these arguments: {exc}"})

    def _time_message(self) -> str:
        return (f"time limit exceeded: this item took more than {self.limits.seconds:g} s "
                f"(an infinite loop?); it scores 0")
