"""A seccomp filter for the process that runs student code (Linux only).

The child runs one student's code and nothing else: it never needs another
process. So creating processes is refused (threads are allowed: torch and
the student may use them, and they live in the child's own address space,
under its memory limit), and so is every call that could leave the sandbox
the namespaces built, or reach past it: new namespaces, mounts, ptrace and
cross-process memory access, kernel keyrings, BPF, io_uring (whose operations
bypass seccomp), perf events and userfaultfd. So is ``sched_setaffinity``: a
child stays on the CPU it was given (``ForkZygote.share_cpu``). A denylist, because an
allowlist of what CPython and torch call is long and changes with their
releases; the namespaces and limits do the rest.

Refused calls fail with EPERM (ENOSYS for clone3, so that libc falls back to
clone, which the filter can inspect). Standard library only: runs next to
student code.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys

# offsets into struct seccomp_data
_NR, _ARCH, _ARG0 = 0, 4, 16
# BPF opcodes
_LD_ABS, _JEQ, _JSET, _JGE, _RET = 0x20, 0x15, 0x45, 0x35, 0x06
_ALLOW, _ERRNO, _KILL = 0x7FFF0000, 0x00050000, 0x80000000
CLONE_THREAD = 0x00010000
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2

_DENIED = ("fork", "vfork", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
           "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
           "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
           "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
           "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load", "init_module",
           "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct", "quotactl",
           "personality", "lookup_dcookie", "name_to_handle_at", "open_by_handle_at",
           # a child stays on the CPU its job gave it (ForkZygote.share_cpu): its threads
           # could otherwise crowd the CPU of another job, pinned there and unable to move
           "sched_setaffinity")

# (audit arch, {name: number}) per machine; unlisted calls do not exist there.
_ARCHES = {
    "x86_64": (0xC000003E, {
        "clone": 56, "clone3": 435, "fork": 57, "vfork": 58, "unshare": 272, "setns": 308, "mount": 165,
        "umount2": 166, "pivot_root": 155, "chroot": 161, "open_tree": 428, "move_mount": 429, "fsopen": 430,
        "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "ptrace": 101,
        "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "pidfd_getfd": 438, "bpf": 321,
        "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250, "add_key": 248, "request_key": 249,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "kexec_load": 246,
        "init_module": 175, "finit_module": 313, "delete_module": 176, "reboot": 169, "swapon": 167,
        "swapoff": 168, "acct": 163, "quotactl": 179, "personality": 135, "lookup_dcookie": 212,
        "name_to_handle_at": 303, "open_by_handle_at": 304, "sched_setaffinity": 203}),
    "aarch64": (0xC00000B7, {
        "clone": 220, "clone3": 435, "unshare": 97, "setns": 268, "mount": 40, "umount2": 39,
        "pivot_root": 41, "chroot": 51, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
        "fsmount": 432, "fspick": 433, "mount_setattr": 442, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "kcmp": 272, "pidfd_getfd": 438, "bpf": 280, "perf_event_open": 241,
        "userfaultfd": 282, "keyctl": 219, "add_key": 217, "request_key": 218, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "kexec_load": 104, "init_module": 105,
        "finit_module": 273, "delete_module": 106, "reboot": 142, "swapon": 224, "swapoff": 225, "acct": 89,
        "quotactl": 60, "personality": 92, "lookup_dcookie": 18, "name_to_handle_at": 264,
        "open_by_handle_at": 265, "sched_setaffinity": 122}),
}


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes | None:
    """The filter for this machine as raw BPF, or None where it is not known."""
    entry = _ARCHES.get(machine or platform.machine())
    if entry is None:
        return None
    arch, numbers = entry
    denied = [numbers[name] for name in _DENIED if name in numbers]
    ops = [_op(_LD_ABS, _ARCH), _op(_JEQ, arch, 1, 0), _op(_RET, _KILL), _op(_LD_ABS, _NR)]
    if arch == _ARCHES["x86_64"][0]:
        ops.append(_op(_JGE, 0x40000000, 0, 1))  # the x32 ABI: another numbering, never ours
        ops.append(_op(_RET, _ERRNO | errno.EPERM))
    # clone: threads only (CLONE_THREAD in the flags), never a new process
    ops += [_op(_JEQ, numbers["clone"], 0, 4), _op(_LD_ABS, _ARG0), _op(_JSET, CLONE_THREAD, 0, 1),
            _op(_RET, _ALLOW), _op(_RET, _ERRNO | errno.EPERM)]
    ops += [_op(_JEQ, numbers["clone3"], 0, 1), _op(_RET, _ERRNO | errno.ENOSYS)]
    for nr in denied:
        ops += [_op(_JEQ, nr, 0, 1), _op(_RET, _ERRNO | errno.EPERM)]
    ops.append(_op(_RET, _ALLOW))
    return b"".join(ops)


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def install() -> bool:
    """Apply the filter to this process and every thread it starts; False where
    the machine or the kernel does not support it. Sets no_new_privs first (the
    kernel requires it, and it means no later exec can gain privileges)."""
    code = program()
    if code is None or not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _Prog(len(code) // 8, ctypes.cast(buf, ctypes.c_char_p))
    return libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) == 0
