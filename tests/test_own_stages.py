"""An item is first graded on the student's own stages, those in doubt stood in
(``attnkit.judge.engine.Run``): no stand-in is asked when the student's code
is right end to end, a wrong stage is asked for alone, and a trial that fails
leaves nothing behind for the graded run (time, output, what the student's
code kept in its process)."""

from __future__ import annotations

import pytest

from attnkit.exercises import MODULES, allowed_calls
from attnkit.judge import engine, reference
from attnkit.judge.registry import registry
from attnkit.sandbox import Limits, Session, client
from conftest import full_marks, grade_folder, make_submission, scores

S = "simplified_attention"
WHOLE = f"{S}.simplified_self_attention"

# softmax, when the whole mechanism calls it (and only then: its own checks call it directly)
CALLED_BY_THE_WHOLE = "    import sys as _sys\n    if _sys._getframe(1).f_code.co_name == 'simplified_self_attention':\n"


class Trials(dict):
    """item -> whether its trial passed; ``doubtful``: item -> the stages stood in during it."""

    def __init__(self):
        super().__init__()
        self.doubtful: dict[str, frozenset[str]] = {}


@pytest.fixture
def trials(monkeypatch):
    """The trials on the student's own stages that were made."""
    made = Trials()
    try_own = engine.Run._try_own

    def recording(self, item, checks, doubtful):
        made.doubtful[item] = doubtful
        made[item] = try_own(self, item, checks, doubtful)
        return made[item]

    monkeypatch.setattr(engine.Run, "_try_own", recording)
    return made


@pytest.fixture
def questions(monkeypatch):
    """The stand-in questions the grader answers, by stage."""
    asked: list[str] = []
    answer = reference.upcall

    def counting(spec, *args, **kwargs):
        asked.append(spec.get("target") if isinstance(spec, dict) else None)
        return answer(spec, *args, **kwargs)

    monkeypatch.setattr(reference, "upcall", counting)
    return asked


@pytest.fixture
def asked(monkeypatch):
    """Every stand-in question that reaches the grader, answered from its memo
    or not: (the item being graded, the stage asked for)."""
    pairs: list[tuple[str | None, str | None]] = []
    answer = client.Session._answer_upcall

    def recording(self, header, bufs, item, deadline):
        spec = header.get("spec")
        pairs.append((item, spec.get("target") if isinstance(spec, dict) else None))
        return answer(self, header, bufs, item, deadline)

    monkeypatch.setattr(client.Session, "_answer_upcall", recording)
    return pairs


def test_a_correct_submission_is_graded_without_a_stand_in(zygote, tmp_path, questions, trials):
    report = grade_folder(zygote, make_submission(tmp_path / "sub"))
    assert scores(report) == full_marks()
    assert questions == []
    assert trials and all(trials.values()) and WHOLE in trials


def test_an_item_calling_a_wrong_stage_is_tried_with_a_stand_in_for_that_stage_alone(
        zygote, tmp_path, asked, trials):
    """A wrong softmax costs softmax alone. The whole mechanism, which calls it,
    is tried on the student's own stages but the reference's softmax, and
    passes: no other stage is stood in for it."""
    edits = {S: [("    exps = torch.exp(shifted)", "    exps = torch.exp(shifted * 1.01)")]}
    report = grade_folder(zygote, make_submission(tmp_path / "sub", edits), (S,))
    got = scores(report)
    assert got.pop(f"{S}.softmax") < full_marks((S,))[f"{S}.softmax"]
    assert got == {k: v for k, v in full_marks((S,)).items() if k != f"{S}.softmax"}
    assert trials[WHOLE] is True and trials.doubtful[WHOLE] == {f"{S}.softmax"}
    assert {stage for item, stage in asked if item == WHOLE} == {f"{S}.softmax"}
    assert trials[f"{S}.softmax"] is False  # its one stage, normalize_by_sum, passed: tried, and failed


def test_a_wrong_item_calling_a_wrong_stage_is_graded_with_every_stand_in(zygote, tmp_path, asked, trials):
    """softmax wrong and the whole mechanism wrong too: its trial, on the
    reference's softmax, fails, and it is graded as ever, every stage it calls
    stood in."""
    edits = {S: [("    exps = torch.exp(shifted)", "    exps = torch.exp(shifted * 1.01)"),
                 ("    return context_vectors(weights, inputs)  # (..., T, d)",
                  "    return context_vectors(weights, inputs) * 1.01  # (..., T, d)")]}
    report = grade_folder(zygote, make_submission(tmp_path / "sub", edits), (S,))
    got = scores(report)
    assert got.pop(WHOLE) == 0 and got.pop(f"{S}.softmax") < full_marks((S,))[f"{S}.softmax"]
    assert got == {k: v for k, v in full_marks((S,)).items() if k not in (WHOLE, f"{S}.softmax")}
    assert trials[WHOLE] is False and trials.doubtful[WHOLE] == {f"{S}.softmax"}
    assert {stage for item, stage in asked if item == WHOLE} >= {f"{S}.attention_scores", f"{S}.softmax",
                                                                 f"{S}.context_vectors"}


def test_no_trial_where_every_stage_an_item_calls_is_in_doubt(zygote, tmp_path, asked, trials):
    """softmax may call normalize_by_sum alone, and here does; with that wrong,
    a trial would be softmax's graded run itself, so none is made."""
    edits = {S: [("    return scores / scores.sum(dim=dim, keepdim=True)",
                  "    return scores / scores.sum(dim=dim, keepdim=True) * 1.01"),
                 ("    return exps / exps.sum(dim=dim, keepdim=True)", "    return normalize_by_sum(exps, dim=dim)")]}
    report = grade_folder(zygote, make_submission(tmp_path / "sub", edits), (S,))
    assert scores(report)[f"{S}.softmax"] == full_marks((S,))[f"{S}.softmax"]
    assert f"{S}.softmax" not in trials and (f"{S}.softmax", f"{S}.normalize_by_sum") in asked
    assert trials[WHOLE] is True and trials.doubtful[WHOLE] == {f"{S}.normalize_by_sum"}


def test_a_wrong_item_on_right_stages_is_graded_with_stand_ins_and_named(zygote, tmp_path, questions, trials):
    """Every stage right and the whole mechanism wrong: the trial fails, and the
    item is graded as ever, its reasons those of the graded run."""
    edits = {S: [("    return context_vectors(weights, inputs)  # (..., T, d)",
                  "    return context_vectors(weights, inputs) * 1.01  # (..., T, d)")]}
    report = grade_folder(zygote, make_submission(tmp_path / "sub", edits), (S,))
    result = report.by_item()[WHOLE]
    assert result.score == 0 and questions and trials[WHOLE] is False  # tried, then graded with the stand-ins
    assert all(c.reason for c in result.checks if not c.passed)
    assert {k: v for k, v in scores(report).items() if k != WHOLE} == {
        k: v for k, v in full_marks((S,)).items() if k != WHOLE}


def test_output_printed_in_a_failed_trial_is_not_counted_in_the_graded_run(zygote, tmp_path, trials):
    """The whole mechanism prints 20 KiB a call (60 KiB in its three requests,
    under the 64 KiB limit), and the student's softmax is wrong the first time
    it calls it: the trial fails after one request. The graded run's output is
    counted from zero, so its three requests stay under the limit."""
    edits = {S: [("    shifted = ", CALLED_BY_THE_WHOLE + "        if not _CALLED:\n            _CALLED.append(1)\n"
                  "            return scores * 0\n    shifted = "),
                 ("def simplified_self_attention(", "_CALLED = []\n\n\ndef simplified_self_attention("),
                 ("    scores = attention_scores(inputs)  # (..., T, T)",
                  "    print('x' * (20 << 10))\n    scores = attention_scores(inputs)  # (..., T, T)")]}
    report = grade_folder(zygote, make_submission(tmp_path / "sub", edits), (S,))
    assert scores(report) == full_marks((S,)) and trials[WHOLE] is False


def test_what_a_failed_trial_kept_in_the_process_is_gone_for_the_graded_run(zygote, tmp_path, trials):
    """The student's softmax sets a module-level factor the whole mechanism uses
    to 0 when the mechanism calls it: the trial fails on it. The graded run, in
    a fresh process, finds the module as it was imported (factor 1) and the
    reference's softmax, which changes nothing, and the mechanism is right."""
    edits = {S: [("    shifted = ", CALLED_BY_THE_WHOLE + "        global _FACTOR\n        _FACTOR = 0.0\n    shifted = "),
                 ("def simplified_self_attention(", "_FACTOR = 1.0\n\n\ndef simplified_self_attention("),
                 ("    return context_vectors(weights, inputs)  # (..., T, d)",
                  "    return context_vectors(weights, inputs) * _FACTOR  # (..., T, d)")]}
    report = grade_folder(zygote, make_submission(tmp_path / "sub", edits), (S,))
    assert scores(report) == full_marks((S,)) and trials[WHOLE] is False


@pytest.mark.slow  # a 2 s time limit, spent
def test_time_spent_in_a_failed_trial_is_not_counted_in_the_graded_run(zygote, tmp_path, trials):
    """softmax hangs when the whole mechanism calls it: the trial runs into the
    item's limit. The graded run, with the reference's softmax, has the whole
    limit again, and the mechanism is right."""
    edits = {S: [("    shifted = ", CALLED_BY_THE_WHOLE + "        while True:\n            pass\n    shifted = ")]}
    report = grade_folder(zygote, make_submission(tmp_path / "sub", edits), (S,), Limits(seconds=2))
    assert scores(report) == full_marks((S,)) and trials[WHOLE] is False


def test_a_public_session_has_no_trial(zygote, tmp_path, questions, trials):
    """The public checker has no reference: every stage is the student's own, as before."""
    report = grade_folder(zygote, make_submission(tmp_path / "sub"), (S,), public=True)
    assert all(r.score == r.max_score for r in report.results) and questions == [] and trials == {}


CA, MH = "causal_attention", "multihead_attention"


def printing_at_import(kib: int) -> str:
    """A top level that prints about ``kib`` KiB, as a script's demo does."""
    return f"import torch.nn as nn\nfor _i in range({kib * 1024 // 56}):\n    print(f'demo step {{_i:4d}}: ' + '-' * 44)\n"


def test_a_failed_trial_charges_no_item_for_the_imports_it_made_again(zygote, tmp_path):
    """Both files print about 30 KiB when imported, each charged once to the
    item that first needed it. The wrapper's one mistake (its heads in reverse
    order) fails its trial, and its graded run starts a fresh process, which
    imports both files again: that output is no item's (before: over the
    wrapper's 64 KiB, and multihead_attention.py "could not be imported", 0
    for each of its items)."""
    edits = {CA: [("import torch.nn as nn\n", printing_at_import(30))],
             MH: [("import torch.nn as nn\n", printing_at_import(34)),
                  ("             for _ in range(num_heads)]\n        )",
                   "             for _ in range(num_heads)][::-1]\n        )")]}
    report = grade_folder(zygote, make_submission(tmp_path / "sub", edits), (CA, MH))
    got = scores(report)
    assert got.pop(f"{MH}.MultiHeadAttentionWrapper") == full_marks((MH,))[f"{MH}.MultiHeadAttentionWrapper"] - 1
    assert got == {k: v for k, v in full_marks((CA, MH)).items() if k != f"{MH}.MultiHeadAttentionWrapper"}


@pytest.mark.slow  # 1.3 s imports, made several times
def test_a_failed_trial_charges_no_item_the_time_of_imports_it_made_again(zygote, tmp_path):
    """Two files take 1.3 s each to import, under a 2 s limit, each once charged
    to the file. CausalAttention leaves out dropout: its trial fails, and the
    fresh process of its graded run imports both files again, at no item's
    expense (before: charged to the items that needed them next, each a time
    limit: 57/100)."""
    edits = {S: [("import torch\n", "import torch\nimport time\ntime.sleep(1.3)\n")],
             CA: [("import torch.nn as nn\n", "import torch.nn as nn\nimport time\nimport simplified_attention\n"
                   "time.sleep(1.3)\n"),
                  ("        weights = self.dropout(weights)\n", "")]}
    report = grade_folder(zygote, make_submission(tmp_path / "sub", edits), limits=Limits(seconds=2))
    got = scores(report)
    assert got.pop(f"{CA}.CausalAttention") == full_marks((CA,))[f"{CA}.CausalAttention"] - 3  # dropout: 3
    assert got == {k: v for k, v in full_marks().items() if k != f"{CA}.CausalAttention"}


def test_a_mistake_a_caller_makes_up_for_costs_both_stages(zygote, tmp_path, trials):
    """softmax's default axis is -2, not the -1 its signature promises, and the
    whole mechanism makes up for it (softmax of the transpose, transposed
    back): right end to end, and wrong twice. softmax's hidden check calls it
    without dim, so its mistake costs it; the mechanism is then graded on the
    reference's softmax, on which its transposes are wrong (second review of
    the trial: 100/100 before softmax's check left dim out)."""
    edits = {S: [("def softmax(scores: torch.Tensor, dim: int = -1)", "def softmax(scores: torch.Tensor, dim: int = -2)"),
                 ("    weights = softmax(scores, dim=-1)  # each row sums to 1",
                  "    weights = softmax(scores.mT).mT  # each row sums to 1")]}
    report = grade_folder(zygote, make_submission(tmp_path / "sub", edits), (S,))
    got = scores(report)
    assert got.pop(f"{S}.softmax") == full_marks((S,))[f"{S}.softmax"] - 2  # hidden: 2
    assert got.pop(WHOLE) == 0
    assert got == {k: v for k, v in full_marks((S,)).items() if k not in (f"{S}.softmax", WHOLE)}
    assert trials[WHOLE] is False and trials.doubtful[WHOLE] == {f"{S}.softmax"}  # tried on the reference's softmax


SA = "self_attention"


def test_a_trial_a_limit_ended_charges_no_item_for_the_imports_it_made_again(zygote, tmp_path, trials):
    """softmax ends the process when attention_weights calls it (a bug none of
    its own checks reach), and both files print about 30 KiB when imported:
    the trial ends in a crash, and the graded run, with the reference's
    softmax, imports both files again at no item's expense (second review:
    60 KiB charged to attention_weights, and self_attention.py "could not be
    imported", four items 0)."""
    edits = {S: [("import torch\n", "import torch\n" + printing_at_import(30).replace("import torch.nn as nn\n", "")),
                 ("    shifted = ", "    import sys as _sys\n    if _sys._getframe(1).f_code.co_name == 'attention_weights':\n"
                                      "        import os\n        os._exit(3)\n    shifted = ")],
             SA: [("import torch.nn as nn\n", printing_at_import(30) + "import simplified_attention as sa\n"),
                  ("    return torch.softmax(scores / d_k ** 0.5, dim=-1)",
                   "    return sa.softmax(scores / d_k ** 0.5, dim=-1)")]}
    report = grade_folder(zygote, make_submission(tmp_path / "sub", edits), (S, SA))
    assert scores(report) == full_marks((S, SA))
    # attention_weights passed, but only on the reference's softmax: in doubt for the modules that call it
    assert trials[f"{SA}.attention_weights"] is False
    assert trials.doubtful[f"{SA}.SelfAttention"] == {f"{SA}.attention_weights"}


def test_a_stage_right_only_on_a_stand_in_its_caller_may_not_ask_for_is_stood_in_itself(
        zygote, tmp_path, asked, trials):
    """mask_scores is wrong. CausalAttention passes its trial on the reference's
    mask_scores, which the grader answered while it was graded; the wrapper may
    call CausalAttention but not mask_scores, so its trial stands in the
    student's CausalAttention itself, and passes (before, it ran the student's
    CausalAttention on the wrong mask_scores, failed, and started over in a
    fresh process)."""
    edits = {CA: [('    return scores.masked_fill(mask, float("-inf"))', "    return scores.masked_fill(mask, -1.0)")]}
    report = grade_folder(zygote, make_submission(tmp_path / "sub", edits))
    got = scores(report)
    assert got.pop(f"{CA}.mask_scores") < full_marks()[f"{CA}.mask_scores"]
    assert got == {k: v for k, v in full_marks().items() if k != f"{CA}.mask_scores"}
    assert trials[f"{CA}.CausalAttention"] is True and trials.doubtful[f"{CA}.CausalAttention"] == {f"{CA}.mask_scores"}
    wrapper = f"{MH}.MultiHeadAttentionWrapper"
    assert trials[wrapper] is True and trials.doubtful[wrapper] == {f"{CA}.CausalAttention"}
    # the stand-in CausalAttention's mask buffer is the reference causal_mask, asked for too
    assert {stage for item, stage in asked if item == wrapper} == {f"{CA}.CausalAttention", f"{CA}.causal_mask"}
    assert trials[f"{MH}.MultiHeadAttention"] is True  # it may call mask_scores: stood in, the rest its own
    assert trials.doubtful[f"{MH}.MultiHeadAttention"] == {f"{CA}.mask_scores"}


class _Graded:
    """What ``Run._in_doubt`` reads of a session: the stand-ins asked for while each item was graded."""

    answer = object()

    def __init__(self, asked: dict[str, set[str]]):
        self.asked = asked


def _run(session, modules, failed=()):
    checks = [c for c in registry() if c.item.split(".", 1)[0] in modules]
    run = engine.Run(session, checks=checks)
    run.outcomes = [(c, AssertionError("wrong") if c.item in failed else None) for c in checks]
    return run


def test_what_a_stage_passed_on_is_stood_in_for_its_callers_or_the_stage_itself():
    """``Run._in_doubt`` alone, every branch: attention_weights passed on the
    reference's softmax (asked for while it was graded). SelfAttention, which
    may call softmax, stands softmax in; an item that could not would stand in
    attention_weights itself. A failed check, a failed trial and a stage not
    graded each put that stage in doubt."""
    whole_sa = allowed_calls()[f"{SA}.SelfAttention"]
    run = _run(_Graded({f"{SA}.attention_weights": {f"{S}.softmax"}}), (S, SA))
    assert run._in_doubt(whole_sa) == {f"{S}.softmax"}
    assert run._in_doubt((f"{SA}.attention_weights", f"{SA}.project_qkv")) == {f"{SA}.attention_weights"}
    run.trials[f"{SA}.project_qkv"] = False
    assert run._in_doubt(whole_sa) == {f"{S}.softmax", f"{SA}.project_qkv"}
    run = _run(_Graded({}), (S, SA), failed={f"{SA}.attention_scores"})
    assert run._in_doubt(whole_sa) == {f"{SA}.attention_scores"}
    run = _run(_Graded({}), (SA,))
    assert run._in_doubt(whole_sa) == {f"{S}.softmax", f"{S}.normalize_by_sum"}


def test_a_failed_trial_leaves_no_record_of_what_it_asked_for(zygote):
    """What an item's failed trial asked for is not what it passed on: the
    graded run that follows keeps its own record."""
    session = Session(zygote, {}, MODULES)
    try:
        session.asked[f"{SA}.attention_weights"] = {f"{S}.normalize_by_sum"}
        session.begin_trial()
        session.asked[WHOLE] = {f"{S}.softmax"}
        session.start_over(WHOLE)
        assert session.asked == {f"{SA}.attention_weights": {f"{S}.normalize_by_sum"}}
    finally:
        session.close()


def test_stages_not_graded_are_stood_in_during_a_trial(zygote, tmp_path, trials):
    """Only self_attention is graded: simplified_attention's stages have no
    result here, so they are in doubt. attention_weights may call those alone
    (no trial: it would be its graded run); SelfAttention is tried with them
    stood in, its own stages as written."""
    report = grade_folder(zygote, make_submission(tmp_path / "sub"), (SA,))
    assert scores(report) == full_marks((SA,))
    assert f"{SA}.attention_weights" not in trials
    assert trials[f"{SA}.SelfAttention"] is True
    assert trials.doubtful[f"{SA}.SelfAttention"] == {f"{S}.softmax", f"{S}.normalize_by_sum"}


@pytest.mark.parametrize("heads", ["right", "without dropout", "without dropout, mask wrong"])
def test_a_file_first_imported_in_a_failed_trial_is_charged_as_without_a_trial(zygote, tmp_path, trials, heads):
    """multihead_attention.py prints 58 KiB when imported, first for the wrapper,
    whose forward prints 8 KB more the first time: over the wrapper's 64 KiB,
    0/7, whether its trial is made on the student's CausalAttention (right), on
    the reference's (the student's without dropout) or not at all (causal_mask
    wrong too: every stage the wrapper calls in doubt). Before, the regrade imported the file at no item's
    expense, and the wrapper's grade depended on CausalAttention's (third review)."""
    once = ("        return torch.cat([head(x) for head in self.heads], dim=-1)  # (b, T, h * d_out)",
            "        if not _PRINTED:\n            _PRINTED.append(1)\n            print('y' * 8000)\n"
            "        return torch.cat([head(x) for head in self.heads], dim=-1)  # (b, T, h * d_out)")
    edits = {MH: [("import torch.nn as nn\n", printing_at_import(58) + "_PRINTED = []\n"), once],
             CA: {"right": [],
                  "without dropout": [("        weights = self.dropout(weights)\n", "")],
                  "without dropout, mask wrong": [("        weights = self.dropout(weights)\n", ""),
                                                  ("diagonal=1)\n    ### END", "diagonal=2)\n    ### END")]}[heads]}
    report = grade_folder(zygote, make_submission(tmp_path / "sub", edits), (CA, MH))
    assert scores(report)[f"{MH}.MultiHeadAttentionWrapper"] == 0
    wrapper = f"{MH}.MultiHeadAttentionWrapper"
    assert trials.get(wrapper) is {"right": False, "without dropout": False, "without dropout, mask wrong": None}[heads]
    if heads == "without dropout":
        assert trials.doubtful[wrapper] == {f"{CA}.CausalAttention"}


def printing_lines(kib: int) -> str:
    return f"for _i in range({kib * 1024 // 56}):\n    print(f'demo step {{_i:4d}}: ' + '-' * 44)\n"


WRAPPER_PRINTS_ONCE = (
    "        return torch.cat([head(x) for head in self.heads], dim=-1)  # (b, T, h * d_out)",
    "        if not _PRINTED:\n            _PRINTED.append(1)\n            print('y' * (30 << 10))\n"
    "        return torch.cat([head(x) for head in self.heads], dim=-1)  # (b, T, h * d_out)")


@pytest.mark.parametrize("v2_right", [True, False])
def test_an_import_owed_before_a_trial_is_still_owed_after_it(zygote, tmp_path, trials, v2_right):
    """simplified_attention.py prints 40 KiB when imported, multihead_attention.py
    imports it, and the wrapper prints 30 KiB once and has its heads in reverse
    order (1 point). A wrong SelfAttentionV2 fails its trial, which leaves
    simplified_attention owed; the wrapper's own failed trial imports it free,
    and its graded run must too: 6/7 either way (fifth review: 0/7, the 40 KiB
    charged to the wrapper, when SelfAttentionV2 was wrong)."""
    last = "        weights = attention_weights(attention_scores(queries, keys), keys.shape[-1])\n        return {}"
    v2 = (last.format("context_vectors(weights, values)  # (..., T, d_out)\n        ### END SOLUTION\n"),
          last.format("1.01 * context_vectors(weights, values)  # (..., T, d_out)\n        ### END SOLUTION\n"))
    edits = {S: [("import torch\n", "import torch\n" + printing_lines(40))],
             MH: [("from causal_attention import CausalAttention, causal_mask\n",
                   "from causal_attention import CausalAttention, causal_mask\nimport simplified_attention\n"
                   "_PRINTED = []\n"), WRAPPER_PRINTS_ONCE,
                  ("             for _ in range(num_heads)]\n        )",
                   "             for _ in range(num_heads)][::-1]\n        )")],
             SA: [] if v2_right else [v2]}
    report = grade_folder(zygote, make_submission(tmp_path / "sub", edits))
    assert scores(report)[f"{MH}.MultiHeadAttentionWrapper"] == 6
    assert trials[f"{MH}.MultiHeadAttentionWrapper"] is False
    assert trials[f"{SA}.SelfAttentionV2"] is v2_right


@pytest.mark.slow  # 2 s time limits, spent
@pytest.mark.parametrize("stages", ["right", "mask_scores wrong", "all wrong"])
def test_after_a_limit_what_was_owed_is_imported_again_at_a_cost(zygote, tmp_path, trials, stages):
    """causal_attention.py prints 40 KiB when imported and CausalAttention never
    returns; multihead_attention.py imports it and self_attention, and the
    wrapper prints 30 KiB once. The loop ends CausalAttention's process, and
    the wrapper's new process imports causal_attention again, charged to the
    wrapper: over 64 KiB, 0/7, whether CausalAttention was first tried on all
    of the student's own stages, with the reference's mask_scores (the
    student's wrong), or not at all (only causal_attention and
    multihead_attention graded, and causal_attention's three stages wrong:
    every stage CausalAttention calls in doubt). Before: 7/7 after a
    trial, the modules it owed imported free, one of them resetting the count."""
    edits = {CA: [("import torch.nn as nn\n", "import torch.nn as nn\n" + printing_lines(40)),
                  ("        num_tokens = x.shape[-2]\n", "        while True:\n            pass\n"
                   "        num_tokens = x.shape[-2]\n")],
             MH: [("from causal_attention import CausalAttention, causal_mask\n",
                   "from causal_attention import CausalAttention, causal_mask\nimport self_attention\n"
                   "_PRINTED = []\n"), WRAPPER_PRINTS_ONCE]}
    if stages != "right":
        edits[CA].append(('    return scores.masked_fill(mask, float("-inf"))',
                          '    return scores.masked_fill(mask, float("-inf")) + 0.01'))
    if stages == "all wrong":
        edits[CA] += [("diagonal=1)\n    ### END", "diagonal=2)\n    ### END"),
                      ("kept / kept.sum(dim=-1, keepdim=True)\n", "kept / kept.sum(dim=-1, keepdim=True) * 1.01\n")]
    modules = (CA, MH) if stages == "all wrong" else MODULES
    report = grade_folder(zygote, make_submission(tmp_path / "sub", edits), modules, limits=Limits(seconds=2))
    assert scores(report)[f"{MH}.MultiHeadAttentionWrapper"] == 0
    assert any("output limit exceeded" in (c.reason or "") for c in report.by_item()[f"{MH}.MultiHeadAttentionWrapper"].checks)
    if stages == "all wrong":
        assert f"{CA}.CausalAttention" not in trials
    else:
        assert trials.doubtful[f"{CA}.CausalAttention"] == (set() if stages == "right" else {f"{CA}.mask_scores"})
