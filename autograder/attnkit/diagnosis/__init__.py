"""Naming the mistake behind a wrong answer.

When a comparison fails, ``explain`` recomputes the catalogue's known-wrong
variants of the item on the same inputs, here in the grader process, and tests
the catalogue's signatures. If exactly one misconception fits, the failure's
reason becomes that misconception's; otherwise the reason stays the facts of
the difference. Either way the facts stay in the details, and items that
produce attention weights or a mask carry expected/actual pictures.
"""

from __future__ import annotations

import torch

from attnkit.diagnosis.call import Call
from attnkit.diagnosis.catalogue import BY_ID, ENTRIES, reason
from attnkit.diagnosis.pictures import pictures_for
from attnkit.outcomes import CheckFailure

__all__ = ["Call", "ENTRIES", "BY_ID", "reason", "explain", "identify"]

# The student's answer equals a variant when it is this close to it: both come
# from the same inputs, so a float32 answer is within ~1e-6 relative.
MATCH = dict(rtol=1e-4, atol=1e-6)


def _same(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> bool:
    if not isinstance(b, torch.Tensor) or a.shape != b.shape:
        return False
    if a.dtype == torch.bool or b.dtype == torch.bool:
        return a.dtype == b.dtype and torch.equal(a, b)
    a, b = a.double(), b.double()
    if not torch.equal(torch.isnan(a), torch.isnan(b)):
        return False
    return bool(torch.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True).all())


def _candidates(entry, call: Call):
    fn = entry.variants.get(call.item)
    if fn is None:
        return []
    try:
        with torch.no_grad():
            out = fn(call)
    except Exception:  # noqa: BLE001 - a variant that cannot run on these inputs fits nothing
        return []
    return out if isinstance(out, list) else [({}, out)]


def identify(call: Call, actual: torch.Tensor, expected: torch.Tensor,
             atol: float = 0.0, rtol: float = 0.0) -> tuple[str, str] | None:
    """(entry id, filled-in reason) of the one misconception the answer fits, or None.

    A variant counts only if the check would have failed it too (it differs
    from the expected value beyond the check's tolerance): a mistake that
    changes nothing on these inputs is no evidence.
    """
    fits: dict[str, str] = {}
    for entry in ENTRIES:
        for fields, wrong in _candidates(entry, call):
            if _same(actual, wrong, **MATCH) and not _same(expected, wrong, rtol=rtol, atol=atol + 1e-12):
                fits.setdefault(entry.id, entry.reason.format(**fields))
        signature = entry.signatures.get(call.item)
        if signature is not None:
            try:
                # the expected value may be the document's 4-decimal print: allow the check's tolerance
                fields = signature(call, actual, expected, rtol=max(rtol, MATCH["rtol"]), atol=atol + MATCH["atol"])
            except Exception:  # noqa: BLE001
                fields = None
            if fields is not None:
                fits.setdefault(entry.id, entry.reason.format(**fields))
    if len(fits) != 1:
        return None  # none, or several: the evidence does not single one out
    return next(iter(fits.items()))


def explain(failure: CheckFailure, call: Call, actual: torch.Tensor, expected: torch.Tensor,
            atol: float = 0.0, rtol: float = 0.0) -> CheckFailure:
    """The failure with a named misconception when one fits, and its pictures."""
    pictures = pictures_for(call.item, expected, actual)
    found = identify(call, actual, expected, atol=atol, rtol=rtol) if isinstance(actual, torch.Tensor) else None
    if found is None:
        return CheckFailure(failure.reason, failure.details, pictures=pictures)
    entry_id, text = found
    facts = failure.reason + ("\n" + failure.details if failure.details else "")
    return CheckFailure(text, facts, diagnosis=entry_id, pictures=pictures)
