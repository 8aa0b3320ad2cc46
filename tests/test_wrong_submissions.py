"""Hand-written wrong submissions, one per common mistake: each loses exactly
the points of the stage it breaks, and nothing elsewhere.

Each submission is the reference solution with one edit. The expected scores
are written out here by hand from the points table, not taken from the grader,
and so is the misconception the broken item must be named with.
"""

import pytest
from conftest import ASSIGNMENTS, full_marks, grade_folder, make_submission, scores

S, SA, CA, MH = "simplified_attention", "self_attention", "causal_attention", "multihead_attention"

CASES = {
    "softmax_without_max_subtraction": (
        {S: [("shifted = scores - scores.amax(dim=dim, keepdim=True)", "shifted = scores")]},
        {f"{S}.softmax": 3}, "softmax_no_max_subtraction"),  # loses stability (2)
    "softmax_ignores_dim": (
        {S: [("shifted = scores - scores.amax(dim=dim, keepdim=True)",
              "shifted = scores - scores.amax(dim=-1, keepdim=True)"),
             ("exps / exps.sum(dim=dim, keepdim=True)", "exps / exps.sum(dim=-1, keepdim=True)")]},
        {f"{S}.softmax": 3}, "normalized_over_wrong_axis"),  # loses hidden (2): the document's cases use the last dim
    "softmax_modifies_its_input": (
        {S: [("shifted = scores - scores.amax(dim=dim, keepdim=True)",
              "scores -= scores.amax(dim=dim, keepdim=True)\n    shifted = scores")]},
        {f"{S}.softmax": 0}, "modifies_input_in_place"),
    "context_vectors_returns_numpy": (
        {S: [("return weights @ values  # (..., T_q, T_k) @ (..., T_k, d) -> (..., T_q, d)",
              "return (weights @ values).numpy()")]},
        {f"{S}.context_vectors": 0}, "returns_numpy"),
    "query_scores_changes_dtype": (
        {S: [("return (inputs * query.unsqueeze(-2)).sum(dim=-1)  # (..., T)",
              "return (inputs * query.unsqueeze(-2)).sum(dim=-1).float()")]},
        {f"{S}.query_scores": 1}, "dtype_changed"),  # the float32 example passes, float64 hidden cases fail
    "scaling_by_d_k": (
        {SA: [("return torch.softmax(scores / d_k ** 0.5, dim=-1)", "return torch.softmax(scores / d_k, dim=-1)")]},
        {f"{SA}.attention_weights": 0}, "scaled_by_d_k"),
    "no_scaling": (
        {SA: [("return torch.softmax(scores / d_k ** 0.5, dim=-1)", "return torch.softmax(scores, dim=-1)")]},
        {f"{SA}.attention_weights": 0}, "not_scaled"),
    "mask_includes_the_diagonal": (
        {CA: [("dtype=torch.bool), diagonal=1)", "dtype=torch.bool), diagonal=0)")]},
        {f"{CA}.causal_mask": 0}, "mask_hides_diagonal"),
    "masking_with_zero": (
        {CA: [('return scores.masked_fill(mask, float("-inf"))', "return scores.masked_fill(mask, 0.0)")]},
        {f"{CA}.mask_scores": 0}, "masked_with_zero"),
    "renormalize_forgets_to_renormalize": (
        {CA: [("return kept / kept.sum(dim=-1, keepdim=True)", "return kept")]},
        {f"{CA}.renormalize_masked": 0}, "mask_after_softmax_not_renormalized"),
    "dropout_on_the_scores": (
        {CA: [("        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)\n"
               "        weights = self.dropout(weights)\n        return weights @ values  # (b, T, d_out)",
               "        scores = self.dropout(scores)\n"
               "        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)\n"
               "        return weights @ values  # (b, T, d_out)")]},
        {f"{CA}.CausalAttention": 10}, "dropout_on_scores"),  # loses dropout (3)
    "dropout_active_in_eval_mode": (
        {CA: [("        weights = self.dropout(weights)\n        return weights @ values  # (b, T, d_out)",
               "        weights = torch.nn.functional.dropout(weights, self.dropout.p, training=True)\n"
               "        return weights @ values  # (b, T, d_out)")]},
        {f"{CA}.CausalAttention": 7}, "dropout_in_eval_mode"),  # loses hidden (3, run with dropout 0.3) and dropout (3)
    "mask_not_sliced": (
        {CA: [("mask_scores(scores, self.mask[:num_tokens, :num_tokens])", "mask_scores(scores, self.mask)")]},
        {f"{CA}.CausalAttention": 11}, "mask_not_sliced"),  # loses short_sequence (2)
    "split_heads_without_transpose": (
        {MH: [("    x = x.view(b, num_tokens, num_heads, d_out // num_heads)  # (b, T, h, head_dim)\n"
               "    return x.transpose(1, 2)  # (b, h, T, head_dim)",
               "    return x.view(b, num_heads, num_tokens, d_out // num_heads)")]},
        {f"{MH}.split_heads": 0}, "split_without_transpose"),
    "merge_heads_without_transpose": (
        {MH: [("x = x.transpose(1, 2).contiguous()  # (b, T, h, head_dim)", "x = x.contiguous()")]},
        {f"{MH}.merge_heads": 0}, "merge_without_transpose"),
    "missing_out_proj": (
        {MH: [("        self.out_proj = nn.Linear(d_out, d_out)  # mixes what the heads found\n", ""),
              ("        return self.out_proj(context)", "        return context")]},
        {f"{MH}.MultiHeadAttention": 0}, "out_proj_missing"),
    "multihead_dropout_on_the_scores": (
        {MH: [("        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)\n"
               "        weights = self.dropout(weights)\n",
               "        scores = self.dropout(scores)\n"
               "        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)\n")]},
        {f"{MH}.MultiHeadAttention": 14}, "dropout_on_scores"),  # loses dropout (1)
    "head_dim_from_d_in": (
        {MH: [("self.head_dim = d_out // num_heads", "self.head_dim = d_in // num_heads")]},
        {f"{MH}.MultiHeadAttention": 13}, "head_dim_from_d_in"),  # loses structure (2)
}


def the_one_failure(report, modules: tuple, item: str, left: int, kind: str):
    """``item`` scores ``left`` and every other item of ``modules`` full marks, one
    check of ``item`` failed, and it is the ``kind`` check: that check's result."""
    assert scores(report) == dict(full_marks(modules), **{item: left})
    (failed,) = [c for c in report.by_item()[item].checks if not c.passed]
    assert failed.kind == kind
    return failed


@pytest.mark.parametrize("name", sorted(CASES))
def test_wrong_submission_loses_exactly_its_stage(zygote, tmp_path, name):
    edits, changed, named = CASES[name]
    modules = tuple(edits)
    folder = make_submission(tmp_path / name, edits)
    expected = dict(full_marks(modules), **changed)
    report = grade_folder(zygote, folder, modules)
    assert scores(report) == expected
    (item,) = changed
    assert {c.diagnosis for c in report.by_item()[item].checks if not c.passed} - {""} == {named}


@pytest.mark.parametrize("linear", ["nn.Linear", "nn.modules.linear.NonDynamicallyQuantizableLinear"])
def test_an_out_proj_without_bias_is_said_so_whatever_linear_it_is(zygote, tmp_path, linear):
    """A subclass of nn.Linear (torch's own MultiheadAttention keeps out_proj as one) is
    read as nn.Linear is: with a bias it is right (test_alternatives), without one it is not."""
    folder = make_submission(tmp_path / "s", {MH: [("self.out_proj = nn.Linear(d_out, d_out)",
                                                    f"self.out_proj = {linear}(d_out, d_out, bias=False)")]})
    report = grade_folder(zygote, folder, (MH,))
    (structure,) = [c for c in report.by_item()[f"{MH}.MultiHeadAttention"].checks if c.kind == "structure"]
    assert not structure.passed and "out_proj has no bias" in structure.reason, structure.reason


@pytest.mark.parametrize("own_kind", [False, True])
def test_a_dropout_with_a_fixed_p_is_said_so_whatever_dropout_it_is(zygote, tmp_path, own_kind):
    """A subclass of nn.Dropout, the student's own, is read as nn.Dropout is: its p
    the dropout argument, right (test_alternatives), or not."""
    edits = [("self.dropout = nn.Dropout(dropout)",
              f"self.dropout = {'AttentionDropout' if own_kind else 'nn.Dropout'}(0.5)")]
    if own_kind:
        edits.append(("class CausalAttention(nn.Module):",
                      "class AttentionDropout(nn.Dropout):\n    pass\n\n\nclass CausalAttention(nn.Module):"))
    report = grade_folder(zygote, make_submission(tmp_path / "s", {CA: edits}), (CA,))
    (structure,) = [c for c in report.by_item()[f"{CA}.CausalAttention"].checks if c.kind == "structure"]
    assert not structure.passed and "self.dropout has p = 0.5" in structure.reason, structure.reason


@pytest.mark.parametrize("public", [True, False])
def test_a_stage_that_imports_a_broken_one_says_why_that_one_broke(zygote, tmp_path, public):
    """From a review of the student-facing checks: with no reference to stand in (the
    public checker), a broken causal_attention.py showed in stage 4 only as "cannot
    import name 'CausalAttention' from 'causal_attention' (unknown location)", about
    an empty placeholder; the real cause appeared nowhere when stage 4 was checked
    alone. Stage 4's reason now says it. With the reference, stage 4 is graded."""
    folder = make_submission(tmp_path / "s", {CA: [("import torch\n", "import torch\nimport einops_not_here\n")]})
    from attnkit.intake import from_folder
    from attnkit.judge.engine import grade

    report = grade(zygote, from_folder(str(folder), (MH,), str(folder)), None, public=public)
    mha = report.by_item()[f"{MH}.MultiHeadAttention"]
    if public:
        assert mha.score == 0
        reason = " ".join(c.reason for c in mha.checks if not c.passed)
        assert ("causal_attention.py, which it imports, could not be imported either" in reason
                and "No module named 'einops_not_here'" in reason), reason
    else:
        assert mha.score == mha.max_score


def test_renormalize_masked_that_ignores_its_mask_loses_the_hidden_check(zygote, tmp_path):
    """``weights.tril()`` fakes the causal mask, the only one the example and the
    masking check pass; the docstring takes any boolean mask (style review)."""
    folder = make_submission(tmp_path / "s", {CA: [("kept = weights * (~mask)  # masked positions become exactly 0",
                                                    "kept = weights.tril()")]})
    report = grade_folder(zygote, folder, (CA,))
    failed = the_one_failure(report, (CA,), f"{CA}.renormalize_masked", 2, "hidden")  # hidden: 2 points
    assert "arguments of shape (7, 7), (7, 7): values differ" in failed.reason


CUT_GRAPH = {  # right in value, cut from the autograd graph: the modules that call them could not train
    "mask_scores_detaches": ({CA: [('return scores.masked_fill(mask, float("-inf"))',
                                    'masked = scores.clone().detach()\n'
                                    '    masked[mask.expand_as(masked)] = float("-inf")\n    return masked')]},
                             f"{CA}.mask_scores", 3, "scores"),
    "attention_weights_under_no_grad": ({SA: [("def attention_weights(", "@torch.no_grad()\ndef attention_weights(")]},
                                        f"{SA}.attention_weights", 2, "scores"),
    "causal_mask_under_inference_mode": ({CA: [("def causal_mask(", "@torch.inference_mode()\ndef causal_mask(")]},
                                         f"{CA}.causal_mask", 1, None),  # third review: 100/100
    # the small masks made once, under inference mode: only sizes up to 12 (fourth review: 100/100)
    "causal_masks_cached_under_inference_mode": ({CA: [("def causal_mask(", (
        "with torch.inference_mode():\n"
        "    _MASKS = {n: torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1) for n in range(1, 13)}\n\n\n"
        "def causal_mask(")), ("    ### BEGIN SOLUTION\n    return torch.triu(", (
        "    ### BEGIN SOLUTION\n    if num_tokens in _MASKS:\n        return _MASKS[num_tokens]\n"
        "    return torch.triu("))]}, f"{CA}.causal_mask", 1, None),
    "merge_heads_through_numpy": ({MH: [("x = x.transpose(1, 2).contiguous()  # (b, T, h, head_dim)",
                                         "x = torch.from_numpy(x.detach().numpy()).transpose(1, 2).contiguous()")]},
                                  f"{MH}.merge_heads", 1, "x"),
}


@pytest.mark.parametrize("name", sorted(CUT_GRAPH))
def test_a_stage_that_cuts_the_gradient_loses_its_hidden_check(zygote, tmp_path, name):
    """The modules' own checks stand in for the stages they call, so only the
    stage's check can see this (style review: 100/100 before)."""
    edits, item, left, argument = CUT_GRAPH[name]
    folder = make_submission(tmp_path / name, edits)
    report = grade_folder(zygote, folder, tuple(edits))
    failed = the_one_failure(report, tuple(edits), item, left, "hidden")
    assert failed.reason.startswith(f"no gradient flows back from the result to `{argument}`" if argument else
                                    "the result is right, but an inference tensor (made under torch.inference_mode())")


def test_an_in_place_dropout_that_breaks_training_loses_the_dropout_check(zygote, tmp_path):
    """nn.Dropout(inplace=True) on the weights overwrites the softmax output its
    backward needs: right in every forward, untrainable (style review: 100/100)."""
    edits = {m: [("self.dropout = nn.Dropout(dropout)", "self.dropout = nn.Dropout(dropout, inplace=True)")]
             for m in (CA, MH)}
    report = grade_folder(zygote, make_submission(tmp_path / "s", edits), (CA, MH))
    assert scores(report) == dict(full_marks((CA, MH)), **{f"{CA}.CausalAttention": 10,  # dropout: 3
                                                              f"{MH}.MultiHeadAttention": 14})  # dropout: 1
    for item in (f"{CA}.CausalAttention", f"{MH}.MultiHeadAttention"):
        (failed,) = [c for c in report.by_item()[item].checks if not c.passed]
        assert failed.kind == "dropout"
        assert failed.reason.startswith("in train mode, backpropagating through the module fails: raised "
                                        "RuntimeError: one of the variables needed for gradient computation "
                                        "has been modified by an inplace operation")


UNPRINTABLE = ("class Unprintable(Exception):\n"
               "    def __str__(self):\n"
               "        return self.expectd  # a typo: str() of it raises\n\n\n"
               "class FailingBackward(torch.autograd.Function):\n"
               "    @staticmethod\n"
               "    def forward(ctx, w):\n"
               "        return w.clone()\n\n"
               "    @staticmethod\n"
               "    def backward(ctx, g):\n"
               "        raise Unprintable()\n\n\n")
TRAIN_MODE_FAILS = {  # code before the dropout of CausalAttention.forward -> what the dropout check says
    "always": ("        if self.training and self.dropout.p > 0:\n"
               "            raise RuntimeError('no dropout in this house')\n",
               "raised RuntimeError: no dropout in this house"),
    # the first train-mode forward of the process only (review: told as the backward's)
    "once": ("        if self.training and self.dropout.p > 0 and not _FAILED:\n"
             "            _FAILED.append(1)\n"
             "            raise RuntimeError('first train call fails')\n", "raised RuntimeError: first train call fails"),
    # 40 KB printed each time: run twice, it passed the 64 KiB output limit (review: 0 for the item)
    "loud": ("        if self.training and self.dropout.p > 0:\n"
             "            print('x' * 40000)\n"
             "            raise RuntimeError('prints then fails')\n", "raised RuntimeError: prints then fails"),
    # an exception whose __str__ raises ended the child: 0 for the item, "ended unexpectedly" (review)
    "unprintable": ("        if self.training and self.dropout.p > 0:\n"
                    "            raise Unprintable()\n", "raised Unprintable: <Unprintable whose str() raised>"),
    "unprintable_backward": ("        if self.training and self.dropout.p > 0:\n"
                             "            weights = FailingBackward.apply(weights)\n",
                             "in train mode, backpropagating through the module fails: raised Unprintable: "
                             "<Unprintable whose str() raised>"),
}


@pytest.mark.parametrize("name", sorted(TRAIN_MODE_FAILS))
def test_a_train_mode_failure_is_told_as_the_forwards_or_the_backwards(zygote, tmp_path, name):
    """The dropout check's one request runs the train-mode forward, then a forward
    and a backward: an error of the first ends it and is the forward's error,
    charged once to the item's time and output; one of the backward comes back
    beside the forward's output and is said to be the backward's."""
    code, says = TRAIN_MODE_FAILS[name]
    edits = {CA: [("        weights = self.dropout(weights)\n", code + "        weights = self.dropout(weights)\n"),
                  ("class CausalAttention(", "_FAILED = []\n\n\n" + UNPRINTABLE + "class CausalAttention(")]}
    report = grade_folder(zygote, make_submission(tmp_path / "s", edits), (CA,))
    failed = the_one_failure(report, (CA,), f"{CA}.CausalAttention", 10, "dropout")  # dropout: 3
    assert failed.reason.startswith(says)
    assert ("backpropagating" in failed.reason) == name.endswith("backward")


def test_a_module_that_keeps_the_first_calls_mask_loses_the_short_sequence_check(zygote, tmp_path):
    """Any T <= context_length, call after call: a mask sliced once and kept fits
    only the first length (style review: 13/13 before, each check built a
    fresh module and called it with one length)."""
    edits = {CA: [("mask_scores(scores, self.mask[:num_tokens, :num_tokens])",
                   "mask_scores(scores, self._first_mask(num_tokens))"),
                  ("    def forward(self, x: torch.Tensor) -> torch.Tensor:",
                   "    def _first_mask(self, n):\n"
                   "        if getattr(self, '_kept', None) is None:\n"
                   "            self._kept = self.mask[:n, :n]\n"
                   "        return self._kept\n\n"
                   "    def forward(self, x: torch.Tensor) -> torch.Tensor:")]}
    report = grade_folder(zygote, make_submission(tmp_path / "s", edits), (CA,))
    failed = the_one_failure(report, (CA,), f"{CA}.CausalAttention", 11, "short_sequence")  # short_sequence: 2
    assert failed.reason.startswith("called with 5 tokens and then, the same module, with 3 (context_length 9), "
                                    "forward raised RuntimeError: The size of tensor a (5) must match")


AUTOGRAD_NOTE = ("simplified_attention.py turns autograd off when it is imported (torch.set_grad_enabled(False), "
                 "or a no_grad() or inference_mode() entered, at its top level): a training script that imports it "
                 "could train nothing; the grader turned it on again for every item")
DTYPE_NOTE = ("simplified_attention.py changes torch's default dtype when it is imported (torch.set_default_dtype "
              "at its top level): every layer and tensor made after it, in any file, would take that dtype; the "
              "grader set it back for every item")
SWITCHED_AT_THE_TOP = {  # code at the top of simplified_attention.py -> the notes it gets
    # cost the gradient checks of four other files' modules, each told of an error in its own
    # correct code (style review: 95/100)
    "grad_off": ("torch.set_grad_enabled(False)\n", [AUTOGRAD_NOTE]),
    # outlived set_grad_enabled(True) (second review: 63/100)
    "inference_mode_entered": ("_mode = torch.inference_mode()\n_mode.__enter__()\n", [AUTOGRAD_NOTE]),
    # cost 21 points in three other files, the file never named (third review: 79/100)
    "default_dtype": ("torch.set_default_dtype(torch.float64)\n", [DTYPE_NOTE]),
    # the default device: a Colab habit, which cost 50 points in three other files (fourth review)
    "default_device": ('torch.set_default_device("cuda")  # Colab GPU runtime\n', [
        "simplified_attention.py changes torch's default device when it is imported (torch.set_default_device at "
        "its top level): every tensor made after it, in any file, would go there, and the grader has no GPU; the "
        "grader set it back to the CPU for every item"]),
    # torch's switches replaced: the child keeps torch's own (third review: 52/100)
    "torch_switches_replaced": ("torch.enable_grad = torch.no_grad\n"
                                "torch.inference_mode = lambda *a, **k: torch.no_grad()\n", []),
}


@pytest.mark.parametrize("name", sorted(SWITCHED_AT_THE_TOP))
def test_a_switch_flipped_at_a_files_top_level_costs_no_item_and_is_said(zygote, tmp_path, name):
    """Each request starts from torch's defaults; the file is named in a note."""
    code, notes = SWITCHED_AT_THE_TOP[name]
    folder = make_submission(tmp_path / name, {S: [("import torch\n", "import torch\n\n" + code)]})
    report = grade_folder(zygote, folder)
    assert scores(report) == full_marks()
    assert [n for n in report.notes if "when it is imported" in n] == notes


def test_an_item_that_turns_autograd_off_in_its_own_call_pays_for_it_alone(zygote, tmp_path):
    folder = make_submission(tmp_path / "t", {SA: [("def attention_weights(", "@torch.no_grad()\ndef attention_weights(")]})
    assert scores(grade_folder(zygote, folder)) == dict(full_marks(), **{f"{SA}.attention_weights": 2})


def test_a_missing_function_costs_only_its_own_item(zygote, tmp_path):
    """merge_heads deleted: MultiHeadAttention, which calls it, keeps its points."""
    start = "def merge_heads(x: torch.Tensor) -> torch.Tensor:"
    folder = make_submission(tmp_path / "sub")
    source = (folder / f"{MH}.py").read_text()
    head, rest = source.split(start)
    tail = rest[rest.index("\nclass MultiHeadAttention("):]
    (folder / f"{MH}.py").write_text(head + tail)
    report = grade_folder(zygote, folder, (MH,))
    assert scores(report) == dict(full_marks((MH,)), **{f"{MH}.merge_heads": 0})
    assert "defines no `merge_heads`" in report.by_item()[f"{MH}.merge_heads"].summary


def test_a_stage_called_through_functools_partial_is_still_stood_in(zygote, tmp_path):
    """A wrong softmax, which simplified_self_attention calls through
    row_softmax = functools.partial(softmax, dim=-1): the partial is of the same
    stage, so the reference stands in for it there too, and softmax alone
    loses its points (before, simplified_self_attention lost its 4 as well)."""
    folder = make_submission(tmp_path / "sub", {S: [
        ("exps / exps.sum(dim=dim, keepdim=True)", "exps / exps.sum()"),
        ("weights = softmax(scores, dim=-1)  # each row sums to 1", "weights = row_softmax(scores)"),
        ("\ndef context_vectors(", "\nimport functools\n\nrow_softmax = functools.partial(softmax, dim=-1)\n\n\n"
                                   "def context_vectors(")]})
    report = grade_folder(zygote, folder, (S,))
    assert scores(report) == dict(full_marks((S,)), **{f"{S}.softmax": 0})


@pytest.mark.slow  # a 3 s time limit, spent
def test_a_forward_that_keeps_state_and_hangs_costs_only_its_own_item(zygote, tmp_path):
    """CausalAttention's forward counts its calls on the module and never
    returns. While the wrapper is graded its heads are stand-ins, and the
    student's forward runs there only if the wrapper reads what it keeps, which
    this one does not: the wrapper keeps its points (before: 0/7, a time limit)."""
    from attnkit.sandbox import Limits

    folder = make_submission(tmp_path / "sub", {CA: [(
        "        num_tokens = x.shape[-2]",
        "        self.calls = getattr(self, 'calls', 0) + 1\n        while True:\n            pass\n"
        "        num_tokens = x.shape[-2]")]})
    report = grade_folder(zygote, folder, (CA, MH), Limits(seconds=3))
    got = scores(report)
    assert got.pop(f"{CA}.CausalAttention") == 0
    assert got == {k: v for k, v in full_marks((CA, MH)).items() if k != f"{CA}.CausalAttention"}


SUPER_OF_ITS_OWN_CLASS = {  # a head whose forward calls super() of its own class, and keeps its weights
    CA: [("class CausalAttention(nn.Module):", "class _Base(nn.Module):\n    def scale(self, keys):\n"
          "        return keys.shape[-1] ** 0.5\n\n\nclass CausalAttention(_Base):"),
         ("        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)",
          "        weights = torch.softmax(scores / super().scale(keys), dim=-1)\n"
          "        self.last_weights = weights.detach()")]}
READS_LAST_WEIGHTS = ("        return torch.cat([head(x) for head in self.heads], dim=-1)  # (b, T, h * d_out)",
                      "        out = torch.cat([head(x) for head in self.heads], dim=-1)\n"
                      "        assert all(head.last_weights is not None for head in self.heads)\n        return out{wrong}")


def test_a_wrapper_right_on_the_students_own_heads_keeps_its_points(zygote, tmp_path):
    """The wrapper reads head.last_weights, which the student's forward keeps,
    and that forward calls super() of its own class, which no stand-in is.
    Both classes are right, so the wrapper is right on the student's own
    heads, and keeps its points (before the trial on the student's own
    stages: less than 7, the stand-in unable to keep what the forward keeps)."""
    folder = make_submission(tmp_path / "sub", dict(SUPER_OF_ITS_OWN_CLASS, **{MH: [
        (READS_LAST_WEIGHTS[0], READS_LAST_WEIGHTS[1].format(wrong=""))]}))
    report = grade_folder(zygote, folder, (CA, MH))
    assert scores(report) == full_marks((CA, MH))


def test_what_the_students_forward_fails_to_keep_is_said_with_its_error(zygote, tmp_path):
    """The same heads, and a wrapper that is wrong besides: graded with stand-in
    heads, whose own forward cannot call super() of the student's class, the
    message says so, in the student's own error, not that nothing was kept."""
    folder = make_submission(tmp_path / "sub", dict(SUPER_OF_ITS_OWN_CLASS, **{MH: [
        (READS_LAST_WEIGHTS[0], READS_LAST_WEIGHTS[1].format(wrong=" * 1.01"))]}))
    report = grade_folder(zygote, folder, (CA, MH))
    assert report.by_item()[f"{CA}.CausalAttention"].score == 13
    wrapper = report.by_item()[f"{MH}.MultiHeadAttentionWrapper"]
    assert wrapper.score < 7 and "your own forward, run on its layers to make `last_weights`, raised TypeError" in (
        wrapper.summary), wrapper.summary


def test_stubbed_causal_attention_does_not_cost_the_wrapper(zygote, tmp_path):
    """The student's CausalAttention is a stub; the wrapper built on it is right."""
    folder = make_submission(tmp_path / "sub")
    (folder / f"{CA}.py").write_text((ASSIGNMENTS / f"{CA}.py").read_text())
    report = grade_folder(zygote, folder, (CA, MH))
    got = scores(report)
    assert all(v == 0 for k, v in got.items() if k.startswith(CA))
    assert {k: v for k, v in got.items() if k.startswith(MH)} == full_marks((MH,))


@pytest.mark.parametrize("buffer,use", [
    ("causal_mask(1024)", "self.mask[:num_tokens, :num_tokens]"),  # GPT-2's block size, whatever context_length
    ("causal_mask(context_length).expand(2, context_length, context_length).clone()",
     "self.mask[0, :num_tokens, :num_tokens]"),  # a leading axis that is not 1: not one mask
], ids=["fixed_size", "leading_axis_of_two"])
def test_a_mask_buffer_not_sized_by_context_length_loses_the_structure_point(zygote, tmp_path, buffer, use):
    """The forward works either way; the documented buffer is the mask for
    context_length tokens ((1, 1, T, T), GPT-2's layout, is one too:
    tests/test_alternatives.py)."""
    folder = make_submission(tmp_path / "sub", {CA: [
        ('        self.register_buffer("mask", causal_mask(context_length))',
         f'        self.register_buffer("mask", {buffer})'),
        ("mask_scores(scores, self.mask[:num_tokens, :num_tokens])", f"mask_scores(scores, {use})")]})
    report = grade_folder(zygote, folder, (CA,))
    lost = {(r.item.key, c.kind): c.reason for r in report.results for c in r.checks if not c.passed}
    assert list(lost) == [(f"{CA}.CausalAttention", "structure")], lost
    assert "expected (context_length, context_length) = (9, 9)" in lost[(f"{CA}.CausalAttention", "structure")]


def test_a_query_score_that_squeezes_every_axis_loses_the_hidden_points(zygote, tmp_path):
    """Style review: ``(inputs @ query.unsqueeze(-1)).squeeze()`` is right until an
    axis of the batch or the sequence has size 1; a hidden case now has both."""
    folder = make_submission(tmp_path / "squeeze", {S: [
        ("return (inputs * query.unsqueeze(-2)).sum(dim=-1)  # (..., T)",
         "return (inputs @ query.unsqueeze(-1)).squeeze()")]})
    report = grade_folder(zygote, folder, (S,))
    assert scores(report) == dict(full_marks((S,)), **{f"{S}.query_scores": 1})
    assert "has shape (); expected (1, 1)" in report.by_item()[f"{S}.query_scores"].summary


def test_heads_that_are_one_module_repeated_are_said_so(zygote, tmp_path):
    """`nn.ModuleList([CausalAttention(...)] * num_heads)` registers one object
    num_heads times: the reason says what the missing parameters show (style
    review: it listed them only)."""
    old = "[CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)\n             for _ in range(num_heads)]"
    folder = make_submission(tmp_path / "s", {MH: [(old, "[CausalAttention(d_in, d_out, context_length, dropout, "
                                                         "qkv_bias)] * num_heads")]})
    report = grade_folder(zygote, folder, (MH,))
    assert scores(report)[f"{MH}.MultiHeadAttentionWrapper"] == 0
    reasons = [c.reason for c in report.by_item()[f"{MH}.MultiHeadAttentionWrapper"].checks if not c.passed]
    assert any("only heads.0 has parameters of its own: `heads` holds one module, or one module repeated" in r
               for r in reasons), reasons
    # one head short, each a module of its own: with num_heads 3 (the hidden check) two heads have
    # parameters, and the reason lists what the third lacks, with no such guess
    folder = make_submission(tmp_path / "t", {MH: [(old, old.replace("range(num_heads)", "range(num_heads - 1)"))]})
    (hidden,) = [c for c in grade_folder(zygote, folder, (MH,)).by_item()[f"{MH}.MultiHeadAttentionWrapper"].checks
                 if c.kind == "hidden"]
    assert "missing heads.2.W_query.weight" in hidden.reason and "only heads.0" not in hidden.reason


def test_heads_copied_from_one_head_are_said_so(zygote, tmp_path):
    """copy.deepcopy of one head gives every head its weights: only the seed
    check can tell, and its reason now says what the parameters show."""
    old = "[CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)\n             for _ in range(num_heads)]"
    new = "[copy.deepcopy(CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)) for _ in range(num_heads)]"
    folder = make_submission(tmp_path / "s", {MH: [("import torch\n", "import copy\n\nimport torch\n"), (old, new)]})
    report = grade_folder(zygote, folder, (MH,))
    assert scores(report) == full_marks((MH,))  # a copy of each fresh head: draws of its own, correct
    folder = make_submission(tmp_path / "t", {MH: [("import torch\n", "import copy\n\nimport torch\n"), (old, (
        "[copy.deepcopy(first) for first in [CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)]"
        " for _ in range(num_heads)]"))]})
    report = grade_folder(zygote, folder, (MH,))
    failed = the_one_failure(report, (MH,), f"{MH}.MultiHeadAttentionWrapper", 6, "seed")  # seed: 1
    assert "every head starts with the same weights as heads.0" in failed.reason


def test_dropout_run_without_autograd_loses_the_dropout_check(zygote, tmp_path):
    """Dropout under torch.no_grad(): every forward right, and in train mode
    W_query and W_key learn nothing (second review: 13/13)."""
    edits = {CA: [("        weights = self.dropout(weights)\n        return weights @ values  # (b, T, d_out)",
                   "        with torch.no_grad():\n            weights = self.dropout(weights)\n"
                   "        return weights @ values  # (b, T, d_out)")]}
    report = grade_folder(zygote, make_submission(tmp_path / "s", edits), (CA,))
    failed = the_one_failure(report, (CA,), f"{CA}.CausalAttention", 10, "dropout")  # dropout: 3
    assert failed.reason.startswith("in train mode no gradient reaches W_query.weight, W_key.weight")


def test_a_stage_whose_only_fault_is_its_gradient_is_no_hard_coding_suspect(zygote, tmp_path):
    """Its values pass every check on other inputs: the integrity flag, which
    needs a wrong answer on each, does not list it (second review: it did)."""
    from attnkit.judge import integrity

    edits, item, left, _ = CUT_GRAPH["merge_heads_through_numpy"]
    report = grade_folder(zygote, make_submission(tmp_path / "s", edits), tuple(edits))
    failed = the_one_failure(report, tuple(edits), item, left, "hidden")
    assert failed.error == "gradient" and not failed.wrong_answer
    assert integrity.hard_coded("s", report) == []


def test_a_module_that_turns_autograd_off_in_eval_mode_keeps_its_gradient_point(zygote, tmp_path):
    """Gradients are taken as a training step takes them, in train mode (dropout
    0): inference_mode(not self.training) trains (third review: 12/13)."""
    edits = {CA: [("        ### BEGIN SOLUTION\n        num_tokens = x.shape[-2]\n",
                   "        ### BEGIN SOLUTION\n        with torch.inference_mode(not self.training):\n"
                   "            return self._forward(x)\n\n    def _forward(self, x):\n        num_tokens = x.shape[-2]\n")]}
    assert scores(grade_folder(zygote, make_submission(tmp_path / "s", edits), (CA,))) == full_marks((CA,))


@pytest.mark.parametrize("fill", ["scores.masked_fill_(mask, float('-inf'))",  # autograd refuses it on a leaf
                                  "scores.data.masked_fill_(mask, float('-inf'))"])  # and it allows this
def test_a_stage_that_changes_its_batched_input_in_place_is_told_so(zygote, tmp_path, fill):
    """The hidden case that carries the gradients sends its arguments as copies
    of fresh leaves, and still shows an argument changed in place (fourth
    review: the 4-D case went through the gradient request only, 100/100, or
    'a leaf Variable that requires grad is being used in an in-place operation')."""
    edits = {CA: [('    return scores.masked_fill(mask, float("-inf"))',
                   f'    if scores.dim() == 4:  # (b, h, T, T): in place, to save a copy\n        {fill}\n'
                   f'        return scores\n    return scores.masked_fill(mask, float("-inf"))')]}
    report = grade_folder(zygote, make_submission(tmp_path / "s", edits), (CA,))
    failed = the_one_failure(report, (CA,), f"{CA}.mask_scores", 3, "hidden")  # hidden: 2
    assert failed.reason.startswith("modifies its argument `scores` in place")
