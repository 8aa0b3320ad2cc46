"""The real nbgrader pipeline, honest students: full marks, the released
notebooks untouched, and one that prints to stderr and warns. The machinery
and the students are described in nbgrader_course.py; the hostile half of the
class (a wrong stage, an infinite loop, a forger) is in
test_nbgrader_pipeline_hostile.py. `nbgrader validate` runs on a student's copy
of stage 1, right and wrong.
"""

from __future__ import annotations

import json
import os

import pytest
from nbgrader_course import (check_fast_path, check_no_secret_shown, fixtures, full_points, nbgrader_cells,
                             run, shared_tests)
from notebook_samples import student_notebook

from attnkit.exercises import MODULES

pytestmark = pytest.mark.slow

SUBMISSIONS = {  # student -> assignments submitted
    "full": MODULES, "released": ("simplified_attention", "multihead_attention"), "stderr": ("self_attention",),
}


course, zygote, attnkit_items = fixtures(SUBMISSIONS)
test_export_and_feedback_for_every_assignment, test_every_test_cell_scores_what_attnkit_grade_gives = \
    shared_tests(SUBMISSIONS)


def test_scenarios(course):
    cells, full = nbgrader_cells(course), full_points()
    assert cells["full"] == full
    assert set(cells["released"].values()) == {0.0}
    # stderr and warnings in the student's code cost nothing
    assert cells["stderr"] == {k: v for k, v in full.items() if k.startswith("self_attention.")}


def test_fast_path_equals_nbgrader_and_flags_no_one(course, zygote, attnkit_items, tmp_path):
    assert check_fast_path(course, SUBMISSIONS, zygote, attnkit_items, tmp_path)[2] == []


def test_no_feedback_shows_the_secret_or_the_solutions_path(course):
    check_no_secret_shown(course, SUBMISSIONS)


def test_validate_passes_a_right_copy_and_fails_a_wrong_one_with_the_reason(course, tmp_path):
    """`nbgrader validate` on a student's machine (no course config, no hidden tests)."""
    module = "simplified_attention"
    released = json.loads((course / "release" / module / f"{module}.ipynb").read_text())
    paths = []
    for student in ("full", "wrong"):
        (tmp_path / student).mkdir()
        paths.append(tmp_path / student / f"{module}.ipynb")
        paths[-1].write_text(json.dumps(student_notebook(released, module, student)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTNKIT_")}
    out = run(["nbgrader", "validate", *map(str, paths)], cwd=tmp_path, env=env).stdout
    right, wrong = out.split("VALIDATION FAILED", 1)
    assert right.strip() == "Success! Your notebook passes all the tests."
    assert "The following cell failed" in wrong and 'score("simplified_attention.softmax", hidden=hidden)' in wrong
    # the reasons, as the grader wrote them
    assert "simplified_attention.softmax: 0 of 5 points: 0/3 on the public checks" in wrong
    assert "stability: softmax of scores of +-1000" in wrong
    assert 'score("simplified_attention.query_scores"' not in wrong, "a right item fails validation"
