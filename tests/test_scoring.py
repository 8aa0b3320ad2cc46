"""Scoring, in-process and without a sandbox: how a check's end becomes a
CheckResult, and check results become item scores and a report.

Every expected value here is written by hand: points from small tables made
up for the test, or read off exercises.toml where the real table is used.
"""

from __future__ import annotations

import pytest

from attnkit.errors import CheckFailure, LimitExceeded, StudentError
from attnkit.exercises import Item
from attnkit.judge.registry import Check
from attnkit.judge.scoring import CheckResult, ItemResult, Report, build_report, outcome

SOFTMAX = "simplified_attention.softmax"  # exercises.toml: example 1, hidden 2, stability 2
# A made-up item: 1 + 2 + 4 = 7 points, 1 + 4 = 5 of them public (example, stability).
ITEM = Item("m.f", {"example": 1, "hidden": 2, "stability": 4})


def result(kind: str, passed: bool, reason: str = "", **kw) -> CheckResult:
    return CheckResult(item="m.f", kind=kind, points=ITEM.checks[kind], passed=passed, reason=reason, **kw)


# --------------------------------------------------------------------------- outcome

def test_a_passed_check_earns_the_points_of_its_kind_in_the_table():
    r = outcome(Check(SOFTMAX, "stability", None), None)
    assert (r.item, r.kind, r.points, r.passed, r.error, r.reason) == (SOFTMAX, "stability", 2, True, "", "")
    assert outcome(Check(SOFTMAX, "example", None), None).points == 1
    assert not r.wrong_answer


def test_what_one_check_says_is_capped_whoever_wrote_it():
    """A submission writes much of a reason (its exception's message, its
    parameters' names) and its details (its traceback): 250 names of 15,000
    characters wrote 280 MB of feedback (attack review). Each is cut, and says so."""
    from attnkit.judge.scoring import DETAILS_CHARS, REASON_CHARS

    long = "x" * 200_000
    for exc in (CheckFailure(long, long), StudentError("exception", long, long), LimitExceeded("time", long),
                RuntimeError(long)):
        r = outcome(Check(SOFTMAX, "hidden", None), exc)
        assert REASON_CHARS < len(r.reason) <= REASON_CHARS + 40 and r.reason.endswith("characters)"), type(exc)
        assert len(r.details) <= DETAILS_CHARS + 40
    r = outcome(Check(SOFTMAX, "hidden", None), CheckFailure("short", "also short"))
    assert (r.reason, r.details) == ("short", "also short")


def test_a_wrong_answer_is_the_students_and_keeps_its_words():
    exc = CheckFailure("values differ", "row | expected | yours", diagnosis="masked_with_zero", pictures=["p"])
    r = outcome(Check(SOFTMAX, "hidden", None), exc)
    assert (r.passed, r.points, r.error, r.limit, r.not_implemented) == (False, 2, "", False, False)
    assert (r.reason, r.details, r.diagnosis, r.pictures) == ("values differ", "row | expected | yours",
                                                              "masked_with_zero", ["p"])
    assert r.wrong_answer


def test_a_limit_is_marked_as_one_and_is_no_wrong_answer():
    r = outcome(Check(SOFTMAX, "hidden", None), LimitExceeded("time", "time limit exceeded (5 s)"))
    assert (r.limit, r.error, r.reason, r.passed) == (True, "limit", "time limit exceeded (5 s)", False)
    assert not r.wrong_answer


def test_the_stubs_own_raise_is_not_implemented_but_torchs_is_an_exception():
    own = 'File "simplified_attention.py", line 9, in softmax\n    raise NotImplementedError("softmax")'
    r = outcome(Check(SOFTMAX, "example", None), StudentError("not_implemented", "softmax", own))
    assert (r.not_implemented, r.error, r.reason) == (True, "not_implemented", "not implemented yet (softmax)")
    torchs = 'File "simplified_attention.py", line 9, in softmax\n    return torch.special.foo(x)'
    r = outcome(Check(SOFTMAX, "example", None), StudentError("not_implemented", "no CPU kernel", torchs))
    assert (r.not_implemented, r.error, r.reason) == (False, "exception", "raised NotImplementedError: no CPU kernel")
    assert not r.wrong_answer  # raising is not returning a wrong value


def test_an_error_of_the_grader_blames_the_grader():
    r = outcome(Check(SOFTMAX, "hidden", None), KeyError("s3_missing"))
    assert (r.passed, r.error) == (False, "grader")
    assert r.reason == "the grader could not check this (KeyError: 's3_missing')"
    assert not r.wrong_answer


def test_text_a_submission_controls_enters_as_one_printable_line():
    exc = StudentError("exception", "ValueError: a\nok m.f 7/7\x1b[2K", 'File "m.py", line 1\n\x1b[31m  x\r\n')
    r = outcome(Check(SOFTMAX, "hidden", None), exc)
    assert r.reason == "raised ValueError: a\\nok m.f 7/7"
    assert r.details == 'File "m.py", line 1\n  x\n'


# --------------------------------------------------------------------------- item scores

def test_an_item_scores_the_points_of_its_passed_checks():
    r = ItemResult(ITEM, [result("example", True), result("hidden", False, "off"), result("stability", True)])
    assert (r.score, r.max_score) == (5, 7)
    assert ItemResult(ITEM, []).score == 0  # nothing ran, nothing earned


def test_a_limit_costs_the_whole_item_and_no_more():
    r = ItemResult(ITEM, [result("example", True), result("stability", True),
                          result("hidden", False, "time limit exceeded", limit=True, error="limit")])
    assert (r.score, r.max_score) == (0, 7)


def test_in_public_mode_the_item_is_out_of_its_public_points():
    r = ItemResult(ITEM, [result("example", True), result("stability", False, "NaN")], public=True)
    assert (r.score, r.max_score) == (1, 5)


def test_reasons_are_one_line_per_reason_naming_every_check_it_failed():
    r = ItemResult(ITEM, [result("example", False, "is None"), result("hidden", False, "is None"),
                          result("stability", False, "contains NaN"), result("stability", True)])
    assert r.reasons == ["example, hidden: is None", "stability: contains NaN"]
    assert ItemResult(ITEM, [result("example", True)]).reasons == []


@pytest.mark.parametrize("checks, summary", [
    ([result("example", True)], ""),
    ([result("example", False, "first"), result("hidden", False, "second")], "first (+1 more)"),
    ([result("example", False, "same"), result("hidden", False, "same")], "same"),
    # a named misconception teaches more than the first symptom
    ([result("example", False, "first"), result("hidden", False, "you mask with 0", diagnosis="masked_with_zero")],
     "you mask with 0 (+1 more)"),
    # and a limit decides the item
    ([result("example", False, "named", diagnosis="x"), result("hidden", False, "a", limit=True, error="limit"),
      result("stability", False, "b")], "a (+2 more)"),
])
def test_the_summary_leads_with_what_decides_the_item(checks, summary):
    assert ItemResult(ITEM, checks).summary == summary


# --------------------------------------------------------------------------- the report

def test_a_report_adds_up_its_items():
    other = Item("m.g", {"example": 3})
    report = Report([ItemResult(ITEM, [result("example", True), result("hidden", True)]),
                     ItemResult(other, [CheckResult("m.g", "example", 3, True)])], ["a note"])
    assert (report.score, report.max_score) == (6, 10)
    assert list(report.by_item()) == ["m.f", "m.g"] and report.by_item()["m.g"].score == 3


def test_build_report_has_every_item_of_the_modules_graded_in_table_order():
    """simplified_attention in exercises.toml: six items, 3 + 3 + 2 + 5 + 3 + 4 = 20 points,
    of which 1 + 1 + 1 + (1 + 2) + 1 + 2 = 9 public."""
    checks = [CheckResult(SOFTMAX, "stability", 2, True), CheckResult(SOFTMAX, "example", 1, True),
              CheckResult("simplified_attention.query_scores", "hidden", 2, False, "off"),
              CheckResult("self_attention.project_qkv", "example", 1, True)]  # a module not graded: left out
    report = build_report(checks, ("simplified_attention",), notes=["graded hw/"])
    assert [r.item.key for r in report.results] == [
        "simplified_attention.query_scores", "simplified_attention.attention_scores",
        "simplified_attention.normalize_by_sum", "simplified_attention.softmax",
        "simplified_attention.context_vectors", "simplified_attention.simplified_self_attention"]
    assert (report.score, report.max_score, report.notes) == (3, 20, ["graded hw/"])
    assert [c.kind for c in report.by_item()[SOFTMAX].checks] == ["stability", "example"]  # as they ran
    assert report.by_item()["simplified_attention.attention_scores"].checks == []
    public = build_report(checks, ("simplified_attention",), public=True)
    assert (public.score, public.max_score) == (3, 9)


def test_build_report_of_two_modules_is_out_of_their_points():
    """causal_attention 25 and multihead_attention 30 points (exercises.toml)."""
    report = build_report([], ("multihead_attention", "causal_attention"))
    assert report.max_score == 55 and report.score == 0
    assert [r.item.module for r in report.results][:1] == ["causal_attention"]  # table order, not the order asked
