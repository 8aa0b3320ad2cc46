"""The grader's side of the sandbox: the warm worker, and one session per submission.

The grading process never imports student code. It starts the worker
(``zygote.py``) once, which pays the torch import, asks it for a fresh child
per submission, sends the child the submission's files, and talks to it with
the data-only protocol. Everything that decides a grade happens here: the
time each item takes is measured on this process's clock and no message from
the child pauses, extends or restarts it; stand-in requests are answered only
for the stages the item under grading may call, within size bounds; a child
that overruns is killed with its whole PID namespace and the next request gets
a fresh one.

Where Linux or fork is missing (macOS, Windows), or with
``ATTNKIT_SANDBOX=portable``, ``Zygote`` is the portable runner instead
(``portable.py``): the same interface, the same protocol and request server,
one spawned process per submission, and reduced isolation, said in one line.
"""

from __future__ import annotations

import ast
import collections
import functools
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

from attnkit.sandbox import confine, protocol
from attnkit.sandbox.protocol import Fault, Kind, Limit, Op

SANDBOX_DIR = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.dirname(SANDBOX_DIR)  # attnkit
PACKAGE_PARENT = os.path.dirname(PACKAGE_DIR)  # what holds attnkit: a checkout's autograder/, or site-packages
UID_BASE = 200_000  # users of our own for student processes (as root); they need no passwd entry


class SandboxError(Exception):
    """A fault of the sandbox or of its setup, never of the student."""


class ChildFault(Exception):
    """The student's code raised, was missing, or could not be imported."""

    def __init__(self, kind: str, message: str, traceback: str = ""):
        super().__init__(message)
        self.kind, self.message, self.traceback = str(kind), message, traceback


class LimitHit(Exception):
    """A limit was hit (time, memory, output, a crash); the item scores zero."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


@dataclass
class Limits:
    """Per-item limits. Defaults follow the design; every one is configurable."""

    seconds: float = 10.0
    memory_bytes: int = 2 << 30
    output_bytes: int = 64 << 10
    processes: int = 16  # threads, as root (processes are refused outright)
    files: int = 64  # open file descriptors
    reply_bytes: int = 64 << 20
    upcall_bytes: int = 16 << 20  # a stand-in's arguments, and its answer

    def for_child(self) -> dict:
        return {"memory_bytes": self.memory_bytes, "output_bytes": self.output_bytes,
                "processes": self.processes, "files": self.files}


# --------------------------------------------------------------------------- the worker

class _Channel:
    """One control connection to the worker; one per grading job process."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.lock = threading.Lock()
        self.buf = b""
        self.ready: dict | None = None
        self.spare: _Spare | None = None  # a child forked ahead of need, its reply still to be read

    def line(self, timeout: float = 120.0) -> tuple[dict, list[int]]:
        deadline = time.monotonic() + timeout
        fds: list[int] = []
        while b"\n" not in self.buf:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk, got, _flags, _addr = socket.recv_fds(self.sock, 4096, 2)
            except socket.timeout:
                raise SandboxError("the grading worker did not answer (is torch installed?)") from None
            except OSError:
                chunk, got = b"", []
            fds += got
            if not chunk:
                raise SandboxError("the grading worker exited unexpectedly; try `python -c 'import torch'`")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line), fds


ISOLATION_VAR = "ATTNKIT_SANDBOX"


def requested_isolation() -> str:
    """``ATTNKIT_SANDBOX``: "auto" (the default: every guarantee the machine
    allows), "none" (only the limits, the data-only channel and the syscall
    filter; for trying what the kit does on a machine without namespaces) or
    "portable" (the runner of macOS and Windows, anywhere: for trying it on Linux)."""
    value = os.environ.get(ISOLATION_VAR, "auto").strip().lower() or "auto"
    if value not in ("auto", "none", "portable"):
        raise SandboxError(f"{ISOLATION_VAR}={value!r}: expected auto, none or portable")
    return value


def runner() -> tuple[str, str]:
    """Which runner student code gets here: ("fork", "") where Linux and fork
    are, else ("portable", why)."""
    if requested_isolation() == "portable":
        return "portable", f"{ISOLATION_VAR}=portable"
    if sys.platform == "win32" or not hasattr(os, "fork"):
        return "portable", "Windows has no fork" if sys.platform == "win32" else "this system has no fork"
    if not confine.linux():
        return "portable", ("macOS has no Linux namespaces" if sys.platform == "darwin"
                            else f"{sys.platform} has no Linux namespaces")
    return "fork", ""


SESSION_PREFIX = "attnkit-session-"  # only where the child has no private root: see Session._start


def remove_stale_sessions(folder: str | None = None) -> list[str]:
    """Session folders left by a grader that was killed (kill -9 skips every
    cleanup): ours, and their process gone. They are private (0700) already;
    this keeps them from piling up."""
    folder = folder or tempfile.gettempdir()
    removed = []
    if not hasattr(os, "geteuid"):
        # Windows: no owner check, and os.kill(pid, 0) would send a Ctrl-C there;
        # the folders stay private to the user under their own TEMP.
        return removed
    try:
        names = [n for n in os.listdir(folder) if n.startswith(SESSION_PREFIX)]
    except OSError:
        return removed
    for name in names:
        path = os.path.join(folder, name)
        try:
            pid = int(name[len(SESSION_PREFIX):].split("-", 1)[0])
            if os.lstat(path).st_uid != os.geteuid() or os.path.islink(path):
                continue
            os.kill(pid, 0)  # alive: not stale
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except (ValueError, OSError):
            continue
    return removed


class ForkZygote:
    """The warm worker of the fork runner (Linux). Starting it is cheap for the caller: the torch import
    runs in the worker while the grader goes on with its own start-up.

    ``hide``: paths the child must never see even where they lie inside the
    Python installation (the solutions, the kit's checkout, a class folder).
    With ``channels`` > 1, processes forked from this one after construction
    share the worker, each on its own channel (``use_channel``)."""

    def __init__(self, hide=(), channels: int = 1):
        # The grader holds the hidden-case secret: keep its /proc files unreadable.
        confine.set_dumpable(False)
        remove_stale_sessions()
        config = {"exclude": checkout_paths(),  # a checkout: never bound in
                  "hide": sorted({PACKAGE_DIR, *map(str, hide)}), "parent": os.getpid(),
                  "isolation": requested_isolation()}
        pairs = [socket.socketpair() for _ in range(max(1, channels))]
        fds = [theirs.fileno() for _, theirs in pairs]
        env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "OPENBLAS_CORETYPE",
                                          "OPENBLAS_L2_SIZE") if k in os.environ}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", HOME="/tmp")
        # -I: no PYTHONPATH, user site or cwd for the worker; the worker comes
        # from the same tree as this grader, whatever is installed.
        boot = (f"import sys; sys.path.insert(0, {PACKAGE_PARENT!r}); "
                f"from attnkit.sandbox.zygote import zygote; "
                f"zygote({','.join(map(str, fds))!r}, {json.dumps(config)!r})")
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", boot], pass_fds=fds, env=env, stdin=subprocess.DEVNULL,
            cwd="/", start_new_session=True)
        for _, theirs in pairs:
            theirs.close()
        self._channels = [_Channel(ours) for ours, _ in pairs]
        self._index = 0
        self._owner = os.getpid()
        self._uids = itertools.count()
        self._orders = itertools.count()
        self._keep_spare = False

    def use_channel(self, index: int) -> None:
        self._index = index % len(self._channels)

    def keep_spare(self, keep: bool = True) -> None:
        """Fork each session's next child ahead of need: while one submission is
        graded, the next child is forked and confined in the background, so a
        session starts with a child that only waits for its files. For a process
        that grades submission after submission on its channel (a job of
        ``grade-class``)."""
        self._keep_spare = keep
        if not keep:
            self.release_spares()

    @property
    def _ch(self) -> _Channel:
        return self._channels[self._index]

    def ready(self) -> dict:
        """Wait for the worker; returns what isolation this machine allows."""
        ch = self._ch
        with ch.lock:
            if ch.ready is None:
                ch.ready, _ = ch.line()
        return ch.ready.get("isolation", {})

    def confined(self) -> bool:
        """Every guarantee applies: the allowlist filesystem, no network, own
        PID namespace, no privilege, the seccomp filter."""
        return not confine.missing(self.ready())

    def notice(self) -> str:
        """What isolation the OS refused, as a once-per-run notice ('' if none)."""
        return confine.notice(self.ready())

    def not_for_credit(self) -> str:
        """Why this runner may not grade for credit at all ('' where it may;
        ``confined`` says whether every guarantee applies)."""
        return confine.credit_refusal(self.ready())

    def new_uid(self) -> int | None:
        if self.ready().get("mode") != "root":
            return None
        return UID_BASE + (os.getpid() % 25_000) * 32 + next(self._uids) % 32

    def spawn(self, request: dict, spare_ok: bool = True) -> ForkedChild:
        """A child for ``request``: the spare forked for it ahead of need when there
        is one (``keep_spare``; ``spare_ok=False`` refuses it), else a new one.
        A spare differs from a child forked now only in its user id, which is as
        fresh: one of this process's own, never used by another session."""
        self.ready()
        ch = self._ch
        spare = None
        if self._keep_spare and _spare_fits(request):
            spare = dict(request, limits=dict(request.get("limits", {}), uid=self.new_uid()))
        with ch.lock:
            child = self._take_spare(ch, request if spare_ok else None)
            if child is None:
                child = self._fork(ch, request)
            if spare is not None:
                ch.spare = self._order(ch, spare)
        return child

    def _order(self, ch: _Channel, request: dict) -> _Spare:
        """Ask the worker for a child; its reply is read by ``_fork`` or ``_take_spare``.
        The order's token comes back with the reply: a reply owed to an order
        nobody collects (a job process that died with a spare on order) is
        skipped by whoever uses the channel next, never taken for theirs."""
        request = dict(request, order=f"{os.getpid()}-{next(self._orders)}")
        ours, theirs = socket.socketpair()
        output_file = tempfile.TemporaryFile()  # unnamed where the OS allows: nothing left behind
        try:
            socket.send_fds(ch.sock, [json.dumps(request).encode()], [theirs.fileno(), output_file.fileno()])
        except OSError:
            ours.close()
            output_file.close()
            raise
        finally:
            theirs.close()
        return _Spare(request, ours, output_file, os.getpid())

    def _fork(self, ch: _Channel, request: dict) -> ForkedChild:
        return self._collect(ch, self._order(ch, request))

    @staticmethod
    def _collect(ch: _Channel, ordered: _Spare) -> ForkedChild:
        try:
            while True:
                reply, fds = ch.line()
                if reply.get("order") == ordered.request["order"]:
                    break
                for fd in fds:  # another order's child, nobody's now: its own socket end ends it
                    os.close(fd)
        except BaseException:
            ordered.sock.close()
            ordered.output_file.close()
            raise
        child = ForkedChild(ordered.sock, fds[0] if fds else None, int(reply.get("pid", -1)), ordered.output_file)
        child.uid = ordered.request.get("limits", {}).get("uid")
        return child

    def _take_spare(self, ch: _Channel, request: dict | None) -> ForkedChild | None:
        spare, ch.spare = ch.spare, None
        if spare is None or spare.owner != os.getpid():
            return None  # none, or ordered by the process this one was forked from: its reply is skipped
        child = self._collect(ch, spare)
        if request is not None and _without_uid(spare.request) == _without_uid(request):
            child.spare = True
            return child
        child.close()
        return None

    def release_spares(self) -> None:
        """Kill this process's spares (a spare also ends by itself when the process
        that ordered it exits: its socket closes)."""
        for ch in self._channels:
            if ch.spare is not None and ch.spare.owner == os.getpid():
                with ch.lock:
                    try:
                        self._take_spare(ch, None)
                    except (SandboxError, OSError):
                        ch.spare = None

    def close(self) -> None:
        if os.getpid() != self._owner:
            return  # a forked job process: the worker belongs to the process that started it
        self.release_spares()
        for ch in self._channels:
            ch.sock.close()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait()


@dataclass
class _Spare:
    """A child ordered from the worker: what it was ordered for, the grader's ends
    of its socket and output, and the process that ordered it."""

    request: dict
    sock: socket.socket
    output_file: object
    owner: int


def _without_uid(request: dict) -> dict:
    """What a child is forked for, but for its user id and the order's token."""
    out = {k: v for k, v in request.items() if k != "order"}
    out["limits"] = {k: v for k, v in dict(request.get("limits", {})).items() if k != "uid"}
    return out


def _spare_fits(request: dict) -> bool:
    """Spares only where the child makes its own root: a session folder on the
    host (``workdir``) belongs to one session and its user id."""
    return request.get("workdir") is None


class ForkedChild:
    """The grader's handle on one forked child: its socket, a pidfd (or its
    pid, as the worker sees it) and the unnamed file its output goes to."""

    uid: int | None = None
    spare = False  # forked ahead of need (``ForkZygote.keep_spare``)

    def __init__(self, sock: socket.socket, pidfd: int | None, pid: int, output_file):
        self.sock, self.pidfd, self.pid, self.output_file = sock, pidfd, pid, output_file

    def kill(self) -> None:
        """Kill the child; with its PID namespace goes everything it started."""
        if self.pidfd is not None:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except OSError:
                pass
            os.close(self.pidfd)
        elif self.pid > 0:
            for kill in (lambda: os.killpg(self.pid, signal.SIGKILL), lambda: os.kill(self.pid, signal.SIGKILL)):
                try:
                    kill()
                except OSError:
                    pass
        self.pidfd, self.pid = None, -1

    def ended_by(self) -> str | None:
        """A limit the runner enforced by killing the child ("output"), else None:
        here the kernel enforces the limits, and the child reports them."""
        return None

    def output(self, limit: int) -> str:
        try:
            return os.pread(self.output_file.fileno(), limit, 0).decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def close(self) -> None:
        self.kill()
        self.output_file.close()


def checkout_paths() -> list[str]:
    """The folder that holds the kit's package when it is a source checkout
    (autograder/): kept off the child's import path. Never a site-packages
    folder: that holds torch, and the kit's package in it is covered instead."""
    in_site = PACKAGE_PARENT in {os.path.realpath(p) for p in _site_dirs()}
    return [] if in_site else [PACKAGE_PARENT]


def _site_dirs() -> list[str]:
    import site

    dirs = list(getattr(site, "getsitepackages", lambda: [])())
    user = getattr(site, "getusersitepackages", lambda: "")()
    return dirs + ([user] if user else [])


# --------------------------------------------------------------------------- stand-in answers

@functools.lru_cache(maxsize=256)
def _top_level_imports(source: bytes) -> tuple[str, ...]:
    """The modules a file imports at its top level, in order (parsed once per
    distinct file: a class hands in the same stubs and solutions again and again)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ()
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return tuple(dict.fromkeys(names))


class AnswerMemo:
    """Stand-in answers already given, kept as the frames that carried them.

    Correct submissions ask the stand-ins the same questions, student after
    student: a question asked again (the same answering service, the same
    stage and arguments, byte for byte) is answered with the frame sent
    before, without decoding, recomputing or encoding anything. Only the
    grader reads this: the child asks and is answered exactly as before, and
    every check on the request (the stages its item may call, the size
    bounds) runs first. Train-mode questions (dropout draws) are never kept;
    the memo is bounded in bytes, least recently used first out.
    """

    def __init__(self, max_bytes: int = 64 << 20):
        self.max_bytes = max_bytes
        self.frames: collections.OrderedDict = collections.OrderedDict()  # key -> (frame, answer bytes)
        self.held = 0

    @staticmethod
    def key(service, header: dict, bufs: list) -> tuple | None:
        spec = header.get("spec")
        if not isinstance(spec, dict) or spec.get("training"):
            return None
        try:
            return service, protocol.question_key(spec, header.get("tensors"), header.get("grads"), bufs)
        except (TypeError, ValueError):
            return None

    def get(self, key, bound: int) -> bytes | None:
        if key is None or key not in self.frames:
            return None
        frame, size = self.frames[key]
        if size > bound:
            return None  # within another session's bound, not this one's: asked again, refused again
        self.frames.move_to_end(key)
        return frame

    def put(self, key, frame: bytes, size: int) -> None:
        if key is None or len(frame) > self.max_bytes // 8 or key in self.frames:
            return
        self.frames[key] = (frame, size)
        self.held += len(frame)
        while self.held > self.max_bytes:
            _, (old, _) = self.frames.popitem(last=False)
            self.held -= len(old)


ANSWERS = AnswerMemo()


# --------------------------------------------------------------------------- one submission

class Session:
    """One submission, graded in a child process of its own.

    ``files``: the submission, name -> bytes. ``modules``: the exercise module
    names, in teaching order. ``standins``: each stage's stand-in declaration;
    ``calls``: item -> the stages it may call; ``answer(spec, tensors, grads)``
    computes a stand-in's reference result. Without ``answer`` (the public
    checker, which has no reference) every stand-in request is refused and the
    student's own code runs.
    """

    def __init__(self, zygote: ForkZygote, files: dict[str, bytes], modules=(), standins=None, calls=None,
                 answer=None, limits: Limits | None = None):
        self.zygote = zygote
        self.limits = limits or Limits()
        self.files = {os.path.basename(k): bytes(v) for k, v in files.items()}
        self.modules = tuple(modules)
        self.standins = dict(standins or {})
        self.calls = {k: frozenset(v) for k, v in (calls or {}).items()}
        self.answer = answer
        self.uid = zygote.new_uid()
        self.workdir: str | None = None  # only where the child has no new root of its own
        self.sock: socket.socket | None = None
        self.child = None  # the runner's handle on the current (or last) child: kill, output
        self.used: dict[str, float] = {}  # seconds per item (and per module import), on our clock
        self.imported: set[str] = set()  # in the current child
        self.unavailable: dict[str, tuple[str, str, str]] = {}  # module -> (kind, message, traceback)
        self.current: str | None = None  # the item whose request is under way
        self.spawned = 0
        self._deps: dict[str, list[str]] = {}

    # -- lifecycle
    def _start(self) -> None:
        self.spawned += 1
        isolation = self.zygote.ready()
        if not isolation.get("filesystem") and self.workdir is None:
            # 0700, ours alone; named after this process, so a later run can tell it is stale
            self.workdir = tempfile.mkdtemp(prefix=f"{SESSION_PREFIX}{os.getpid()}-")
            if self.uid is not None:
                os.chown(self.workdir, self.uid, self.uid)
        if self.child is not None:
            self.child.close()
        request = {"limits": dict(self.limits.for_child(), uid=self.uid), "workdir": self.workdir,
                   "exclude": checkout_paths()}
        bufs = [self.files[n] for n in sorted(self.files)]
        hello = {"op": Op.HELLO, "files": sorted(self.files), "modules": list(self.modules),
                 "standins": self.standins if self.answer else {}, "calls": {k: sorted(v) for k, v in self.calls.items()},
                 "unavailable": sorted(self.unavailable)}
        self.imported = set()
        self.child = self.zygote.spawn(request)
        self.sock = self.child.sock
        if not getattr(self.child, "spare", False):
            self._exchange(hello, bufs, time.monotonic() + 60)
            return
        try:
            self._exchange(hello, bufs, time.monotonic() + 60)
        except LimitHit:
            # a spare that died while it waited (no student code had run in it):
            # not the submission's doing, so a child forked now takes its place
            self.child.close()
            self.child = self.zygote.spawn(request, spare_ok=False)
            self.sock = self.child.sock
            self._exchange(hello, bufs, time.monotonic() + 60)

    def _stop(self) -> None:
        """Kill the child (through its runner: a pidfd, or a process handle); its
        output stays readable until the next child starts."""
        if self.child is not None:
            self.child.kill()
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.imported = set()

    def close(self) -> None:
        self._stop()
        if self.child is not None:
            self.child.close()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def output(self) -> str:
        """What the student's code printed in the current child, capped."""
        return self.child.output(self.limits.output_bytes) if self.child is not None else ""

    # -- imports, each on a budget of its own
    def _dependencies(self, module: str, seen=None) -> list[str]:
        """The other exercise modules ``module`` imports at its top level, theirs first."""
        if seen is None:
            if module not in self._deps:
                self._deps[module] = self._dependencies(module, set())
            return self._deps[module]
        seen.add(module)
        out: list[str] = []
        for name in _top_level_imports(self.files.get(f"{module}.py", b"")):
            if name in self.modules and name not in seen:
                out += [d for d in self._dependencies(name, seen) if d not in out] + [name]
        return out

    def _ensure_imported(self, module: str) -> None:
        for m in self._dependencies(module) + [module]:
            if m in self.imported or m in self.unavailable:
                continue
            if f"{m}.py" not in self.files:
                self.unavailable[m] = (Fault.MISSING_FILE, f"missing file: expected {m}.py in the submission", "")
                continue
            if self.sock is None:
                self._start()
            start = time.monotonic()
            try:
                reply, _ = self._exchange({"op": Op.IMPORT, "module": m, "unavailable": sorted(self.unavailable)},
                                          [], start + self.limits.seconds, item=None)
            except LimitHit as hit:
                what = {Limit.TIME: f"importing {m}.py did not finish within the time limit "
                                f"({self.limits.seconds:g} s; an infinite loop at top level?)",
                        Limit.CRASH: f"importing {m}.py ended the grading process "
                                 f"(os._exit, sys.exit or a crash at top level)"}.get(hit.kind, hit.message)
                self.unavailable[m] = (hit.kind, what, "")
                continue
            if reply.get("kind") == Kind.ERROR:
                self.unavailable[m] = (Fault.IMPORT, str(reply.get("message", ""))[:2000],
                                       str(reply.get("traceback", ""))[:6000])
            else:
                self.imported.add(m)

    # -- requests
    def request(self, item: str, op: str, args=(), kwargs=None):
        """Run one operation for ``item``; returns the decoded value or raises
        ChildFault / LimitHit."""
        module = item.split(".", 1)[0]
        if self.sock is None and module not in self.unavailable:
            self._start()
        self._ensure_imported(module)
        if module in self.unavailable:
            kind, message, tb = self.unavailable[module]
            if kind in set(Limit):
                raise LimitHit(kind, message)
            raise ChildFault(kind, message, tb)
        used = self.used.get(item, 0.0)
        if used >= self.limits.seconds:
            raise LimitHit(Limit.TIME, self._time_message())
        bufs: list = []
        header = {"op": Op(op), "item": item, "args": protocol.encode_value(list(args), bufs),
                  "kwargs": protocol.encode_value(dict(kwargs or {}), bufs)}
        start = time.monotonic()
        try:
            reply, rbufs = self._exchange(header, bufs, start + self.limits.seconds - used, item=item)
        finally:
            self.used[item] = used + time.monotonic() - start
        if reply.get("kind") == Kind.ERROR:
            kind = str(reply.get("error"))
            message = str(reply.get("message", ""))[:2000]
            if kind == Fault.MEMORY:
                self._stop()
                raise LimitHit(Limit.MEMORY, f"memory limit exceeded ({self.limits.memory_bytes >> 20} MiB "
                                         f"above the worker's baseline): {message}")
            if kind == Fault.OUTPUT:
                self._stop()
                raise LimitHit(Limit.OUTPUT, self._output_message())
            raise ChildFault(kind, message, str(reply.get("traceback", ""))[:6000])
        if reply.get("kind") != Kind.RESULT:
            self._stop()
            raise ChildFault(Fault.PROTOCOL, "the process running your code sent back an unexpected reply")
        try:
            return protocol.decode_value(reply.get("value"), rbufs)
        except protocol.ProtocolError as exc:
            self._stop()
            raise ChildFault(Fault.PROTOCOL, f"the process running your code sent back malformed data ({exc})") from None

    def _exchange(self, header: dict, bufs: list, deadline: float, item: str | None = None):
        """Send one request and wait for its answer, serving stand-in requests
        meanwhile. The deadline is ours: nothing the child sends moves it."""
        if self.sock is None:
            self._start()
        self.current = item
        try:
            protocol.send(self.sock, header, bufs, deadline)
            while True:
                reply, rbufs = protocol.recv(self.sock, deadline, self.limits.reply_bytes)
                if reply.get("kind") == Kind.UPCALL:
                    self._answer_upcall(reply, rbufs, item, deadline)
                else:
                    return reply, rbufs
        except protocol.Timeout:
            self._stop()
            raise LimitHit(Limit.TIME, self._time_message()) from None
        except (protocol.PeerClosed, BrokenPipeError, ConnectionResetError):
            ended_by = self.child.ended_by() if self.child is not None else None
            self._stop()
            if ended_by == "output":  # the portable runner's cap on output it could not refuse
                raise LimitHit(Limit.OUTPUT, self._output_message()) from None
            raise LimitHit(Limit.CRASH, "the process running your code ended unexpectedly "
                                    "(os._exit, a crash or a signal); nothing was returned") from None
        except protocol.ProtocolError as exc:
            self._stop()
            raise LimitHit(Limit.PROTOCOL, f"the process running your code sent malformed data ({exc})") from None
        finally:
            self.current = None

    def _answer_upcall(self, header: dict, bufs: list, item: str | None, deadline: float) -> None:
        """A stand-in's request: answered for the stages ``item`` may call only,
        within the size bound; refused otherwise (the child then runs the
        student's own code). A refusal costs the requesting item only."""
        try:
            spec = header.get("spec")
            target = spec.get("target") if isinstance(spec, dict) else None
            if self.answer is None:
                raise PermissionError("no reference here")
            if item is None or target == item or target not in self.calls.get(item, ()):
                raise PermissionError(f"{target!r} is not a stage that {item or 'an import'} may call")
            if sum(len(b) for b in bufs) > self.limits.upcall_bytes:
                raise PermissionError(f"arguments over {self.limits.upcall_bytes >> 20} MiB")
            key = ANSWERS.key(self.answer, header, bufs)
            known = ANSWERS.get(key, self.limits.upcall_bytes)
            if known is not None:
                protocol.send_packed(self.sock, known, deadline)
                return
            tensors = protocol.decode_value(header.get("tensors"), bufs)
            grads = protocol.decode_value(header.get("grads"), bufs)
            value = self.answer(spec, tensors, grads, self.limits.upcall_bytes)
            out: list = []
            encoded = protocol.encode_value(value, out)
            size = sum(len(b) for b in out)
            if size > self.limits.upcall_bytes:
                raise PermissionError(f"an answer over {self.limits.upcall_bytes >> 20} MiB")
        except Exception as exc:  # noqa: BLE001 - any failure must still answer, or the channel desyncs
            protocol.send(self.sock, {"kind": Kind.UPCALL_ERROR, "message": f"refused: {exc}"[:500]}, deadline=deadline)
            return
        data = protocol.pack({"kind": Kind.UPCALL_RESULT, "value": encoded}, out)
        ANSWERS.put(key, data, size)
        protocol.send_packed(self.sock, data, deadline)

    def _output_message(self) -> str:
        return f"output limit exceeded: your code printed more than {self.limits.output_bytes >> 10} KiB"

    def _time_message(self) -> str:
        return (f"time limit exceeded: this item took more than {self.limits.seconds:g} s "
                f"(an infinite loop?); it scores 0")
