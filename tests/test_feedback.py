"""feedback.html: what a student reads after `attnkit grade --report DIR`."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mutants import mutant

from attnkit.outputs import feedback as feedback_html
from attnkit.judge.engine import grade
from attnkit.intake import from_folder
from attnkit.outputs.heatmap import heatmap_png

CA = "causal_attention"
MASK_WITH_ZERO = ('return scores.masked_fill(mask, float("-inf"))', "return scores.masked_fill(mask, 0.0)")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def zygote():
    from attnkit.sandbox import Zygote

    z = Zygote()
    yield z
    z.close()


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(d) for d in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def _section(page: str, item: str) -> str:
    start = page.index(f'<section class="item" id="{item}">')
    return page[start:page.index("</section>", start)]


def test_masked_with_zero_shows_the_reason_and_both_heatmaps(zygote, tmp_path):
    path = mutant(tmp_path / "sub", CA, MASK_WITH_ZERO)
    report = grade(zygote, from_folder(str(path.parent), (CA,), str(path)))
    page = feedback_html.render(report, "feedback for sub")

    assert "Score: 20 / 25" in page  # mask_scores' 5 points lost, nothing else
    section = _section(page, f"{CA}.mask_scores")
    assert "You mask with 0 instead of -inf" in section
    assert "exp(-inf) = 0" in section
    images = _images(section)
    assert len(images) == 2  # the masked scores, and their softmax
    assert all(i.startswith(PNG) for i in images)
    assert 'alt="masked scores: expected values next to yours"' in section
    assert 'alt="their softmax: the attention weights: expected values next to yours"' in section
    # passing items are listed in the table but get no section
    assert f'id="{CA}.causal_mask"' not in page and f"<td>{CA}.causal_mask</td>" in page
    assert "Traceback" not in page and "attnkit/" not in page


def test_student_traceback_is_theirs_and_escaped(zygote, tmp_path):
    path = mutant(tmp_path / "sub", CA,
                  ("    return torch.triu(torch.ones(num_tokens, num_tokens, dtype=torch.bool), diagonal=1)",
                   "    raise ValueError('<script>alert(1)</script>')"))
    page = feedback_html.render(grade(zygote, from_folder(str(path.parent), (CA,), str(path))))
    section = _section(page, f"{CA}.causal_mask")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    assert "<script>" not in page
    assert "File &quot;causal_attention.py&quot;, line" in section and "in causal_mask" in section
    assert "Where your code stopped" in section
    for internal in ("worker.py", "sandbox.py", "attnkit/", "Traceback (most recent call last)"):
        assert internal not in page


def test_not_implemented_items_say_so_without_pictures(zygote):
    assignments = Path(__file__).resolve().parents[1] / "assignments"
    page = feedback_html.render(grade(zygote, from_folder(str(assignments), (CA,), "assignments")))
    assert page.count("not implemented yet") >= 4
    assert "Score: 0 / 25" in page and not _images(page)


def test_public_mode_is_stated(zygote, tmp_path):
    path = mutant(tmp_path / "sub", CA)
    report = grade(zygote, from_folder(str(path.parent), (CA,), str(path)), public=True)
    assert "Public mode" in feedback_html.render(report)  # the report knows it was graded in public mode
    # out of the public points, by hand from exercises.toml: 1 + (1 + 2) + (1 + 1) + (2 + 3 + 1 + 1)
    assert "Score: 13 / 13" in feedback_html.render(report)


def test_heatmap_draws_masked_and_nan_cells():
    expected = torch.tensor([[0.0, float("-inf")], [1.0, 2.0]])
    actual = torch.tensor([[float("nan"), float("nan")], [1.0, 2.0]])
    assert heatmap_png(expected, actual, "weights").startswith(PNG)
    assert heatmap_png(torch.ones(3, 3, dtype=torch.bool), None, "mask").startswith(PNG)


@pytest.mark.slow
def test_grade_report_writes_feedback_html(tmp_path):
    """The command line end to end: the pytest path carries the pictures too."""
    path = mutant(tmp_path / "sub", CA, MASK_WITH_ZERO)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "attnkit.frontends.cli", "grade", str(path.parent), "--report", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"feedback written to {out / 'feedback.html'}" in done.stdout
    page = (out / "feedback.html").read_text()
    assert "Score: 95 / 100" in page
    assert len(_images(_section(page, f"{CA}.mask_scores"))) == 2


def test_a_wrong_causal_module_gets_a_picture_of_its_weights(zygote, tmp_path):
    """The module's output hides its weights; the probe run shows them: here the
    rows of a mask applied after the softmax no longer sum to 1."""
    from attnkit.judge.diagnosis.pictures import PROBE_TITLE

    softmax = "weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)"
    path = mutant(tmp_path / "sub", CA,
                  ("scores = mask_scores(scores, self.mask[:num_tokens, :num_tokens])\n        " + softmax,
                   softmax + "\n        weights = weights.masked_fill(self.mask[:num_tokens, :num_tokens], 0.0)"))
    report = grade(zygote, from_folder(str(path.parent), (CA,), str(path)))
    pictures = [p for c in report.by_item()[f"{CA}.CausalAttention"].checks for p in c.pictures]
    assert pictures and all(p.title == PROBE_TITLE for p in pictures)
    p = pictures[0]
    hidden = torch.ones(6, 6, dtype=torch.bool).triu(1)
    assert (p.expected[hidden] == 0).all() and (p.actual[hidden] == 0).all()
    torch.testing.assert_close(p.expected.sum(-1), torch.ones(6, dtype=torch.float64))
    assert (p.actual.sum(-1)[:-1] < 0.99).all()  # only the last row has nothing to hide
    assert len(_images(_section(feedback_html.render(report), f"{CA}.CausalAttention"))) == 1
