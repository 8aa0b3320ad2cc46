"""``attnkit grade-class``: a whole class in one run, safely and in parallel.

Each folder of the class directory is one student. What is graded in it is
decided by the intake's one rule (``attnkit.intake.collect``), read once, here,
before any worker starts: nested folders and notebooks are found, links and
special files are refused, and a folder with nothing to grade is reported,
not graded. The class's kind (plain folders, or nbgrader's ``submitted/``
tree) is decided by its top level alone. Whatever one student's folder holds
costs that student only: it is a note, a missing module, or "could not be
graded: <reason>" in grades.csv.

Job processes (``--jobs``, default the CPU count) share one warm worker and
grade students one after the other with the batch path. Every student's
results are written atomically as soon as they are known, tagged with a
fingerprint of what intake read and of the grader; a rerun skips every
student whose fingerprint is unchanged, so a run killed at any point and
started again loses nothing and ends with the same grades.csv.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import os
import stat
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from attnkit.config import ITEM_SECONDS_DEFAULT
from attnkit.outputs import feedback as feedback_html

from attnkit.judge import integrity
from attnkit.intake import NBGRADER, PLAIN, IntakeError, Submission, collect
from attnkit.exercises import MODULES, items, module_totals
from attnkit.errors import GraderError
from attnkit.files import write_atomic
from attnkit.outputs.report import gradescope, table
from attnkit.text import one_line, spreadsheet_cell

from attnkit.config import PACKAGE_DIR
OUTPUT_FILES = ("grades.csv", "integrity.csv")  # the class's own files in OUT: no student folder may take their names
NOT_GRADED = "could not be graded"


@dataclass
class StudentOutcome:
    student: str
    total: float
    scores: dict[str, float]
    skipped: bool = False  # already graded by an earlier run with the same files and grader
    error: str = ""  # why the student could not be graded
    flags: list = field(default_factory=list)  # integrity.Flag of this student alone
    units: dict = field(default_factory=dict)  # integrity.own_units: the student's code, normalised and hashed


@dataclass
class Roster:
    kind: str  # intake.PLAIN or intake.NBGRADER
    submissions: dict[str, Submission]  # student -> what intake found
    errors: dict[str, str]  # student -> why nothing of theirs can be graded
    ignored: list[str]  # entries of the class folder that are no student, one line each


# --------------------------------------------------------------------------- fingerprints

def grader_version() -> str:
    """Changes whenever anything that decides a grade changes: the grader's
    code and data, the solutions, or the hidden-case secret (hashed)."""
    from attnkit.config import secret, solutions_dir

    h = hashlib.sha256()
    roots = [PACKAGE_DIR, solutions_dir()]
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.suffix in (".py", ".toml", ".json", ".ini") and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(hashlib.sha256(secret().encode()).digest())
    return h.hexdigest()[:16]


def roster(class_dir: Path) -> Roster:
    """Every student of the class and what intake found for each; nothing graded yet.
    Raises IntakeError, in one line, when the class has nothing to grade at all."""
    from attnkit.frontends.nbgrader_tree import is_submitted_tree

    if not class_dir.is_dir():
        raise IntakeError(f"{class_dir}: not a folder of student folders")
    kind = NBGRADER if is_submitted_tree(class_dir) else PLAIN
    submissions: dict[str, Submission] = {}
    errors: dict[str, str] = {}
    ignored: list[str] = []
    exercise_files = []
    with os.scandir(class_dir) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        name = entry.name
        if name.startswith("."):
            continue  # .git, .DS_Store, editors' files
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except OSError as exc:
            errors[name] = f"cannot be looked at ({exc.strerror})"
            continue
        if stat.S_ISLNK(mode):
            errors[name] = "a symbolic link, not a folder; not followed (copy the student's files in)"
        elif not stat.S_ISDIR(mode):
            ignored.append(one_line(f"{name}: not a folder, so no student; ignored"))
            if name.endswith((".py", ".ipynb")):
                exercise_files.append(name)
        elif name.lower() in OUTPUT_FILES:
            errors[name] = f"the folder name {name} is taken by the class's own output file; rename the folder"
        else:
            try:
                sub = collect(entry.path, name, layout=kind, follow=False)
            except IntakeError as exc:
                errors[name] = str(exc)
                continue
            if sub.found_any():
                submissions[name] = sub
            else:
                errors[name] = sub.nothing_message()
    if not submissions and not errors:
        hint = (" it holds exercise files itself: grade one submission with `attnkit grade`"
                if exercise_files else " expected one folder per student")
        raise IntakeError(f"{class_dir}: nothing to grade, no student folders;{hint}")
    return Roster(kind, submissions, errors, ignored)


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
    # A job grades one student after another: each next child is forked and
    # confined while the current student is graded.
    _ZYGOTE.keep_spare()


def _grade_one(student: str, submission: Submission, out_dir: str, fingerprint: str, version: str,
               limits_seconds: float) -> StudentOutcome:
    """Grade one student in a job process and write their files."""
    from attnkit.judge.engine import grade
    from attnkit.sandbox import Limits

    try:
        report = grade(_ZYGOTE, submission, Limits(seconds=limits_seconds))
    except GraderError as exc:
        return StudentOutcome(student, 0, {}, error=f"grader error: {exc}")
    flags = integrity.hard_coded(student, report)
    units = integrity.own_units(submission.files)
    write_student(Path(out_dir) / student, student, report, fingerprint, version, flags, units)
    return StudentOutcome(student, report.score, {r.item.key: r.score for r in report.results}, flags=flags,
                          units=units)


def write_student(folder: Path, student: str, report, fingerprint: str, version: str, flags=(),
                  units=None) -> None:
    """results.json (Gradescope's shape, with our fingerprint and the student's integrity
    facts, which a rerun reuses) and feedback files, atomically."""
    data = gradescope(report)
    data["extra_data"] = {"attnkit": {"student": student, "fingerprint": fingerprint, "grader_version": version,
                                      "integrity": [f.as_dict() for f in flags],
                                      "units": {n: list(u) for n, u in sorted((units or {}).items())}}}
    title = f"attnkit feedback for {one_line(student)}"
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


# --------------------------------------------------------------------------- the run

def write_csv(out_dir: Path, outcomes: list[StudentOutcome]) -> Path:
    """grades.csv: student, total, status, then one column per item. A student who
    could not be graded has empty total and item cells (never a 0 that looks earned;
    a spreadsheet's SUM, AVERAGE and COUNT skip them) and the reason in status."""
    keys = list(items())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["student", "total", "status", *keys])
    for o in sorted(outcomes, key=lambda o: o.student):
        name = spreadsheet_cell(o.student)
        if o.error:
            writer.writerow([name, "", spreadsheet_cell(f"{NOT_GRADED}: {o.error}"), *[""] * len(keys)])
        else:
            writer.writerow([name, _num(o.total), "graded", *[_num(o.scores.get(k, 0)) for k in keys]])
    path = out_dir / "grades.csv"
    write_atomic(str(path), buf.getvalue())
    return path


def _num(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


class Progress:
    def __init__(self, total: int, stream=None):
        stream = sys.stderr if stream is None else stream  # the stderr of now, not of the import
        self.total, self.done, self.stream = total, 0, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.start = time.monotonic()

    def step(self, label: str) -> None:
        self.done += 1
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                f"students, {time.monotonic() - self.start:.1f} s ({one_line(label)[:60]})")
        if self.tty:
            self.stream.write("\r" + line.ljust(100)[:100])
            if self.done == self.total:
                self.stream.write("\n")
        elif self.done == self.total or self.done % max(1, self.total // 10) == 0:
            self.stream.write(line + "\n")
        self.stream.flush()


@dataclass
class ClassRun:
    outcomes: list[StudentOutcome]
    roster: Roster
    flags: list  # integrity.Flag


def grade_class(class_dir: str, out_dir: str, jobs: int | None = None, seconds: float = ITEM_SECONDS_DEFAULT,
                progress: bool = True, hide: list[str] = (), zygote=None, unconfined: bool = False) -> ClassRun:
    """Grade every student of ``class_dir`` into ``out_dir``. ``zygote``: a warm
    worker to share (with a channel per job), else one is started for the run.
    Without every guarantee of the sandbox, only with ``unconfined``."""
    class_path, out_path = Path(class_dir).resolve(), Path(out_dir).resolve()
    if out_path == class_path or class_path in out_path.parents:
        raise GraderError(f"--out {out_dir} must not be inside the class folder {class_dir}")
    found = roster(class_path)
    out_path.mkdir(parents=True, exist_ok=True)
    version = grader_version()
    outcomes = [StudentOutcome(name, 0, {}, error=error) for name, error in found.errors.items()]
    todo = []
    unchanged = []
    for name, submission in found.submissions.items():
        fp = submission.fingerprint(version)
        done = previous(out_path, name, fp)
        if done is not None:
            unchanged.append(done)
        else:
            todo.append((name, submission, fp))
    outcomes += unchanged
    bar = Progress(len(found.submissions) + len(found.errors)) if progress else None
    for o in outcomes:
        if bar:
            bar.step(f"{o.student}: {'unchanged' if o.skipped else NOT_GRADED}")
    if todo:
        outcomes += _run_jobs(todo, out_path, version, jobs or os.cpu_count() or 1, seconds,
                              [str(class_path), str(out_path), *map(str, hide)], bar, zygote, unconfined)
    outcomes.sort(key=lambda o: o.student)
    write_csv(out_path, outcomes)
    flags = [f for o in outcomes for f in o.flags] + _class_flags(class_path, found, outcomes)
    integrity.write(out_path, flags)
    return ClassRun(outcomes, found, flags)


def _class_flags(class_path: Path, found: Roster, outcomes: list[StudentOutcome]) -> list:
    flags = integrity.near_identical({o.student: o.units for o in outcomes if not o.error})
    if found.kind == NBGRADER:
        # nbgrader scored these notebooks inside the students' own kernels, where any
        # score can be forged: list every assignment where it gave more than we do
        from attnkit.frontends import nbgrader_tree

        flags += nbgrader_tree.nbgrader_higher(class_path, {o.student: module_totals(o.scores) for o in outcomes
                                                        if not o.error})
    return flags


def main(class_dir: str, out_dir: str, jobs: int | None, seconds: float, quiet: bool,
         unconfined: bool = False) -> int:
    """``attnkit grade-class``: 0 when every student was graded, 1 when some could not be,
    2 (raised as IntakeError/GraderError) when there is nothing to grade or the
    sandbox cannot confine student code (and ``unconfined`` was not given)."""
    run = grade_class(class_dir, out_dir, jobs=jobs, seconds=seconds, progress=not quiet, hide=[class_dir],
                      unconfined=unconfined)
    for line in summary(run, out_dir):
        print(line)
    return 1 if any(o.error for o in run.outcomes) else 0


def summary(run: ClassRun, out_dir: str) -> list[str]:
    """What grade-class prints when it is done; every name and reason on one printable line."""
    outcomes = run.outcomes
    graded = [o for o in outcomes if not o.skipped and not o.error]
    skipped = [o for o in outcomes if o.skipped]
    errors = [o for o in outcomes if o.error]
    kind = "nbgrader's submitted/ tree" if run.roster.kind == NBGRADER else "one folder per student"
    lines = [f"attnkit grade-class ({kind}): {len(outcomes)} students: {len(graded)} graded, {len(skipped)} "
             f"unchanged since the last run, {len(errors)} {NOT_GRADED}"]
    lines += [one_line(f"  {o.student}: {NOT_GRADED}: {o.error}") for o in errors]
    lines += [f"  {line}" for line in run.roster.ignored]
    lines.append(f"grades: {os.path.join(out_dir, 'grades.csv')}")
    lines += integrity.summary(run.flags)
    lines.append(f"integrity report: {os.path.join(out_dir, 'integrity.csv')}")
    return lines


_WARM: set = set()  # the workers this process has warmed up with


def refuse_unconfined(zygote, unconfined: bool, close: bool = True) -> None:
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
        if close:
            zygote.close()
        raise GraderError("this machine cannot confine student code: the grader cannot " + "; ".join(gaps) +
                          ". Grade as root or where unprivileged user namespaces are enabled; or pass "
                          "--unconfined to grade anyway (the grades then cannot count)")
    print(zygote.notice(), file=sys.stderr)


def _warm_up_here() -> None:
    """Pay once, here, what every job would pay again after the fork and what
    needs no worker: the torch import, the feedback page's template, the
    reference's hashes. Called while the worker starts (it imports torch too,
    in parallel), not after it is ready."""
    import torch  # noqa: F401 - imported here, before the jobs fork

    import attnkit.judge.engine  # noqa: F401 - the checks and the reference, likewise

    feedback_html.warm()
    integrity.own_units({})


def _warm_up() -> None:
    """Then torch's first operations and the reference results that every
    student's checks share: grading the solutions once fills the memo."""
    if id(_ZYGOTE) in _WARM:
        return
    _WARM.add(id(_ZYGOTE))
    from attnkit.judge.engine import grade
    from attnkit.intake import from_folder
    from attnkit.config import solutions_dir

    if solutions_dir().is_dir():
        grade(_ZYGOTE, from_folder(str(solutions_dir()), MODULES, "warm-up"))


def _run_jobs(todo, out_path: Path, version: str, jobs: int, seconds: float, hide, bar, zygote=None,
              unconfined: bool = False):
    global _ZYGOTE, _NEXT_CHANNEL
    from attnkit.sandbox import Zygote
    from attnkit.config import secret_paths

    jobs = max(1, min(jobs, len(todo)))
    # One warm worker serves every job, each on its own channel: torch is
    # imported once for the workers, and once here, in parallel.
    own = zygote is None
    _ZYGOTE = Zygote(hide=[*secret_paths(), *hide], channels=jobs * 4) if own else zygote  # spare channels too
    _warm_up_here()  # while the worker starts: measured, the two torch imports no longer wait on each other
    refuse_unconfined(_ZYGOTE, unconfined, close=own)
    _warm_up()
    if not own:
        # A shared worker outlives this run's job processes: read each channel's
        # greeting here, once, so that no later job waits for one already read.
        for index in range(jobs * 4):
            _ZYGOTE.use_channel(index)
            _ZYGOTE.ready()
        _ZYGOTE.use_channel(0)

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
        if own:
            _ZYGOTE.close()
    return results


def _pool_round(pending, results, out_path, version, jobs, seconds, context, bar):
    """Grade ``pending``; returns what is left if a job process died."""
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_job) as pool:
        futures = {pool.submit(_grade_one, name, sub, str(out_path), fp, version, seconds): (name, sub, fp)
                   for name, sub, fp in pending}
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
                        bar.step(f"{name}: {NOT_GRADED if outcome.error else _num(outcome.total)}")
        except BrokenProcessPool:
            # A job process died (never student code: that runs further down).
            done = {r.student for r in results}
            return [futures[f] for f in futures if futures[f][0] not in done]
    return []
