"""Checks of stage 3, causal attention."""

import torch

from attnkit import compare
from attnkit import reference as ref
from attnkit.checks.common import (against_reference, gradients_match, has_types,
                                   module_against_reference, random_state, seeded_matches_doc,
                                   short_sequence_failure, same_outputs, weights_pictures)
from attnkit.diagnosis import Call, reason
from attnkit.items import check
from attnkit.outcomes import CheckFailure, StudentError

M = "causal_attention."
CA = M + "CausalAttention"
LINEAR = "torch.nn.modules.linear.Linear"
DROPOUT = "torch.nn.modules.dropout.Dropout"


def _doc_scores():
    """The unscaled 6 x 6 scores of the document's SelfAttentionV2 (seed 789)."""
    return ref.public("causal.scores")


_mask = ref.future_mask


@check(M + "causal_mask", "example")
def test_causal_mask_example(student):
    expected = ref.doc("s3_5_1_mask_simple_tril") == 0  # True above the diagonal
    compare.close(student(6), expected, what="causal_mask(6)", call=Call(M + "causal_mask", (6,)))


@check(M + "causal_mask", "hidden")
def test_causal_mask_hidden(student):
    for n in (1, 7, 13):
        against_reference(student, n, what=f"causal_mask({n})")


@check(M + "mask_scores", "example")
def test_mask_scores_example(student):
    compare.matches_doc(student(_doc_scores(), _mask(6)), "s3_5_1_masked_scores_neginf", "the masked scores",
                        call=Call(M + "mask_scores", (_doc_scores(), _mask(6))))


@check(M + "mask_scores", "hidden")
def test_mask_scores_hidden(student):
    g = ref.generator(M, "mask_scores")
    against_reference(student, ref.randn(g, 2, 3, 5, 5), _mask(5))
    against_reference(student, ref.randn(g, 7, 7), ref.rand(g, 7, 7) > 0.5)


def _check_masked_weights(weights: torch.Tensor, mask: torch.Tensor, what: str) -> None:
    leaked = weights.masked_select(mask.expand_as(weights))
    if (leaked != 0).any():
        raise CheckFailure(f"{what}: future tokens get weight up to {float(leaked.abs().max()):.4g}; "
                           f"masked weights must be exactly 0 (mask with -inf before the softmax)")
    sums = weights.sum(dim=-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-9, rtol=0):
        raise CheckFailure(f"{what}: rows sum to {float(sums.min()):.4g} .. {float(sums.max()):.4g}, not 1")


@check(M + "mask_scores", "masking")
def test_mask_scores_masking(student):
    g = ref.generator(M, "mask_scores", "masking")
    scores, mask = ref.randn(g, 3, 6, 6), _mask(6)
    masked = compare.tensor(student(scores, mask), "the masked scores")
    if masked.shape != scores.shape or not masked.is_floating_point():
        raise CheckFailure(f"the masked scores have shape {tuple(masked.shape)} and dtype {masked.dtype}; "
                           f"expected {tuple(scores.shape)}, {scores.dtype}")
    _check_masked_weights(torch.softmax(masked.double(), dim=-1), mask, "softmax of your masked scores")


@check(M + "renormalize_masked", "example")
def test_renormalize_masked_example(student):
    weights = ref.public("causal.weights")
    compare.matches_doc(student(weights, _mask(6)), "s3_5_1_masked_simple_norm", "the renormalized weights",
                        call=Call(M + "renormalize_masked", (weights, _mask(6))))


@check(M + "renormalize_masked", "hidden")
def test_renormalize_masked_hidden(student):
    g = ref.generator(M, "renormalize_masked")
    against_reference(student, torch.softmax(ref.randn(g, 2, 3, 5, 5), -1), _mask(5))


@check(M + "renormalize_masked", "masking")
def test_renormalize_masked_masking(student):
    g = ref.generator(M, "renormalize_masked", "masking")
    mask = _mask(7)
    got = compare.tensor(student(torch.softmax(ref.randn(g, 4, 7, 7), -1), mask), "the renormalized weights")
    if got.shape != (4, 7, 7):
        raise CheckFailure(f"the renormalized weights have shape {tuple(got.shape)}; expected (4, 7, 7)")
    _check_masked_weights(got.double(), mask, "the renormalized weights")


# -- the module

@check(CA, "example")
def test_causal_attention_example(student):
    state = ref.public_state("causal.module")
    run = student.build(3, 2, 6, 0.0, state=state, inputs=[ref.doc_batch()])
    with weights_pictures(student):
        compare.matches_doc(run.outputs[0] if run.outputs else None, "s3_5_3_CausalAttention_out",
                            "the context vectors of the document's batch",
                            call=Call(CA, (3, 2, 6, 0.0), {}, state=state, x=ref.doc_batch()))


@check(CA, "hidden")
def test_causal_attention_hidden(student):
    g = ref.generator(CA, "hidden")
    state = random_state(CA, g, 7, 4, 5, 0.3, qkv_bias=True)
    module_against_reference(student, 7, 4, 5, 0.3, qkv_bias=True, state=state,
                             inputs=[ref.randn(g, 3, 5, 7)], what="the context vectors (eval mode)")


@check(CA, "short_sequence")
def test_causal_attention_short_sequence(student):
    g = ref.generator(CA, "short")
    state = random_state(CA, g, 7, 4, 9, 0.0)
    try:
        module_against_reference(student, 7, 4, 9, 0.0, state=state, inputs=[ref.randn(g, 2, 5, 7)],
                                 what="the context vectors of 5 tokens with context_length 9")
    except StudentError as exc:
        if exc.kind != "exception":
            raise
        raise short_sequence_failure(exc) from None


def dropout_probe(T: int):
    """Parameters that make the output show the attention weights themselves.

    Tokens are one-hot (d_in = T) and queries and keys are zero, so causal
    row i gives weight 1/(i+1) to each token up to i. The values are [I | 1]:
    output column j < T is weight (i, j) and column T is the row's sum. Dropout
    on the weights zeroes entries of the first T columns and scales the rest by
    1/(1-p), and column T stays their sum.
    """
    zeros = torch.zeros(T + 1, T, dtype=torch.float64)
    values = torch.cat([torch.eye(T, dtype=torch.float64), torch.ones(1, T, dtype=torch.float64)])
    state = {"W_query.weight": zeros, "W_key.weight": zeros.clone(), "W_value.weight": values}
    allowed = ~_mask(T)
    weights = allowed / allowed.sum(dim=-1, keepdim=True).double()
    return state, weights, allowed


@check(CA, "dropout")
def test_causal_attention_dropout(student):
    T, b, p = 32, 4, 0.5
    state, weights, allowed = dropout_probe(T)
    x = torch.eye(T, dtype=torch.float64).expand(b, T, T).clone()
    expected = torch.cat([weights, weights.sum(-1, keepdim=True)], dim=-1).expand(b, T, T + 1)

    run = student.build(T, T + 1, T, p, state=state, inputs=[x], dtype="float64", repeat=2)
    first, second = (compare.tensor(o, "the eval-mode output") for o in run.outputs[:2])
    if not same_outputs(first, second):
        raise CheckFailure(reason("dropout_in_eval_mode"), diagnosis="dropout_in_eval_mode")
    compare.close(first, expected, what="the eval-mode output with dropout=0.5",
                  call=Call(CA, (T, T + 1, T, p), {}, state=state, x=x))

    run = student.build(T, T + 1, T, p, state=state, inputs=[x], dtype="float64", train=True)
    out = compare.tensor(run.outputs[0] if run.outputs else None, "the train-mode output")
    if out.shape != (b, T, T + 1) or out.dtype != torch.float64:
        raise CheckFailure(f"the train-mode output has shape {tuple(out.shape)}, dtype {out.dtype}; "
                           f"expected {(b, T, T + 1)}, torch.float64")
    dropped, sums = out[..., :T], out[..., T]
    if (dropped.masked_select(~allowed.expand(b, T, T)) != 0).any():
        raise CheckFailure(reason("dropout_on_scores"), diagnosis="dropout_on_scores")
    kept = dropped.masked_select(allowed.expand(b, T, T))
    w = weights.masked_select(allowed).repeat(b)
    zero = kept == 0
    if not zero.any():
        raise CheckFailure("in train mode with dropout=0.5 no attention weight was dropped: apply "
                           "self.dropout to the attention weights, after the softmax")
    scale = kept[~zero] / w[~zero]
    if torch.allclose(scale, torch.ones_like(scale)):
        raise CheckFailure("the weights that survive dropout are not scaled by 1/(1-p); nn.Dropout does it")
    if not torch.allclose(scale, torch.full_like(scale, 1 / (1 - p)), rtol=1e-9, atol=0):
        raise CheckFailure("in train mode the weights are neither 0 nor scaled by 1/(1-p): is dropout "
                           "applied to something other than the attention weights?")
    rate = float(zero.double().mean())
    if abs(rate - p) > 0.06:
        raise CheckFailure(f"dropout zeroed {rate:.0%} of the weights; with p = 0.5 it should zero about half")
    if not torch.allclose(sums, dropped.sum(-1), rtol=1e-9, atol=1e-12):
        raise CheckFailure("dropout acts on the output, not on the attention weights: apply it to the "
                           "weights before multiplying by the values")


@check(CA, "gradients")
def test_causal_attention_gradients(student):
    g = ref.generator(CA, "gradients")
    gradients_match(student, 7, 4, 6, 0.0, qkv_bias=True, state=random_state(CA, g, 7, 4, 6, 0.0, qkv_bias=True),
                    x=ref.randn(g, 2, 6, 7), gen=g)


@check(CA, "structure")
def test_causal_attention_structure(student):
    run = student.build(7, 4, 9, 0.25, describe=["W_query", "W_key", "W_value", "dropout"])
    has_types(run, {"W_query": LINEAR, "W_key": LINEAR, "W_value": LINEAR, "dropout": DROPOUT})
    if run.attrs["dropout"].get("p") != 0.25:
        raise CheckFailure(f"self.dropout has p = {run.attrs['dropout'].get('p')}; expected the "
                           f"`dropout` argument, 0.25")
    buffers = dict(run.buffers or {})
    if "mask" not in buffers:
        raise CheckFailure("`mask` is not a registered buffer: use self.register_buffer('mask', ...)")
    if list(buffers["mask"]) != [9, 9]:
        raise CheckFailure(f"the mask buffer has shape {tuple(buffers['mask'])}; expected "
                           f"(context_length, context_length) = (9, 9)")


@check(CA, "seed")
def test_causal_attention_seed(student):
    seeded_matches_doc(student, 123, ref.doc_batch(), "s3_5_3_CausalAttention_out", 3, 2, 6, 0.0)

