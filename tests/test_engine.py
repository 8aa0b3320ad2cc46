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


# Right only on the student's own softmax: attention_weights checks that the
# softmax it called counted the call, which no stand-in does.
COUNTS_ITS_CALLS = {
    "simplified_attention": [("def softmax(", "CALLS = []\n\n\ndef softmax("),
                             ("    shifted = ", "    CALLS.append(1)\n    shifted = ")],
    "self_attention": [("import torch.nn as nn\n", "import torch.nn as nn\n\nimport simplified_attention\n"),
                       ("    return torch.softmax(scores / d_k ** 0.5, dim=-1)",
                        "    before = len(simplified_attention.CALLS)\n"
                        "    weights = simplified_attention.softmax(scores / d_k ** 0.5, dim=-1)\n"
                        "    assert len(simplified_attention.CALLS) == before + 1\n    return weights")]}


@pytest.mark.slow
def test_under_pytest_an_item_is_tried_on_the_students_own_stages_as_elsewhere(attnkit_cli, plugin_run, tmp_path):
    """pytest collects the check files alphabetically (self_attention's before
    simplified_attention's); the plugin runs the checks in the engine's order,
    so attention_weights is tried on the student's own softmax after softmax
    passed, as `attnkit grade` does: 100 both ways (before: 96 under pytest,
    attention_weights graded on a stand-in softmax, which counts nothing)."""
    folder = make_submission(tmp_path / "sub", COUNTS_ITS_CALLS)
    graded = attnkit_cli("grade", folder, "--json", tmp_path / "grade.json", cwd=ROOT)
    assert graded.returncode == 0, graded.stderr
    plugin_run(folder, tmp_path / "pytest.json")
    grade, view = (json.loads((tmp_path / n).read_text()) for n in ("grade.json", "pytest.json"))
    assert grade["score"] == view["score"] == 100


def test_the_plugin_runs_only_what_pytest_selects(plugin_run, tmp_path):
    folder = make_submission(tmp_path / "sub")
    viewed = plugin_run(folder, tmp_path / "out.json", "-k", "softmax")
    assert viewed.returncode == 0, viewed.stdout + viewed.stderr
    assert "passed" in viewed.stdout and "failed" not in viewed.stdout
