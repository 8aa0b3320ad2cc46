"""The fork runner (Linux): the warm worker that pays the torch import once,
and a confined child forked from it per submission, one ready ahead of need.

``Session`` (client.py) drives a child; this module starts, orders, collects
and kills them, and says which paths a child must never see."""

from __future__ import annotations

import ast
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

from attnkit.sandbox import confine
from attnkit.sandbox.contract import SandboxError, requested_isolation

SANDBOX_DIR = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.dirname(SANDBOX_DIR)  # attnkit
PACKAGE_PARENT = os.path.dirname(PACKAGE_DIR)  # what holds attnkit: a checkout's autograder/, or site-packages
UID_BASE = 200_000  # users of our own for student processes (as root); they need no passwd entry


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


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (a cpuset or ``taskset`` narrows them),
    or [] where the system does not say."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []


def _cpu_for(index: int, jobs: int) -> int | None:
    """The CPU of job ``index`` of ``jobs``: one each where there are exactly as
    many jobs as CPUs. Otherwise None: with more jobs, jobs must be free to
    move; with fewer, nothing keeps the jobs of this run, or of another run at
    the same time, from landing on one CPU for good, and an item's time limit
    runs on the clock."""
    cpus = usable_cpus()
    if not cpus or jobs != len(cpus):
        return None
    return cpus[index % len(cpus)]


class ForkZygote:
    """The warm worker of the fork runner (Linux). Starting it is cheap for the caller: the torch import
    runs in the worker while the grader goes on with its own start-up.

    ``hide``: paths the child must never see even where they lie inside the
    Python installation (the solutions, the kit's checkout, a class folder).
    With ``channels`` > 1, processes forked from this one after construction
    share the worker, each on its own channel (``use_channel``)."""

    cpu: int | None = None  # where this process's children run (share_cpu)

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
        # The heap torch's import leaves (some 80 MiB) in 2 MiB pages where the
        # kernel offers them (glibc 2.35 on; elsewhere the name is ignored): a
        # fork copies, and a child's exit frees, one page-table entry per page,
        # 500 times fewer so. A child's first write still copies 4 KiB. A
        # child's start and end cost about a sixth less of the machine (README, *Speed*).
        env["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=1"
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

    def share_cpu(self, index: int, jobs: int) -> int | None:
        """Keep this process, job ``index`` of ``jobs`` that take turns with
        their children, on one CPU of its own, and each child it starts on the
        same one (the child moves there when it gets its files: a spare is
        forked and confined wherever the machine has room). The grader and its
        child never run at once, and a wake-up on the other CPU costs an
        interrupt between CPUs at every exchange, dear on a virtual machine
        (the README's *Speed* says what it saved). Only where there are exactly
        as many jobs as CPUs (``_cpu_for``); a child cannot leave its CPU
        (``seccomp``), so its threads load its own job's CPU alone. Returns the
        CPU, or None; None too where the filter does not apply here (a child
        could then move its threads onto another job's CPU), as on the portable
        runner."""
        cpu = _cpu_for(index, jobs) if self.ready().get("seccomp") else None
        if cpu is not None:
            try:
                os.sched_setaffinity(0, {cpu})
            except OSError:
                cpu = None
        self.cpu = cpu
        return cpu

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

    def pause(self) -> None:
        """Stop the child, every thread of it, until ``resume``: between its
        requests nothing of it runs. A thread a submission starts would
        otherwise spin while the grader compares, and while other jobs'
        students are graded, taking their CPU against their time limits.
        SIGSTOP reaches the init of a PID namespace from its parent's."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, sig: int) -> None:
        if self.pidfd is not None:  # never by pid: the worker's pid may name another process here
            try:
                signal.pidfd_send_signal(self.pidfd, sig)
            except OSError:
                pass  # it has ended: the next exchange says how

    def fresh_output(self) -> None:
        """Count output from zero again: the file is emptied, and the offset it
        shares with the child goes back to 0, so the file-size limit applies to
        what is written from now on (the child is waiting for a request)."""
        try:
            os.ftruncate(self.output_file.fileno(), 0)
            os.lseek(self.output_file.fileno(), 0, os.SEEK_SET)
        except (OSError, ValueError):
            pass

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
