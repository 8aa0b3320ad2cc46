"""The terms between the grader and the sandbox: the limits of an item, the
three ways a run can fail (the sandbox, the student's code, a limit), and
which runner this machine gives student code (``runner``)."""

from __future__ import annotations

import builtins
import os
import sys
from dataclasses import dataclass

from attnkit.sandbox import confine


class SandboxError(Exception):
    """A fault of the sandbox or of its setup, never of the student."""


class ChildFault(Exception):
    """The student's code raised, was missing, or could not be imported."""

    def __init__(self, kind: str, message: str, traceback: str = "", family=()):
        super().__init__(message)
        self.kind, self.message, self.traceback = str(kind), message, traceback
        self.family = builtin_names(family)

    @classmethod
    def from_fields(cls, fields: dict) -> ChildFault:
        """The child's report of an error (an ERROR frame, or one kept beside a
        module's outputs), its word taken as text and cut to size."""
        return cls(str(fields.get("error")), str(fields.get("message", ""))[:2000],
                   str(fields.get("traceback", ""))[:6000], fields.get("family"))


def builtin_names(names) -> tuple[str, ...]:
    """The names in ``names`` (what a child said an exception is) that are
    built-in exception classes; anything else is dropped."""
    if not isinstance(names, (list, tuple)):
        return ()
    return tuple(n for n in names[:16] if isinstance(n, str) and isinstance(getattr(builtins, n, None), type)
                 and issubclass(getattr(builtins, n), BaseException))


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
