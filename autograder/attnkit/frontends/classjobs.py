"""The job processes of ``grade-class``: one warm worker shared by every job.

The run starts the worker (it imports torch) and warms itself up meanwhile
(``_warm_up_here``); it refuses to grade for credit where the sandbox cannot
confine student code, grades the solutions once so that every job inherits
the reference results, then forks the jobs. Each job takes a channel of its
own to the worker and grades one student after another, a spare child forked
ahead of need; every student's files are written as soon as they are known.
A job process that dies costs a retry of the students it had not finished,
never the run.
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from attnkit.config import pin_jobs
from attnkit.errors import GraderError
from attnkit.exercises import MODULES
from attnkit.frontends.classfiles import NOT_GRADED, StudentOutcome, score_cell, write_student
from attnkit.intake import Submission
from attnkit.judge import integrity
from attnkit.outputs import feedback as feedback_html
from attnkit.text import name_shown

_ZYGOTE = None
_NEXT_CHANNEL = None


def _init_job(jobs: int, pin: bool) -> None:
    """In each job process: take a channel of its own to the shared worker,
    and, with ``pin``, a CPU shared with its children where there is one for
    each job (``ForkZygote.share_cpu``)."""
    from attnkit.sandbox import confine

    confine.die_with_parent()  # a killed run leaves no job grading on
    with _NEXT_CHANNEL.get_lock():
        index = _NEXT_CHANNEL.value
        _NEXT_CHANNEL.value += 1
    _ZYGOTE.use_channel(index)
    if pin and _ZYGOTE.share_cpu(index, jobs) is not None:
        import torch

        torch.set_num_threads(1)  # its threads would all wait on the one CPU
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
    flags = integrity.hard_coded(student, report) + integrity.reference_copies(student, submission.files)
    units = integrity.own_units(submission.files)
    write_student(Path(out_dir) / student, student, report, fingerprint, version, flags, units)
    return StudentOutcome(student, report.score, {r.item.key: r.score for r in report.results}, flags=flags,
                          units=units)


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


def run_jobs(todo, out_path: Path, version: str, jobs: int, seconds: float, hide, bar, zygote=None,
              unconfined: bool = False):
    global _ZYGOTE, _NEXT_CHANNEL
    from attnkit.sandbox import Zygote
    from attnkit.config import secret_paths

    jobs = max(1, min(jobs, len(todo)))
    pin = pin_jobs()  # read before anything starts: a bad value is said at once
    # One warm worker serves every job, each on its own channel: torch is
    # imported once for the workers, and once here, in parallel.
    own = zygote is None

    def worker():  # spare channels too
        return Zygote(hide=[*secret_paths(), *hide], channels=jobs * 4)

    _ZYGOTE = worker() if own else zygote
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
            if attempts > 1 and own:
                # A job process died, and with it the pool: the child it was talking to
                # stays stopped between requests (ForkedChild.pause) and cannot see its
                # socket close. A new worker for the rest; the old one's children die with it.
                _ZYGOTE.close()
                _ZYGOTE = worker()
                refuse_unconfined(_ZYGOTE, unconfined)
                _NEXT_CHANNEL.value = 0
            pending = _pool_round(pending, results, out_path, version, jobs, seconds, context, bar, pin)
    finally:
        if own:
            _ZYGOTE.close()
    return results


def _pool_round(pending, results, out_path, version, jobs, seconds, context, bar, pin):
    """Grade ``pending``; returns what is left if a job process died."""
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_job,
                             initargs=(jobs, pin)) as pool:
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
                        bar.step(f"{name_shown(name)}: {NOT_GRADED if outcome.error else score_cell(outcome.total)}")
        except BrokenProcessPool:
            # A job process died (never student code: that runs further down).
            done = {r.student for r in results}
            return [futures[f] for f in futures if futures[f][0] not in done]
    return []
