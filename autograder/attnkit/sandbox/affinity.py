"""Grader and child on one CPU while they talk.

A session is a strict ping-pong: the grader sends a request and waits, the
child answers and waits, a few hundred times per submission. With the two on
different CPUs every turn wakes the other CPU (an inter-processor interrupt,
dear on virtual machines); on one CPU a turn is a plain context switch.
Measured on the 2-core machine, in turns with and without: a class of 100
about 6 % faster (two jobs), a submission 0 to 10 % (one job; the machine's
noise is as large).

The pair goes to the CPU the grader is on when the child starts, so two
grading jobs (or two pytest workers) spread as the scheduler already spread
them; the grader's own CPU set comes back when the session closes. Where the
OS has no affinity call (macOS, Windows) or refuses it, nothing changes.
Standard library only: the child side runs before student code.
"""

from __future__ import annotations

import os


def current_cpu() -> int | None:
    """The CPU this thread runs on now (Linux), or None."""
    try:
        with open("/proc/thread-self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[36])  # field 39 of proc(5), counted from the state (field 3)
    except (OSError, IndexError, ValueError):
        return None


def allowed() -> set[int] | None:
    """This thread's CPU set, or None where it cannot be read."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def pin(cpu) -> bool:
    """Keep this thread on ``cpu``; False (and nothing changed) where that cannot be."""
    if not isinstance(cpu, int) or isinstance(cpu, bool) or cpu < 0:
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError, ValueError):
        return False
    return True


def restore(cpus: set[int] | None) -> None:
    if cpus:
        try:
            os.sched_setaffinity(0, cpus)
        except (AttributeError, OSError, ValueError):
            pass


class Pair:
    """The grader's half: ``join()`` before a child starts gives the CPU to send
    it (None: leave both free), and pins this thread there; ``leave()`` gives
    the thread its CPU set back."""

    def __init__(self):
        self.saved: set[int] | None = None

    def join(self) -> int | None:
        if self.saved is None:
            self.saved = allowed()
        if not self.saved or len(self.saved) < 2:
            return None  # one CPU: already together; unknown: leave it alone
        restore(self.saved)  # a restarted child: choose again from the whole set
        cpu = current_cpu()
        if cpu is None or cpu not in self.saved or not pin(cpu):
            return None
        return cpu

    def leave(self) -> None:
        restore(self.saved)
        self.saved = None
