"""Comparisons that explain themselves.

Every helper takes the student's value exactly as it came back: nothing is
reshaped, broadcast, cast or squeezed before it is judged, so a wrong shape or
dtype is reported as such and never papered over.
"""

from __future__ import annotations

import torch

from attnkit.judge import diagnosis, reference
from attnkit.judge.diagnosis.catalogue import finding
from attnkit.judge.diagnosis.conclude import MATCH
from attnkit.judge.diagnosis.pictures import pictures_for
from attnkit.sandbox.protocol import Foreign
from attnkit.errors import CheckFailure

# Tolerances, with the reason for each; change one only with a recorded reason.
# Document examples: the reference values are printed to 4 decimals, so the true
# value lies within 5e-5 of the printed one; 2e-6 more absorbs float32 rounding.
DOC_ATOL = 5.2e-5
# Hidden float64 cases: a correct float64 computation is off by ~1e-15. 1e-6
# relative still accepts a float32 constant such as torch.sqrt(torch.tensor(d_k)),
# and is far below the smallest formula error the checks look for (~1e-2).
HIDDEN_RTOL = 1e-6
HIDDEN_ATOL = 1e-9
# Softmax of float32 scores of +-1000: a correct softmax rounds x - max, or
# x - logsumexp(x), at magnitude 1000, where one float32 ulp is 2**-14 (6.1e-5);
# exp turns that absolute error into the same relative error in every weight.
# Measured: torch.exp(x - torch.logsumexp(x, dim, keepdim=True)) is off by up to
# 2.1e-5 and its rows sum to 1.0000293. Four ulps, 2**-12 (2.4e-4) relative, is
# still far from what the check looks for: NaN, inf, 0/0 rows, unnormalized rows.
EXTREME_F32 = dict(atol=1e-6, rtol=2.0 ** -12)


def kind(value) -> str:
    """What a returned value is, in the student's words: a generator, a tuple of 2
    (never the grader's own name for a value it could not rebuild)."""
    name = value.type_name if isinstance(value, Foreign) else type(value).__name__
    name = name.removeprefix("builtins.")
    return f"{name} of {len(value)}" if isinstance(value, (tuple, list)) else name


def tensor(value, what: str = "the result") -> torch.Tensor:
    """The value as a plain tensor, or a failure naming what came back instead."""
    if isinstance(value, torch.Tensor):
        return value
    if value is None:
        raise CheckFailure(f"{what} is None; is a `return` missing?")
    if isinstance(value, Foreign):
        if value.type_name == "numpy.ndarray":
            raise finding("returns_numpy", f"{what} is a numpy.ndarray; a torch.Tensor was due", what=what)
        raise CheckFailure(f"{what} is a {value.type_name}; a torch.Tensor was due")
    if isinstance(value, (list, tuple)):
        raise CheckFailure(f"{what} is a {type(value).__name__}; a torch.Tensor was due "
                           f"(torch.stack or torch.tensor builds one)")
    raise CheckFailure(f"{what} is a {type(value).__name__}; a torch.Tensor was due")


def near_one(values: torch.Tensor) -> str:
    """The smallest and largest value, with enough digits to show how far from 1
    ("1.0000293", never a rounded "1")."""
    def fmt(x: float) -> str:
        for digits in range(4, 17):
            text = f"{x:.{digits}g}"
            if float(text) != 1.0 or x == 1.0:
                return text
        return repr(x)
    lo, hi = float(values.min()), float(values.max())
    return fmt(lo) if lo == hi else f"{fmt(lo)} .. {fmt(hi)}"


def _fmt(x: float) -> str:
    return f"{x:.6g}" if torch.isfinite(torch.tensor(x)) else str(x)


def _index(flat: int, shape) -> list[int]:
    out = []
    for n in reversed(shape):
        out.append(flat % n)
        flat //= n
    return list(reversed(out))


def describe_difference(actual: torch.Tensor, expected: torch.Tensor, bad: torch.Tensor) -> tuple[str, str]:
    """(one-line summary, side-by-side details) of where two same-shape tensors differ."""
    a, e = actual.double().flatten(), expected.double().flatten()
    flat_bad = bad.flatten()
    count = int(flat_bad.sum())
    diff = torch.where(torch.isfinite(a) & torch.isfinite(e), (a - e).abs(), torch.full_like(a, float("inf")))
    diff = torch.where(flat_bad, diff, torch.zeros_like(diff))
    worst = int(diff.argmax())
    where = _index(worst, list(actual.shape))
    line = (f"values differ at {count} of {a.numel()} positions (shape {tuple(actual.shape)}); "
            f"the largest difference is at "
            f"{where}: expected {_fmt(float(e[worst]))}, got {_fmt(float(a[worst]))}")
    rows = ["position | expected | yours"]
    for k in torch.nonzero(flat_bad).flatten()[:6].tolist():
        rows.append(f"{_index(k, list(actual.shape))} | {_fmt(float(e[k]))} | {_fmt(float(a[k]))}")
    return line, "\n".join(rows)


def close(actual, expected: torch.Tensor, *, what: str = "the result",
          atol: float = HIDDEN_ATOL, rtol: float = HIDDEN_RTOL, check_dtype: bool = True,
          call: diagnosis.Call | None = None) -> torch.Tensor:
    """Fail unless ``actual`` has the expected shape and dtype and the same values:
    NaN nowhere, and +-inf exactly where the expected value has them.

    With ``call`` (what produced ``actual``), the comparison is kept as
    evidence: once the item's checks are done, a misconception that fits
    all of them is named (see ``attnkit.judge.diagnosis``)."""
    actual = tensor(actual, what)
    failure = _difference(actual, expected, what, atol, rtol, check_dtype, call)
    diagnosis.record(call, actual, expected, atol, rtol, passed=failure is None)
    if failure is None:
        return actual
    if call is not None and not failure.pictures:
        failure.pictures = pictures_for(call.item, expected, actual)
    raise failure


# Why a result's dtype can differ from its inputs', by the dtype it ended in.
DTYPE_WHY = {torch.float32: "a tensor created inside (torch.tensor, torch.ones, torch.empty, ...) is float32 unless "
                            "told otherwise; use dtype=x.dtype, or torch.ones_like and friends"}
DTYPE_KEEP = "keep the inputs' dtype: no .float(), .double() or .to(...) on the way"


def _inputs_of(call: diagnosis.Call | None) -> list[torch.Tensor]:
    if call is None:
        return []
    values = list(call.args) + list(call.kwargs.values()) + [call.x] + list((call.state or {}).values())
    return [t for t in values if isinstance(t, torch.Tensor)]


def _dtype_failure(actual: torch.Tensor, expected: torch.Tensor, what: str, atol: float, rtol: float,
                   call: diagnosis.Call | None) -> CheckFailure:
    """A wrong dtype. It is named only when it is the whole mistake: the values
    agree once cast, and the inputs had the expected dtype for the code to keep."""
    facts = f"{what} has dtype {actual.dtype}; expected {expected.dtype}"
    if expected.dtype == torch.bool:
        if not actual.is_complex() and torch.equal(actual.double(), expected.double()):
            return finding("mask_not_bool", facts, what=what, got=actual.dtype)
    elif actual.is_floating_point() and expected.is_floating_point():
        loose = dict(atol=max(atol, MATCH["atol"]), rtol=max(rtol, MATCH["rtol"]))
        if _difference(actual.to(expected.dtype), expected, what, check_dtype=False, **loose) is None:
            if any(t.dtype == expected.dtype for t in _inputs_of(call)):
                return finding("dtype_changed", facts + " (the values agree)", what=what, got=actual.dtype,
                               want=expected.dtype, why=DTYPE_WHY.get(actual.dtype, DTYPE_KEEP))
            return CheckFailure(facts + " (the values agree)")
    try:
        values = _difference(actual.to(expected.dtype), expected, what, atol, rtol, check_dtype=False)
    except (RuntimeError, TypeError):
        values = None
    if values is None:
        return CheckFailure(facts)
    return CheckFailure(f"{facts}, and its values differ: {values.reason.removeprefix(what + ': ')}", values.details)


def _difference(actual: torch.Tensor, expected: torch.Tensor, what: str, atol: float, rtol: float,
                check_dtype: bool, call: diagnosis.Call | None = None) -> CheckFailure | None:
    if tuple(actual.shape) != tuple(expected.shape):
        return CheckFailure(f"{what} has shape {tuple(actual.shape)}; expected {tuple(expected.shape)}")
    if check_dtype and actual.dtype != expected.dtype:
        return _dtype_failure(actual, expected, what, atol, rtol, call)
    if actual.dtype == expected.dtype and torch.equal(actual, expected):
        return None  # the same bits (NaN is never equal, so it still fails below): most right answers
    if expected.dtype == torch.bool or not expected.is_floating_point():
        bad = actual != expected
    else:
        a, e = actual.double(), expected.double()
        nan = torch.isnan(a) & ~torch.isnan(e)
        if nan.any():
            n = int(nan.sum())
            return CheckFailure(f"{what} contains NaN at {n} of {a.numel()} positions "
                                f"(first at {_index(int(torch.nonzero(nan.flatten())[0]), list(a.shape))})")
        finite = torch.isfinite(e)
        bad = ~finite & (a != e)
        tol = atol + rtol * e.abs()
        bad |= finite & ~((a - e).abs() <= tol)
    if bad.any():
        line, details = describe_difference(actual, expected, bad)
        return CheckFailure(f"{what}: {line}", details)
    return None


def matches_doc(actual, entry_id: str, what: str = "the result", call: diagnosis.Call | None = None) -> torch.Tensor:
    """The document's numbers, to 4 decimals."""
    return close(actual, reference.doc(entry_id), what=what, atol=DOC_ATOL, rtol=0.0, call=call)


def unchanged(before, after, names) -> None:
    """Fail if the student's code modified an argument in place."""
    for name, b, a in zip(names, before, after):
        if isinstance(b, torch.Tensor) and isinstance(a, torch.Tensor):
            if a.shape != b.shape or not (torch.equal(a, b) or torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))):
                raise finding("modifies_input_in_place", f"modifies its argument `{name}` in place", name=name)
