"""``attnkit grade-class``: a whole class in one run, safely and in parallel.

Each folder of the class directory is one student. What is graded in it is
decided by the intake's one rule (``attnkit.intake.collect``), read once, here,
before any worker starts: nested folders and notebooks are found, links and
special files are refused, and a folder with nothing to grade is reported,
not graded. The class's kind (plain folders, or nbgrader's ``submitted/``
tree) is decided by its top level alone. Whatever one student's folder holds
costs that student only: it is a note, a missing module, or "could not be
graded: <reason>" in grades.csv.

Job processes (``--jobs``, default the CPUs this process may use) share one warm worker and
grade students one after the other with the batch path (``classjobs.py``).
Every student's results are written atomically as soon as they are known
(``classfiles.py``), tagged with a fingerprint of what intake read and of the
grader; a rerun skips every student whose fingerprint is unchanged, so a run
killed at any point and started again loses nothing and ends with the same
grades.csv.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from attnkit.config import ITEM_SECONDS_DEFAULT, PACKAGE_DIR
from attnkit.errors import GraderError
from attnkit.exercises import module_totals
from attnkit.frontends.classfiles import NOT_GRADED, StudentOutcome, previous, write_csv
from attnkit.frontends.classjobs import run_jobs
from attnkit.intake import NBGRADER, PLAIN, IntakeError, Submission, collect
from attnkit.judge import integrity
from attnkit.sandbox.forking import usable_cpus
from attnkit.text import name_shown, one_line

OUTPUT_FILES = ("grades.csv", "integrity.csv")  # the class's own files in OUT: no student folder may take their names


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
            ignored.append(f"{name_shown(name)}: not a folder, so no student; ignored")
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


# --------------------------------------------------------------------------- the run

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
            bar.step(f"{name_shown(o.student)}: {'unchanged' if o.skipped else NOT_GRADED}")
    if todo:
        outcomes += run_jobs(todo, out_path, version, jobs or len(usable_cpus()) or os.cpu_count() or 1, seconds,
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
    students = f"{len(outcomes)} student{'' if len(outcomes) == 1 else 's'}"
    lines = [f"attnkit grade-class ({kind}): {students}: {len(graded)} graded, {len(skipped)} "
             f"unchanged since the last run, {len(errors)} {NOT_GRADED}"]
    lines += [f"  {name_shown(o.student)}: {one_line(f'{NOT_GRADED}: {o.error}')}" for o in errors]
    lines += [f"  {line}" for line in run.roster.ignored]
    lines.append(f"grades: {os.path.join(out_dir, 'grades.csv')}")
    lines += integrity.summary(run.flags)
    lines.append(f"integrity report: {os.path.join(out_dir, 'integrity.csv')}")
    return lines
