"""feedback.html: what a student reads after `attnkit grade --report DIR`; its
heatmaps (inline SVG, drawn without matplotlib) and its escaping."""

from __future__ import annotations

import importlib.abc
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mutants import mutant

from attnkit.errors import CheckFailure, StudentError
from attnkit.intake import from_folder
from attnkit.judge.engine import grade
from attnkit.judge.registry import Check
from attnkit.judge.scoring import build_report, outcome
from attnkit.outputs import feedback as feedback_html
from attnkit.outputs import templating
from attnkit.outputs.heatmap import svg

CA = "causal_attention"
S = "simplified_attention"
MASK_WITH_ZERO = ('return scores.masked_fill(mask, float("-inf"))', "return scores.masked_fill(mask, 0.0)")
CELL = re.compile(r'<rect x="(\d+)" y="(\d+)" width="(\d+)" height="\3" fill="(#[0-9a-f]{6})"')


def _pictures(page: str) -> list[str]:
    return re.findall(r"<svg .*?</svg>", page, re.S)


def _section(page: str, item: str) -> str:
    start = page.index(f'<section class="item" id="{item}">')
    return page[start:page.index("</section>", start)]


def _cells(picture: str) -> list[tuple[int, int, str]]:
    """(x, y, fill) of the picture's matrix cells (the colour bar's bands and legend swatches are not square
    cells of the panels' size)."""
    found = [(int(x), int(y), int(size), fill) for x, y, size, fill in CELL.findall(picture)]
    size = max(s for _, _, s, _ in found)
    return [(x, y, fill) for x, y, s, fill in found if s == size]


class RefuseImports(importlib.abc.MetaPathFinder):
    """Records, and refuses, any import of the named top-level packages."""

    def __init__(self, *names: str):
        self.names, self.asked = names, []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            self.asked.append(name)
            raise ImportError(f"{name} imported on the grading path")
        return None


@pytest.fixture(scope="module")
def masked_with_zero(zygote, tmp_path_factory):
    """A wrong causal_attention graded and its feedback written with matplotlib out of reach
    (removed from sys.modules for the duration, and its import refused and recorded)."""
    folder = tmp_path_factory.mktemp("mask")
    path = mutant(folder / "sub", CA, MASK_WITH_ZERO)
    refuse = RefuseImports("matplotlib")
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in sys.modules if n.split(".")[0] == "matplotlib"]:
            mp.delitem(sys.modules, name)
        mp.setattr(sys, "meta_path", [refuse, *sys.meta_path])
        report = grade(zygote, from_folder(str(path.parent), (CA,), str(path)))
        written = Path(feedback_html.write(report, str(folder), "feedback for sub"))
    return report, written.read_text(), refuse.asked


def test_masked_with_zero_shows_the_reason_and_both_heatmaps(masked_with_zero):
    report, page, _ = masked_with_zero
    assert "Score: 20 / 25" in page  # mask_scores' 5 points lost, nothing else
    section = _section(page, f"{CA}.mask_scores")
    assert "You mask with 0 instead of -inf" in section
    assert "exp(-inf) = 0" in section
    pictures = _pictures(section)
    assert len(pictures) == 2  # the masked scores, and their softmax
    assert 'aria-label="masked scores: expected values next to yours"' in pictures[0]
    assert 'aria-label="their softmax: the attention weights: expected values next to yours"' in pictures[1]
    for picture in pictures:  # both panels, one cell each per number of the 6 x 6 example
        assert ">expected</text>" in picture and ">yours</text>" in picture
        assert len(_cells(picture)) == 2 * 36
    # the expected masked scores hold -inf above the diagonal, said in the cells and the legend;
    # the student's zeros are plain numbers
    assert pictures[0].count(">-inf</text>") == 15 and "-inf (masked)" in pictures[0]
    assert "-inf" not in pictures[1]  # the weights: finite on both sides
    # passing items are listed in the table but get no section
    assert f'id="{CA}.causal_mask"' not in page and f"<td>{CA}.causal_mask</td>" in page
    assert "Traceback" not in page and "attnkit/" not in page


def test_grading_and_writing_feedback_never_import_matplotlib(masked_with_zero):
    """The pictures are drawn in plain Python: a class of unique mistakes pays no figure."""
    _, page, asked = masked_with_zero
    assert asked == []
    assert len(_pictures(page)) == 2  # and the pictures are there all the same


def test_student_traceback_is_theirs_and_escaped(zygote, tmp_path):
    path = mutant(tmp_path / "sub", CA,
                  ("    return torch.triu(torch.ones(num_tokens, num_tokens, dtype=torch.bool), diagonal=1)",
                   "    raise ValueError('<script>alert(1)</script>')"))
    page = feedback_html.render(grade(zygote, from_folder(str(path.parent), (CA,), str(path))))
    section = _section(page, f"{CA}.causal_mask")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    assert "<script>" not in page
    assert "File &#34;causal_attention.py&#34;, line" in section and "in causal_mask" in section
    assert "Where your code stopped" in section
    for internal in ("worker.py", "sandbox.py", "attnkit/", "Traceback (most recent call last)"):
        assert internal not in page


def test_not_implemented_items_say_so_without_pictures(zygote):
    assignments = Path(__file__).resolve().parents[1] / "assignments"
    page = feedback_html.render(grade(zygote, from_folder(str(assignments), (CA,), "assignments")))
    assert page.count("not implemented yet") >= 4
    assert "Score: 0 / 25" in page and not _pictures(page)
    assert "This one still raises NotImplementedError" in _section(page, f"{CA}.causal_mask")


def test_public_mode_is_stated(zygote, tmp_path):
    path = mutant(tmp_path / "sub", CA)
    report = grade(zygote, from_folder(str(path.parent), (CA,), str(path)), public=True)
    assert "Public mode" in feedback_html.render(report)  # the report knows it was graded in public mode
    # out of the public points, by hand from exercises.toml: 1 + (1 + 2) + (1 + 1) + (2 + 3 + 1 + 1)
    assert "Score: 13 / 13" in feedback_html.render(report)


# --------------------------------------------------------------------------- escaping

HOSTILE_RAW = ("<script>", "<img src=x", "<b onmouseover", "<iframe", "</details><script>", "<svg onload",
               "</pre><a href")


def _hostile_report():
    results = [
        outcome(Check(f"{S}.softmax", "example", None),
                CheckFailure('<script>alert("reason")</script>', '</pre><a href="javascript:alert(1)">numbers</a>')),
        outcome(Check(f"{S}.softmax", "hidden", None),
                StudentError("raised", "ValueError: <b onmouseover=alert(2)>x</b>",
                             'File "simplified_attention.py", line 1\n</details><script>alert(3)</script>')),
        outcome(Check(f"{S}.normalize_by_sum", "example", None), CheckFailure("<svg onload=alert(5)>")),
    ]
    return build_report(results, (S,), ["note <iframe src=//evil>"])


def hostile_markup(page: str) -> list[str]:
    return [raw for raw in HOSTILE_RAW if raw in page]


def test_feedback_escapes_reasons_names_and_notes():
    """What a submission wrote (reasons, details, tracebacks), a student's name (in the
    title, from a folder name) and the notes all arrive escaped."""
    page = feedback_html.render(_hostile_report(), 'attnkit feedback for <img src=x onerror="alert(4)">')
    assert hostile_markup(page) == []
    assert "&lt;script&gt;alert(&#34;reason&#34;)&lt;/script&gt;" in page  # in a section, and in the table
    assert "&lt;/pre&gt;&lt;a href=&#34;javascript:alert(1)&#34;&gt;numbers&lt;/a&gt;" in page
    assert "&lt;/details&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in page
    assert "&lt;svg onload=alert(5)&gt;" in page
    assert "&lt;iframe src=//evil&gt;" in page
    assert page.count("&lt;img src=x onerror=&#34;alert(4)&#34;&gt;") == 2  # <title> and <h1>


def test_the_escaping_test_fails_if_autoescape_is_turned_off(monkeypatch):
    """The same page from the same template without autoescape: the check above sees the markup."""
    import jinja2

    escaping = templating.environment(True)
    assert escaping.autoescape is True
    plain = jinja2.Environment(loader=escaping.loader, autoescape=False, undefined=jinja2.StrictUndefined,
                               keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    monkeypatch.setattr(templating, "environment", lambda html: plain)
    page = feedback_html.render(_hostile_report(), "attnkit feedback for <img src=x>")
    assert set(hostile_markup(page)) == set(HOSTILE_RAW)


# --------------------------------------------------------------------------- the pictures

def test_heatmap_cells_share_one_scale_and_mark_masked_and_nan_cells():
    expected = torch.tensor([[0.0, float("-inf")], [1.0, 2.0]])
    actual = torch.tensor([[float("nan"), float("nan")], [1.0, 2.0]])
    picture = svg(expected, actual, "weights")
    cells = _cells(picture)
    assert len(cells) == 8  # one <rect> per cell, two panels
    fills = [fill for _, _, fill in sorted(cells, key=lambda c: (c[0] > 150, c[1], c[0]))]
    exp, yours = fills[:4], fills[4:]
    assert exp[2] == yours[2] and exp[3] == yours[3]  # the same value, the same colour: one scale
    assert len({exp[0], exp[2], exp[3]}) == 3  # 0, 1 and 2 apart
    assert exp[1] not in (exp[0], exp[2], exp[3]) and yours[0] == yours[1] != exp[1]  # -inf and NaN: their own
    for label in ("0.00", "1.00", "2.00", "-inf", "NaN"):
        assert f">{label}</text>" in picture
    assert "-inf (masked)" in picture and "NaN (not a number)" in picture  # the legend
    assert ">2</text>" in picture and ">0</text>" in picture  # the colour bar's ends
    assert "key (column)" in picture and "query (row)" in picture and ">weights</text>" in picture


def test_heatmap_colours_are_viridis():
    """The scale against matplotlib's own viridis (here, in a test: never on the grading path)."""
    mpl = pytest.importorskip("matplotlib")
    from attnkit.outputs.heatmap import colour

    for k in range(21):
        ours = colour(k / 20)
        theirs = mpl.colormaps["viridis"](k / 20)
        assert all(abs(int(ours[1 + 2 * i:3 + 2 * i], 16) - round(255 * theirs[i])) <= 3 for i in range(3)), k


def test_heatmap_of_a_mask_and_of_a_large_matrix():
    mask = svg(torch.ones(3, 3, dtype=torch.bool).triu(1), None, "causal mask (True = hidden)")
    assert len(_cells(mask)) == 9 and ">yours</text>" not in mask
    assert mask.count(">1.00</text>") == 3 and mask.count(">0.00</text>") == 6
    big = svg(torch.arange(400.0).reshape(20, 20), torch.zeros(20, 20), "weights")
    assert len(_cells(big)) == 800
    assert "1.00</text>" not in big  # no numbers in cells this small: each says its value when hovered
    assert "<title>expected, row 19, column 19: 399.00</title>" in big


def test_heatmap_escapes_its_title():
    picture = svg(torch.eye(2), torch.eye(2), '<script>alert(1)</script> & "weights"')
    assert "<script>" not in picture
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;weights&quot;" in picture


# --------------------------------------------------------------------------- end to end

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
    assert len(_pictures(_section(page, f"{CA}.mask_scores"))) == 2


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
    assert len(_pictures(_section(feedback_html.render(report), f"{CA}.CausalAttention"))) == 1


def test_a_reason_starts_with_a_capital_but_a_name_of_code_keeps_its_case():
    report = build_report([outcome(Check("simplified_attention.softmax", "example", None),
                                   CheckFailure("values differ at 3 of 4 positions")),
                           outcome(Check("simplified_attention.softmax", "hidden", None),
                                   CheckFailure("simplified_attention.normalize_by_sum: not implemented yet"))],
                          ("simplified_attention",), [])
    page = feedback_html.render(report, "attnkit feedback")
    assert "Values differ at 3 of 4 positions" in page
    assert "simplified_attention.normalize_by_sum: not implemented yet" in page
    assert "Simplified_attention" not in page
