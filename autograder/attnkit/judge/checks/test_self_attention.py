"""Checks of stage 2, scaled dot-product self-attention."""

from attnkit.judge import compare
from attnkit.judge import reference as ref
from attnkit.judge.checks.common import (module_matches_doc, F32, Gradients, against_reference, gradients_match,
                                   module_against_reference, random_state, seeded_matches_doc)
from attnkit.judge.diagnosis import Call
from attnkit.judge.registry import check
from attnkit.judge.reference import extreme
from attnkit.errors import CheckFailure

M = "self_attention."


def _doc_weights():
    """W_query, W_key, W_value of the document: torch.manual_seed(123), torch.rand(3, 2) each."""
    return tuple(ref.public(f"self.v1.{n}") for n in ("W_query", "W_key", "W_value"))


def _doc_projections():
    return tuple(ref.public(f"self.{n}") for n in ("queries", "keys", "values"))


@check(M + "project_qkv", "example")
def test_project_qkv_example(student):
    x = ref.doc_inputs()
    got = student(x[1], *_doc_weights())
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise CheckFailure(f"project_qkv should return (queries, keys, values); got {compare.kind(got)}")
    compare.matches_doc(got[0], "s3_4_1_query_2", "the query of x2")
    got = student(x, *_doc_weights())
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise CheckFailure(f"project_qkv should return (queries, keys, values); got {compare.kind(got)}")
    for name, g, e in zip(("queries", "keys", "values"), got, _doc_projections()):
        compare.close(g, e, what=f"the {name} of all six tokens", **F32)


@check(M + "project_qkv", "hidden")
def test_project_qkv_hidden(student):
    g = ref.generator(M, "project_qkv")
    ws = [ref.randn(g, 7, 4) for _ in range(3)]
    against_reference(student, ref.randn(g, 5, 7), *ws)
    # the stages the modules call keep the autograd graph: the last case backpropagates too
    against_reference(student, ref.randn(g, 2, 3, 5, 7), *ws, gradients=Gradients(g))


@check(M + "attention_scores", "example")
def test_attention_scores_example(student):
    queries, keys, _ = _doc_projections()
    compare.matches_doc(student(queries[1], keys), "s3_4_1_attn_scores_2", "the scores of query 2",
                        call=Call(M + "attention_scores", (queries[1], keys)))
    got = compare.tensor(student(queries, keys), "the score matrix")
    compare.close(got, ref.public("self.scores"), what="the score matrix",
                  call=Call(M + "attention_scores", (queries, keys)), **F32)
    compare.matches_doc(got[1, 1], "s3_4_1_attn_score_22", "the score of query 2 against key 2")


@check(M + "attention_scores", "hidden")
def test_attention_scores_hidden(student):
    g = ref.generator(M, "attention_scores")
    against_reference(student, ref.randn(g, 5, 4), ref.randn(g, 6, 4))
    against_reference(student, ref.randn(g, 2, 3, 5, 4), ref.randn(g, 2, 3, 6, 4), gradients=Gradients(g))


def _doc_scores_2():
    return ref.public("self.scores_2")


@check(M + "attention_weights", "example")
def test_attention_weights_example(student):
    compare.matches_doc(student(_doc_scores_2(), 2), "s3_4_1_attn_weights_2", "the weights of query 2 (one row; d_k = 2)",
                        call=Call(M + "attention_weights", (_doc_scores_2(), 2)))


@check(M + "attention_weights", "hidden")
def test_attention_weights_hidden(student):
    g = ref.generator(M, "attention_weights")
    against_reference(student, ref.randn(g, 2, 3, 5, 6, scale=3.0), 4)
    against_reference(student, ref.randn(g, 5, 6, scale=3.0), 9, gradients=Gradients(g))


@check(M + "attention_weights", "stability")
def test_attention_weights_stability(student):
    scores = extreme()[:2, :3]
    got = compare.tensor(student(scores, 4), "the weights of scores of +-1000")
    compare.close(got, ref.public("self.weights_extreme"), what="the weights of scores of +-1000",
                  call=Call(M + "attention_weights", (scores, 4)))


@check(M + "context_vectors", "example")
def test_context_vectors_example(student):
    _, _, values = _doc_projections()
    weights = ref.public("self.weights_2")
    compare.matches_doc(student(weights, values), "s3_4_1_context_vec_2", "the context vector of x2",
                        call=Call(M + "context_vectors", (weights, values)))


@check(M + "context_vectors", "hidden")
def test_context_vectors_hidden(student):
    g = ref.generator(M, "context_vectors")
    against_reference(student, ref.rand(g, 5, 6), ref.randn(g, 6, 4))
    against_reference(student, ref.rand(g, 2, 3, 5, 6), ref.randn(g, 2, 3, 6, 4), gradients=Gradients(g))


# -- the two classes: same checks, different seeds and parameter layouts

def _class_checks(name: str, seed: int, entry_id: str, with_bias: bool):
    item = M + name

    @check(item, "example")
    def example(student):
        module_matches_doc(student, 3, 2, state="self.v2" if with_bias else "self.v1", x=ref.doc_inputs(),
                           entry=entry_id, what="the context vectors",
                           verified="the context vectors of the document's example")

    @check(item, "hidden")
    def hidden(student):
        g = ref.generator(item, "hidden")
        kwargs = {"qkv_bias": True} if with_bias else {}
        state = random_state(item, g, 7, 4, **kwargs)
        module_against_reference(student, 7, 4, state=state, what="the context vectors",
                                 inputs=[ref.randn(g, 5, 7), ref.randn(g, 2, 5, 7)], **kwargs)

    @check(item, "gradients")
    def gradients(student):
        g = ref.generator(item, "gradients")
        gradients_match(student, 7, 4, state=random_state(item, g, 7, 4), x=ref.randn(g, 2, 5, 7), gen=g)

    @check(item, "seed")
    def seeded(student):
        seeded_matches_doc(student, seed, ref.doc_inputs(), entry_id, 3, 2)

    return example, hidden, gradients, seeded


(test_self_attention_example, test_self_attention_hidden, test_self_attention_gradients,
 test_self_attention_seed) = _class_checks("SelfAttention", 123, "s3_4_2_SelfAttention_v1_out", False)
(test_self_attention_v2_example, test_self_attention_v2_hidden, test_self_attention_v2_gradients,
 test_self_attention_v2_seed) = _class_checks("SelfAttentionV2", 789, "s3_4_2_SelfAttention_v2_out", True)
