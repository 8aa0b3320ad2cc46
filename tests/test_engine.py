"""One engine: `attnkit grade` and the instructor's pytest plugin grade through
the same `judge.engine.Grading`, so they give the same points and the same
words, and a rule such as "a limit ends the item" holds in both."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, make_submission

CHECKS = ROOT / "autograder" / "attnkit" / "judge" / "checks"
LOOP = "    while True:\n        pass\n"


def _attnkit_grade(folder, out):
    return subprocess.run([sys.executable, "-m", "attnkit", "grade", str(folder), "--json", str(out), "--timeout", "3"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def _pytest_plugin(folder, out, *extra):
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "attnkit.frontends.pytest_plugin", "-p",
                           "no:cacheprovider", "--attnkit-submission", str(folder), "--attnkit-json", str(out),
                           "--attnkit-timeout", "3", "-q", *extra, str(CHECKS)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_the_pytest_plugin_and_attnkit_grade_agree(tmp_path):
    """A wrong mask, and a renormalize_masked that never returns: the same report
    both ways, and under pytest the looping item's other checks are skipped."""
    folder = make_submission(tmp_path / "sub", {"causal_attention": [
        ('return scores.masked_fill(mask, float("-inf"))', "return scores.masked_fill(mask, 0.0)"),
        ("    kept = weights * (~mask)  # masked positions become exactly 0",
         LOOP + "    kept = weights * (~mask)")]})
    folder = tmp_path / "causal"
    folder.mkdir()
    (folder / "causal_attention.py").write_text((tmp_path / "sub" / "causal_attention.py").read_text())
    graded = _attnkit_grade(folder, tmp_path / "grade.json")
    assert graded.returncode == 0, graded.stderr
    viewed = _pytest_plugin(folder, tmp_path / "pytest.json")
    assert viewed.returncode == 1, viewed.stdout + viewed.stderr  # some checks failed
    grade, view = (json.loads((tmp_path / n).read_text()) for n in ("grade.json", "pytest.json"))
    assert grade["score"] == view["score"] == 25 - 5 - 4
    assert [(t["name"], t["score"], t["output"]) for t in grade["tests"]] == \
        [(t["name"], t["score"], t["output"]) for t in view["tests"]]
    renorm = next(t for t in view["tests"] if t["name"] == "causal_attention.renormalize_masked")
    assert renorm["score"] == 0 and "time limit" in renorm["output"]
    # the engine's rule, seen through pytest: after the limit, that item's other checks are skipped
    assert "2 skipped" in viewed.stdout


def test_the_plugin_runs_only_what_pytest_selects(tmp_path):
    folder = make_submission(tmp_path / "sub")
    viewed = _pytest_plugin(folder, tmp_path / "out.json", "-k", "softmax")
    assert viewed.returncode == 0, viewed.stdout + viewed.stderr
    assert "passed" in viewed.stdout and "failed" not in viewed.stdout
