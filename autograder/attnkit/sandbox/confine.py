"""Least privilege for the process that runs student code: an allowlist.

The child sees the Python installation (read-only), its own copy of its own
submission and a private, size-bounded temporary folder, and nothing else.
It gets there in a forked child of the warm worker, before any student code
runs, in this order:

1. its own PID namespace (made by the worker just before the fork): it cannot
   name, signal or trace any process outside, and when it dies every process
   it could have started dies with it;
2. its own mount, network, IPC and UTS namespaces: no network, no System V
   or POSIX IPC objects that outlive it;
3. a new root: a small tmpfs holding ``/submission`` and ``/tmp``, with the
   Python installation and the shared libraries bound in read-only, the
   kit's own package (and any configured secret path) covered by empty mounts
   where it lies inside them, ``/dev/null``, ``/dev/zero``, ``/dev/urandom``,
   and a ``/proc`` of its own PID namespace; then ``pivot_root``, so the host
   tree is detached, not merely hidden;
4. no privilege: as root, a user id of its own; without root, in the worker's
   user namespace, every capability dropped;
5. limits (address space, file size, open files, no core dumps) and a
   seccomp filter (``seccomp.py``) that refuses new processes, namespaces,
   mounts and tracing.

Without root the worker first enters a user namespace of its own (where the
kernel allows unprivileged ones), so the same steps apply. Where a step is
refused, ``probe`` says which guarantee is missing, and the grader says so.

Runs next to student code: standard library only.
"""

from __future__ import annotations

import ctypes
import os
import platform
import select
import signal
import sys
from dataclasses import dataclass, field

try:
    import resource
except ImportError:  # Windows: the portable runner applies no rlimits there
    resource = None

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 0x1000, 0x4000, 0x40000
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine())
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}.get(platform.machine())

NEW_ROOT = "/tmp"  # the mount point of the child's new root, in its own mount namespace only
SUBMISSION = "/submission"  # where the child finds its files, inside the new root
DEVICES = ("null", "zero", "full", "urandom", "random")

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class Refused(OSError):
    pass


def _call(what: str, result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise Refused(err, f"{what}: {os.strerror(err)}")


def linux() -> bool:
    return _libc is not None


# --------------------------------------------------------------------------- any process

def set_dumpable(flag: bool) -> bool:
    """A non-dumpable process's /proc files (environ, mem, fd) belong to root, so
    no process of the same user can read the grader's secret or write to its
    terminal through them."""
    return linux() and _libc.prctl(PR_SET_DUMPABLE, int(flag), 0, 0, 0) == 0


def die_with_parent(expected_parent: int | None = None) -> bool:
    """SIGKILL when the parent process dies, so nothing runs on after a grader
    that was killed. Cleared by fork and by a change of user: set it after both.
    With ``expected_parent``, a parent that died before the setting took (we were
    re-parented already) ends this process at once."""
    if not linux():
        return False
    parent = os.getppid() if expected_parent is None else expected_parent
    ok = _libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    if os.getppid() != parent:  # the parent died before the setting took
        os._exit(1)
    return ok


# --------------------------------------------------------------------------- the worker

def enter_worker_namespaces() -> str:
    """Called first in the warm worker, while it has a single thread (before
    torch): without root, move into a user namespace of our own, where the
    worker may build the child's namespaces. Returns the mode: "root",
    "userns" (unprivileged, with user namespaces) or "none"."""
    if not linux():
        return "none"
    if os.geteuid() == 0:
        return "root"
    uid, gid = os.geteuid(), os.getegid()
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0:
        return "none"
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1\n"), ("gid_map", f"0 {gid} 1\n")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    except OSError:
        return "none"
    # The worker must live inside the PID namespace it owns, or it could not give
    # each child a namespace of its own: the process we were goes on only to wait.
    # As that namespace's first process the worker's getppid() is 0, parent or
    # none, so a parent killed before the worker asked to die with it is told by
    # a pipe: the parent holds its only write end until it ends.
    parent_alive, held_by_parent = os.pipe()
    pid = os.fork()
    if pid:
        os.close(parent_alive)
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    os.close(held_by_parent)
    die_with_parent()
    gone = select.select([parent_alive], [], [], 0)[0]  # end of file: the parent has ended
    os.close(parent_alive)
    if gone:
        os._exit(1)
    return "userns"


class PidNamespaces:
    """Gives each child the worker forks a PID namespace of its own."""

    def __init__(self):
        try:
            self.own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.own = -1

    def before_fork(self) -> bool:
        if self.own < 0:
            return False
        # Back to our own namespace for children first: unshare makes a new one only from there.
        return _libc.setns(self.own, CLONE_NEWPID) == 0 and _libc.unshare(CLONE_NEWPID) == 0


# --------------------------------------------------------------------------- what the child may see

def _outermost(paths) -> list[str]:
    """Existing folders, without those inside another one of the list."""
    real = sorted({os.path.realpath(p) for p in paths if p and os.path.isdir(p)})
    out: list[str] = []
    for p in real:
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


def library_dirs() -> list[str]:
    """The folders of every shared library this process has loaded (libc, libm,
    libstdc++, ...): a stdlib module a student imports later may need their neighbours."""
    dirs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/") and ".so" in parts[5]:
                    dirs.add(os.path.dirname(parts[5].strip()))
    except OSError:
        pass
    return sorted(dirs)


def python_paths(exclude=()) -> list[str]:
    """What this Python needs to run: its prefixes, its import path and the
    folders of its shared libraries; never a folder in ``exclude`` (the kit's
    source checkout) nor the folder the worker was started in."""
    excluded = {os.path.realpath(p) for p in exclude}
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    paths |= {p for p in sys.path if p and os.path.isdir(p)}
    paths |= set(library_dirs())
    return [p for p in _outermost(paths - {""}) if p not in excluded]


@dataclass
class Plan:
    """What the child's new root holds, decided once by the worker."""

    binds: list[str] = field(default_factory=list)  # read-only, at their own paths
    hide: list[str] = field(default_factory=list)  # covered by empty mounts where they lie inside a bind
    root_bytes: int = 32 << 20  # /submission and /tmp together

    def hidden_inside_binds(self) -> list[str]:
        out = []
        for h in {os.path.realpath(p) for p in self.hide if os.path.exists(p)}:
            if any(h == b or h.startswith(b.rstrip("/") + "/") for b in self.binds):
                out.append(h)
        return sorted(out)


# --------------------------------------------------------------------------- the child

def _mount(what: str, source, target, fstype, flags: int, data=None) -> None:
    def enc(s):
        return s.encode() if isinstance(s, str) else s

    _call(what, _libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)))


def _locked_flags(path: str) -> int:
    """Flags a bind mount in a user namespace must keep (the kernel locks them)."""
    try:
        f = os.statvfs(path).f_flag
    except OSError:
        return 0
    out = 0
    for st, ms in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                   (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME)):
        if f & st:
            out |= ms
    return out


def _bind(source_fd: int, target: str, read_only: bool, keep: int) -> None:
    _mount(f"bind {target}", f"/proc/self/fd/{source_fd}", target, None, MS_BIND | MS_REC)
    if read_only:
        _mount(f"read-only {target}", None, target, None,
               MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | keep)


def build_root(plan: Plan, own_pid_namespace: bool) -> dict:
    """Steps 2 and 3 of the module docstring, ending in pivot_root. Returns what
    was applied; raises Refused where the OS refused a step."""
    applied = {"network": False, "filesystem": False, "proc": False}
    _call("unshare", _libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS))
    applied["network"] = True
    _mount("private mounts", "none", "/", None, MS_REC | MS_PRIVATE)
    # Open every source before the new root covers NEW_ROOT: a bind source may lie under it.
    sources = {}
    try:
        for path in plan.binds + ["/dev/" + d for d in DEVICES] + ["/etc/ld.so.cache"]:
            try:
                sources[path] = (os.open(path, os.O_PATH | os.O_CLOEXEC), _locked_flags(path))
            except OSError:
                continue
        hidden = plan.hidden_inside_binds()
        top_links = {n: os.readlink("/" + n) for n in os.listdir("/") if os.path.islink("/" + n)}
        _mount("new root", "tmpfs", NEW_ROOT, "tmpfs", MS_NOSUID,
               f"size={plan.root_bytes},nr_inodes=4096,mode=0755")
        root = NEW_ROOT
        for path, (fd, keep) in sources.items():
            target = root + path
            if path.startswith("/dev/") or path == "/etc/ld.so.cache":
                os.makedirs(os.path.dirname(target), exist_ok=True)
                open(target, "w").close()
                _bind(fd, target, read_only=path == "/etc/ld.so.cache", keep=keep)
            else:
                os.makedirs(target, exist_ok=True)
                _bind(fd, target, read_only=True, keep=keep)
        for path in hidden:  # the kit's package where it is installed into site-packages, say
            if os.path.isdir(root + path):
                _mount(f"hide {path}", "tmpfs", root + path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV,
                       "size=4k,nr_inodes=2,mode=0555")
            elif os.path.exists(root + path):
                _mount(f"hide {path}", f"{root}/dev/null", root + path, None, MS_BIND)
        for name, target in top_links.items():  # /lib -> usr/lib and the like, for the dynamic loader
            if not os.path.lexists(f"{root}/{name}"):
                os.symlink(target, f"{root}/{name}")
        os.makedirs(root + SUBMISSION, mode=0o755)
        os.makedirs(root + "/tmp", mode=0o777, exist_ok=True)  # exists where Python itself lives under /tmp
        os.chmod(root + "/tmp", 0o1777)
        if own_pid_namespace:
            os.makedirs(root + "/proc")
            try:
                _mount("proc", "proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
                applied["proc"] = True
            except Refused:
                pass  # no /proc at all is fine: the child's own files are all it needs
    finally:
        for fd, _ in sources.values():
            os.close(fd)
    os.chdir(root)
    _call("pivot_root", _libc.syscall(SYS_PIVOT_ROOT, b".", b".") if SYS_PIVOT_ROOT else -1)
    _call("detach the old root", _libc.umount2(b".", MNT_DETACH))
    os.chdir(SUBMISSION)
    applied["filesystem"] = True
    return applied


def drop_privileges(uid: int | None, mode: str) -> dict:
    """As root: a user of our own. In the worker's user namespace (where we are
    its root): a user namespace of our own, then every capability gone, now and
    across exec. Returns {"user": dropped, "own_count": threads counted apart}."""
    if mode == "root" and uid is not None:
        for path in (SUBMISSION, "/tmp"):
            try:
                os.chown(path, uid, uid)
            except OSError:
                pass
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        ok = os.getuid() == uid and os.geteuid() == uid
        return {"user": ok, "own_count": ok}
    if mode == "userns" and SYS_CAPSET:
        # A user namespace of the child's own, inside the worker's: the kernel then
        # counts its threads apart from every other child's (RLIMIT_NPROC is kept
        # per user namespace), so one student's threads never limit another's.
        own = _libc.unshare(CLONE_NEWUSER) == 0
        if own:
            try:
                for name, text in (("setgroups", "deny"), ("uid_map", "0 0 1\n"), ("gid_map", "0 0 1\n")):
                    with open(f"/proc/self/{name}", "w") as f:
                        f.write(text)
            except OSError:
                return {"user": False, "own_count": False}
        for cap in range(64):
            _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (x2): all empty
        ok = _libc.syscall(SYS_CAPSET, header, data) == 0
        return {"user": ok, "own_count": ok and own}
    return {"user": False, "own_count": False}


def memory_baseline() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def limit_resources(baseline: int, memory_bytes: int = 0, output_bytes: int = 0, files: int = 64,
                    processes: int = 0, own_count: bool = False) -> None:
    # Writes beyond the output cap fail with EFBIG instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if output_bytes:
        resource.setrlimit(resource.RLIMIT_FSIZE, (output_bytes, output_bytes))
    if memory_bytes and baseline:
        resource.setrlimit(resource.RLIMIT_AS, (baseline + memory_bytes, baseline + memory_bytes))
    if files:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, files if hard < 0 else min(files, hard)))
    if processes and own_count:
        # threads count here (processes are refused by seccomp); meaningful only
        # where the count is the child's alone: a user of its own (as root), or a
        # user namespace of its own
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))


def close_fds(keep) -> None:
    """Close every descriptor but ``keep``: an inherited descriptor of a folder
    outside would be a way out of the new root."""
    keep = sorted(set(keep))
    low = 0
    for fd in keep + [os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1 << 16]:
        if fd > low:  # never an empty range: CPython's closerange(n, n) closes every descriptor from n on
            os.closerange(low, fd)
        low = fd + 1


# --------------------------------------------------------------------------- what this machine allows

GUARANTEES = {
    "filesystem": "show student code only the Python installation and its own files (it could read "
                  "anything this user can read, the kit's solutions and other students' copies included)",
    "network": "cut student code off the network",
    "processes": "keep student code from seeing, signalling or outliving other processes",
    "user": "take every privilege from student code",
    "seccomp": "refuse student code new processes, namespaces, mounts and a move to another CPU",
}


def missing(isolation: dict) -> list[str]:
    """The guarantees this machine did not allow, in words."""
    return [text for key, text in GUARANTEES.items() if not isolation.get(key)]


def notice(isolation: dict) -> str:
    """One sentence for what the OS did not allow, or '' when everything applied."""
    if isolation.get("runner") == "portable":
        return portable_notice(isolation)
    gaps = missing(isolation)
    if not gaps:
        return ""
    return ("attnkit: note: isolation is reduced: this machine does not let the grader " + "; ".join(gaps) +
            ". Time, memory and output limits still apply. Grade as root, or where unprivileged user "
            "namespaces are enabled (sysctl kernel.unprivileged_userns_clone=1), for full isolation.")


# --------------------------------------------------------------------------- the portable runner

def portable_notice(isolation: dict) -> str:
    """The one line a student sees where student code runs on the portable runner."""
    limits = "time, memory and output limits" if isolation.get("memory") else "time and output limits"
    return (f"attnkit: note: isolation is reduced ({isolation.get('why', 'portable runner')}): your code runs in "
            f"a plain process of its own (the portable runner), stopped at the {limits} and answering in data "
            "only, but it can read what you can read, use the network and start processes; grading for credit "
            "runs on Linux.")


def credit_refusal(isolation: dict) -> str:
    """Why grades for credit cannot be given here ('' where they can, as far as
    the runner goes: the missing guarantees of a Linux machine are ``missing``)."""
    if isolation.get("runner") != "portable":
        return ""
    return (f"grading for credit runs on Linux only: here student code would run on the portable runner "
            f"({isolation.get('why', 'portable runner')}), which stops it at the time and output limits but "
            "cannot confine it (it could read the solutions, the secret and other students' work). Grade on "
            "Linux, as root or where unprivileged user namespaces are enabled.")
