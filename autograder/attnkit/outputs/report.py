"""Rendering a report: the terminal table and Gradescope's results.json."""

from __future__ import annotations

import json

from attnkit.files import write_atomic
from attnkit.text import one_line
from attnkit.judge.scoring import Report


def table(report: Report, title: str = "") -> str:
    width = max([len(r.item.key) for r in report.results] + [20])
    lines = [one_line(title)] if title else []  # a title may carry a student's folder name
    lines += [f"  {'item'.ljust(width)}  points   reason", f"  {'-' * width}  ------   ------"]
    for r in report.results:
        mark = "ok " if r.score == r.max_score else "   "
        pts = f"{r.score:>2}/{r.max_score:<2}"
        lines.append(f"{mark}{r.item.key.ljust(width)}  {pts}    {r.summary}".rstrip())
    for note in report.notes:
        lines.append(f"  note: {note}")
    lines.append(f"Total: {report.score}/{report.max_score}")
    return "\n".join(lines)


def gradescope(report: Report) -> dict:
    """Gradescope's results.json: top-level score, and one test per graded item."""
    tests = []
    for r in report.results:
        tests.append({
            "name": r.item.key,
            "score": r.score,
            "max_score": r.max_score,
            "status": "passed" if r.score == r.max_score else "failed",
            "output": "\n".join(r.reasons) if r.reasons else "all checks passed",
            "visibility": "visible",
        })
    result = {"score": report.score, "max_score": report.max_score, "tests": tests}
    if report.notes:
        result["output"] = "\n".join(report.notes)
    return result


def write_json(report: Report, path: str) -> None:
    write_atomic(path, json.dumps(gradescope(report), indent=2) + "\n")
