"""Checks of stage 3, causal attention."""

import torch

from attnkit.judge import compare
from attnkit.judge import reference as ref
from attnkit.judge.checks.common import (module_matches_doc, against_reference, buffer_shape, build_witnessed, dropout_behaves,
                                   Gradients, gradients_match, has_types, module_against_reference, random_state,
                                   seeded_matches_doc, short_sequence_matches, verify_structure)
from attnkit.judge.diagnosis import Call
from attnkit.judge.registry import check
from attnkit.errors import CheckFailure

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
    for n in (1, 7, 13):  # and no inference tensor, at any size: a mask the modules can train with
        against_reference(student, n, what=f"causal_mask({n})", gradients=Gradients(ref.generator(M, "causal_mask")))


@check(M + "mask_scores", "example")
def test_mask_scores_example(student):
    compare.matches_doc(student(_doc_scores(), _mask(6)), "s3_5_1_masked_scores_neginf", "the masked scores",
                        call=Call(M + "mask_scores", (_doc_scores(), _mask(6))))


@check(M + "mask_scores", "hidden")
def test_mask_scores_hidden(student):
    g = ref.generator(M, "mask_scores")
    scores = ref.randn(g, 2, 3, 5, 5)
    x, hide = ref.randn(g, 7, 7), ref.rand(g, 7, 7) > 0.5
    against_reference(student, x, hide)
    # the modules call it: it keeps the graph (taken last, as against_reference asks)
    against_reference(student, scores, _mask(5), gradients=Gradients(g, free=_mask(5)))


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
    # Any boolean mask, as the docstring says, not only the causal one (which
    # weights.tril() would fake); each row keeps its own token, so none sums to 0.
    weights, hide = torch.softmax(ref.randn(g, 7, 7), -1), ref.rand(g, 7, 7) > 0.5
    against_reference(student, weights, hide & ~torch.eye(7, dtype=torch.bool),
                      gradients=Gradients(g, rows_sum_to_one=True))


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
    module_matches_doc(student, 3, 2, 6, 0.0, state="causal.module", x=ref.doc_batch(),
                       entry="s3_5_3_CausalAttention_out", what="the context vectors of the document's batch",
                       verified="the context vectors of the document's batch", pictures=True)


@check(CA, "hidden")
def test_causal_attention_hidden(student):
    g = ref.generator(CA, "hidden")
    state = random_state(CA, g, 7, 4, 5, 0.3, qkv_bias=True)
    module_against_reference(student, 7, 4, 5, 0.3, qkv_bias=True, state=state,
                             inputs=[ref.randn(g, 3, 5, 7)], what="the context vectors (eval mode)")


@check(CA, "short_sequence")
def test_causal_attention_short_sequence(student):
    g = ref.generator(CA, "short")
    short_sequence_matches(student, 7, 4, 9, 0.0, state=random_state(CA, g, 7, 4, 9, 0.0), x=ref.randn(g, 2, 5, 7))


@check(CA, "dropout")
def test_causal_attention_dropout(student):
    dropout_behaves(student, CA)


@check(CA, "gradients")
def test_causal_attention_gradients(student):
    g = ref.generator(CA, "gradients")
    gradients_match(student, 7, 4, 6, 0.0, qkv_bias=True, state=random_state(CA, g, 7, 4, 6, 0.0, qkv_bias=True),
                    x=ref.randn(g, 2, 6, 7), gen=g)


@check(CA, "structure")
def test_causal_attention_structure(student):
    run = build_witnessed(student, 7, 4, 9, 0.25, like=torch.zeros(2, 9, 7),
                          describe=["W_query", "W_key", "W_value", "dropout"])
    has_types(run, {"W_query": LINEAR, "W_key": LINEAR, "W_value": LINEAR, "dropout": DROPOUT})
    if run.attrs["dropout"].get("p") != 0.25:
        raise CheckFailure(f"self.dropout has p = {run.attrs['dropout'].get('p')}; expected the "
                           f"`dropout` argument, 0.25")
    shape = buffer_shape(run, "mask")
    if shape is None:
        raise CheckFailure("`mask` is not a registered buffer: use self.register_buffer('mask', ...)")
    # leading axes of 1 (GPT-2's (1, 1, T, T), ready to broadcast over batches) are the same mask
    if shape[-2:] != (9, 9) or any(n != 1 for n in shape[:-2]):
        raise CheckFailure(f"the mask buffer has shape {shape}; expected "
                           f"(context_length, context_length) = (9, 9)")
    # the description above earns its point only from a class shown to compute attention
    verify_structure(student, run, 7, 4, 9, 0.0, like=torch.zeros(2, 9, 7))


@check(CA, "seed")
def test_causal_attention_seed(student):
    seeded_matches_doc(student, 123, ref.doc_batch(), "s3_5_3_CausalAttention_out", 3, 2, 6, 0.0)

