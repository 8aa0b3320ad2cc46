"""The student's pytest: one test per graded item of the exercise files.

Installed with the kit as a pytest plugin (entry point ``attnkit-student``).
It does nothing unless pytest runs in a folder that holds the exercise files
(``simplified_attention.py`` ...) or is given ``--attnkit-student``; and it
stays out of ``attnkit grade``'s own pytest run. When active, each exercise
file becomes a collector of its graded items, ``-m causal_attention`` selects
one assignment, and the summary gives the points.

The items are graded by the one engine (``judge.engine.grade``) in this
process, which never imports the student's code: the sandbox runs it. What is
graded in a folder follows the one rule of ``attnkit grade`` (``intake.collect``):
a notebook with work in it over an untouched stub of the same module. Without the
reference solutions (an installed handout) only the public checks run, and the
header and summary say so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

VIEW_NAME = "attnkit-student-view"
GRADING_PLUGIN = "attnkit-grading"  # attnkit.frontends.pytest_plugin.PLUGIN_NAME, not imported: torch is slow


def _exercise_files() -> tuple[str, ...]:
    from attnkit.exercises import MODULES

    return tuple(f"{m}.py" for m in MODULES)


def pytest_addoption(parser):
    group = parser.getgroup("attnkit", "attnkit grading")
    group.addoption("--attnkit-student", action="store_true", default=False,
                    help="show the graded items of every exercise file pytest collects, "
                         "even outside a folder of exercise files")


def _active(config) -> bool:
    if config.pluginmanager.has_plugin(GRADING_PLUGIN):
        return False  # attnkit grade's run: the checks themselves are the tests there
    if config.getoption("attnkit_submission", None):
        return False
    if config.getoption("attnkit_student", False):
        return True
    here = Path(config.invocation_params.dir)
    return any((here / name).is_file() for name in _exercise_files())


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    if not _active(config):
        return
    from attnkit.exercises import MODULES

    for module in MODULES:
        config.addinivalue_line("markers", f"{module}: the graded items of {module}.py")
    config.addinivalue_line("markers", "attnkit(item, kind): a graded check of one item of the kit")
    config.pluginmanager.register(StudentView(config), VIEW_NAME)


class ItemFailed(Exception):
    """A graded item lost points; the message is what the student reads."""


class GradedItem(pytest.Item):
    def __init__(self, *, graded, **kwargs):
        super().__init__(**kwargs)
        self.graded = graded  # attnkit.exercises.Item
        self.add_marker(graded.module)

    def runtest(self):
        view = self.config.pluginmanager.get_plugin(VIEW_NAME)
        result = view.result(self)
        if result.score == result.max_score:
            return
        failed = [c for c in result.checks if not c.passed]
        if failed and all(c.not_implemented for c in failed):
            pytest.skip("not implemented yet")
        lines = [f"{self.graded.key}: {result.score}/{result.max_score} points"]
        lines += [f"  {line}" for line in result.reasons]
        raise ItemFailed("\n".join(lines))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ItemFailed):
            return str(excinfo.value)  # the reason is the whole story: no grader traceback
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, self.graded.key


class ExerciseFile(pytest.File):
    def collect(self):
        from attnkit.exercises import items_of

        for graded in items_of(self.path.stem):
            yield GradedItem.from_parent(self, name=graded.name, graded=graded)


class StudentView:
    def __init__(self, config):
        from attnkit.judge.engine import solutions_available
        from attnkit.sandbox import Zygote
        from attnkit.config import secret_paths

        self.config = config
        self.here = Path(config.invocation_params.dir)
        self.everywhere = config.getoption("attnkit_student", False)
        self.public = not solutions_available()
        self.zygote = Zygote(hide=secret_paths())  # imports torch in the worker while pytest collects
        self.selected: dict[Path, set[str]] = {}  # folder -> modules whose items will run
        self.reports: dict = {}  # folder -> Report, or the GraderError that stopped its grading

    def pytest_ignore_collect(self, collection_path, config):
        """A copy of the kit next to the exercises (a handout's checker/) holds the
        kit's own check files: they grade through this view, never as tests."""
        if collection_path.is_dir() and ((collection_path / "exercises.toml").is_file()
                                         or (collection_path / "attnkit" / "exercises.toml").is_file()):
            return True
        return None

    def pytest_collect_file(self, file_path, parent):
        if file_path.name in _exercise_files() and (self.everywhere or file_path.parent == self.here):
            return ExerciseFile.from_parent(parent, path=file_path)
        return None

    def pytest_report_header(self, config):
        if self.public:
            return ("attnkit: public mode: the reference solutions are not installed here, so only the "
                    "public checks run (the chapter's examples and the properties); the hidden cases "
                    "run when your course grades the work")
        return "attnkit: grading every check against the reference solutions"

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items):
        """Teaching order, whatever order the files were found in."""
        from attnkit.exercises import items as graded_items

        order = {key: n for n, key in enumerate(graded_items())}
        graded = [i for i in items if isinstance(i, GradedItem)]
        others = [i for i in items if not isinstance(i, GradedItem)]
        items[:] = others + sorted(graded, key=lambda i: (str(i.path.parent), order[i.graded.key]))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if isinstance(item, GradedItem) and report.skipped and isinstance(report.longrepr, tuple):
            # point at the student's file, not at this plugin's pytest.skip
            report.longrepr = (str(item.path), None, report.longrepr[2])

    def pytest_collection_finish(self, session):
        for node in session.items:
            if isinstance(node, GradedItem):
                self.selected.setdefault(node.path.parent, set()).add(node.graded.module)

    def result(self, node: GradedItem):
        import dataclasses

        from attnkit.judge.engine import grade
        from attnkit.intake import IntakeError, collect
        from attnkit.exercises import MODULES

        from attnkit.errors import GraderError

        folder = node.path.parent
        if folder not in self.reports:
            modules = tuple(m for m in MODULES if m in self.selected.get(folder, {node.graded.module}))
            try:
                # the one rule of `attnkit grade` and `check`: a notebook with work in it
                # is graded over an untouched stub of the same module
                found = collect(str(folder), folder.name or "your folder")
                self.reports[folder] = grade(self.zygote, dataclasses.replace(found, modules=modules),
                                             public=self.public)
            except (GraderError, IntakeError) as exc:  # the kit's fault or setup, never the student's code
                self.reports[folder] = exc
        report = self.reports[folder]
        if isinstance(report, GraderError):
            raise ItemFailed(f"attnkit could not grade {folder}: {report}")
        return report.by_item()[node.graded.key]

    def pytest_terminal_summary(self, terminalreporter):
        from attnkit.outputs.report import table

        for folder, report in self.reports.items():
            if not hasattr(report, "results"):
                continue  # a grader error, reported with each item
            terminalreporter.section(f"attnkit: {folder}")
            terminalreporter.write_line(table(report))
            terminalreporter.write_line(self.points_line(report))
            if any(c.pictures for r in report.results for c in r.checks):
                command = "check" if self.public else "grade"  # a handout's checker has no `grade`
                terminalreporter.write_line(f"pictures of the expected and your attention weights: "
                                            f"attnkit {command} {folder} --report DIR, then open DIR/feedback.html")
        if self.reports and self.zygote.notice():
            terminalreporter.write_line(self.zygote.notice())

    def points_line(self, report) -> str:
        whole = len({r.item.module for r in report.results}) == 4
        if self.public:
            return (f"attnkit public mode: {report.score} of the {report.max_score} points the public checks "
                    f"cover ({'of 100' if whole else 'of these assignments'}); the hidden checks cover the rest")
        if whole:
            return f"attnkit: {report.score}/100 points"
        return f"attnkit: {report.score}/{report.max_score} points for the selected assignments (of 100 in all)"

    def pytest_unconfigure(self, config):
        self.zygote.close()
