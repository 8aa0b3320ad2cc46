"""Known-wrong versions of the graded computations, run in the grader process.

Each function computes what a submission with one particular mistake would
return on the same inputs. They are written from torch operations only, never
from the reference solutions, so the diagnosis also works in public mode; a
test checks that every function with its default knobs agrees with the
reference, so a variant differs from the right answer by its knob alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnkit.judge.diagnosis.call import INIT_PARAMS, init_arguments  # noqa: F401 - part of the variants' surface


def future(n: int, diagonal: int = 1) -> torch.Tensor:
    """True strictly above the diagonal (or from the diagonal on, with diagonal=0)."""
    return torch.ones(n, n, dtype=torch.bool).triu(diagonal)


def softmax(x: torch.Tensor, dim: int = -1, subtract_max: bool = True, global_max: bool = False) -> torch.Tensor:
    """subtract_max=False: exp(x) / sum, no shift; global_max: one maximum over
    the whole tensor subtracted, not one per row."""
    if subtract_max and not global_max:
        return torch.softmax(x, dim=dim)
    e = torch.exp(x - x.max() if global_max else x)
    return e / e.sum(dim=dim, keepdim=True)


def attend(q, k, v, *, causal: bool, scale: str = "sqrt", mask: str = "strict", fill: str = "-inf",
           mask_after_softmax: bool = False, softmax_dim: int = -1, d_out: int | None = None):
    """Scaled dot-product attention with one knob per known mistake.

    scale: "sqrt" (right), "d_k", "half_d_k" (``s = d_k ** 1/2``), "twice_d_k"
    (``scores / d_k ** 1/2``), "none", "sqrt_d_out" (the whole d_out instead
    of one head's size), "sqrt_num_heads" (the head axis, keys.shape[1] after
    the split); mask: "strict" (right), "diagonal" (hides the diagonal too),
    "none"; fill: "-inf" (right) or "zero".
    """
    n = q.shape[-2]
    scores = q @ k.transpose(-2, -1)
    d_k = k.shape[-1]
    divisor = {"sqrt": d_k ** 0.5, "d_k": float(d_k), "half_d_k": d_k / 2, "twice_d_k": 2.0 * d_k, "none": 1.0,
               "sqrt_d_out": (d_out or d_k) ** 0.5,
               "sqrt_num_heads": (k.shape[1] if k.dim() == 4 else 1) ** 0.5}[scale]
    hidden = future(n, 1 if mask == "strict" else 0)
    if causal and mask != "none" and not mask_after_softmax:
        scores = scores.masked_fill(hidden, float("-inf") if fill == "-inf" else 0.0)
    weights = torch.softmax(scores / divisor, dim=softmax_dim)
    if causal and mask_after_softmax:
        weights = weights.masked_fill(hidden, 0.0)
    return weights @ v


def split_heads(x: torch.Tensor, num_heads: int, how: str = "transpose") -> torch.Tensor:
    b, n, d = x.shape
    if how == "view":  # straight to (b, h, T, head_dim): tokens and heads mixed
        return x.reshape(b, num_heads, n, d // num_heads)
    return x.reshape(b, n, num_heads, d // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor, how: str = "transpose") -> torch.Tensor:
    b, h, n, hd = x.shape
    if how == "view":  # no transpose back: tokens and heads mixed
        return x.reshape(b, n, h * hd)
    if how == "interleave":  # head axis last: features of the heads alternate
        return x.permute(0, 2, 3, 1).reshape(b, n, hd * h)
    return x.transpose(1, 2).reshape(b, n, h * hd)


def _linear(x, state, name):
    return F.linear(x, state[f"{name}.weight"], state.get(f"{name}.bias"))


def module_forward(item: str, state: dict, init: dict, x: torch.Tensor, *, split: str = "transpose",
                   merge: str = "transpose", out_proj: bool = True, **knobs) -> torch.Tensor:
    """The eval-mode output of a graded class, from its parameters, with knobs."""
    name = item.split(".", 1)[1]
    with torch.no_grad():
        if name == "SelfAttention":
            q, k, v = (x @ state[n] for n in ("W_query", "W_key", "W_value"))
            return attend(q, k, v, causal=False, **knobs)
        if name == "MultiHeadAttentionWrapper":
            heads = sorted({n.split(".")[1] for n in state if n.startswith("heads.")}, key=int)
            outs = []
            for h in heads:
                sub = {n[len(f"heads.{h}."):]: t for n, t in state.items() if n.startswith(f"heads.{h}.")}
                outs.append(module_forward("causal_attention.CausalAttention", sub, init, x, **knobs))
            return torch.cat(outs, dim=-1)
        q, k, v = (_linear(x, state, n) for n in ("W_query", "W_key", "W_value"))
        if name == "MultiHeadAttention":
            h = int(init["num_heads"])
            q, k, v = (split_heads(t, h, split) for t in (q, k, v))
            context = merge_heads(attend(q, k, v, causal=True, d_out=int(init["d_out"]), **knobs), merge)
            return _linear(context, state, "out_proj") if out_proj else context
        return attend(q, k, v, causal=name == "CausalAttention", **knobs)
