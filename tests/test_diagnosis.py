"""Every catalogued misconception is named when a submission makes it.

Each case is the reference solution with one hand-written edit that makes the
mistake the way a student would write it (not the way the catalogue computes
it), the item that must carry the diagnosis, and a phrase of the reason,
written here by hand.
"""

from __future__ import annotations

import pytest
import torch
from mutants import mutant

from attnkit.judge import reference
from attnkit.judge.diagnosis import BY_ID, ENTRIES, Call, Case, variants
from attnkit.judge.diagnosis.conclude import fits_every_case
from attnkit.judge.engine import grade
from attnkit.intake import from_folder

S, SA, CA, MH = "simplified_attention", "self_attention", "causal_attention", "multihead_attention"
CA_SOFTMAX = "weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)"
CA_MASK = "scores = mask_scores(scores, self.mask[:num_tokens, :num_tokens])"
MH_MASK = 'scores = scores.masked_fill(self.mask[:num_tokens, :num_tokens], float("-inf"))'

# id -> [(module, edits, item, phrase)]
CASES = {
    "softmax_no_max_subtraction": [
        (S, [("shifted = scores - scores.amax(dim=dim, keepdim=True)", "shifted = scores")],
         f"{S}.softmax", "Subtract the maximum")],
    "softmax_global_max": [
        (S, [("shifted = scores - scores.amax(dim=dim, keepdim=True)", "shifted = scores - scores.max()")],
         f"{S}.softmax", "0 / 0 is NaN"),
        (SA, [("return torch.softmax(scores / d_k ** 0.5, dim=-1)",
               "e = torch.exp(scores / d_k ** 0.5 - (scores / d_k ** 0.5).max())\n"
               "    return e / e.sum(dim=-1, keepdim=True)")],
         f"{SA}.attention_weights", "one maximum of the whole tensor")],
    "normalized_over_wrong_axis": [
        (S, [("shifted = scores - scores.amax(dim=dim, keepdim=True)",
              "shifted = scores - scores.amax(dim=-1, keepdim=True)"),
             ("exps / exps.sum(dim=dim, keepdim=True)", "exps / exps.sum(dim=-1, keepdim=True)")],
         f"{S}.softmax", "along axis 2 (the last) instead of axis 0"),
        # always axis 0 (a newcomer's review): its rows of +-1000 then fail the stability check too
        (S, [("shifted = scores - scores.amax(dim=dim, keepdim=True)",
              "shifted = scores - scores.amax(dim=0, keepdim=True)"),
             ("exps / exps.sum(dim=dim, keepdim=True)", "exps / exps.sum(dim=0, keepdim=True)")],
         f"{S}.softmax", "along axis 0 instead of axis"),
        (SA, [("torch.softmax(scores / d_k ** 0.5, dim=-1)", "torch.softmax(scores / d_k ** 0.5, dim=0)")],
         f"{SA}.attention_weights", "along axis 0 instead of axis 3 (the last)"),  # the document's dim=0
        (SA, [("weights = attention_weights(attention_scores(queries, keys), keys.shape[-1])",
               "weights = torch.softmax(attention_scores(queries, keys) / keys.shape[-1] ** 0.5, dim=-2)")],
         f"{SA}.SelfAttentionV2", "over the queries, down each column")],
    "scaled_by_d_k": [
        (SA, [("torch.softmax(scores / d_k ** 0.5, dim=-1)", "torch.softmax(scores / d_k, dim=-1)")],
         f"{SA}.attention_weights", "dividing the scores by d_k itself"),
        (CA, [(CA_SOFTMAX, "weights = torch.softmax(scores / keys.shape[-1], dim=-1)")],
         f"{CA}.CausalAttention", "Scale by sqrt(d_k)")],
    "square_root_as_power_one_half": [  # style review: Python's precedence, d_k ** 1/2 == d_k / 2
        (SA, [("torch.softmax(scores / d_k ** 0.5, dim=-1)", "torch.softmax(scores / d_k ** 1/2, dim=-1)")],
         f"{SA}.attention_weights", "dividing the scores by 2 * d_k: ** binds tighter than /"),
        (SA, [("return torch.softmax(scores / d_k ** 0.5, dim=-1)",
               "scale = d_k ** 1/2\n    return torch.softmax(scores / scale, dim=-1)")],
         f"{SA}.attention_weights", "dividing the scores by d_k / 2"),
        (CA, [(CA_SOFTMAX, "weights = torch.softmax(scores / keys.shape[-1] ** 1/2, dim=-1)")],
         f"{CA}.CausalAttention", "d_k ** 0.5")],
    "not_scaled": [
        (SA, [("torch.softmax(scores / d_k ** 0.5, dim=-1)", "torch.softmax(scores, dim=-1)")],
         f"{SA}.attention_weights", "unscaled scores"),
        (MH, [("torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)", "torch.softmax(scores, dim=-1)")],
         f"{MH}.MultiHeadAttention", "unscaled scores")],
    "scores_scaled_too_early": [
        (SA, [("return queries @ keys.transpose(-2, -1)  # (..., T_q, d_k) @ (..., d_k, T_k)",
               "return queries @ keys.transpose(-2, -1) / keys.shape[-1] ** 0.5")],
         f"{SA}.attention_scores", "divided by sqrt(d_k) = ")],
    "scaled_by_sqrt_d_out": [
        (MH, [("torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)",
               "torch.softmax(scores / (self.num_heads * self.head_dim) ** 0.5, dim=-1)")],
         f"{MH}.MultiHeadAttention", "sqrt(head_dim)")],
    "scaled_by_sqrt_num_heads": [
        (MH, [("torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)",
               "torch.softmax(scores / self.num_heads ** 0.5, dim=-1)")],
         f"{MH}.MultiHeadAttention", "by sqrt(num_heads)"),
        (MH, [("torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)",
               "torch.softmax(scores / keys.shape[1] ** 0.5, dim=-1)")],  # the document's d_k = keys.shape[1]
         f"{MH}.MultiHeadAttention", "keys.shape[1] after the split")],
    "mask_hides_diagonal": [
        (CA, [("dtype=torch.bool), diagonal=1)", "dtype=torch.bool), diagonal=0)")],
         f"{CA}.causal_mask", "also hides the diagonal"),
        (MH, [(MH_MASK, 'scores = scores.masked_fill(torch.ones(num_tokens, num_tokens, dtype=torch.bool)'
                        '.triu(), float("-inf"))')],
         f"{MH}.MultiHeadAttention", "cannot attend to itself")],
    "mask_inverted": [
        (CA, [("torch.triu(torch.ones(num_tokens, num_tokens, dtype=torch.bool), diagonal=1)",
               "torch.tril(torch.ones(num_tokens, num_tokens, dtype=torch.bool))")],
         f"{CA}.causal_mask", "inverted")],
    "mask_not_bool": [
        (CA, [("torch.triu(torch.ones(num_tokens, num_tokens, dtype=torch.bool), diagonal=1)",
               "torch.triu(torch.ones(num_tokens, num_tokens), diagonal=1)")],  # the chapter's float mask
         f"{CA}.causal_mask", "a mask is a bool tensor")],
    "masked_with_zero": [
        (CA, [('return scores.masked_fill(mask, float("-inf"))', "return scores.masked_fill(mask, 0.0)")],
         f"{CA}.mask_scores", "with 0 instead of -inf"),
        (MH, [(MH_MASK, "scores = scores.masked_fill(self.mask[:num_tokens, :num_tokens], 0)")],
         f"{MH}.MultiHeadAttention", "exp(0) = 1")],
    "mask_after_softmax_not_renormalized": [
        (CA, [("return kept / kept.sum(dim=-1, keepdim=True)", "return kept")],
         f"{CA}.renormalize_masked", "without renormalizing"),
        (CA, [(CA_MASK + "\n        " + CA_SOFTMAX,
               CA_SOFTMAX + "\n        weights = weights.masked_fill(self.mask[:num_tokens, :num_tokens], 0.0)")],
         f"{CA}.CausalAttention", "no longer sum to 1")],
    "mask_missing": [
        (CA, [(CA_MASK, "pass")], f"{CA}.CausalAttention", "without the causal mask")],
    "mask_not_sliced": [
        (CA, [("mask_scores(scores, self.mask[:num_tokens, :num_tokens])", "mask_scores(scores, self.mask)")],
         f"{CA}.CausalAttention", "self.mask[:T, :T]")],
    "split_without_transpose": [
        (MH, [("    x = x.view(b, num_tokens, num_heads, d_out // num_heads)  # (b, T, h, head_dim)\n"
               "    return x.transpose(1, 2)  # (b, h, T, head_dim)",
               "    return x.view(b, num_heads, num_tokens, d_out // num_heads)")],
         f"{MH}.split_heads", "mixes tokens and heads")],
    "merge_without_transpose": [
        (MH, [("x = x.transpose(1, 2).contiguous()  # (b, T, h, head_dim)", "x = x.contiguous()")],
         f"{MH}.merge_heads", "Transpose back")],
    "merge_interleaved": [
        (MH, [("x = x.transpose(1, 2).contiguous()  # (b, T, h, head_dim)",
               "x = x.permute(0, 2, 3, 1).contiguous()")],
         f"{MH}.merge_heads", "interleave the heads")],
    "heads_permuted": [
        (MH, [("torch.cat([head(x) for head in self.heads], dim=-1)",
               "torch.cat([head(x) for head in reversed(self.heads)], dim=-1)")],
         f"{MH}.MultiHeadAttentionWrapper", "in another order")],
    "out_proj_not_applied": [
        (MH, [("        return self.out_proj(context)", "        return context")],
         f"{MH}.MultiHeadAttention", "no output projection applied")],
    "out_proj_missing": [
        (MH, [("        self.out_proj = nn.Linear(d_out, d_out)  # mixes what the heads found\n", ""),
              ("        return self.out_proj(context)", "        return context")],
         f"{MH}.MultiHeadAttention", "no output projection")],
    "head_dim_from_d_in": [
        (MH, [("self.head_dim = d_out // num_heads", "self.head_dim = d_in // num_heads")],
         f"{MH}.MultiHeadAttention", "head_dim = d_out // num_heads")],
    "dropout_on_scores": [
        (CA, [(CA_SOFTMAX + "\n        weights = self.dropout(weights)",
               "scores = self.dropout(scores)\n        " + CA_SOFTMAX)],
         f"{CA}.CausalAttention", "acts on your scores")],
    "dropout_on_values": [
        (CA, [("weights = self.dropout(weights)\n        return weights @ values",
               "return weights @ self.dropout(values)")],
         f"{CA}.CausalAttention", "acts on your values"),
        (MH, [("weights = self.dropout(weights)\n        context = merge_heads(weights @ values)",
               "context = merge_heads(weights @ self.dropout(values))")],
         f"{MH}.MultiHeadAttention", "acts on your values")],
    "dropout_on_output": [
        (CA, [("weights = self.dropout(weights)\n        return weights @ values",
               "return self.dropout(weights @ values)")],
         f"{CA}.CausalAttention", "acts on your output")],
    "dropout_in_eval_mode": [
        (CA, [("weights = self.dropout(weights)",
               "weights = torch.nn.functional.dropout(weights, self.dropout.p, training=True)")],
         f"{CA}.CausalAttention", "still active in eval mode")],
    "transpose_all_axes": [  # the chapter's own SelfAttention_v1, on batches
        (SA, [("        scores = attention_scores(queries, keys)  # (..., T, T)",
               "        scores = queries @ keys.T")],
         f"{SA}.SelfAttention", ".transpose(-2, -1)")],
    "view_needs_contiguous": [
        (MH, [("x = x.transpose(1, 2).contiguous()  # (b, T, h, head_dim)", "x = x.transpose(1, 2)")],
         f"{MH}.merge_heads", "call .contiguous()")],
    "dot_needs_vectors": [  # the chapter's loop, on batches
        (S, [("return (inputs * query.unsqueeze(-2)).sum(dim=-1)  # (..., T)",
              "return torch.stack([torch.dot(x_i, query) for x_i in inputs])")],
         f"{S}.query_scores", "torch.dot takes two 1-D vectors")],
    "returns_numpy": [
        (S, [("return weights @ values  # (..., T_q, T_k) @ (..., T_k, d) -> (..., T_q, d)",
              "return (weights @ values).numpy()")],
         f"{S}.context_vectors", "numpy.ndarray")],
    "dtype_changed": [
        (S, [("return (inputs * query.unsqueeze(-2)).sum(dim=-1)  # (..., T)",
              "return (inputs * query.unsqueeze(-2)).sum(dim=-1).float()")],
         f"{S}.query_scores", "dtype torch.float32; expected torch.float64")],
    "mixed_float_dtypes": [  # a layer converted to float64, as set_default_dtype(torch.float64) would make it
        (CA, [("self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)",
               "self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias).double()")],
         f"{CA}.CausalAttention", "the input was float32, and a tensor or layer your code made is float64")],
    "modifies_input_in_place": [
        (CA, [('return scores.masked_fill(mask, float("-inf"))', 'return scores.masked_fill_(mask, float("-inf"))')],
         f"{CA}.mask_scores", "in place")],
}

PARAMS = [pytest.param(entry_id, n, id=f"{entry_id}-{n}")
          for entry_id, cases in CASES.items() for n in range(len(cases))]


def test_every_catalogue_entry_has_a_case():
    assert sorted(CASES) == sorted(e.id for e in ENTRIES)


@pytest.mark.parametrize("entry_id, n", PARAMS)
def test_mistake_is_named(zygote, tmp_path, entry_id, n):
    module, edits, item, phrase = CASES[entry_id][n]
    entry = BY_ID[entry_id]
    assert item in entry.items or "*" in entry.items, f"the catalogue does not say {entry_id} concerns {item}"
    path = mutant(tmp_path / "sub", module, *edits)
    report = grade(zygote, from_folder(str(path.parent), (module,), str(path)))
    result = report.by_item()[item]
    failed = [c for c in result.checks if not c.passed]
    assert failed, f"{item} passed every check"
    named = {c.diagnosis for c in failed if c.diagnosis}
    assert named == {entry_id}, [(c.kind, c.reason) for c in failed]
    assert phrase in result.summary
    # The mistake costs only its own item: nothing else is blamed.
    others = [r for r in report.results if r.item.key != item and r.score != r.max_score]
    assert not others, [(r.item.key, r.summary) for r in others]


def test_two_mistakes_at_once_get_the_facts_not_a_guess(zygote, tmp_path):
    path = mutant(tmp_path / "sub", SA,
                  ("torch.softmax(scores / d_k ** 0.5, dim=-1)", "torch.softmax(scores / d_k, dim=-2)"))
    report = grade(zygote, from_folder(str(path.parent), (SA,), str(path)))
    result = report.by_item()[f"{SA}.attention_weights"]
    assert not any(c.diagnosis for c in result.checks)
    hidden = next(c for c in result.checks if c.kind == "hidden")
    assert "values differ at" in hidden.reason and "the largest difference is at" in hidden.reason
    assert "position | expected | yours" in hidden.details


def test_an_error_with_a_hint_among_other_failures_is_graded_with_its_facts(zygote, tmp_path):
    """`.T` on the keys of a batch raises, with a hint, in some checks of the item
    and not in others (the structure check sends no batch): the item is not
    named, and its reasons are each check's own. Before, settling them copied
    the error with copy.copy, which cannot rebuild it: a grader error, and the
    student's whole grade lost in grade-class."""
    from attnkit.errors import StudentError
    from attnkit.judge.diagnosis.conclude import _with_reason

    error = StudentError("exception", "RuntimeError: boom", "  File x.py", hint="a hint")
    copied = _with_reason(error, "the facts", "", "the details")
    assert type(copied) is StudentError and copied.reason == "the facts" and copied.kind == "exception"
    assert (copied.hint, error.reason) == ("a hint", error.reason)  # the original is left as it was
    path = mutant(tmp_path / "sub", CA, ("scores = queries @ keys.transpose(-2, -1)  # (b, T, T)",
                                         "scores = queries @ keys.T"))
    report = grade(zygote, from_folder(str(path.parent), (CA,), str(path)))
    result = report.by_item()[f"{CA}.CausalAttention"]
    assert result.score == 0 and "raised RuntimeError" in result.summary
    assert {r.item.key: r.score for r in report.results if r.score != r.max_score} == {f"{CA}.CausalAttention": 0}


def test_the_solutions_get_no_diagnosis(zygote):
    report = grade(zygote, from_folder(str(reference.solutions_dir()), tuple(), "solutions"))
    assert report.score == report.max_score
    report = grade(zygote, from_folder(str(reference.solutions_dir()), (S, SA, CA, MH), "solutions"))
    assert report.score == 100
    assert not any(c.diagnosis or c.pictures for r in report.results for c in r.checks)


# -- the variants themselves

def _random_state(item, gen, *args, **kwargs):
    module = reference.solution(item)(*args, **kwargs)
    return {n: torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5
            for n, p in module.named_parameters()}


@pytest.mark.parametrize("item, args, kwargs", [
    (f"{SA}.SelfAttention", (5, 4), {}),
    (f"{SA}.SelfAttentionV2", (5, 4), {"qkv_bias": True}),
    (f"{CA}.CausalAttention", (5, 4, 6, 0.0), {"qkv_bias": True}),
    (f"{MH}.MultiHeadAttentionWrapper", (5, 4, 6, 0.0, 3), {}),
    (f"{MH}.MultiHeadAttention", (5, 12, 6, 0.0, 3), {"qkv_bias": True}),
])
def test_variants_with_default_knobs_are_the_reference(item, args, kwargs):
    """A variant differs from the reference by its knob alone."""
    gen = torch.Generator().manual_seed(7)
    state = _random_state(item, gen, *args, **kwargs)
    x = torch.randn(2, 6, 5, generator=gen, dtype=torch.float64)
    want = reference.reference_module(item, state, *args, **kwargs)(x).detach()
    init = variants.init_arguments(item, args, kwargs)
    torch.testing.assert_close(variants.module_forward(item, state, init, x), want)


def test_init_parameters_follow_the_reference_signatures():
    import inspect

    for item, names in variants.INIT_PARAMS.items():
        assert tuple(inspect.signature(reference.solution(item)).parameters) == names


def test_a_mistake_that_changes_nothing_here_is_no_evidence():
    """With d_k = 1, scaling by d_k, by sqrt(d_k) or not at all agree: no diagnosis."""
    scores = torch.randn(3, 4, dtype=torch.float64)
    right = torch.softmax(scores, -1)
    wrong = right.flip(-1)
    call = Call(f"{SA}.attention_weights", (scores, 1))
    for actual in (wrong, right):
        case = Case("hidden", call, actual, right, 1e-9, 1e-6, passed=actual is right)
        assert not any(fits_every_case(e, call.item, [case]) for e in ENTRIES)
