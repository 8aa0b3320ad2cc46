"""Checks of stage 4, multi-head attention."""

import torch

from attnkit.judge import compare
from attnkit.judge import reference as ref
from attnkit.judge.checks.common import (module_matches_doc, F32, against_reference, buffer_shape, build_witnessed, dropout_behaves,
                                   Gradients, gradients_match, has_types, module_against_reference, random_state,
                                   raises_value_error, seeded_matches_doc, short_sequence_matches, verify_structure)
from attnkit.judge.diagnosis import Call, finding
from attnkit.judge.registry import check
from attnkit.errors import CheckFailure

M = "multihead_attention."
WRAPPER = M + "MultiHeadAttentionWrapper"
MHA = M + "MultiHeadAttention"
LINEAR = "torch.nn.modules.linear.Linear"
DROPOUT = "torch.nn.modules.dropout.Dropout"
MODULE_LIST = "torch.nn.modules.container.ModuleList"


def _doc_heads() -> torch.Tensor:
    return torch.tensor(ref.DOC_HEADS)  # (b=1, num_heads=2, T=3, head_dim=4)


# -- the wrapper

@check(WRAPPER, "example")
def test_wrapper_example(student):
    module_matches_doc(student, 3, 2, 6, 0.0, 2, state="multihead.wrapper", x=ref.doc_batch(),
                       entry="s3_6_1_MultiHeadAttentionWrapper_out", what="the stacked outputs of two heads",
                       verified="the stacked outputs of the document's batch")


@check(WRAPPER, "hidden")
def test_wrapper_hidden(student):
    g = ref.generator(WRAPPER, "hidden")
    state = random_state(WRAPPER, g, 7, 4, 5, 0.2, 3, qkv_bias=True)
    module_against_reference(student, 7, 4, 5, 0.2, 3, qkv_bias=True, state=state,
                             inputs=[ref.randn(g, 2, 5, 7)], what="the stacked outputs (eval mode)")


@check(WRAPPER, "gradients")
def test_wrapper_gradients(student):
    g = ref.generator(WRAPPER, "gradients")
    gradients_match(student, 7, 4, 5, 0.0, 3, state=random_state(WRAPPER, g, 7, 4, 5, 0.0, 3),
                    x=ref.randn(g, 2, 5, 7), gen=g)


@check(WRAPPER, "structure")
def test_wrapper_structure(student):
    run = build_witnessed(student, 7, 4, 5, 0.0, 3, like=torch.zeros(2, 5, 7), describe=["heads"])
    has_types(run, {"heads": MODULE_LIST})
    if run.attrs["heads"].get("len") != 3:
        raise CheckFailure(f"`heads` holds {run.attrs['heads'].get('len')} modules; expected num_heads = 3")
    # the description above earns its point only from a class shown to compute attention
    verify_structure(student, run, 7, 4, 5, 0.0, 3, like=torch.zeros(2, 5, 7))


@check(WRAPPER, "seed")
def test_wrapper_seed(student):
    seeded_matches_doc(student, 123, ref.doc_batch(), "s3_6_1_MultiHeadAttentionWrapper_out", 3, 2, 6, 0.0, 2)


# -- splitting and merging heads

@check(M + "split_heads", "example")
def test_split_heads_example(student):
    a = _doc_heads()
    merged = a.transpose(1, 2).reshape(1, 3, 8)  # (b, T, num_heads * head_dim)
    got = compare.close(student(merged, 2), a, what="split_heads of the document's heads",
                        call=Call(M + "split_heads", (merged, 2)), **F32)
    compare.matches_doc(got @ got.transpose(2, 3), "s3_6_2_a_matmul_aT", "a @ a.transpose(2, 3) of your split")


@check(M + "split_heads", "hidden")
def test_split_heads_hidden(student):
    g = ref.generator(M, "split_heads")
    against_reference(student, ref.randn(g, 2, 5, 12), 3)
    against_reference(student, ref.randn(g, 2, 5, 12), 4)
    # the module calls it: it keeps the autograd graph
    against_reference(student, ref.randn(g, 3, 7, 6), 2, gradients=Gradients(g))


@check(M + "merge_heads", "example")
def test_merge_heads_example(student):
    a = _doc_heads()
    got = compare.close(student(a), a.transpose(1, 2).reshape(1, 3, 8),
                        what="merge_heads of the document's heads", call=Call(M + "merge_heads", (a,)), **F32)
    first, second = got[0, :, :4], got[0, :, 4:]
    compare.matches_doc(first @ first.T, "s3_6_2_first_head", "the first head's block, times its transpose")
    compare.matches_doc(second @ second.T, "s3_6_2_second_head", "the second head's block, times its transpose")


@check(M + "merge_heads", "hidden")
def test_merge_heads_hidden(student):
    g = ref.generator(M, "merge_heads")
    against_reference(student, ref.randn(g, 2, 3, 5, 4))
    against_reference(student, ref.randn(g, 2, 4, 5, 3))
    against_reference(student, ref.randn(g, 3, 2, 7, 6), gradients=Gradients(g))


# -- the fused module

@check(MHA, "example")
def test_mha_example(student):
    module_matches_doc(student, 3, 2, 6, 0.0, 2, state="multihead.mha", x=ref.doc_batch(),
                       entry="s3_6_2_MultiHeadAttention_out", what="the context vectors of the document's batch",
                       verified="the context vectors of the document's batch", pictures=True)


@check(MHA, "hidden")
def test_mha_hidden(student):
    g = ref.generator(MHA, "hidden")
    state = random_state(MHA, g, 7, 12, 5, 0.2, 3, qkv_bias=True)
    module_against_reference(student, 7, 12, 5, 0.2, 3, qkv_bias=True, state=state,
                             inputs=[ref.randn(g, 2, 5, 7)], what="the context vectors (eval mode)")


@check(MHA, "short_sequence")
def test_mha_short_sequence(student):
    g = ref.generator(MHA, "short")
    short_sequence_matches(student, 7, 12, 9, 0.0, 4, state=random_state(MHA, g, 7, 12, 9, 0.0, 4),
                           x=ref.randn(g, 2, 5, 7))


@check(MHA, "dropout")
def test_mha_dropout(student):
    # One head and an identity out_proj turn the module into the causal probe.
    dropout_behaves(student, MHA)


@check(MHA, "gradients")
def test_mha_gradients(student):
    g = ref.generator(MHA, "gradients")
    gradients_match(student, 7, 12, 5, 0.0, 3, qkv_bias=True,
                    state=random_state(MHA, g, 7, 12, 5, 0.0, 3, qkv_bias=True), x=ref.randn(g, 2, 5, 7), gen=g)


@check(MHA, "structure")
def test_mha_structure(student):
    run = build_witnessed(student, 7, 12, 9, 0.25, 3, like=torch.zeros(2, 9, 7),
                          describe=["W_query", "W_key", "W_value", "out_proj", "dropout", "num_heads", "head_dim"])
    has_types(run, {"W_query": LINEAR, "W_key": LINEAR, "W_value": LINEAR, "out_proj": LINEAR,
                    "dropout": DROPOUT})
    if not run.attrs["out_proj"].get("bias"):
        raise CheckFailure("out_proj has no bias; it is nn.Linear(d_out, d_out) with the default bias")
    for attr, want in (("num_heads", 3), ("head_dim", 4)):
        got = run.attrs.get(attr, {}).get("value")
        if attr == "head_dim" and got == 7 // 3:
            raise finding("head_dim_from_d_in", f"with d_in=7, d_out=12, num_heads=3, `head_dim` is {got}; "
                          f"expected 4", d_in=7, d_out=12, num_heads=3, got=got)
        if got != want:
            hint = " (head_dim is d_out // num_heads, not d_in // num_heads)" if attr == "head_dim" else ""
            raise CheckFailure(f"with d_in=7, d_out=12, num_heads=3, `{attr}` is {got}; expected {want}{hint}")
    if buffer_shape(run, "mask") is None:
        raise CheckFailure("`mask` is not a registered buffer: use self.register_buffer('mask', ...)")
    raises_value_error(student, 7, 7, 5, 0.0, 3)
    # the description above earns its point only from a class shown to compute attention
    verify_structure(student, run, 7, 12, 9, 0.0, 3, like=torch.zeros(2, 9, 7))


@check(MHA, "seed")
def test_mha_seed(student):
    seeded_matches_doc(student, 123, ref.doc_batch(), "s3_6_2_MultiHeadAttention_out", 3, 2, 6, 0.0, 2)
