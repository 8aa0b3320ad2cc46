"""Output hygiene: what a submission controls can neither forge a line of the
terminal report, nor become a spreadsheet formula, nor become markup."""

from __future__ import annotations

import json

import pytest
from conftest import make_submission
from test_alternatives import body

from attnkit.frontends import classfiles

from attnkit.outputs import feedback as feedback_html
from attnkit.judge.engine import grade
from attnkit.intake import from_folder
from attnkit.judge.registry import Check
from attnkit.errors import CheckFailure, StudentError
from attnkit.outputs.report import gradescope, table
from attnkit.text import name_shown, one_line, printable, spreadsheet_cell
from attnkit.judge.scoring import build_report, outcome

S = "simplified_attention"
FORGED = "boom\n\x1b[32mok simplified_attention.softmax      5/5\x1b[0m\r\nTotal: 100/100\r\x1b[2K\x9b31m\u202eevil"


@pytest.mark.parametrize("lead", ["=", "+", "-", "@", "\t", "\r"])
def test_formula_leading_cells_are_text(lead):
    cell = spreadsheet_cell(f"{lead}HYPERLINK(\"http://evil.example\",\"click\")")
    assert cell.startswith("'") and "\n" not in cell and "\r" not in cell and "\t" not in cell


def test_ordinary_cells_are_kept_and_every_cell_is_one_line():
    assert spreadsheet_cell("ada") == "ada"
    assert spreadsheet_cell("could not be graded: x") == "could not be graded: x"
    assert spreadsheet_cell(" =1+1").startswith("'")
    assert spreadsheet_cell("eve\n=1+1") == "eve\\n=1+1"
    assert spreadsheet_cell("bad\udcffname") == "bad\ufffdname"  # a folder name that is not UTF-8


def test_folder_names_are_shown_one_to_one():
    """Names that one_line makes alike (an escape sequence dropped, bytes that
    are not UTF-8 replaced) are shown apart, escaped; plain names as they are."""
    names = ["xred", "x\x1b[31mred", "bob\udcff", "bob\udcfe", "bob\ufffd", "bob\xff", "a\\x1b", "a\x1b",
             "a\\u001b", "tab\tname", "tab name", "bidi\u202eevil", "Zo\u00eb", "line\nTotal: 100/100", "a\x85",
             "a\udc85", "back\\slash"]
    shown = [name_shown(n) for n in names]
    assert len(set(shown)) == len(names), shown
    assert all(one_line(s) == s for s in shown)
    assert [name_shown(n) for n in ("xred", "tab name", "Zo\u00eb", "bob\xff")] == ["xred", "tab name", "Zo\u00eb", "bob\xff"]
    assert name_shown("x\x1b[31mred") == "x\\u001b[31mred" and name_shown("bob\udcff") == "bob\\xff"
    # and as a CSV cell writes them: '=x (a formula made text) is not the folder "'=x"; a
    # zero-width space or a non-breaking one is not invisible; in a list, "ann; ben" is one name
    alike = ["=x", "'=x", "ada", "ada\u200b", "a b", "a\u00a0b", "\ufeffada", "ada\U000e0001", "ada\ue0001",
             "bob", "bob\u034f", "bob\ufe0f", "bob\u3164", "bob\u2800", "ann", "ann ", " ann", "Jos\u00e9",
             "Jose\u0301"]
    cells = [spreadsheet_cell(name_shown(n)) for n in alike]
    assert len(set(cells)) == len(alike), cells
    assert "; ".join(name_shown(n, ";,") for n in ["ann; ben"]) == "ann\\u003b ben"
    assert name_shown("o'neil") == "o'neil"


def test_control_characters_are_stripped_and_lines_kept_only_where_asked():
    assert printable("a\x1b[31mb\x1b]0;title\x07c\x00d\x7fe\x85f\u202eg") == "abcdefg"
    assert printable("one\r\ntwo\rthree") == "one\ntwo\nthree"
    assert one_line("one\ntwo\r\nthree\tfour") == "one\\ntwo\\nthree four"


def test_a_forged_exception_message_prints_no_line_of_its_own(zygote, tmp_path):
    folder = make_submission(tmp_path / "s", {S: [(
        "shifted = scores - scores.amax(dim=dim, keepdim=True)  # largest exponent is now 0",
        f"raise ValueError({FORGED!r})")]})
    report = grade(zygote, from_folder(str(folder), (S,), "s"))
    text = table(report, "attnkit grade s")
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("Total")] == [f"Total: {report.score}/20"]
    assert report.score < 20 and not any(line.startswith("ok simplified_attention.softmax") for line in lines)
    assert not any(c in text for c in "\x1b\r\x9b\u202e")
    softmax = report.by_item()[f"{S}.softmax"]
    assert "boom\\nok simplified_attention.softmax" in softmax.summary  # shown, as one line
    output = next(t["output"] for t in gradescope(report)["tests"] if t["name"] == f"{S}.softmax")
    assert "\x1b" not in output and "\r" not in output
    classfiles.write_student(tmp_path / "out", "s", report, "fp", "v")
    feedback = (tmp_path / "out" / "feedback.txt").read_text()
    assert not any(c in feedback for c in "\x1b\r") and "\nTotal: 100/100" not in feedback
    assert "\x1b" not in (tmp_path / "out" / "results.json").read_text().encode().decode("unicode_escape")


def test_lone_surrogates_in_what_a_submission_says_cost_only_their_items(zygote, tmp_path):
    """An exception message and a returned class's name holding lone surrogates
    (not UTF-8 at all): their items score 0, shown with U+FFFD, and every
    output is written; nothing of the grader raises."""
    folder = make_submission(tmp_path / "s", {S: [
        ("shifted = scores - scores.amax(dim=dim, keepdim=True)  # largest exponent is now 0",
         'raise RuntimeError("bad \\ud800 surrogate")'),
        body(S, "normalize_by_sum", """
        class Odd:
            pass
        Odd.__qualname__ = "x\\udfff"
        return Odd()
        """)]})
    report = grade(zygote, from_folder(str(folder), (S,), "s"))
    lost = {r.item.key: r.summary for r in report.results if r.score != r.max_score}
    assert set(lost) == {f"{S}.softmax", f"{S}.normalize_by_sum"}, lost
    assert "bad \ufffd surrogate" in lost[f"{S}.softmax"] and "x\ufffd" in lost[f"{S}.normalize_by_sum"]
    table(report, "attnkit grade s").encode("utf-8")
    classfiles.write_student(tmp_path / "out", "s", report, "fp", "v")
    for name in ("feedback.txt", "results.json", "feedback.html"):
        written = (tmp_path / "out" / name).read_text(encoding="utf-8")
        if name.endswith(".json"):  # written with \\u escapes
            written = json.dumps(json.loads(written), ensure_ascii=False)
        assert "\ufffd" in written, name


def _hostile_report():
    check = Check(f"{S}.softmax", "example", None)
    results = [
        outcome(check, CheckFailure('<script>alert("reason")</script>', '</pre><img src=x onerror=alert(1)>')),
        outcome(Check(f"{S}.softmax", "hidden", None),
                StudentError("raised", "ValueError: <b onmouseover=alert(2)>x</b>",
                             'File "simplified_attention.py", line 1\n</details><script>alert(3)</script>')),
    ]
    return build_report(results, (S,), ["note <iframe src=//evil>"])


def test_feedback_html_escapes_what_a_submission_wrote():
    page = feedback_html.render(_hostile_report(), 'attnkit feedback for <img src=x onerror="alert(4)">')
    for raw in ("<script>", "<img src=x", "<b onmouseover", "<iframe", "</details><script>"):
        assert raw not in page
    assert "&lt;script&gt;alert(&#34;reason&#34;)&lt;/script&gt;" in page
    assert "&lt;iframe src=//evil&gt;" in page and "&lt;img src=x onerror=&#34;alert(4)&#34;&gt;" in page
