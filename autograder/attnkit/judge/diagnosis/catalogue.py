"""The catalogue of misconceptions: every known mistake, its fingerprint, and
what to tell the student. The one place where such a reason is written.

An entry is recognised in one of three ways:

- ``variants``: per graded item, a function of the call that computes what a
  submission making this mistake returns on the same inputs (from
  ``variants.py``): one tensor, or a family [(fields, tensor)] when the
  mistake has a free part (which wrong axis); the student's answer must be one
  of them.
- ``signatures``: per graded item, a test on the student's answer itself (for
  example "the right head blocks in another order"); it returns the words to
  fill in the reason, or None.
- ``checked_by``: a check of the kit, or the grader's look at an error the
  student's code raised (``errors.py``), finds the fingerprint with its own
  probe and proposes the entry (``finding``).

Either way the name is only proposed; ``conclude.py`` names it when it fits
every case the grader ran for the item and no other entry does. A check that
fails with no evidence of its own (the gradients, the seeded output) counts
as fitting when its kind is in the entry's ``also_fails``.

The words of an entry must be true for every item it can be named on: an
entry's reason speaks of what all those items share.

``tests/test_diagnosis.py`` holds, for every entry, a submission that makes
the mistake and the reason it must get.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations
from typing import Callable

import torch

from attnkit.judge.diagnosis import variants as v
from attnkit.judge.diagnosis.call import Call, init_arguments
from attnkit.errors import CheckFailure

SA, SA2 = "self_attention.SelfAttention", "self_attention.SelfAttentionV2"
CA, WRAPPER, MHA = ("causal_attention.CausalAttention", "multihead_attention.MultiHeadAttentionWrapper",
                    "multihead_attention.MultiHeadAttention")
CAUSAL_MODULES = (CA, MHA)
SCALED_MODULES = (SA, SA2, CA, MHA)


# A wrong forward output also makes these checks fail, which compare no values
# of their own that the entry could be tested on.
FOLLOWS_FROM_VALUES = ("seed", "gradients", "masking")


@dataclass(frozen=True)
class Misconception:
    id: str
    reason: str  # one line: what the answer shows, why that is wrong, the fix; may hold {fields}
    variants: dict = field(default_factory=dict)  # item -> call -> tensor, or [(fields, tensor)]
    # item -> (call, actual, expected, rtol, atol) -> fields | None
    signatures: dict = field(default_factory=dict)
    checked_by: tuple = ()  # "item::kind" of checks that propose this entry from their own probe
    also_fails: tuple = FOLLOWS_FROM_VALUES  # kinds of check the mistake fails without evidence of its own

    @property
    def items(self) -> set[str]:
        return set(self.variants) | set(self.signatures) | {c.split("::")[0] for c in self.checked_by}

    def predicts(self, item: str) -> bool:
        return item in self.variants or item in self.signatures


def _module(**knobs) -> Callable[[Call], torch.Tensor]:
    def variant(call: Call) -> torch.Tensor:
        init = v.init_arguments(call.item, call.args, call.kwargs)
        return v.module_forward(call.item, call.state, init, call.x, **knobs)
    return variant


# d_k ** 1/2 on its own is d_k / 2; inside ``scores / d_k ** 1/2`` it divides by 2 * d_k
_HALF = {"divisor": "d_k / 2", "inline": ""}
_TWICE = {"divisor": "2 * d_k", "inline": ", and `scores / d_k ** 1/2` is `(scores / d_k) / 2`"}


def _power_one_half(half, twice) -> Callable[[Call], list]:
    """Both readings of ``d_k ** 1/2``, each with its words."""
    return lambda call: [(_HALF, half(call)), (_TWICE, twice(call))]


def _every(items, **knobs) -> dict:
    return {item: _module(**knobs) for item in items}


def _axis_name(axis: int, ndim: int) -> str:
    axis %= max(ndim, 1)
    return f"{axis} (the last)" if axis == ndim - 1 else str(axis)


def _wrong_axes(call: Call, normalize, x_pos: int = 0, dim_pos: int = 1, default_dim: int = -1):
    """The input normalized over each axis, with the words to say so. The asked
    axis is one of the family: a student who always uses one fixed axis gets
    the cases right where it is the asked one."""
    x = call.arg(x_pos, "scores")
    dim = call.arg(dim_pos, "dim", default_dim) if dim_pos is not None else default_dim
    if not isinstance(x, torch.Tensor) or not isinstance(dim, int):
        return []
    n = x.dim()
    return [({"got": _axis_name(d, n), "want": _axis_name(dim, n)}, normalize(x, d)) for d in range(n)]


def _weights_columns(call: Call):
    return [({"got": "-2 (over the queries, down each column)", "want": "-1 (over the keys, along each row)"},
             _module(softmax_dim=-2)(call))]


def _blocks_permuted(count: Callable[[Call, torch.Tensor], int]):
    """The output's last axis holds the right blocks in another order."""
    def signature(call: Call, actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float):
        if actual.shape != expected.shape or actual.dim() == 0:
            return None
        n = count(call, expected)
        if n < 2 or n > 6 or expected.shape[-1] % n:
            return None
        a, e = actual.double().chunk(n, dim=-1), expected.double().chunk(n, dim=-1)
        for order in permutations(range(n)):
            if list(order) != list(range(n)) and all(
                    torch.allclose(a[i], e[j], rtol=rtol, atol=atol) for i, j in enumerate(order)):
                return {"order": ", ".join(f"head {j}" for j in order)}
        return None
    return signature


def _scaled_scores(call: Call, actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float):
    """The right scores divided by sqrt(d_k) or d_k: a ratio that is one constant."""
    keys = call.arg(1, "keys")
    if actual.shape != expected.shape or not isinstance(keys, torch.Tensor) or not actual.is_floating_point():
        return None
    d_k = keys.shape[-1]
    for words, factor in ((f"sqrt(d_k) = {d_k ** 0.5:.4g}", d_k ** 0.5), (f"d_k = {d_k}", float(d_k))):
        if factor != 1.0 and torch.allclose(actual.double() * factor, expected.double(), rtol=rtol, atol=atol):
            return {"factor": words}
    return None


def _call_heads(call: Call, expected: torch.Tensor) -> int:
    x = call.arg(0, "x")
    return x.shape[1] if isinstance(x, torch.Tensor) and x.dim() == 4 else 0


def _init_heads(call: Call, expected: torch.Tensor) -> int:
    return int(init_arguments(call.item, call.args, call.kwargs).get("num_heads", 0))


_ALL_KINDS = ("example", "hidden", "short_sequence", "dropout", "gradients", "structure", "seed",
              "stability", "masking")

ENTRIES: tuple[Misconception, ...] = (
    # -- softmax
    Misconception(
        "softmax_no_max_subtraction",
        "your softmax overflows: exp(1000) is inf and inf / inf is NaN, which is what your result holds. "
        "Subtract the maximum along `dim` before exp (scores - scores.amax(dim=dim, keepdim=True)); "
        "the factor exp(-max) cancels, so the weights do not change",
        variants={"simplified_attention.softmax":
                  lambda c: v.softmax(c.arg(0, "scores"), c.arg(1, "dim", -1), subtract_max=False)}),
    Misconception(
        "softmax_global_max",
        "your softmax subtracts one maximum of the whole tensor, not one per row: in a row whose scores all "
        "lie far below it, every exp underflows to 0 and 0 / 0 is NaN, which is what your result holds. "
        "Subtract each row's own maximum, along the axis you normalize: scores.amax(dim=..., keepdim=True)",
        variants={"simplified_attention.softmax":
                  lambda c: v.softmax(c.arg(0, "scores"), c.arg(1, "dim", -1), global_max=True),
                  "self_attention.attention_weights":
                  lambda c: v.softmax(c.arg(0, "scores") / c.arg(1, "d_k") ** 0.5, -1, global_max=True)}),
    Misconception(
        "normalized_over_wrong_axis",
        "your weights sum to 1 along axis {got} instead of axis {want}: the normalization runs over the "
        "wrong dimension. Normalize along axis {want}: in attention, each query's row of weights over the "
        "keys must sum to 1",
        variants={
            "simplified_attention.softmax": lambda c: _wrong_axes(c, lambda x, d: torch.softmax(x, d)),
            "simplified_attention.normalize_by_sum":
                lambda c: _wrong_axes(c, lambda x, d: x / x.sum(dim=d, keepdim=True)),
            "self_attention.attention_weights":
                lambda c: _wrong_axes(c, lambda x, d: torch.softmax(x / c.arg(1, "d_k") ** 0.5, d),
                                      dim_pos=None),
            "simplified_attention.simplified_self_attention": lambda c: [
                ({"got": "-2 (over the queries, down each column)", "want": "-1 (over the keys, along each row)"},
                 torch.softmax(c.arg(0, "inputs") @ c.arg(0, "inputs").transpose(-2, -1), -2)
                 @ c.arg(0, "inputs"))],
            **{item: _weights_columns for item in SCALED_MODULES},
        },
        # the stability check asks for rows that sum to 1: the wrong axis fails it whatever the scores
        also_fails=(*FOLLOWS_FROM_VALUES, "stability")),
    # -- scaling
    Misconception(
        "scaled_by_d_k",
        "your result matches dividing the scores by d_k itself, which shrinks them too much and flattens "
        "the weights as d_k grows. Scale by sqrt(d_k), the square root of the key dimension: "
        "scores / d_k ** 0.5",
        variants={"self_attention.attention_weights":
                  lambda c: torch.softmax(c.arg(0, "scores") / c.arg(1, "d_k"), -1),
                  **_every(SCALED_MODULES, scale="d_k")}),
    Misconception(
        "square_root_as_power_one_half",
        "your result matches dividing the scores by {divisor}: ** binds tighter than /, so `d_k ** 1/2` "
        "is `(d_k ** 1) / 2`{inline}. Write the square root as d_k ** 0.5 (or math.sqrt(d_k))",
        variants={"self_attention.attention_weights": _power_one_half(
                      lambda c: torch.softmax(c.arg(0, "scores") / (c.arg(1, "d_k") / 2), -1),
                      lambda c: torch.softmax(c.arg(0, "scores") / (c.arg(1, "d_k") * 2), -1)),
                  **{item: _power_one_half(_module(scale="half_d_k"), _module(scale="twice_d_k"))
                     for item in SCALED_MODULES}}),
    Misconception(
        "not_scaled",
        "your result matches unscaled scores, softmax(scores): dot products of d_k components grow like "
        "sqrt(d_k), which pushes the softmax into flat regions with tiny gradients. Divide the scores "
        "by sqrt(d_k), the square root of the key dimension, before the softmax",
        variants={"self_attention.attention_weights": lambda c: torch.softmax(c.arg(0, "scores"), -1),
                  **_every(SCALED_MODULES, scale="none")}),
    Misconception(
        "scores_scaled_too_early",
        "your scores are the right ones divided by {factor}: attention_scores returns the plain dot "
        "products, and the scaling belongs to attention_weights, so that it is applied exactly once",
        signatures={"self_attention.attention_scores": _scaled_scores}),
    Misconception(
        "scaled_by_sqrt_d_out",
        "your output matches scaling every head's scores by sqrt(d_out): each head's keys have only "
        "head_dim components, so divide by sqrt(head_dim), keys.shape[-1] ** 0.5 after the split",
        variants={MHA: _module(scale="sqrt_d_out")}),
    Misconception(
        "scaled_by_sqrt_num_heads",
        "your output matches scaling every head's scores by sqrt(num_heads), the size of the head axis "
        "(keys.shape[1] after the split): divide by sqrt(head_dim), the size of the last axis, "
        "keys.shape[-1] ** 0.5",
        variants={MHA: _module(scale="sqrt_num_heads")}),
    # -- masking
    Misconception(
        "mask_hides_diagonal",
        "your mask also hides the diagonal, so a token cannot attend to itself and the first token has "
        "nothing left to attend to (its row of scores is all -inf, and their softmax is NaN). Hide only "
        "what lies strictly above the diagonal: torch.triu(..., diagonal=1)",
        variants={"causal_attention.causal_mask": lambda c: v.future(c.arg(0, "num_tokens"), 0),
                  **_every(CAUSAL_MODULES, mask="diagonal")}),
    Misconception(
        "mask_inverted",
        "your mask is True on and below the diagonal, where a token may look: it is inverted. True "
        "marks what to hide, the later tokens j > i strictly above the diagonal: "
        "torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)",
        variants={"causal_attention.causal_mask": lambda c: ~v.future(c.arg(0, "num_tokens"), 1)}),
    Misconception(
        "mask_not_bool",
        "{what} holds the right pattern as {got} 0s and 1s: a mask is a bool tensor, True where a token is "
        "hidden, and masked_fill accepts only bool masks. Create it with dtype=torch.bool, or convert "
        "it with .bool()",
        checked_by=("causal_attention.causal_mask::*",), also_fails=()),
    Misconception(
        "masked_with_zero",
        "you mask with 0 instead of -inf: exp(0) = 1, so after the softmax the future tokens still get "
        "weight. Fill the masked scores with float('-inf'), because exp(-inf) = 0",
        variants={"causal_attention.mask_scores":
                  lambda c: c.arg(0, "scores").masked_fill(c.arg(1, "mask"), 0.0),
                  **_every(CAUSAL_MODULES, fill="zero")}),
    Misconception(
        "mask_after_softmax_not_renormalized",
        "you zero the future weights after the softmax without renormalizing, so the rows no longer sum "
        "to 1. Mask the scores with -inf before the softmax, or divide each row by its new sum",
        variants={"causal_attention.renormalize_masked":
                  lambda c: c.arg(0, "weights").masked_fill(c.arg(1, "mask"), 0.0),
                  **_every(CAUSAL_MODULES, mask_after_softmax=True)}),
    Misconception(
        "mask_missing",
        "your output matches attention without the causal mask: every token still sees the later ones. "
        "Mask the scores with self.mask[:T, :T] and -inf before the softmax",
        variants=_every(CAUSAL_MODULES, mask="none")),
    Misconception(
        "mask_not_sliced",
        "with {tokens} tokens and context_length {context}, your forward fails: the mask buffer is "
        "({context}, {context}) but the scores are ({tokens}, {tokens}). Slice the mask to the tokens "
        "present: self.mask[:T, :T] with T = x.shape[1]",
        checked_by=(f"{CA}::*", f"{MHA}::*", f"{WRAPPER}::*"), also_fails=()),
    # -- heads
    Misconception(
        "split_without_transpose",
        "your heads come from a view straight to (b, num_heads, T, head_dim), which mixes tokens and "
        "heads (memory holds the features token by token). View to (b, T, num_heads, head_dim) first, "
        "then .transpose(1, 2)",
        variants={"multihead_attention.split_heads":
                  lambda c: v.split_heads(c.arg(0, "x"), c.arg(1, "num_heads"), "view"),
                  MHA: _module(split="view")}),
    Misconception(
        "merge_without_transpose",
        "you merge the heads with a view straight from (b, num_heads, T, head_dim) to (b, T, d_out), "
        "which mixes tokens and heads. Transpose back to (b, T, num_heads, head_dim) first "
        "(.transpose(1, 2).contiguous()), then view",
        variants={"multihead_attention.merge_heads": lambda c: v.merge_heads(c.arg(0, "x"), "view"),
                  MHA: _module(merge="view")}),
    Misconception(
        "merge_interleaved",
        "your merged features interleave the heads feature by feature instead of placing head 0's "
        "block first, then head 1's, and so on: transpose(1, 2) to (b, T, num_heads, head_dim), then "
        "view to (b, T, num_heads * head_dim)",
        variants={"multihead_attention.merge_heads": lambda c: v.merge_heads(c.arg(0, "x"), "interleave"),
                  MHA: _module(merge="interleave")}),
    Misconception(
        "heads_permuted",
        "your output holds the right head blocks but in another order ({order}): head 0's features "
        "must come first, then head 1's, and so on. Keep the heads in order when you put them side by side",
        signatures={"multihead_attention.merge_heads": _blocks_permuted(_call_heads),
                    WRAPPER: _blocks_permuted(_init_heads)}),
    Misconception(
        "out_proj_not_applied",
        "your output matches the merged heads as they are, with no output projection applied: out_proj "
        "is what mixes the heads' findings. Return self.out_proj(context)",
        variants={MHA: _module(out_proj=False)}),
    Misconception(
        "out_proj_missing",
        "your module has no output projection: out_proj is what mixes the heads' findings. Create "
        "self.out_proj = nn.Linear(d_out, d_out) and return self.out_proj(context)",
        checked_by=(f"{MHA}::structure",), also_fails=_ALL_KINDS),
    Misconception(
        "head_dim_from_d_in",
        "with d_in={d_in}, d_out={d_out}, num_heads={num_heads}, your head_dim is {got} = d_in // num_heads: "
        "the heads split the d_out features of the projected queries, so head_dim = d_out // num_heads",
        checked_by=(f"{MHA}::structure",), also_fails=("hidden", "short_sequence", "dropout", "gradients")),
    # -- dropout
    Misconception(
        "dropout_on_scores",
        "in train mode dropout acts on your scores, before the softmax (a dropped -inf becomes NaN, a "
        "dropped score becomes 0 and still gets weight). Apply self.dropout to the attention weights, "
        "after the softmax",
        checked_by=(f"{CA}::dropout", f"{MHA}::dropout"), also_fails=()),
    Misconception(
        "dropout_on_values",
        "in train mode dropout acts on your values, not on the attention weights: a dropped value is "
        "lost to every query at once. Apply self.dropout to the attention weights, after the softmax, "
        "and multiply the dropped weights by the values as they are",
        checked_by=(f"{CA}::dropout", f"{MHA}::dropout"), also_fails=()),
    Misconception(
        "dropout_on_output",
        "in train mode dropout acts on your output (the context vectors), not on the attention weights. "
        "Apply self.dropout to the weights, before multiplying them by the values",
        checked_by=(f"{CA}::dropout", f"{MHA}::dropout"), also_fails=()),
    Misconception(
        "dropout_in_eval_mode",
        "dropout is still active in eval mode: two calls give different outputs after module.eval(). "
        "Use self.dropout (an nn.Dropout module), which switches off in eval mode; F.dropout(x, p) "
        "drops in eval mode too unless given training=self.training",
        checked_by=(f"{CA}::dropout", f"{MHA}::dropout"), also_fails=("hidden",)),
    # -- errors the student's code raised (errors.py reads them)
    Misconception(
        "transpose_all_axes",
        "`.T` reverses all the axes of a tensor, batch axes included, so on batched input it no longer "
        "transposes each matrix: swap the last two axes only, .transpose(-2, -1) (or .mT)",
        checked_by=("*::*",), also_fails=()),
    Misconception(
        "view_needs_contiguous",
        "`view` cannot merge axes that a transpose has put out of memory order: call .contiguous() "
        "before .view(...), or use .reshape(...), which copies when it must",
        checked_by=("*::*",), also_fails=()),
    Misconception(
        "dot_needs_vectors",
        "torch.dot takes two 1-D vectors, and these inputs have batch axes: use an elementwise product "
        "and a sum over the last axis, or @, which work on batches too",
        checked_by=("*::*",), also_fails=()),
    Misconception(
        "mixed_float_dtypes",
        "your code mixes float32 and float64 in one operation: the input was {sent}, and a tensor or layer "
        "your code made is {made}. torch.set_default_dtype(...) at the top of a file changes every layer "
        "and tensor made after it, and .double() or .float() converts one; make what your code creates "
        "follow the input instead (layers with the default dtype, constants with dtype=x.dtype)",
        checked_by=("*::*",), also_fails=()),
    # -- types and side effects
    Misconception(
        "returns_numpy",
        "{what} is a numpy.ndarray: return a torch.Tensor (keep the computation in torch, no .numpy()), "
        "since autograd and the later stages need one",
        checked_by=("*::*",), also_fails=()),
    Misconception(
        "dtype_changed",
        "{what} has dtype {got}; expected {want}, the dtype of the inputs: {why}",
        checked_by=("*::*",), also_fails=()),
    Misconception(
        "modifies_input_in_place",
        "modifies its argument `{name}` in place: the caller still needs the original. Compute a new "
        "tensor instead (x = x - m, not x -= m; masked_fill, not masked_fill_)",
        checked_by=("*::*",), also_fails=()),
)

BY_ID = {e.id: e for e in ENTRIES}


def reason(entry_id: str, **fields) -> str:
    """The reason of one entry, filled in."""
    return BY_ID[entry_id].reason.format(**fields)


def finding(entry_id: str, facts: str, details: str = "", pictures=(), **fields):
    """A check's proposal of one entry: the entry's words, and the facts that
    stand in for them unless every check of the item confirms the name."""
    return CheckFailure(reason(entry_id, **fields), details, diagnosis=entry_id, facts=facts, pictures=pictures)
