"""``feedback.html``: one student's report, written for the student.

A table of every graded item, then, for each item that lost points, the
reasons in plain words, the numbers behind them, the student's own traceback
(already cut down to their files by the sandbox) and, where the item produces
attention weights or a mask, heatmaps of the expected values next to theirs.
The file is self-contained: pictures are inline SVG (``heatmap.py``).

The page is ``templates/feedback.html.j2``, rendered by jinja2 with
autoescaping: a submission can print or raise any text, and it must not
become markup in the report, so every value is escaped unless the template
says otherwise (only the pictures, markup that ``heatmap.py`` drew).
"""

from __future__ import annotations

import os

from attnkit.files import write_atomic
from attnkit.judge.scoring import CheckResult, ItemResult, Report
from attnkit.outputs import templating
from attnkit.outputs.heatmap import svg

TEMPLATE = "feedback.html.j2"

# What each check kind tried, in the student's words.
KIND_WORDS = {
    "example": "the chapter's example",
    "hidden": "hidden random cases",
    "stability": "very large scores (+-1000)",
    "masking": "the masking",
    "dropout": "dropout (train and eval mode)",
    "gradients": "gradients",
    "structure": "the module's attributes",
    "short_sequence": "fewer tokens than context_length",
    "seed": "the chapter's seed",
}


def _sentence(text: str) -> str:
    """``text`` with a capital, unless it starts with a name of code (``simplified_attention.softmax``,
    ``torch``'s lower-case names are words too, but an identifier with ``_`` or ``.`` is not)."""
    first = text.split(" ", 1)[0] if text else ""
    return text if not text or "_" in first or "." in first.rstrip(".:,") else text[:1].upper() + text[1:]


def _status(r: ItemResult) -> tuple[str, str]:
    failed = [c for c in r.checks if not c.passed]
    if r.score == r.max_score:
        return "pass", "passed"
    if failed and all(c.not_implemented for c in failed):
        return "todo", "not implemented yet"
    return "fail", "needs work"


def _picture(p) -> str | None:
    try:
        return svg(p.expected, p.actual, p.title)
    except Exception:  # noqa: BLE001 - a picture that cannot be drawn must not cost the report
        return None


def _check(c: CheckResult, shown_pictures: set) -> dict:
    pictures = []
    for p in c.pictures:
        key = (p.title, tuple(p.expected.shape))
        if key not in shown_pictures:  # the same picture from another check adds nothing
            shown_pictures.add(key)
            pictures.append(_picture(p))
    return {"kind": _sentence(KIND_WORDS.get(c.kind, c.kind)), "reason": _sentence(c.reason), "details": c.details,
            "details_label": "Where your code stopped" if "File \"" in (c.details or "") else "The numbers",
            "pictures": [p for p in pictures if p]}


def _section(r: ItemResult) -> dict:
    status, word = _status(r)
    checks, shown, seen_reasons = [], set(), set()
    for c in r.checks:
        if c.passed or c.reason in seen_reasons:
            continue  # the same finding from another check: its numbers and pictures add nothing
        seen_reasons.add(c.reason)
        checks.append(_check(c, shown))
    return {"key": r.item.key, "score": r.score, "max_score": r.max_score, "status": status, "word": word,
            "checks": checks}


def render(report: Report, title: str = "attnkit feedback", public: bool = False) -> str:
    """The page (``templates/feedback.html.j2``): what the student's code produced goes in as plain
    values, which the template escapes."""
    rows = []
    for r in report.results:
        status, word = _status(r)
        rows.append({"key": r.item.key, "score": r.score, "max_score": r.max_score, "status": status, "word": word,
                     "summary": "" if status == "pass" else _sentence(r.summary)})
    return templating.render(__package__, TEMPLATE, title=title, score=report.score, max_score=report.max_score,
                             notes=list(report.notes), public=public or any(r.public for r in report.results),
                             rows=rows, sections=[_section(r) for r in report.results if r.score != r.max_score])


def warm() -> None:
    """Import jinja2 and compile the page's template: a class run does it once, before its jobs fork."""
    templating.template(__package__, TEMPLATE)


def write(report: Report, folder: str, title: str = "attnkit feedback", public: bool = False) -> str:
    """Write ``folder/feedback.html``; returns its path."""
    path = os.path.join(folder, "feedback.html")
    write_atomic(path, render(report, title, public))
    os.chmod(path, 0o644)  # the student, or a web server, reads it
    return path
