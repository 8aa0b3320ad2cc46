"""From check outcomes to item scores and a report. Pure data: no I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field

from attnkit.exercises import PUBLIC_KINDS, Item, items
from attnkit.judge.registry import Check
from attnkit.errors import CheckFailure, GradientFailure, LimitExceeded, StudentError
from attnkit.text import one_line, printable


@dataclass
class CheckResult:
    item: str
    kind: str
    points: int
    passed: bool
    reason: str = ""
    details: str = ""
    limit: bool = False
    not_implemented: bool = False
    diagnosis: str = ""  # id of the catalogued misconception named in the reason
    pictures: list = field(default_factory=list)  # diagnosis.pictures.Picture, for the feedback file
    error: str = ""  # why it failed other than by a wrong answer: "limit", "grader", "gradient", or the StudentError kind

    @property
    def wrong_answer(self) -> bool:
        """Failed by returning a wrong value (not by raising, a limit or the grader failing)."""
        return not self.passed and not self.error


# What one check may say, in characters. A submission writes much of it (an
# exception's message, the names of its parameters, its traceback), and one that
# reported 250 parameters of 15,000-character names wrote 280 MB of feedback.
REASON_CHARS = 4000
DETAILS_CHARS = 12000


def _capped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f" ... (cut at {limit} characters)"


def outcome(check: Check, exc: BaseException | None) -> CheckResult:
    """Classify how a check ended. Only CheckFailure and its kinds blame the
    student; anything else is reported as the grader failing to check.

    This is where text a submission controls (its exception messages, its
    traceback) enters a report, so it is made safe here, once, for every
    report: the reason is one printable line, the details printable lines."""
    base = dict(item=check.item, kind=check.kind, points=check.points)
    if exc is None:
        return CheckResult(passed=True, **base)
    if isinstance(exc, LimitExceeded):
        return CheckResult(passed=False, reason=_capped(one_line(exc.reason), REASON_CHARS), limit=True, error="limit",
                           **base)
    if isinstance(exc, CheckFailure):
        if isinstance(exc, StudentError):
            kind = exc.kind or "raised"
        else:
            kind = "gradient" if isinstance(exc, GradientFailure) else ""
        return CheckResult(passed=False, reason=_capped(one_line(exc.reason), REASON_CHARS),
                           details=_capped(printable(exc.details), DETAILS_CHARS),
                           not_implemented=kind == "not_implemented", error=kind,
                           diagnosis=getattr(exc, "diagnosis", ""), pictures=list(getattr(exc, "pictures", [])),
                           **base)
    return CheckResult(passed=False, reason=_capped(one_line(f"the grader could not check this ({type(exc).__name__}: "
                                                             f"{exc})"), REASON_CHARS),
                       error="grader", **base)


@dataclass
class ItemResult:
    item: Item
    checks: list[CheckResult] = field(default_factory=list)
    public: bool = False  # scored on the public checks only

    @property
    def score(self) -> int:
        if any(c.limit for c in self.checks):
            return 0  # a limit costs the whole item, never more
        return sum(c.points for c in self.checks if c.passed)

    @property
    def max_score(self) -> int:
        if self.public:
            return sum(p for kind, p in self.item.checks.items() if kind in PUBLIC_KINDS)
        return self.item.points

    @property
    def reasons(self) -> list[str]:
        """One line per distinct reason, naming every failed check it is the
        reason of (``example, hidden: ...``): each point lost is accounted for."""
        kinds: dict[str, list[str]] = {}
        for c in self.checks:
            if not c.passed:
                kinds.setdefault(c.reason, []).append(c.kind)
        return [f"{', '.join(found)}: {reason}" for reason, found in kinds.items()]

    @property
    def summary(self) -> str:
        failed = [c for c in self.checks if not c.passed]
        if not failed:
            return ""
        # A limit decides the item; a named misconception teaches more than the first symptom.
        first = next((c for c in failed if c.limit), next((c for c in failed if c.diagnosis), failed[0]))
        more = len({c.reason for c in failed}) - 1
        return first.reason + (f" (+{more} more)" if more > 0 else "")


@dataclass
class Report:
    results: list[ItemResult]
    notes: list[str] = field(default_factory=list)

    @property
    def score(self) -> int:
        return sum(r.score for r in self.results)

    @property
    def max_score(self) -> int:
        return sum(r.max_score for r in self.results)

    def by_item(self) -> dict[str, ItemResult]:
        return {r.item.key: r for r in self.results}


def build_report(results: list[CheckResult], modules, notes=(), public: bool = False) -> Report:
    table = [i for i in items().values() if i.module in modules]
    grouped = {i.key: ItemResult(i, public=public) for i in table}
    for r in results:
        if r.item in grouped:
            grouped[r.item].checks.append(r)
    return Report(list(grouped.values()), list(notes))
