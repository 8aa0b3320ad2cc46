"""Bad answers get a clear reason naming the item, and never stop the run."""

from conftest import ROOT, full_marks, grade_folder, make_submission, scores

from attnkit.judge.engine import grade

S = "simplified_attention"

BROKEN = {S: [
    ("return (inputs * query.unsqueeze(-2)).sum(dim=-1)  # (..., T)",
     "return (inputs * query.unsqueeze(-2)).sum(dim=-1).tolist()"),
    ("return inputs @ inputs.transpose(-2, -1)  # (..., T, d) @ (..., d, T) -> (..., T, T)",
     "return (inputs @ inputs.transpose(-2, -1)).flatten()"),
    ("return scores / scores.sum(dim=dim, keepdim=True)", "return scores / scores.sum(dim=dim, keepdim=True) * float('nan')"),
    ("shifted = scores - scores.amax(dim=dim, keepdim=True)  # largest exponent is now 0",
     "raise ValueError('boom')"),
    ("def context_vectors(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:",
     "def context_vectors_renamed(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:"),
]}


def test_each_kind_of_bad_answer_has_its_reason_and_the_run_goes_on(zygote, tmp_path):
    report = grade_folder(zygote, make_submission(tmp_path / "s", BROKEN), (S,))
    by = report.by_item()
    assert "is a list; a torch.Tensor was due" in by[f"{S}.query_scores"].summary
    assert "has shape (36,); expected (6, 6)" in by[f"{S}.attention_scores"].summary
    assert "contains NaN" in by[f"{S}.normalize_by_sum"].summary
    assert "raised ValueError: boom" in by[f"{S}.softmax"].summary
    assert "defines no `context_vectors`" in by[f"{S}.context_vectors"].summary
    # the whole mechanism calls the broken stages, which are stood in by the reference
    assert scores(report) == dict(full_marks((S,)), **{f"{S}.{n}": 0 for n in (
        "query_scores", "attention_scores", "normalize_by_sum", "softmax", "context_vectors")})


def test_student_traceback_is_trimmed_to_their_file(zygote, tmp_path):
    report = grade_folder(zygote, make_submission(tmp_path / "s", BROKEN), (S,))
    details = next(c.details for c in report.by_item()[f"{S}.softmax"].checks if not c.passed)
    assert 'File "simplified_attention.py"' in details and "in softmax" in details
    assert "attnkit" not in details and "worker.py" not in details


def test_import_error_costs_only_that_module(zygote, tmp_path):
    folder = make_submission(tmp_path / "s", {"self_attention": [("import torch.nn as nn", "import torch.nn as nn\n)")]})
    report = grade_folder(zygote, folder)
    got = scores(report)
    assert all(v == 0 for k, v in got.items() if k.startswith("self_attention."))
    assert all(got[k] == v for k, v in full_marks().items() if not k.startswith("self_attention."))
    # the reason is the import's own words, not "raised ..." (Fault.IMPORT once read as a raised error)
    assert report.by_item()["self_attention.SelfAttention"].summary.startswith(
        "self_attention.py could not be imported: SyntaxError")
    # the traceback shows the line and where in it, never importlib's frames (named "<frozen ...>", they
    # once passed for the student's: resolved as a path, they land in the submission's folder)
    details = next(c.details for c in report.by_item()["self_attention.SelfAttention"].checks if not c.passed)
    assert details == '  File "self_attention.py", line 16\n    )\n    ^\n', details


def test_broken_causal_attention_does_not_cost_multihead(zygote, tmp_path):
    """multihead_attention imports causal_attention; a syntax error there costs only its own items."""
    folder = make_submission(tmp_path / "s", {"causal_attention": [("import torch.nn as nn", "import torch.nn as nn\n)")]})
    got = scores(grade_folder(zygote, folder, ("causal_attention", "multihead_attention")))
    assert all(v == 0 for k, v in got.items() if k.startswith("causal_attention."))
    assert {k: v for k, v in got.items() if k.startswith("multihead_attention.")} == full_marks(
        ("multihead_attention",))


def test_missing_file_scores_zero_and_names_the_file(zygote, tmp_path):
    folder = make_submission(tmp_path / "s", drop=("causal_attention",))
    report = grade_folder(zygote, folder)
    for key, result in report.by_item().items():
        if key.startswith("causal_attention."):
            assert result.score == 0
            # not "raised missing file: ..." (an Enum member read as its name, not its value)
            assert result.summary == "missing file: expected causal_attention.py in the submission", result.summary
            assert {c.error for c in result.checks} == {"missing_file"}
        else:
            assert result.score == result.max_score, (key, result.reasons)
    assert any("causal_attention.py" in n for n in report.notes)


def test_single_file_is_graded_out_of_its_own_points(attnkit_cli):
    proc = attnkit_cli("grade", "solutions/causal_attention.py", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "Total: 25/25" in proc.stdout
    assert "simplified_attention" not in proc.stdout


def test_bad_paths_get_a_clear_error_without_traceback(attnkit_cli, tmp_path):
    proc = attnkit_cli("grade", str(tmp_path / "nowhere"))
    assert proc.returncode == 2
    assert "no such file or folder" in proc.stderr and "Traceback" not in proc.stderr
    other = tmp_path / "my_softmax.py"
    other.write_text("x = 1\n")
    proc = attnkit_cli("grade", str(other))
    assert proc.returncode == 2
    assert "not one of the four exercise files" in proc.stderr and "Traceback" not in proc.stderr


def test_root_is_the_repository():
    assert (ROOT / "pyproject.toml").exists()


def test_a_broken_notebook_is_named_in_its_rows_not_called_missing(zygote, tmp_path):
    """A newcomer's review: rows said 'missing file: expected causal_attention.py'
    for a notebook that was there but not JSON; the reason is now the notebook's."""
    from attnkit.intake import collect

    folder = make_submission(tmp_path / "s", drop=("causal_attention",))
    (folder / "causal_attention.ipynb").write_text('{"cells": [')
    report = grade(zygote, collect(str(folder), "s"))
    for key, result in report.by_item().items():
        if key.startswith("causal_attention."):
            assert result.score == 0 and result.summary.startswith(
                "causal_attention: nothing graded: causal_attention.ipynb: not a readable notebook"), result.summary
        else:
            assert result.score == result.max_score, (key, result.reasons)
