"""Naming an item's mistake once all its checks have run.

A check that fails says the facts (what differs, where) and may propose a
catalogued misconception (a probe's finding). Only here, with every case of
the item at hand, is a name given: an entry is named when

- it fits every case the grader compared for the item, passed or failed
  (its variant equals the student's answer on each; on a failed case it also
  differs from the right answer), or a check proposed it;
- no other entry fits or was proposed;
- every failed check of the item is explained: by a case the entry fits, by
  the check's own finding of it, or, for a check with no evidence of its own,
  because the mistake makes checks of that kind fail (``also_fails``).

Otherwise every failed check says its facts. Hints attach to evidence the
same way: the seed check's advice on the order of the layers is given only
when the example, which sets the document's weights directly, passed.
"""

from __future__ import annotations

import torch

from attnkit.judge.diagnosis.catalogue import BY_ID, ENTRIES, Misconception, reason
from attnkit.judge.diagnosis.evidence import Case
from attnkit.errors import CheckFailure, LayoutFailure, LimitExceeded, StudentError

# The student's answer equals a variant when it is this close to it: both come
# from the same inputs, so a float32 answer is within ~1e-6 relative.
MATCH = dict(rtol=1e-4, atol=1e-6)

SEED_HINT = ("; with the document's weights set directly your module passes the example, so the random "
             "numbers differ: draw the parameters as the class's docstring says (its layers in its order, "
             "torch.rand where it says torch.rand, not torch.randn) and no other random numbers in __init__")
SEED_ORDER = " (your module registers {yours}, in that order; the documented order is {theirs})"


def seed_hint(exc) -> str:
    """The advice for a seed check that fails where the example passes, with the
    order the module registered its layers in where it differs from the
    reference's: a fact, and one cause it may be (the numbers may also be drawn
    in the documented order and registered otherwise, or drawn with randn)."""
    yours, theirs = getattr(exc, "layer_order", ([], []))
    if theirs and sorted(yours) == sorted(theirs) and yours != theirs:
        return SEED_HINT + SEED_ORDER.format(yours=", ".join(yours), theirs=", ".join(theirs))
    return SEED_HINT


SEED_AND_EXAMPLE = "; the example fails too, with the document's weights set directly: fix the forward first"


def same(a: torch.Tensor, b, rtol: float, atol: float) -> bool:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.shape != b.shape:
        return False
    if a.dtype == torch.bool or b.dtype == torch.bool:
        return a.dtype == b.dtype and torch.equal(a, b)
    a, b = a.double(), b.double()
    if not torch.equal(torch.isnan(a), torch.isnan(b)):
        return False
    return bool(torch.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True).all())


def candidates(variant, call) -> list:
    """What a submission with the mistake returns on this call: [(fields, tensor)]."""
    try:
        with torch.no_grad():
            out = variant(call)
    except Exception:  # noqa: BLE001 - a variant that cannot run on these inputs predicts nothing
        return []
    return out if isinstance(out, list) else [({}, out)]


def fit(entry: Misconception, item: str, case: Case) -> dict | None:
    """The words' fields if the entry explains this case, else None."""
    variant = entry.variants.get(item)
    if variant is not None:
        for fields, wrong in candidates(variant, case.call):
            if same(case.actual, wrong, **MATCH) and (
                    case.passed or not same(case.expected, wrong, rtol=case.rtol, atol=case.atol + 1e-12)):
                return fields
        return None
    signature = entry.signatures.get(item)
    if signature is None or case.passed:
        return None  # a signature is a fingerprint of a wrong answer; a right one does not show it
    try:
        # the expected value may be the document's 4-decimal print: allow the check's tolerance
        return signature(case.call, case.actual, case.expected,
                         rtol=max(case.rtol, MATCH["rtol"]), atol=case.atol + MATCH["atol"])
    except Exception:  # noqa: BLE001
        return None


def fits_every_case(entry: Misconception, item: str, cases: list[Case]) -> dict[str, dict] | None:
    """{kind: fields} of the failed cases, if the entry fits every case and at
    least one failed; else None. Failed cases first: they rule out most entries."""
    fitted: dict[str, dict] = {}
    for case in sorted(cases, key=lambda c: c.passed):
        fields = fit(entry, item, case)
        if fields is None:
            return None
        if not case.passed:
            fitted.setdefault(case.kind, fields)
    return fitted or None


def name(item: str, failures: dict[str, CheckFailure], cases: list[Case]) -> tuple[str, dict] | None:
    """(entry id, {kind: fields}) of the one misconception that explains the item, or None."""
    proposed = {f.diagnosis for f in failures.values() if f.diagnosis}
    fitting = {}
    if any(not c.passed for c in cases):
        for entry in ENTRIES:
            if entry.predicts(item):
                fields = fits_every_case(entry, item, cases)
                if fields is not None:
                    fitting[entry.id] = fields
    found = proposed | set(fitting)
    if len(found) != 1:
        return None  # none, or several: the evidence does not single one out
    entry = BY_ID[found.pop()]
    fields = fitting.get(entry.id, {})
    failed_kinds = {c.kind for c in cases if not c.passed}
    for kind, failure in failures.items():
        if failure.diagnosis == entry.id or kind in fields:
            continue
        if kind not in entry.also_fails:
            return None
        if entry.predicts(item) and (isinstance(failure, StudentError) or kind in failed_kinds):
            return None  # a variant predicts values: it explains no error, and no value it does not match
    return entry.id, fields


def _with_reason(failure: CheckFailure, text: str, diagnosis: str, details: str) -> CheckFailure:
    # a copy of the failure's own class and fields: copy.copy would rebuild it by
    # calling its constructor with args, which a StudentError's does not take
    out = type(failure).__new__(type(failure))
    out.__dict__.update(failure.__dict__)
    out.reason, out.diagnosis, out.details, out.args = text, diagnosis, details, (text,)
    return out


def conclude_item(item: str, outcomes: list[tuple[object, BaseException | None]],
                  cases: list[Case]) -> list[tuple[object, BaseException | None]]:
    """The item's (check, outcome) pairs with reasons settled: a name, or the facts."""
    failures = {check.kind: exc for check, exc in outcomes if isinstance(exc, CheckFailure)}
    if not failures or any(isinstance(e, LimitExceeded) for e in failures.values()):
        return outcomes  # all passed, or a limit decides the item
    verdict = name(item, failures, cases)
    named, fields = verdict if verdict else ("", {})
    passed = {check.kind for check, exc in outcomes if exc is None}
    out = []
    for check, exc in outcomes:
        if isinstance(exc, CheckFailure):
            if named and exc.diagnosis == named:
                pass  # the check's own finding, confirmed
            elif named and check.kind in fields:
                facts = exc.facts
                exc = _with_reason(exc, reason(named, **fields[check.kind]), named,
                                   facts + ("\n" + exc.details if exc.details else ""))
            elif exc.diagnosis or exc.reason != exc.facts:
                exc = _with_reason(exc, exc.facts, "", exc.details)
            if check.kind == "seed" and not exc.diagnosis and not isinstance(exc, StudentError):
                # "fix the forward first" only where the example says so: one failed on
                # the parameters' names or shapes says nothing of the forward
                example = failures.get("example")
                hint = (seed_hint(exc) if "example" in passed else
                        SEED_AND_EXAMPLE if example is not None and not isinstance(example, LayoutFailure) else "")
                exc = _with_reason(exc, exc.reason + hint, "", exc.details)
        out.append((check, exc))
    return out


def conclude(outcomes: list[tuple[object, BaseException | None]],
             cases: dict[str, list[Case]]) -> list[tuple[object, BaseException | None]]:
    """Every item's outcomes settled, in the order they ran. ``outcomes`` holds
    (check, exception or None) pairs; a check has ``item`` and ``kind``."""
    groups: dict[str, list[int]] = {}
    for n, (check, _) in enumerate(outcomes):
        groups.setdefault(check.item, []).append(n)
    out = list(outcomes)
    for item, positions in groups.items():
        mine = [outcomes[n] for n in positions]
        try:
            settled = conclude_item(item, mine, cases.get(item, []))
        except Exception:  # noqa: BLE001 - naming a mistake refines the reasons; it never costs the grade
            settled = mine  # each check's own reason, as it failed
        for n, pair in zip(positions, settled):
            out[n] = pair
    return out
