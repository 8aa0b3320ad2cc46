"""The one engine: grading one submission.

Every path grades through ``Grading``: ``attnkit grade`` and ``check``,
``grade-class`` and the Gradescope bundle (``grade`` below), the notebooks'
test cells and the nbgrader helper, the student's pytest view, and the
instructor's pytest plugin, which only hands pytest the checks to run one by
one (``Grading.run``) and reports what the engine concluded. The rules live
here once: which checks run (``selected_checks``), a limit hit by one check
skips the rest of its item (``Run.run``), and an item's reasons are settled on
all its checks (``Run.results``).
"""

from __future__ import annotations

import torch

from attnkit.judge import diagnosis, reference
from attnkit.intake import Submission
from attnkit.exercises import MODULES, allowed_calls, items, stand_ins
from attnkit.judge.registry import Check, registry
from attnkit.errors import GraderError
from attnkit.sandbox import Limits, Session, Zygote
from attnkit.judge.scoring import CheckResult, Report, build_report, outcome
from attnkit.judge.student import Student


def solutions_available() -> bool:
    try:
        reference.solutions()
    except GraderError:
        return False
    return True


def open_session(zygote: Zygote, submission: Submission, limits: Limits | None = None,
                 public: bool = False) -> Session:
    """A session for one submission. ``public`` sessions (no reference solution
    at hand) stand no reference results in for other stages."""
    # The grader's tensors are tiny: a second intra-op thread only fights the
    # student process for the CPU (measured: 6x slower per submission).
    torch.set_num_threads(1)
    if not public:
        reference.warm_up()
    return Session(zygote, submission.files, MODULES, stand_ins(), allowed_calls(),
                   None if public else reference.upcall, limits, submission.absent_reasons())


def selected_checks(submission: Submission, public: bool = False) -> list[Check]:
    """The checks of the submission's assignments; only public kinds in public mode."""
    return [c for c in registry()
            if c.item.split(".", 1)[0] in submission.modules and (c.public or not public)]


class Run:
    """Checks of one submission, in order; a limit hit by one check skips the
    rest of that item (it scores 0 whatever they would say).

    The comparisons each check makes are kept per item (``collecting``), so
    that ``results`` names a misconception only when it fits all of an
    item's checks (``attnkit.judge.diagnosis.conclude``).

    An item that may call other stages is first tried on the student's own
    stages (``_own``), only those in doubt replaced by their stand-ins
    (``_in_doubt`` says which): when every check of the item passes that way,
    it has full marks, with no stand-in asked for the others (for a correct
    submission, none at all: most of the exchanges with its process).
    Otherwise it is graded as always, each stage it calls replaced by its
    stand-in, so that a mistake in a stage costs that stage alone, in a fresh
    process: the trial leaves no trace (time, output, comparisons, and what
    the student's code kept in its own process)."""

    def __init__(self, session: Session, made_from: dict[str, str] | None = None, checks=()):
        self.session = session
        self.made_from = made_from or {}  # module -> the notebook it was made from, for messages
        self.of_item: dict[str, list[Check]] = {}  # the engine's selection (pytest's -k aside), by item
        for check in checks:
            self.of_item.setdefault(check.item, []).append(check)
        self.outcomes: list[tuple[Check, BaseException | None]] = []
        self.cases: dict[str, list] = {}
        self.limited: set[str] = set()
        self.trials: dict[str, bool | None] = {}  # item -> its trial on the student's own stages passed; None: none made
        self._results: list[CheckResult] | None = None

    def student(self, check: Check) -> Student:
        return Student(self.session, items()[check.item], self.made_from)

    def collecting(self, check: Check):
        """While ``check`` runs, keep the comparisons it makes."""
        return diagnosis.collecting(self.cases.setdefault(check.item, []), check.kind)

    def record(self, check: Check, exc: BaseException | None) -> CheckResult:
        result = outcome(check, exc)
        _without_frames(exc)
        if result.limit:
            self.limited.add(check.item)
        self.outcomes.append((check, exc))
        self._results = None
        return result

    @property
    def results(self) -> list[CheckResult]:
        """Every check's result, with each item's reasons settled on all its checks."""
        if self._results is None:
            self._results = [outcome(c, e) for c, e in diagnosis.conclude(self.outcomes, self.cases)]
        return self._results

    def run(self, check: Check) -> CheckResult | None:
        if check.item in self.limited:
            return None
        if self._own(check.item):
            return self.record(check, None)
        try:
            with self.collecting(check):
                check.func(self.student(check))
        except Exception as exc:  # noqa: BLE001 - classified by outcome()
            return self.record(check, exc)
        return self.record(check, None)

    def _own(self, item: str) -> bool:
        """Whether every selected check of ``item`` passes on the student's own
        stages (tried once, on the item's first check), with stand-ins for the
        stages it may call that are in doubt (``_in_doubt``). Tried only where
        stand-ins would be answered (a public session has none to leave out)
        and at least one stage the item may call is not in doubt: with every
        one in doubt the trial would be the graded run itself. The price: an
        item right only on the student's own stages (relying on what a stage
        does that its checks do not test) keeps its marks only while those
        stages pass all their checks."""
        if item not in self.trials:
            self.trials[item] = None
            stages = allowed_calls().get(item, ())
            if item in self.of_item and stages and self.session.answer is not None:
                doubtful = self._in_doubt(stages)
                if len(doubtful) < len(stages):
                    self.trials[item] = self._try_own(item, self.of_item[item], doubtful)
        return bool(self.trials[item])

    def _in_doubt(self, stages) -> frozenset[str]:
        """Of ``stages`` (what an item may call), those its trial stands in: each
        that failed a check, was not graded or failed its own trial; and, for
        a stage that passed, the stand-ins asked for while it was graded
        (``Session.asked``: what it passed on), or, where one of them is not a
        stage this item may call, that stage itself (a right CausalAttention
        on a wrong mask_scores, under the wrapper, which may call
        CausalAttention but not mask_scores). A student's code that asks fewer
        questions than its stages need only has them run as written sooner;
        one that asks more is stood in for more, closer to the graded run:
        neither earns anything."""
        passed = {c for c, exc in self.outcomes if exc is None}
        calls, doubtful = set(stages), set()
        for s in stages:
            under = self.session.asked.get(s, set())
            if (s in self.of_item and passed.issuperset(self.of_item[s]) and self.trials.get(s) is not False
                    and under <= calls):
                doubtful |= under
            else:
                doubtful.add(s)
        return frozenset(doubtful)

    def _try_own(self, item: str, checks: list[Check], doubtful: frozenset[str]) -> bool:
        self.session.begin_trial()
        self.session.own[item] = doubtful
        try:
            for check in checks:
                try:
                    with diagnosis.collecting([], check.kind):
                        check.func(self.student(check))
                except Exception as exc:  # noqa: BLE001 - any failure: graded with stand-ins instead
                    _without_frames(exc)
                    self.session.start_over(item)
                    return False
            return True
        finally:
            self.session.own.pop(item, None)


def _without_frames(exc: BaseException | None) -> None:
    """Drop the tracebacks of a kept failure and of what it chains: their frames
    hold the run and the student's answers, a cycle the garbage collector frees
    only in a full collection, rare once torch is loaded (a class's job process
    grew by gigabytes). Nothing reads them: a failure's words are its fields."""
    seen = 0
    while exc is not None and seen < 16:
        exc.__traceback__ = None
        exc, seen = exc.__cause__ or exc.__context__, seen + 1


class Grading:
    """One submission in the sandbox: its checks, each run on demand, and its report."""

    def __init__(self, zygote: Zygote, submission: Submission, limits: Limits | None = None,
                 public: bool = False):
        self.submission = submission
        self.public = public
        made_from = {name[:-3]: source for name, source in submission.sources.items() if source.endswith(".ipynb")}
        self.run_ = Run(open_session(zygote, submission, limits, public), made_from, self.checks)

    @property
    def checks(self) -> list[Check]:
        return selected_checks(self.submission, self.public)

    def run(self, check: Check) -> CheckResult | None:
        """Run one check; None when it was skipped (its item already hit a limit)."""
        return self.run_.run(check)

    def student(self, check: Check) -> Student:
        return self.run_.student(check)

    def report(self) -> Report:
        notes = list(self.submission.notes) + self.submission.missing_notes() + self.run_.session.notes
        return build_report(self.run_.results, self.submission.modules, notes, public=self.public)

    def close(self) -> None:
        self.run_.session.close()

    def __enter__(self) -> Grading:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def grade(zygote: Zygote, submission: Submission, limits: Limits | None = None, public: bool = False) -> Report:
    """Grade one submission: every check of its assignments, in order. In
    ``public`` mode only the public checks run, and items are out of their
    public points."""
    with Grading(zygote, submission, limits, public) as grading:
        for check in grading.checks:
            grading.run(check)
        return grading.report()
