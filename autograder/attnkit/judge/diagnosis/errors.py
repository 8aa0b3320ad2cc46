"""Errors the student's code raised, explained with what the grader sent.

The student process reports the exception and the student's own frames, no
more. The grader knows the inputs it sent: it adds their shapes, and, where
the error shows a known pattern (its message, the line that raised it, the
shapes), the catalogue's hint for it. A pattern proposes its entry like any
probe does; the hint belongs to this error alone, so it stays whether or not
the item's mistake is named in the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from attnkit.judge.diagnosis.catalogue import reason
from attnkit.judge.diagnosis.call import INIT_PARAMS
from attnkit.errors import StudentError, innermost_line


@dataclass(frozen=True)
class Raised:
    """An error of the student's code, with what the grader had sent."""

    message: str
    line: str  # the innermost line of the student's code that raised, stripped ('' if unknown)
    tensors: list = field(default_factory=list)  # the input tensors sent
    init: dict = field(default_factory=dict)  # a module's constructor arguments, by name
    tokens: int | None = None  # tokens of a module's input

    @property
    def batched(self) -> bool:
        return any(t.dim() > 2 for t in self.tensors)


def _transpose_all_axes(e: Raised):
    return {} if e.batched and re.search(r"\.T\b", e.line) else None


def _view_needs_contiguous(e: Raised):
    return {} if "view size is not compatible with input tensor's size and stride" in e.message else None


def _dot_needs_vectors(e: Raised):
    return {} if e.batched and "1D tensors expected" in e.message else None


_FLOAT32 = re.compile(r"\b(float|Float|float32)\b")
_FLOAT64 = re.compile(r"\b(double|Double|float64)\b")


def _mixed_float_dtypes(e: Raised):
    """torch's words for one operation on float32 and float64 ("float != double",
    "expected scalar type Float but found Double"), while every tensor the
    grader sent had one dtype: the other came from the student's code."""
    if not (_FLOAT32.search(e.message) and _FLOAT64.search(e.message) and re.search(r"dtype|scalar type", e.message)):
        return None
    sent = {t.dtype for t in e.tensors if t.is_floating_point()}
    if sent == {torch.float32}:
        return {"sent": "float32", "made": "float64"}
    if sent == {torch.float64}:
        return {"sent": "float64", "made": "float32"}
    return None


def _mask_not_sliced(e: Raised):
    context, tokens = e.init.get("context_length"), e.tokens
    if not isinstance(context, int) or tokens is None or tokens >= context:
        return None
    sizes = re.findall(r"\d+", e.message)
    if str(context) in sizes and str(tokens) in sizes:
        return {"tokens": tokens, "context": context}
    return None


# entry id -> the test of the error; the first that fits gives the hint
PATTERNS = (
    ("mask_not_sliced", _mask_not_sliced),
    ("transpose_all_axes", _transpose_all_axes),
    ("view_needs_contiguous", _view_needs_contiguous),
    ("dot_needs_vectors", _dot_needs_vectors),
    ("mixed_float_dtypes", _mixed_float_dtypes),
)


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def describe_call(args, kwargs, names) -> tuple[str, list]:
    parts, tensors = [], []
    named = list(zip(list(names) + [f"argument {i + 1}" for i in range(len(args))], args))
    for name, value in named + list(dict(kwargs or {}).items()):
        if isinstance(value, torch.Tensor):
            tensors.append(value)
            parts.append(f"{name} {_shape(value)}")
        elif isinstance(value, (bool, int, float)):
            parts.append(f"{name}={value}")
    return ", ".join(parts), tensors


def describe_build(item: str, spec: dict) -> tuple[str, list, dict, int | None]:
    inputs = [x for x in list(spec.get("inputs") or []) + [spec.get("witness")] if isinstance(x, torch.Tensor)]
    shapes = list(dict.fromkeys(_shape(x) for x in inputs))
    names = INIT_PARAMS.get(item, ())
    init = dict(zip(names, spec.get("init_args") or []))
    init.update({k: v for k, v in dict(spec.get("init") or {}).items() if isinstance(v, (bool, int, float))})
    text = "x " + " and ".join(shapes) if shapes else ""
    built = ", ".join(f"{k}={v}" for k, v in init.items())
    if built:
        text += ("; " if text else "") + f"{item.split('.', 1)[1]}({built})" + (
            " in train mode" if spec.get("train") else "")
    tokens = inputs[0].shape[-2] if inputs and inputs[0].dim() >= 2 else None
    return text, inputs, init, tokens


def explain(item: str, exc: StudentError, args=(), kwargs=None, names=(), spec: dict | None = None) -> StudentError:
    """The error with the shapes the grader sent and, for a known pattern, its hint."""
    if exc.kind != "exception" or exc.inputs:
        return exc
    init: dict = {}
    tokens = None
    try:
        if spec is not None:
            inputs, tensors, init, tokens = describe_build(item, spec)
        else:
            inputs, tensors = describe_call(args, kwargs, names)
    except Exception:  # noqa: BLE001 - the description is an extra; the error stands without it
        return exc
    raised = Raised(exc.message, innermost_line(exc.details), tensors, init, tokens)
    for entry_id, test in PATTERNS:
        fields = test(raised)
        if fields is not None:
            return StudentError(exc.kind, exc.message, exc.details, inputs=inputs,
                                hint=reason(entry_id, **fields), diagnosis=entry_id, family=exc.family)
    return StudentError(exc.kind, exc.message, exc.details, inputs=inputs, family=exc.family)
