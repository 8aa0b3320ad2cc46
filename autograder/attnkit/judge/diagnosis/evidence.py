"""The cases a check compared, kept until every check of the item has run.

A misconception is named only when it fits every case the grader ran for an
item, passed or failed, public or hidden: one case cannot tell apart mistakes
that agree on it (in the document's multi-head example d_out = num_heads = 2,
so scaling by sqrt(d_out) and by sqrt(num_heads) give the same numbers).
So ``compare.close`` records each comparison that knows its ``Call`` here,
and the grading loop hands the whole record of an item to
``attnkit.judge.diagnosis.conclude`` once the item's checks are done.

The record is per grading run: ``collecting`` binds the list of the item
being checked for the duration of one check, on the current thread or task.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch

from attnkit.judge.diagnosis.call import Call


@dataclass(frozen=True)
class Case:
    """One comparison of the student's answer with the expected one."""

    kind: str  # the kind of check that ran it
    call: Call
    actual: torch.Tensor
    expected: torch.Tensor
    atol: float
    rtol: float
    passed: bool


# An answer far larger than the expected one is no evidence any entry needs (a
# wrong axis or a missing reduction is a few times larger at most), and the
# grader keeps cases until the item is settled: a submission returning 64 MiB
# from every call held gigabytes in the grader, beyond the child's memory limit.
KEPT_ELEMENTS = 4096

_current: ContextVar[tuple[str, list] | None] = ContextVar("attnkit_evidence", default=None)


@contextmanager
def collecting(cases: list, kind: str):
    """Record the comparisons of one check (of kind ``kind``) into ``cases``."""
    token = _current.set((kind, cases))
    try:
        yield cases
    finally:
        _current.reset(token)


def record(call: Call, actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float,
           passed: bool) -> None:
    """Keep one comparison, if a check is being collected (outside a grading run, nothing)."""
    current = _current.get()
    if current is not None and call is not None and actual.numel() <= KEPT_ELEMENTS + 16 * expected.numel():
        kind, cases = current
        cases.append(Case(kind, call, actual.detach(), expected.detach(), atol, rtol, passed))
