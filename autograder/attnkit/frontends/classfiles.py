"""What ``grade-class`` writes, and what a rerun reads back.

Each student's folder gets results.json (Gradescope's shape, with the
fingerprint of what was graded and the student's integrity facts) and the
feedback files, each written atomically, results.json last; grades.csv holds
the class. A rerun takes a student's outcome from their results.json when its
fingerprint is unchanged (``previous``).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from attnkit.exercises import items
from attnkit.files import write_atomic
from attnkit.judge import integrity
from attnkit.outputs import feedback as feedback_html
from attnkit.outputs.report import gradescope, table
from attnkit.text import name_shown, spreadsheet_cell

NOT_GRADED = "could not be graded"


@dataclass
class StudentOutcome:
    """One student's line of the run: graded now, unchanged since an earlier
    run (``skipped``), or not graded (``error``, the reason)."""

    student: str
    total: float
    scores: dict[str, float]
    skipped: bool = False  # already graded by an earlier run with the same files and grader
    error: str = ""  # why the student could not be graded
    flags: list = field(default_factory=list)  # integrity.Flag of this student alone
    units: dict = field(default_factory=dict)  # integrity.own_units: the student's code, normalised and hashed


def previous(out_dir: Path, student: str, fingerprint: str) -> StudentOutcome | None:
    """The recorded outcome of an earlier run, if it graded these very files."""
    try:
        data = json.loads((out_dir / student / "results.json").read_text())
        extra = data["extra_data"]["attnkit"]
        if extra["fingerprint"] != fingerprint:
            return None
        flags = [integrity.Flag.from_dict(f) for f in extra["integrity"]]
        units = {str(n): (str(h), int(size)) for n, (h, size) in extra["units"].items()}
        return StudentOutcome(student, data["score"], {t["name"]: t["score"] for t in data["tests"]}, True,
                              flags=flags, units=units)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_student(folder: Path, student: str, report, fingerprint: str, version: str, flags=(),
                  units=None) -> None:
    """results.json (Gradescope's shape, with our fingerprint and the student's integrity
    facts, which a rerun reuses) and feedback files, atomically."""
    data = gradescope(report)
    data["extra_data"] = {"attnkit": {"student": student, "fingerprint": fingerprint, "grader_version": version,
                                      "integrity": [f.as_dict() for f in flags],
                                      "units": {n: list(u) for n, u in sorted((units or {}).items())}}}
    title = f"attnkit feedback for {name_shown(student)}"
    feedback = [table(report, title), ""]
    for r in report.results:
        for c in r.checks:
            if not c.passed:
                feedback.append(f"{r.item.key} [{c.kind}]: {c.reason}")  # made safe by scoring.outcome
                if c.details:
                    feedback.append("    " + c.details.replace("\n", "\n    "))
    write_atomic(str(folder / "feedback.txt"), "\n".join(feedback) + "\n")
    feedback_html.write(report, str(folder), title)
    # results.json last: its fingerprint marks the student as done
    write_atomic(str(folder / "results.json"), json.dumps(data, indent=2) + "\n")


def write_csv(out_dir: Path, outcomes: list[StudentOutcome]) -> Path:
    """grades.csv: student, total, status, then one column per item. A student who
    could not be graded has empty total and item cells (never a 0 that looks earned;
    a spreadsheet's SUM, AVERAGE and COUNT skip them) and the reason in status."""
    keys = list(items())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["student", "total", "status", *keys])
    for o in sorted(outcomes, key=lambda o: o.student):
        name = spreadsheet_cell(name_shown(o.student))
        if o.error:
            writer.writerow([name, "", spreadsheet_cell(f"{NOT_GRADED}: {o.error}"), *[""] * len(keys)])
        else:
            writer.writerow([name, score_cell(o.total), "graded", *[score_cell(o.scores.get(k, 0)) for k in keys]])
    path = out_dir / "grades.csv"
    write_atomic(str(path), buf.getvalue())
    return path


def score_cell(x) -> str:
    """A score as grades.csv and the progress line write it: 3, or 2.50."""
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"
