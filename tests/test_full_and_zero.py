"""The reference solutions score 100, the generated stubs 0, on both paths."""

import json
import subprocess
import sys

import pytest
from conftest import ASSIGNMENTS, ROOT, SOLUTIONS, grade_folder

from attnkit.exercises import items


@pytest.fixture(scope="module")
def solved(zygote):
    """The solutions graded once for this module's tests."""
    return grade_folder(zygote, SOLUTIONS)


def test_solutions_score_full_marks(solved):
    report = solved
    failed = {r.item.key: r.reasons for r in report.results if r.score != r.max_score}
    assert failed == {}
    assert (report.score, report.max_score) == (100, 100)


def test_stubs_score_zero_and_say_not_implemented(zygote):
    report = grade_folder(zygote, ASSIGNMENTS)
    assert report.score == 0
    assert report.max_score == 100
    for r in report.results:
        assert r.checks, r.item.key
        assert all("not implemented" in c.reason for c in r.checks), (r.item.key, r.reasons)


def test_every_item_is_graded(solved):
    report = solved
    assert [r.item.key for r in report.results] == list(items())
    ran = {(c.item, c.kind) for r in report.results for c in r.checks}
    assert ran == {(k, kind) for k, i in items().items() for kind in i.checks}


def run_cli(*args, cwd=ROOT):
    """``attnkit ARGS`` in a new process (tests of what only a process shows)."""
    return subprocess.run([sys.executable, "-m", "attnkit.frontends.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cli_grade_solutions_json(attnkit_cli, tmp_path):
    out = tmp_path / "results.json"
    proc = attnkit_cli("grade", "solutions", "--json", str(out), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "Total: 100/100" in proc.stdout
    data = json.loads(out.read_text())
    assert (data["score"], data["max_score"]) == (100, 100)
    assert [t["name"] for t in data["tests"]] == list(items())
    for test in data["tests"]:
        assert set(test) >= {"name", "score", "max_score", "status", "output"}
        assert test["status"] == "passed" and test["score"] == test["max_score"]


def test_cli_grade_assignments_lists_every_item(attnkit_cli, tmp_path):
    out = tmp_path / "results.json"
    proc = attnkit_cli("grade", "assignments", "--json", str(out), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "Total: 0/100" in proc.stdout
    for key in items():
        row = next(line for line in proc.stdout.splitlines() if f" {key} " in line)
        assert "not implemented" in row, row
    data = json.loads(out.read_text())
    assert data["score"] == 0 and all(t["status"] == "failed" for t in data["tests"])
    assert all("not implemented" in t["output"] for t in data["tests"])


@pytest.mark.slow
def test_fail_under_sets_the_exit_code(attnkit_cli):
    """The process's own exit code once (the console script ends with os._exit), in-process after."""
    assert run_cli("grade", "assignments", "--fail-under", "50").returncode == 1
    assert attnkit_cli("grade", "assignments", "--fail-under", "50", cwd=ROOT).returncode == 1
    assert attnkit_cli("grade", "assignments", cwd=ROOT).returncode == 0
