"""The student's `pytest`: one test per graded item in a folder of exercise
files, inert everywhere else, through the installed entry point.

Each test runs pytest in a folder of its own, in this process on the session's
warm worker; one also runs it in a fresh process, as a student would
(slow: torch and a worker start again)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from conftest import Lent, in_process_pytest
from mutants import mutant
from notebook_samples import source_notebook

KIT = Path(__file__).resolve().parents[1]
MASK_WITH_ZERO = ('return scores.masked_fill(mask, float("-inf"))', "return scores.masked_fill(mask, 0.0)")


def run_pytest(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """pytest in a fresh process in ``cwd``, as a student runs it."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")}
    clean.update(env or {}, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                          env=clean, capture_output=True, text=True, timeout=300)


@pytest.fixture
def student_pytest(zygote, monkeypatch):
    """pytest run in ``cwd`` in this process (conftest's ``in_process_pytest``), the
    student view's worker the session's; a CompletedProcess of its report."""
    import attnkit.sandbox
    from attnkit.judge import reference

    monkeypatch.setattr(attnkit.sandbox, "Zygote", lambda *args, **kwargs: Lent(zygote))
    monkeypatch.setenv("COLUMNS", "200")

    def run(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        with monkeypatch.context() as m:
            for key, value in (env or {}).items():
                m.setenv(key, value)
            reference.solutions.cache_clear()  # found (or not) where this run's environment says
            try:
                return in_process_pytest(m, cwd, *args)
            finally:
                reference.solutions.cache_clear()

    return run


@pytest.fixture(params=["in-process", pytest.param("process", marks=pytest.mark.slow)])
def either_pytest(request, student_pytest):
    return student_pytest if request.param == "in-process" else run_pytest


def test_registered_as_a_pytest_plugin():
    plugins = {e.name: e.value for e in entry_points(group="pytest11")}
    assert plugins.get("attnkit-student") == "attnkit.frontends.student_view"


def test_handout_shows_every_item_not_implemented(either_pytest, tmp_path):
    shutil.copytree(KIT / "assignments", tmp_path / "handout")
    done = either_pytest(tmp_path / "handout", "-v", "-rs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SKIPPED (not implemented yet)") == 20
    assert "SKIPPED [4] multihead_attention.py: not implemented yet" in done.stdout  # -rs, at the student's file
    assert "simplified_attention.py::query_scores SKIPPED" in done.stdout
    assert "attnkit: 0/100 points" in done.stdout
    # teaching order, whatever the order of the files on disk
    assert done.stdout.index("simplified_attention.py::softmax") < done.stdout.index("causal_attention.py::causal_mask")


def test_one_wrong_item_fails_with_its_reason_and_m_selects_an_assignment(student_pytest, tmp_path):
    folder = mutant(tmp_path / "sub", "causal_attention", MASK_WITH_ZERO).parent
    done = student_pytest(folder, "-m", "causal_attention")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 3 passed, 16 deselected" in done.stdout
    assert "causal_attention.mask_scores: 0/5 points" in done.stdout
    assert "you mask with 0 instead of -inf" in done.stdout
    assert "attnkit: 20/25 points for the selected assignments (of 100 in all)" in done.stdout
    assert f"attnkit grade {folder} --report DIR" in done.stdout
    assert "Traceback" not in done.stdout


def test_solutions_score_100(student_pytest, tmp_path):
    folder = mutant(tmp_path / "sub", "causal_attention").parent
    done = student_pytest(folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "20 passed" in done.stdout and "attnkit: 100/100 points" in done.stdout


def test_work_in_a_notebook_next_to_its_untouched_stub_is_what_pytest_grades(student_pytest, tmp_path):
    """A handout holds both the .py stubs and the notebooks; a student who works
    in the notebook sees pytest grade it, as `attnkit grade` and `check` do."""
    folder = tmp_path / "handout"
    shutil.copytree(KIT / "assignments", folder)
    (folder / "causal_attention.ipynb").write_text(json.dumps(source_notebook("causal_attention")))
    done = student_pytest(folder, "-m", "causal_attention")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed, 16 deselected" in done.stdout
    assert "attnkit: 25/25 points for the selected assignments" in done.stdout


def test_without_the_solutions_it_runs_in_public_mode_and_says_so(student_pytest, tmp_path):
    folder = mutant(tmp_path / "sub", "causal_attention", MASK_WITH_ZERO).parent
    done = student_pytest(folder, env={"ATTNKIT_SOLUTIONS": str(tmp_path / "no-solutions-here")})
    assert "attnkit: public mode" in done.stdout  # the header
    assert "attnkit public mode: " in done.stdout and "points the public checks cover (of 100)" in done.stdout
    assert "causal_attention.mask_scores: 0/3 points" in done.stdout  # out of its public points
    # the command that draws the pictures is the one a handout's checker has
    assert f"attnkit check {folder} --report DIR" in done.stdout and "attnkit grade" not in done.stdout


def test_inert_in_an_unrelated_project(student_pytest, tmp_path):
    (tmp_path / "test_other.py").write_text("def test_it():\n    assert True\n")
    done = student_pytest(tmp_path, "-v")
    assert done.returncode == 0 and "1 passed" in done.stdout
    # pytest's header names the interpreter's path and every installed plugin; what the
    # view prints (its header, rows and summary) all start with "attnkit" or hold "attnkit:"
    lines = [line for line in done.stdout.splitlines() if not line.startswith(("plugins:", "platform "))]
    assert not any(line.startswith("attnkit") or "attnkit:" in line or "points" in line for line in lines), lines


def test_explicit_option_activates_it_elsewhere(student_pytest, tmp_path):
    mutant(tmp_path / "sub", "causal_attention")
    done = student_pytest(tmp_path, "--attnkit-student", "sub", "-m", "multihead_attention")
    assert "4 passed, 16 deselected" in done.stdout, done.stdout + done.stderr


@pytest.mark.slow
def test_attnkit_grade_in_the_folder_is_unchanged(tmp_path):
    """`attnkit grade .` runs its own pytest in the folder: the view stays out of it."""
    folder = mutant(tmp_path / "sub", "causal_attention", MASK_WITH_ZERO).parent
    done = subprocess.run([sys.executable, "-m", "attnkit.frontends.cli", "grade", "."], cwd=folder,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Total: 95/100" in done.stdout
    assert "not implemented" not in done.stdout and "deselected" not in done.stdout
