"""The Gradescope bundle, run against a fake autograder root."""

import json
import os
import stat
import subprocess
import sys
import zipfile

import pytest
from conftest import SOLUTIONS, make_submission
from test_full_and_zero import run_cli

pytestmark = pytest.mark.slow  # the bundle's run_autograder as a process


def unpack(tmp_path, secret=None):
    bundle = tmp_path / "autograder.zip"
    args = ["gradescope-bundle", str(bundle)]
    if secret:
        (tmp_path / "secret.txt").write_text(secret)
        args += ["--secret-file", str(tmp_path / "secret.txt")]
    assert run_cli(*args).returncode == 0
    root = tmp_path / "root"
    with zipfile.ZipFile(bundle) as z:
        names = z.namelist()
        assert {"setup.sh", "run_autograder", "requirements.txt"} <= set(names)
        assert "attnkit/solutions/softmax.py" not in names and "attnkit/solutions/simplified_attention.py" in names
        assert z.getinfo("run_autograder").external_attr >> 16 & stat.S_IXUSR
        z.extractall(root / "source")
    (root / "results").mkdir()
    return root


def run_autograder(root):
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), ATTNKIT_PYTHON=sys.executable)
    env.pop("ATTNKIT_SOLUTIONS", None)
    proc = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((root / "results" / "results.json").read_text())


def test_bundle_grades_a_nested_submission_with_a_wrong_stage(tmp_path):
    root = unpack(tmp_path, secret="course-secret-1")
    sub = make_submission(root / "submission" / "my-work", {"causal_attention": [
        ('return scores.masked_fill(mask, float("-inf"))', "return scores.masked_fill(mask, 0.0)")]})
    # the student also tries to write the results file and to read the kit
    text = (sub / "simplified_attention.py").read_text()
    (sub / "simplified_attention.py").write_text(text + (
        "\nimport json, os\n"
        "for p in ('/autograder/results/results.json', os.environ.get('AUTOGRADER_ROOT', '') + '/results/results.json',"
        f" {str(root / 'results' / 'results.json')!r}):\n"
        "    try:\n        open(p, 'w').write(json.dumps({'score': 100}))\n    except OSError:\n        pass\n"))
    data = run_autograder(root)
    assert (data["score"], data["max_score"]) == (95, 100)
    mask = next(t for t in data["tests"] if t["name"] == "causal_attention.mask_scores")
    assert mask["score"] == 0 and mask["status"] == "failed" and mask["output"]


def test_bundle_names_missing_files_and_never_follows_a_link(tmp_path):
    root = unpack(tmp_path, secret="s3cret-of-the-course")
    (root / "submission").mkdir()
    (root / "submission" / "simplified_attention.py").write_text((SOLUTIONS / "simplified_attention.py").read_text())
    # links to the bundled solutions and to the secret: refused, never read
    (root / "submission" / "self_attention.py").symlink_to(root / "source" / "attnkit" / "solutions" / "self_attention.py")
    (root / "submission" / "causal_attention.py").symlink_to(root / "source" / "attnkit_secret")
    data = run_autograder(root)
    assert data["score"] == 20
    assert "self_attention: nothing graded: self_attention.py is a symbolic link, not followed" in data["output"]
    assert "missing file: expected multihead_attention.py (or multihead_attention.ipynb) in your submission" \
        in data["output"]
    assert "s3cret" not in json.dumps(data) and str(root) not in json.dumps(data)


def test_bundle_with_nothing_to_grade_still_writes_results(tmp_path):
    root = unpack(tmp_path)
    (root / "submission" / "docs").mkdir(parents=True)
    (root / "submission" / "docs" / "answers.txt").write_text("see attached")
    data = run_autograder(root)
    assert data["score"] == 0 and data["output"].startswith("nothing to grade: no simplified_attention.py")


def test_bundle_refuses_to_grade_where_the_sandbox_cannot_confine_unless_built_unconfined(tmp_path):
    """A container that denies namespaces (forced here with ATTNKIT_SANDBOX=none):
    no results.json (Gradescope shows the instructor a failed autograder, not a
    grade), and the reason; a bundle built --unconfined grades, and says so."""
    for unconfined in (False, True):
        bundle = tmp_path / f"autograder-{unconfined}.zip"
        assert run_cli("gradescope-bundle", str(bundle), *(["--unconfined"] if unconfined else [])).returncode == 0
        root = tmp_path / f"root-{unconfined}"
        with zipfile.ZipFile(bundle) as z:
            z.extractall(root / "source")
        (root / "results").mkdir()
        make_submission(root / "submission")
        env = dict(os.environ, AUTOGRADER_ROOT=str(root), ATTNKIT_PYTHON=sys.executable, ATTNKIT_SANDBOX="none")
        proc = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env,
                              capture_output=True, text=True, timeout=300)
        results = root / "results" / "results.json"
        if unconfined:
            assert proc.returncode == 0, proc.stdout + proc.stderr
            data = json.loads(results.read_text())
            assert data["score"] == 100 and "isolation was reduced" in data["output"]
        else:
            assert proc.returncode == 1 and not results.exists()
            assert "refusing to grade" in proc.stdout and "--unconfined" in proc.stdout


def test_each_submission_gets_hidden_cases_of_its_own(tmp_path):
    """What a run's feedback shows of the hidden cases (here, the student's own
    message carrying the first hidden input) is no use for the next run: each
    draws its own cases. Correct stages keep their points in both runs."""
    root = unpack(tmp_path, secret="course-secret-1")
    sub = make_submission(root / "submission", {"simplified_attention": [(
        "    shifted = scores - scores.amax(dim=dim, keepdim=True)",
        "    if scores.dtype == torch.float64 and scores.dim() > 1:  # a hidden case\n"
        "        raise ValueError(f'LEAK {float(scores.flatten()[0])!r}')\n"
        "    shifted = scores - scores.amax(dim=dim, keepdim=True)")]})
    assert (sub / "simplified_attention.py").read_text().count("LEAK") == 1
    leaked = []
    for _ in range(2):
        data = run_autograder(root)
        softmax = next(t for t in data["tests"] if t["name"] == "simplified_attention.softmax")
        leaked.append(softmax["output"].split("LEAK ", 1)[1].split()[0])
        assert data["score"] == 100 - softmax["max_score"] + softmax["score"]
    assert leaked[0] != leaked[1], leaked
