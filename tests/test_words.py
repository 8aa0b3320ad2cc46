"""The words of a failure are true: every wrong word of issue 10, with the
reason it must get now.

Each case is a submission with one mistake (an edit of the reference
solutions), the item that carries it, the misconception that must be named
(or None: the facts, no name), phrases the item's reasons must hold and
phrases they must not. The phrases are written here by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from conftest import grade_folder, make_submission
from test_alternatives import body

from attnkit.judge import compare
S, SA, CA, MH = "simplified_attention", "self_attention", "causal_attention", "multihead_attention"
MHA_SOFTMAX = "torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)"


@dataclass(frozen=True)
class Words:
    module: str
    edits: list
    item: str
    named: str | None  # the entry id that must be named, or None: the facts
    says: tuple = ()
    never: tuple = ()
    public: bool = False


WORDS = {
    # d_out = num_heads = 2 in the document's example: scaling by sqrt(num_heads) looks like sqrt(d_out)
    # there; the hidden case tells them apart.
    "sqrt_num_heads": Words(MH, [(MHA_SOFTMAX, "torch.softmax(scores / self.num_heads ** 0.5, dim=-1)")],
                            f"{MH}.MultiHeadAttention", "scaled_by_sqrt_num_heads",
                            says=("sqrt(num_heads)",), never=("sqrt(d_out)",)),
    "keys_shape_1": Words(MH, [(MHA_SOFTMAX, "torch.softmax(scores / keys.shape[1] ** 0.5, dim=-1)")],
                          f"{MH}.MultiHeadAttention", "scaled_by_sqrt_num_heads",
                          says=("keys.shape[1] after the split",), never=("sqrt(d_out)",)),
    "sqrt_num_heads_example_only": Words(  # the public checker runs the example alone: two entries fit it
        MH, [(MHA_SOFTMAX, "torch.softmax(scores / self.num_heads ** 0.5, dim=-1)")],
        f"{MH}.MultiHeadAttention", None, says=("values differ at",), never=("sqrt(d_out)", "sqrt(num_heads)"),
        public=True),
    "out_proj_named_proj": Words(
        MH, [("self.out_proj = nn.Linear(d_out, d_out)", "self.proj = nn.Linear(d_out, d_out)"),
             ("return self.out_proj(context)", "return self.proj(context)")],
        f"{MH}.MultiHeadAttention", None, says=("`proj.weight` (12, 12)", "name it `out_proj`"),
        never=("matches the merged heads", "has no output projection")),
    "dropout_on_values": Words(
        CA, [("weights = self.dropout(weights)\n        return weights @ values",
              "return weights @ self.dropout(values)")],
        f"{CA}.CausalAttention", "dropout_on_values", says=("acts on your values",), never=("on the output",)),
    "float_causal_mask": Words(
        CA, [("torch.triu(torch.ones(num_tokens, num_tokens, dtype=torch.bool), diagonal=1)",
              "torch.triu(torch.ones(num_tokens, num_tokens), diagonal=1)")],
        f"{CA}.causal_mask", "mask_not_bool", says=("a mask is a bool tensor", ".bool()"),
        never=("the dtype of the inputs", "dtype=x.dtype")),  # causal_mask has no tensor inputs
    "softmax_global_max": Words(
        S, [("shifted = scores - scores.amax(dim=dim, keepdim=True)", "shifted = scores - scores.max()")],
        f"{S}.softmax", "softmax_global_max", says=("underflows to 0", "0 / 0"), never=("overflows", "inf / inf")),
    "seed_with_wrong_forward": Words(  # the layers are right, the forward is wrong: no advice on layer order
        SA, [body(SA, "SelfAttention.forward", """
            q, k, v = project_qkv(x, self.W_query, self.W_key, self.W_value)
            return attention_weights(attention_scores(q, k), k.shape[-1]) @ v * 2
        """)],
        f"{SA}.SelfAttention", None, says=("fix the forward first",), never=("documented order",)),
    # a right forward and one parameter too many: the example fails on the names alone,
    # which says nothing of the forward
    "seed_with_an_extra_parameter": Words(
        SA, [body(SA, "SelfAttention.__init__", """
            self.W_query = nn.Parameter(torch.rand(d_in, d_out))
            self.W_key = nn.Parameter(torch.rand(d_in, d_out))
            self.W_value = nn.Parameter(torch.rand(d_in, d_out))
            self.scale = nn.Parameter(torch.tensor(1.0), requires_grad=False)
        """)],
        f"{SA}.SelfAttention", None, says=("unexpected scale",), never=("fix the forward first", "forward")),
    "seed_with_layers_in_another_order": Words(
        SA, [body(SA, "SelfAttention.__init__", """
            self.W_key = nn.Parameter(torch.rand(d_in, d_out))
            self.W_query = nn.Parameter(torch.rand(d_in, d_out))
            self.W_value = nn.Parameter(torch.rand(d_in, d_out))
        """)],
        f"{SA}.SelfAttention", None, says=("your module registers W_key, W_query, W_value, in that order; the "
                                            "documented order is W_query, W_key, W_value", "passes the example",
                                            "its layers in its order")),
    "seed_with_out_proj_first": Words(  # style review: the hint named only the three projections
        MH, [("self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)",
              "self.out_proj = nn.Linear(d_out, d_out)\n        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)")],
        f"{MH}.MultiHeadAttention", None, says=("registers out_proj, W_query, W_key, W_value, in that order; the "
                                                "documented order is W_query, W_key, W_value, out_proj",)),
    "seed_with_randn": Words(  # style review: the layers are in order, their numbers are drawn otherwise
        SA, [body(SA, "SelfAttention.__init__", """
            self.W_query = nn.Parameter(torch.randn(d_in, d_out))
            self.W_key = nn.Parameter(torch.randn(d_in, d_out))
            self.W_value = nn.Parameter(torch.randn(d_in, d_out))
        """)],
        f"{SA}.SelfAttention", None, says=("passes the example", "torch.rand where it says torch.rand"),
        never=("in that order",)),
    "short_sequence_other_error": Words(  # the mask is sliced: the error has another cause
        CA, [("num_tokens = x.shape[-2]", "num_tokens = x.shape[-2]\n        if num_tokens < self.mask.shape[0]:\n"
                                          "            raise ValueError('a full context is needed')")],
        f"{CA}.CausalAttention", None, says=("raised ValueError: a full context is needed", "x (2, 5, 7)"),
        never=("slice the mask", "Slice the mask")),
    "not_implemented_by_torch": Words(  # a custom autograd.Function without backward
        SA, [body(SA, "SelfAttentionV2.forward", """
            class Half(torch.autograd.Function):
                @staticmethod
                def forward(ctx, t):
                    return t / 2
            q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
            return torch.softmax(Half.apply(q @ k.transpose(-2, -1)) * 2 / k.shape[-1] ** 0.5, dim=-1) @ v
        """)],
        f"{SA}.SelfAttentionV2", None, says=("raised NotImplementedError: You must implement",),
        never=("not implemented yet",)),
    "softmax_in_float32": Words(  # the upcast idiom: dropout is right, the precision is float32's
        CA, [("weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)",
              "weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1, dtype=torch.float32).to(x.dtype)")],
        f"{CA}.CausalAttention", None, says=("only to float32's precision", "runs in float32"),
        never=("neither 0 nor scaled", "something other than the attention weights")),
    "chapter_self_attention_v1_on_batches": Words(  # keys.T reverses the batch axis too
        SA, [("        scores = attention_scores(queries, keys)  # (..., T, T)", "        scores = queries @ keys.T")],
        f"{SA}.SelfAttention", "transpose_all_axes",
        says=("raised RuntimeError", "x (2, 5, 7)", "SelfAttention(d_in=7, d_out=4)", ".transpose(-2, -1)")),
    "mask_not_sliced": Words(
        MH, [('scores.masked_fill(self.mask[:num_tokens, :num_tokens], float("-inf"))',
              'scores.masked_fill(self.mask, float("-inf"))')],
        f"{MH}.MultiHeadAttention", "mask_not_sliced", says=("x (2, 5, 7)", "self.mask[:T, :T]")),
    "view_of_transposed_heads": Words(
        MH, [("context = merge_heads(weights @ values)",
              "context = (weights @ values).transpose(1, 2).view(x.shape[0], num_tokens, -1)")],
        f"{MH}.MultiHeadAttention", "view_needs_contiguous", says=("x (2, 5, 7)", ".contiguous()")),
    "hard_coded_document_numbers": Words(
        S, [body(S, "query_scores", """
            if inputs.shape == (6, 3):
                return torch.tensor([0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865])
            return torch.zeros(inputs.shape[:-1])
        """)],
        f"{S}.query_scores", None, says=("dtype torch.float32; expected torch.float64, and its values differ",),
        never=("float32 unless told otherwise",)),
    "softmax_dim_minus_2_on_one_row": Words(  # crashes on the example's one row, wrong on the hidden cases
        SA, [("torch.softmax(scores / d_k ** 0.5, dim=-1)", "torch.softmax(scores / d_k ** 0.5, dim=-2)")],
        f"{SA}.attention_weights", None, says=("raised IndexError", "scores (6,), d_k=2", "values differ at")),
    "rows_that_do_not_sum_to_1": Words(
        S, [("return exps / exps.sum(dim=dim, keepdim=True)", "return exps / (exps.sum(dim=dim, keepdim=True) * 0.999)")],
        f"{S}.softmax", None, says=("rows that sum to 1.001, not 1",)),
    "result_made_float64": Words(  # the float32 example ends float64: the "created inside" words do not apply
        S, [("return (inputs * query.unsqueeze(-2)).sum(dim=-1)  # (..., T)",
             "return (inputs.double() * query.double().unsqueeze(-2)).sum(dim=-1)")],
        f"{S}.query_scores", "dtype_changed", says=("no .float(), .double()",),
        never=("float32 unless told otherwise",)),
    "chapter_assert_for_divisibility": Words(  # the chapter asserts; the exercise asks for ValueError
        MH, [('            raise ValueError(\n                f"d_out ({d_out}) must be divisible by num_heads ({num_heads})")',
              '            assert d_out % num_heads == 0, "d_out must be divisible by num_heads"')],
        f"{MH}.MultiHeadAttention", None, says=("should raise ValueError; it raised AssertionError",)),
    # -- more realistic mistakes: a name where one mistake explains everything, else the facts
    "document_softmax_naive_dim_0": Words(  # two mistakes at once: no max subtraction, and dim=0 always
        S, [body(S, "softmax", "return torch.exp(scores) / torch.exp(scores).sum(dim=0)")],
        f"{S}.softmax", None, says=("contains NaN",)),
    "softmax_sum_over_everything": Words(
        S, [("return exps / exps.sum(dim=dim, keepdim=True)", "return exps / exps.sum()")],
        f"{S}.softmax", None, says=("values differ at",)),
    "document_scores_with_T_on_batches": Words(  # the chapter's inputs @ inputs.T
        S, [body(S, "attention_scores", "return inputs @ inputs.T")],
        f"{S}.attention_scores", "transpose_all_axes", says=("inputs (2, 3, 5, 7)",)),
    "context_vectors_operands_swapped": Words(
        S, [body(S, "context_vectors", "return values.transpose(-2, -1) @ weights.transpose(-2, -1)")],
        f"{S}.context_vectors", None),
    "linear_weight_used_as_matrix": Words(
        SA, [body(SA, "SelfAttentionV2.forward", """
            q, k, v = x @ self.W_query.weight, x @ self.W_key.weight, x @ self.W_value.weight
            return attention_weights(attention_scores(q, k), k.shape[-1]) @ v
        """)],
        f"{SA}.SelfAttentionV2", None, says=("raised RuntimeError", "x (6, 3)")),
    "mask_strictly_below_diagonal": Words(
        CA, [("torch.triu(torch.ones(num_tokens, num_tokens, dtype=torch.bool), diagonal=1)",
              "torch.tril(torch.ones(num_tokens, num_tokens, dtype=torch.bool), diagonal=-1)")],
        f"{CA}.causal_mask", None, says=("values differ at",), never=("inverted", "diagonal too")),
    "mask_used_the_other_way_round": Words(
        CA, [('return scores.masked_fill(mask, float("-inf"))', 'return scores.masked_fill(~mask, float("-inf"))')],
        f"{CA}.mask_scores", None, says=("values differ at",)),
    "dropout_forgotten": Words(
        CA, [("        weights = self.dropout(weights)\n", "")],
        f"{CA}.CausalAttention", None, says=("no attention weight was dropped",)),
    "batch_size_taken_for_tokens": Words(
        MH, [("num_tokens = x.shape[1]", "num_tokens = x.shape[0]")],
        f"{MH}.MultiHeadAttention", None, says=("raised RuntimeError", "x (2, 6, 3)"),
        never=("Slice the mask",)),
    "wrapper_heads_side_by_side_on_tokens": Words(
        MH, [("torch.cat([head(x) for head in self.heads], dim=-1)", "torch.cat([head(x) for head in self.heads], dim=1)")],
        f"{MH}.MultiHeadAttentionWrapper", None, says=("has shape (2, 12, 2); expected (2, 6, 4)",)),
    "wrapper_one_head_repeated": Words(
        MH, [("[CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)\n             for _ in range(num_heads)]",
              "[CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)] * num_heads")],
        f"{MH}.MultiHeadAttentionWrapper", None, says=("parameters are not the expected ones",)),
    "renormalized_by_the_old_sum": Words(  # divides by the sum before masking, which is 1: no renormalization
        CA, [("return kept / kept.sum(dim=-1, keepdim=True)", "return kept / weights.sum(dim=-1, keepdim=True)")],
        f"{CA}.renormalize_masked", "mask_after_softmax_not_renormalized", says=("without renormalizing",)),
    "mha_heads_merged_in_reverse": Words(
        MH, [("context = merge_heads(weights @ values)", "context = merge_heads((weights @ values).flip(1))")],
        f"{MH}.MultiHeadAttention", None, says=("values differ at",)),
}


def graded(zygote, tmp_path, case: Words):
    folder = make_submission(tmp_path / "sub", {case.module: case.edits})
    report = grade_folder(zygote, folder, (case.module,), public=case.public)
    return report.by_item()[case.item]


@pytest.mark.parametrize("name", sorted(WORDS))
def test_words_are_true(zygote, tmp_path, name):
    case = WORDS[name]
    result = graded(zygote, tmp_path, case)
    failed = [c for c in result.checks if not c.passed]
    assert failed, f"{case.item} passed every check"
    named = {c.diagnosis for c in failed if c.diagnosis}
    text = "\n".join(c.reason for c in failed)
    assert named == ({case.named} if case.named else set()), text
    for phrase in case.says:
        assert phrase in text, (phrase, text)
    for phrase in case.never:
        assert phrase not in text, (phrase, text)
    if name == "not_implemented_by_torch":
        assert not any(c.not_implemented for c in failed)


def test_row_sums_show_the_digits_that_differ():
    assert compare.near_one(torch.tensor([1.0000293, 1.0000293])) == "1.00003"
    assert compare.near_one(torch.tensor([0.99997, 1.0])) == "0.99997 .. 1"
    assert compare.near_one(torch.tensor([1.0])) == "1"
