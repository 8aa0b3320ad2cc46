"""Checks of stage 1, simplified self-attention. Each test is one check of one
item; ``student`` calls that item in the sandbox."""

import torch

from attnkit.judge import compare
from attnkit.judge import reference as ref
from attnkit.judge.checks.common import against_reference
from attnkit.judge.diagnosis import Call
from attnkit.judge.registry import check
from attnkit.judge.reference import extreme
from attnkit.errors import CheckFailure

M = "simplified_attention."


def _doc_scores_2():
    return ref.public("simplified.scores_2")  # exact, not the 4-decimal print


@check(M + "query_scores", "example")
def test_query_scores_example(student):
    x = ref.doc_inputs()
    compare.matches_doc(student(x, x[1]), "s3_3_1_attn_scores_2", "scores of x2 against every token",
                        call=Call(M + "query_scores", (x, x[1])))


@check(M + "query_scores", "hidden")
def test_query_scores_hidden(student):
    g = ref.generator(M, "query_scores")
    against_reference(student, ref.randn(g, 5, 7), ref.randn(g, 7))
    against_reference(student, ref.randn(g, 2, 3, 5, 7), ref.randn(g, 2, 3, 7))
    # a batch of one sequence of one token: every axis that may be 1 is (a .squeeze() drops them)
    against_reference(student, ref.randn(g, 1, 1, 7), ref.randn(g, 1, 7))


@check(M + "attention_scores", "example")
def test_attention_scores_example(student):
    x = ref.doc_inputs()
    compare.matches_doc(student(x), "s3_3_2_attn_scores_matmul", "the score matrix",
                        call=Call(M + "attention_scores", (x,)))


@check(M + "attention_scores", "hidden")
def test_attention_scores_hidden(student):
    g = ref.generator(M, "attention_scores")
    against_reference(student, ref.randn(g, 5, 7))
    against_reference(student, ref.randn(g, 2, 3, 5, 7))


@check(M + "normalize_by_sum", "example")
def test_normalize_by_sum_example(student):
    compare.matches_doc(student(_doc_scores_2()), "s3_3_1_attn_weights_2_tmp", "the normalized scores of x2",
                        call=Call(M + "normalize_by_sum", (_doc_scores_2(),)))


@check(M + "normalize_by_sum", "hidden")
def test_normalize_by_sum_hidden(student):
    g = ref.generator(M, "normalize_by_sum")
    against_reference(student, ref.rand(g, 2, 5, 7, low=0.1))
    against_reference(student, ref.rand(g, 3, 5, 7, low=0.1), dim=1)


@check(M + "softmax", "example")
def test_softmax_example(student):
    compare.matches_doc(student(_doc_scores_2(), dim=0), "s3_3_1_torch_softmax", "softmax of the scores of x2",
                        call=Call(M + "softmax", (_doc_scores_2(),), {"dim": 0}))
    scores = ref.public("simplified.scores")
    compare.matches_doc(student(scores, dim=-1), "s3_3_2_attn_weights", "softmax of the score matrix",
                        call=Call(M + "softmax", (scores,), {"dim": -1}))


@check(M + "softmax", "hidden")
def test_softmax_hidden(student):
    g = ref.generator(M, "softmax")
    # dim left out: its default, -1, is part of the stage's contract (its callers rely on it)
    against_reference(student, ref.randn(g, 2, 5, 7, scale=3.0))
    against_reference(student, ref.randn(g, 3, 5, 7, scale=3.0), dim=0)
    against_reference(student, ref.randn(g, 3, 5, 7, scale=3.0), dim=1)


@check(M + "softmax", "stability")
def test_softmax_stability(student):
    for dtype in (torch.float64, torch.float32):
        scores = extreme(dtype)
        got = compare.tensor(student(scores, dim=-1), "softmax of scores of +-1000")
        tol = compare.EXTREME_F32 if dtype == torch.float32 else dict(atol=1e-6, rtol=0.0)
        if got.shape == scores.shape and got.is_floating_point() and torch.isfinite(got).all():
            sums = got.double().sum(dim=-1)
            if not torch.allclose(sums, torch.ones_like(sums), atol=tol["atol"] + tol["rtol"], rtol=0):
                raise CheckFailure(f"softmax of scores of +-1000 ({dtype}) has rows that sum to "
                                   f"{compare.near_one(sums)}, not 1")
        compare.close(got, ref.public(f"simplified.softmax_extreme.{dtype}"),
                      what=f"softmax of scores of +-1000 ({dtype})",
                      call=Call(M + "softmax", (scores,), {"dim": -1}),
                      **(compare.EXTREME_F32 if dtype == torch.float32 else {}))


@check(M + "context_vectors", "example")
def test_context_vectors_example(student):
    x, weights = ref.doc_inputs(), ref.public("simplified.weights")
    compare.matches_doc(student(weights, x), "s3_3_2_all_context_vecs", "all context vectors",
                        call=Call(M + "context_vectors", (weights, x)))
    compare.matches_doc(student(weights[1], x), "s3_3_1_context_vec_2", "the context vector of x2 (one row)",
                        call=Call(M + "context_vectors", (weights[1], x)))


@check(M + "context_vectors", "hidden")
def test_context_vectors_hidden(student):
    g = ref.generator(M, "context_vectors")
    against_reference(student, ref.rand(g, 5, 6), ref.randn(g, 6, 7))
    against_reference(student, ref.rand(g, 2, 3, 5, 6), ref.randn(g, 2, 3, 6, 7))


@check(M + "simplified_self_attention", "example")
def test_simplified_self_attention_example(student):
    compare.matches_doc(student(ref.doc_inputs()), "s3_3_2_all_context_vecs", "the context vectors",
                        call=Call(M + "simplified_self_attention", (ref.doc_inputs(),)))


@check(M + "simplified_self_attention", "hidden")
def test_simplified_self_attention_hidden(student):
    g = ref.generator(M, "simplified_self_attention")
    against_reference(student, ref.randn(g, 5, 7))
    against_reference(student, ref.randn(g, 2, 3, 5, 7))
