"""An instructor adds a check the way they write any test, and gives it points:
both `attnkit grade` (pytest) and `grade-class` (the batch path) then use it."""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import ASSIGNMENTS, ROOT, make_submission

pytestmark = pytest.mark.slow  # the command line as processes

CHECK = '''
import torch

from attnkit.judge import compare
from attnkit.judge.registry import check


@check("simplified_attention.softmax", "uniform_scores")
def test_softmax_of_equal_scores_is_uniform(student):
    """Equal scores give equal weights."""
    compare.close(student(torch.zeros(2, 4, dtype=torch.float64)), torch.full((2, 4), 0.25, dtype=torch.float64))
'''


def test_an_added_check_counts_on_both_paths(tmp_path):
    kit = tmp_path / "kit"
    shutil.copytree(ROOT / "autograder", kit / "autograder", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "solutions", kit / "solutions")
    (kit / "autograder" / "attnkit" / "judge" / "checks" / "test_instructor.py").write_text(CHECK)
    points = kit / "autograder" / "attnkit" / "exercises.toml"
    points.write_text(points.read_text().replace('["simplified_attention.softmax"]\n',
                                                 '["simplified_attention.softmax"]\nuniform_scores = 1\n'))
    env = dict(os.environ, PYTHONPATH=str(kit / "autograder"))
    grade = subprocess.run([sys.executable, "-m", "attnkit.frontends.cli", "grade", str(ROOT / "solutions")],
                           env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert grade.returncode == 0, grade.stderr
    assert "simplified_attention.softmax                     6/6" in grade.stdout
    assert "Total: 101/101" in grade.stdout
    klass = tmp_path / "class"
    make_submission(klass / "ok")
    make_submission(klass / "stub", base=ASSIGNMENTS)
    run = subprocess.run([sys.executable, "-m", "attnkit.frontends.cli", "grade-class", str(klass), "--out", str(tmp_path / "out"),
                          "--quiet"], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    csv = (tmp_path / "out" / "grades.csv").read_text().splitlines()
    assert csv[1].startswith("ok,101,") and csv[2].startswith("stub,0,")
