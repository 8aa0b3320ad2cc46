"""``feedback.html``: one student's report, written for the student.

A table of every graded item, then, for each item that lost points, the
reasons in plain words, the numbers behind them, the student's own traceback
(already cut down to their files by the sandbox) and, where the item produces
attention weights or a mask, heatmaps of the expected values next to theirs.
The file is self-contained: pictures are embedded as base64 PNGs.

Everything that came from the student's code is escaped: a submission can
print or raise any text, and it must not become markup in the report.
"""

from __future__ import annotations

import base64
import html
import os

from attnkit.files import write_atomic
from attnkit.judge.scoring import CheckResult, ItemResult, Report

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

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #ddd; vertical-align: top; }
td.points { white-space: nowrap; font-variant-numeric: tabular-nums; }
.pass { color: #1a7f37; } .fail { color: #b3261e; } .todo { color: #777; }
section.item { margin-top: 2rem; border-top: 2px solid #eee; }
pre { background: #f6f8fa; padding: .6rem; overflow-x: auto; font-size: .85rem; }
img { max-width: 100%; }
.note { background: #fff8e1; padding: .5rem .8rem; }
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _status(r: ItemResult) -> tuple[str, str]:
    failed = [c for c in r.checks if not c.passed]
    if r.score == r.max_score:
        return "pass", "passed"
    if failed and all(c.not_implemented for c in failed):
        return "todo", "not implemented yet"
    return "fail", "needs work"


def _picture(p) -> str:
    from attnkit.outputs.heatmap import heatmap_png

    try:
        png = heatmap_png(p.expected, p.actual, p.title)
    except Exception:  # noqa: BLE001 - a picture that cannot be drawn must not cost the report
        return ""
    data = base64.b64encode(png).decode("ascii")
    alt = f"{p.title}: expected values next to yours"
    return f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}"></figure>'


def _check_block(c: CheckResult, shown_pictures: set) -> str:
    kind = KIND_WORDS.get(c.kind, c.kind)
    parts = [f"<li><b>{_e(_sentence(kind))}</b>: {_e(_sentence(c.reason))}"]
    if c.details:
        label = "Where your code stopped" if "File \"" in c.details else "The numbers"
        parts.append(f"<details><summary>{label}</summary><pre>{_e(c.details)}</pre></details>")
    for p in c.pictures:
        key = (p.title, tuple(p.expected.shape))
        if key not in shown_pictures:  # the same picture from another check adds nothing
            shown_pictures.add(key)
            parts.append(_picture(p))
    parts.append("</li>")
    return "".join(parts)


def _item_section(r: ItemResult) -> str:
    failed = [c for c in r.checks if not c.passed]
    cls, word = _status(r)
    out = [f'<section class="item" id="{_e(r.item.key)}"><h3>{_e(r.item.key)} '
           f'<span class="{cls}">({r.score}/{r.max_score}, {word})</span></h3>']
    if failed and all(c.not_implemented for c in failed):
        out.append("<p>This one still raises NotImplementedError: fill in its body.</p></section>")
        return "".join(out)
    shown: set = set()
    out.append("<ul>")
    seen_reasons = set()
    for c in failed:
        if c.reason in seen_reasons:
            continue  # the same finding from another check: its numbers and pictures add nothing
        seen_reasons.add(c.reason)
        out.append(_check_block(c, shown))
    out.append("</ul></section>")
    return "".join(out)


def render(report: Report, title: str = "attnkit feedback", public: bool = False) -> str:
    rows = []
    for r in report.results:
        cls, word = _status(r)
        link = f'<a href="#{_e(r.item.key)}">{_e(r.item.key)}</a>' if cls != "pass" else _e(r.item.key)
        summary = "" if cls == "pass" else _e(_sentence(r.summary))
        rows.append(f'<tr><td>{link}</td><td class="points">{r.score}/{r.max_score}</td>'
                    f'<td class="{cls}">{word}</td><td>{summary}</td></tr>')
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in report.notes)
    if public or any(r.public for r in report.results):
        notes += ('<p class="note">Public mode: only the public checks ran (the chapter\'s examples and '
                  'the properties); the hidden cases run when your course grades the work.</p>')
    sections = "".join(_item_section(r) for r in report.results if r.score != r.max_score)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{_e(title)}</h1>
<p><b>Score: {report.score} / {report.max_score}</b></p>
{notes}
<table><thead><tr><th>item</th><th>points</th><th>status</th><th>what to look at</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
{sections}
</body></html>
"""


def write(report: Report, folder: str, title: str = "attnkit feedback", public: bool = False) -> str:
    """Write ``folder/feedback.html``; returns its path."""
    path = os.path.join(folder, "feedback.html")
    write_atomic(path, render(report, title, public))
    os.chmod(path, 0o644)  # the student, or a web server, reads it
    return path
