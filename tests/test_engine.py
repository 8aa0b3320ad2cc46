"""One engine: `attnkit grade` and the instructor's pytest plugin grade through
the same `judge.engine.Grading`, so they give the same points and the same
words, and a rule such as "a limit ends the item" holds in both.

Both run in this process on the session's warm worker: `attnkit grade` through
its command line, the plugin in a pytest session of its own."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, Lent, make_submission, in_process_pytest

from attnkit.frontends import pytest_plugin

CHECKS = ROOT / "autograder" / "attnkit" / "judge" / "checks"
LOOP = "    while True:\n        pass\n"


@pytest.fixture
def plugin_run(zygote, monkeypatch):
    """pytest with the plugin, on the kit's check files, in-process; a CompletedProcess of its report."""
    monkeypatch.setattr(pytest_plugin, "Zygote", lambda *args, **kwargs: Lent(zygote))

    def run(folder, out, *extra):
        return in_process_pytest(monkeypatch, ROOT, "-p", "attnkit.frontends.pytest_plugin",
                                 "--attnkit-submission", folder, "--attnkit-json", out, "--attnkit-timeout", "3",
                                 "-q", *extra, CHECKS)

    return run


@pytest.mark.slow
def test_the_pytest_plugin_and_attnkit_grade_agree(attnkit_cli, plugin_run, tmp_path):
    """A wrong mask, and a renormalize_masked that never returns: the same report
    both ways, and under pytest the looping item's other checks are skipped."""
    folder = make_submission(tmp_path / "sub", {"causal_attention": [
        ('return scores.masked_fill(mask, float("-inf"))', "return scores.masked_fill(mask, 0.0)"),
        ("    kept = weights * (~mask)  # masked positions become exactly 0",
         LOOP + "    kept = weights * (~mask)")]})
    folder = tmp_path / "causal"
    folder.mkdir()
    (folder / "causal_attention.py").write_text((tmp_path / "sub" / "causal_attention.py").read_text())
    graded = attnkit_cli("grade", folder, "--json", tmp_path / "grade.json", "--timeout", "3", cwd=ROOT)
    assert graded.returncode == 0, graded.stderr
    viewed = plugin_run(folder, tmp_path / "pytest.json")
    assert viewed.returncode == 1, viewed.stdout + viewed.stderr  # some checks failed
    grade, view = (json.loads((tmp_path / n).read_text()) for n in ("grade.json", "pytest.json"))
    assert grade["score"] == view["score"] == 25 - 5 - 4
    assert [(t["name"], t["score"], t["output"]) for t in grade["tests"]] == \
        [(t["name"], t["score"], t["output"]) for t in view["tests"]]
    renorm = next(t for t in view["tests"] if t["name"] == "causal_attention.renormalize_masked")
    assert renorm["score"] == 0 and "time limit" in renorm["output"]
    # the engine's rule, seen through pytest: after the limit, that item's other checks are skipped
    assert "2 skipped" in viewed.stdout


def test_the_plugin_runs_only_what_pytest_selects(plugin_run, tmp_path):
    folder = make_submission(tmp_path / "sub")
    viewed = plugin_run(folder, tmp_path / "out.json", "-k", "softmax")
    assert viewed.returncode == 0, viewed.stdout + viewed.stderr
    assert "passed" in viewed.stdout and "failed" not in viewed.stdout
