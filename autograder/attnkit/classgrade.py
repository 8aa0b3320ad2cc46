"""``attnkit grade-class``: a whole class in one run, safely and in parallel.

Each folder of the class directory is one student, laid out like
``assignments/``. Job processes (``--jobs``, default the CPU count) each hold
one warm worker and grade students one after the other with the batch path.
Every student's results are written atomically as soon as they are known,
tagged with a fingerprint of the student's files and of the grader; a rerun
skips every student whose fingerprint is unchanged, so a run killed at any
point and started again loses nothing and ends with the same grades.csv.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from attnkit import feedback_html
from attnkit.items import MODULES, items
from attnkit.outcomes import GraderError
from attnkit.report import gradescope, table, write_atomic

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass
class StudentOutcome:
    student: str
    total: float
    scores: dict[str, float]
    skipped: bool = False  # already graded by an earlier run with the same files and grader
    error: str = ""


# --------------------------------------------------------------------------- fingerprints

def grader_version() -> str:
    """Changes whenever anything that decides a grade changes: the grader's
    code and data, the solutions, or the hidden-case secret (hashed)."""
    from attnkit.settings import secret, solutions_dir

    h = hashlib.sha256()
    roots = [PACKAGE_DIR, solutions_dir()]
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.suffix in (".py", ".toml", ".json", ".ini") and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(hashlib.sha256(secret().encode()).digest())
    return h.hexdigest()[:16]


def submission_fingerprint(folder: Path, version: str) -> str:
    h = hashlib.sha256(version.encode())
    for path in sorted(folder.glob("*.py")):
        if path.is_file():
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def students_of(class_dir: Path) -> list[Path]:
    if not class_dir.is_dir():
        raise GraderError(f"{class_dir}: not a folder of student folders")
    return sorted(p for p in class_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def previous(out_dir: Path, student: str, fingerprint: str) -> StudentOutcome | None:
    """The recorded outcome of an earlier run, if it graded these very files."""
    try:
        data = json.loads((out_dir / student / "results.json").read_text())
        extra = data["extra_data"]["attnkit"]
        if extra["fingerprint"] != fingerprint:
            return None
        return StudentOutcome(student, data["score"], {t["name"]: t["score"] for t in data["tests"]}, True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------- job processes

_ZYGOTE = None
_NEXT_CHANNEL = None


def _init_job() -> None:
    """In each job process: take a channel of its own to the shared worker."""
    from attnkit.sandbox import confine

    confine.die_with_parent()  # a killed run leaves no job grading on
    with _NEXT_CHANNEL.get_lock():
        index = _NEXT_CHANNEL.value
        _NEXT_CHANNEL.value += 1
    _ZYGOTE.use_channel(index)


def _grade_one(student: str, folder: str, out_dir: str, fingerprint: str, version: str,
               limits_seconds: float) -> StudentOutcome:
    """Grade one student in a job process and write their files."""
    from attnkit.grading import grade
    from attnkit.intake import from_folder
    from attnkit.sandbox import Limits

    try:
        report = grade(_ZYGOTE, from_folder(folder, MODULES, student), Limits(seconds=limits_seconds))
    except GraderError as exc:
        return StudentOutcome(student, 0, {}, error=str(exc))
    write_student(Path(out_dir) / student, student, report, fingerprint, version)
    return StudentOutcome(student, report.score, {r.item.key: r.score for r in report.results})


def write_student(folder: Path, student: str, report, fingerprint: str, version: str) -> None:
    """results.json (Gradescope's shape, with our fingerprint) and feedback files, atomically."""
    data = gradescope(report)
    data["extra_data"] = {"attnkit": {"student": student, "fingerprint": fingerprint, "grader_version": version}}
    feedback = [table(report, f"attnkit feedback for {student}"), ""]
    for r in report.results:
        for c in r.checks:
            if not c.passed:
                feedback.append(f"{r.item.key} [{c.kind}]: {c.reason}")
                if c.details:
                    feedback.append("    " + c.details.replace("\n", "\n    "))
    write_atomic(str(folder / "feedback.txt"), "\n".join(feedback) + "\n")
    feedback_html.write(report, str(folder), f"attnkit feedback for {student}")
    # results.json last: its fingerprint marks the student as done
    write_atomic(str(folder / "results.json"), json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------- the run

def write_csv(out_dir: Path, outcomes: list[StudentOutcome]) -> Path:
    keys = list(items())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["student", "total", *keys])
    for o in sorted(outcomes, key=lambda o: o.student):
        writer.writerow([o.student, _num(o.total), *[_num(o.scores.get(k, 0)) for k in keys]])
    path = out_dir / "grades.csv"
    write_atomic(str(path), buf.getvalue())
    return path


def _num(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


class Progress:
    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.stream = total, 0, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.start = time.monotonic()

    def step(self, label: str) -> None:
        self.done += 1
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                f"students, {time.monotonic() - self.start:.1f} s ({label})")
        if self.tty:
            self.stream.write("\r" + line.ljust(100)[:100])
            if self.done == self.total:
                self.stream.write("\n")
        elif self.done == self.total or self.done % max(1, self.total // 10) == 0:
            self.stream.write(line + "\n")
        self.stream.flush()


def grade_class(class_dir: str, out_dir: str, jobs: int | None = None, seconds: float = 10.0,
                progress: bool = True, hide: list[str] = (), unconfined: bool = False) -> list[StudentOutcome]:
    class_path, out_path = Path(class_dir).resolve(), Path(out_dir).resolve()
    if out_path == class_path or class_path in out_path.parents:
        raise GraderError(f"--out {out_dir} must not be inside the class folder {class_dir}")
    students = students_of(class_path)
    out_path.mkdir(parents=True, exist_ok=True)
    version = grader_version()
    outcomes: list[StudentOutcome] = []
    todo = []
    for folder in students:
        fp = submission_fingerprint(folder, version)
        done = previous(out_path, folder.name, fp)
        if done is not None:
            outcomes.append(done)
        else:
            todo.append((folder.name, str(folder), fp))
    bar = Progress(len(students)) if progress else None
    for o in outcomes:
        if bar:
            bar.step(f"{o.student}: unchanged")
    if todo:
        outcomes += _run_jobs(todo, out_path, version, jobs or os.cpu_count() or 1, seconds,
                              [str(class_path), str(out_path), *map(str, hide)], bar, unconfined)
    write_csv(out_path, outcomes)
    return sorted(outcomes, key=lambda o: o.student)


def refuse_unconfined(zygote, unconfined: bool) -> None:
    """Grades for credit need every guarantee of the sandbox; without them, only
    on the instructor's explicit word (``--unconfined``), and said each run."""
    from attnkit.sandbox import confine

    refusal = zygote.not_for_credit()  # the portable runner: never, not even --unconfined
    if refusal:
        zygote.close()
        raise GraderError(refusal)
    gaps = confine.missing(zygote.ready())
    if not gaps:
        return
    if not unconfined:
        zygote.close()
        raise GraderError("this machine cannot confine student code: the grader cannot " + "; ".join(gaps) +
                          ". Grade as root or where unprivileged user namespaces are enabled; or pass "
                          "--unconfined to grade anyway (the grades then cannot count)")
    print(zygote.notice(), file=sys.stderr)


def _warm_up() -> None:
    """Pay once, here, what every job would pay again after the fork: the torch
    and matplotlib imports, torch's first operations, and the reference results
    that every student's checks share (grading the solutions fills the memo)."""
    import torch

    from attnkit.grading import grade
    from attnkit.heatmap import heatmap_png
    from attnkit.intake import from_folder
    from attnkit.settings import solutions_dir

    heatmap_png(torch.zeros(2, 2), torch.ones(2, 2), "warm-up")
    if solutions_dir().is_dir():
        grade(_ZYGOTE, from_folder(str(solutions_dir()), MODULES, "warm-up"))


def _run_jobs(todo, out_path: Path, version: str, jobs: int, seconds: float, hide, bar,
              unconfined: bool = False) -> list[StudentOutcome]:
    global _ZYGOTE, _NEXT_CHANNEL
    from attnkit.sandbox import Zygote
    from attnkit.settings import secret_paths

    jobs = max(1, min(jobs, len(todo)))
    # One warm worker serves every job, each on its own channel: torch is
    # imported once for the workers, and once here, in parallel.
    _ZYGOTE = Zygote(hide=[*secret_paths(), *hide], channels=jobs * 4)  # spare channels for replacement jobs
    refuse_unconfined(_ZYGOTE, unconfined)
    _warm_up()

    context = multiprocessing.get_context("fork")
    _NEXT_CHANNEL = context.Value("i", 0)
    results: list[StudentOutcome] = []
    pending = list(todo)
    attempts = 0
    try:
        while pending:
            attempts += 1
            if attempts > 3:  # the pool keeps breaking: report the rest, do not loop
                results += [StudentOutcome(name, 0, {}, error="grader error: the job process died")
                            for name, _, _ in pending]
                break
            pending = _pool_round(pending, results, out_path, version, jobs, seconds, context, bar)
    finally:
        _ZYGOTE.close()
    return results


def _pool_round(pending, results, out_path, version, jobs, seconds, context, bar):
    """Grade ``pending``; returns what is left if a job process died."""
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_job) as pool:
        futures = {pool.submit(_grade_one, name, folder, str(out_path), fp, version, seconds): (name, folder, fp)
                   for name, folder, fp in pending}
        waiting = set(futures)
        try:
            while waiting:
                finished, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                for fut in finished:
                    name = futures[fut][0]
                    try:
                        outcome = fut.result()
                    except BrokenProcessPool:
                        raise
                    except Exception as exc:  # noqa: BLE001 - one student never stops the class
                        outcome = StudentOutcome(name, 0, {}, error=f"grader error: {exc}")
                    results.append(outcome)
                    if bar:
                        bar.step(f"{name}: {_num(outcome.total)}")
        except BrokenProcessPool:
            # A job process died (never student code: that runs further down).
            done = {r.student for r in results}
            return [futures[f] for f in futures if futures[f][0] not in done]
    return []
