"""The real nbgrader pipeline, the hostile half of the sample class: a wrong
stage, an infinite loop, and a forger who replaces the grader in the kernel
(see nbgrader_course.py; the honest half is in test_nbgrader_pipeline.py).
"""

from __future__ import annotations

import csv

import pytest
from nbgrader_course import (ITEM_SECONDS, check_fast_path, check_no_secret_shown, fixtures, full_points,
                             isolated_items, nbgrader_cells, shared_tests)

from attnkit.exercises import module_points, module_totals

pytestmark = pytest.mark.slow

SUBMISSIONS = {  # student -> assignments submitted
    "wrong": ("simplified_attention",), "loop": ("causal_attention",), "forger": ("simplified_attention",),
}


course, zygote, attnkit_items = fixtures(SUBMISSIONS)
test_export_and_feedback_for_every_assignment, test_every_test_cell_scores_what_attnkit_grade_gives = \
    shared_tests(SUBMISSIONS)


def test_scenarios(course):
    cells, full = nbgrader_cells(course), full_points()
    # one wrong stage: partial credit, and only that item loses points
    wrong = cells["wrong"]
    assert 0 < sum(wrong.values()) < module_points("simplified_attention")
    assert wrong.pop("simplified_attention.softmax") < full["simplified_attention.softmax"]
    assert all(v == full[k] for k, v in wrong.items())
    # an infinite loop costs the looping item only, and the notebook completes
    loop = cells["loop"]
    assert loop.pop("causal_attention.renormalize_masked") == 0
    assert loop == {k: v for k, v in full.items() if k.startswith("causal_attention.")
                    and k != "causal_attention.renormalize_masked"}


def test_fast_path_equals_nbgrader_and_names_the_forger(course, zygote, attnkit_items, tmp_path):
    nbgrader, isolated, flagged = check_fast_path(course, SUBMISSIONS, zygote, attnkit_items, tmp_path)
    # nbgrader ran the forger's replacement grader in its kernel
    assert nbgrader["forger"]["simplified_attention"] == module_points("simplified_attention")
    assert isolated["forger"]["simplified_attention"] < module_points("simplified_attention")
    assert len(flagged) == 1 and flagged[0].startswith("forger simplified_attention: nbgrader 20")


def test_grade_class_takes_the_submitted_tree_and_lists_the_forger(course, attnkit_items, attnkit_cli, tmp_path):
    # the course's limit per item, as every other grading here: the looping student spends it
    proc = attnkit_cli("grade-class", course / "submitted", "--out", tmp_path / "out", "--jobs", "2",
                       "--timeout", ITEM_SECONDS, "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 nbgrader score above the isolated grade" in proc.stdout
    assert "nbgrader score above the isolated grade: forger simplified_attention: nbgrader 20" in proc.stdout
    with open(tmp_path / "out" / "integrity.csv") as f:
        flagged = [(r["students"], r["item"]) for r in csv.DictReader(f) if r["flag"].startswith("nbgrader")]
    assert flagged == [("forger", "simplified_attention")]
    with open(tmp_path / "out" / "grades.csv") as f:
        totals = {row["student"]: int(row["total"]) for row in csv.DictReader(f)}
    assert set(totals) == set(SUBMISSIONS)
    for student in SUBMISSIONS:
        assert totals[student] == sum(module_totals(isolated_items(student, attnkit_items)).values()), student


def test_no_kernel_sees_the_secret_or_the_solutions_path(course):
    """The forger's kernel printed its environment and what attnkit.judge.reference
    tells it; the test cells were graded by the helper, outside the kernels."""
    forger = (course / "feedback" / "forger" / "simplified_attention" / "simplified_attention.html").read_text()
    assert "environment:" in forger and "ATTNKIT_GRADER" in forger, "the attack did not run under the helper"
    assert "reference softmax:" in forger or "attack failed:" in forger
    check_no_secret_shown(course, SUBMISSIONS)
