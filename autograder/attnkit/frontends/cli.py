"""The ``attnkit`` command line.

The commands are data (``COMMANDS``): each has its one-line summary, a
description, examples and its arguments, and says whether the handout's
public checker offers it (``edition.EDITION == "checker"``) and which extra of
the package it needs. Options mean the same in every command: inputs are
positional, ``--out`` is where a command writes, ``--json FILE``,
``--report DIR``, ``--fail-under SCORE`` and ``--timeout SECONDS`` as in
``attnkit grade``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shlex
import sys
from dataclasses import dataclass
from typing import Callable

from attnkit import __version__, edition
from attnkit.config import CELL_SECONDS_DEFAULT, ITEM_SECONDS_DEFAULT
from attnkit.errors import GraderError
from attnkit.text import one_line



def cmd_build(args) -> int:
    from attnkit.authoring.build import BuildError, build

    try:
        lines = build(check=args.check)
    except BuildError as exc:
        print(f"attnkit build: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    if args.check:
        if lines:
            print("attnkit build --check: generated files are stale; run `attnkit build` and commit them",
                  file=sys.stderr)
            return 1
        print("attnkit build --check: every generated file is up to date")
    return 0


def cmd_grade(args) -> int:
    from attnkit.intake import find

    # What to grade, before any worker starts: nothing to grade is one line and exit 2, at once.
    target = find(args.path)
    several = target.folders  # intake's own reading of the folder: several students' work?
    if several:
        shown = ", ".join(f"{one_line(f)}/" for f in several[:3]) + (", ..." if len(several) > 3 else "")
        print(f"note: {one_line(args.path)} holds the work of several folders ({shown}): this grades one "
              f"submission, taking each file from one of them; a class is graded with attnkit grade-class",
              file=sys.stderr)
    from attnkit.config import secret_paths
    from attnkit.sandbox import Limits, Zygote

    # The worker imports torch while this process does the same: start it first.
    zygote = Zygote(hide=secret_paths())
    try:
        from attnkit.judge.engine import grade
        from attnkit.outputs import report as render

        report = grade(zygote, target, Limits(seconds=args.timeout))
        notice = zygote.notice()
    finally:
        zygote.close()
    print(render.table(report, f"attnkit grade {args.path}"))
    if notice:
        print(notice, file=sys.stderr)
    return write_outputs(args, report, label=target.label)


def cmd_course(args) -> int:
    from attnkit.authoring.course import create

    for path in create(args.dir, cell_timeout=args.cell_timeout, item_seconds=args.item_timeout):
        print(f"wrote {path}")
    print(f"next: cd {args.dir} && nbgrader generate_assignment simplified_attention")
    return 0


def cmd_handout(args) -> int:
    from attnkit.authoring.handout import create

    for path in create(args.out, classroom=args.classroom, checker_url=args.checker_url):
        print(f"wrote {path}")
    if args.classroom:
        from attnkit.authoring.handout import classroom_next_steps

        print(classroom_next_steps(args.out, args.checker_url))
    return 0


def cmd_check(args) -> int:
    from attnkit.frontends import check as checker
    output = checker.github_output_path(args.github_output)
    report, text = checker.run(args.path, notebooks=args.notebooks, timeout=args.timeout,
                               github_output=output)
    print(text)
    return write_outputs(args, report, public=True)


def cmd_grade_class(args) -> int:
    from attnkit.config import secret_is_public
    from attnkit.frontends.classgrade import main

    if secret_is_public():  # grading for credit: the hidden cases should be the course's own
        print("note: ATTNKIT_SECRET is not set, so the hidden cases use the kit's public default secret "
              "(anyone with the kit can compute them); set it to a secret of the course's own", file=sys.stderr)
    # 0: every student graded; 1: some could not be (grades.csv says why); 2: nothing to grade
    return main(args.dir, args.out, jobs=args.jobs, seconds=args.timeout, quiet=args.quiet,
                unconfined=args.unconfined)


def cmd_gradescope_bundle(args) -> int:
    from attnkit.frontends.gradescope import build_bundle

    path = build_bundle(args.out, args.secret_file, unconfined=args.unconfined)
    print(f"wrote {path}: upload it as the autograder of a Gradescope programming assignment")
    if not args.secret_file:
        print("note: no --secret-file given, so the hidden cases use the kit's public default secret",
              file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- shared outputs

def fail_under(args, report) -> int:
    """Exit 1 below ``--fail-under``, saying so in one line."""
    if args.fail_under is None or report.score >= args.fail_under:
        return 0
    print(f"attnkit {args.command}: {report.score:g}/{report.max_score:g} is under --fail-under "
          f"{args.fail_under:g}: exit 1", file=sys.stderr)
    return 1


def write_outputs(args, report, public: bool = False, label: str | None = None) -> int:
    """``--json``, ``--report`` and ``--fail-under`` of a command that grades one submission.
    The feedback names the submission by ``label``: never a grader's path."""
    if args.json:
        from attnkit.outputs.report import write_json

        write_json(report, args.json)
        print(f"results written to {args.json}")
    if args.report:
        from attnkit.outputs import feedback as feedback_html
        path = feedback_html.write(report, args.report, f"attnkit feedback: {label or args.path}", public=public)
        print(f"feedback written to {path}")
    elif any(len(r.reasons) > 1 for r in report.results):  # a row's "(+N more)" says there is more, not where
        print(f"every reason of each item, with pictures: attnkit {args.command} {shlex.quote(args.path)} "
              f"--report DIR, then open DIR/feedback.html")
    return fail_under(args, report)


# --------------------------------------------------------------------------- extras

# The packages each extra of pyproject.toml brings, by the module that shows it is there.
EXTRAS = {"course": ("nbgrader",)}


def missing_extra(extra: str) -> str | None:
    """None when the extra's packages are importable; otherwise the line that says how to get them."""
    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return f'needs {", ".join(missing)}, which the instructors\' extra brings: pip install "attnkit[{extra}]"'


# --------------------------------------------------------------------------- arguments

MIN_SECONDS = 0.5  # below it, correct code runs out of time too (a child starts, imports, runs checks)


def seconds(text: str) -> float:
    """A time limit: a finite number of seconds, at least MIN_SECONDS (0 would fail every item)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not MIN_SECONDS <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"a time limit is a number of seconds from {MIN_SECONDS:g} up "
                                         f"(below, correct code runs out of time too), not {text}")
    return value


def whole_seconds(text: str) -> int:
    value = seconds(text)
    if value != int(value):
        raise argparse.ArgumentTypeError(f"a whole number of seconds, not {text}")
    return int(value)


def jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"at least 1 job, not {text}")
    return value


def add_out(p, what: str, dest: str = "out", required: bool = True) -> None:
    """``--out PATH``, where a command writes. The positional spelling of the
    earlier releases (``attnkit handout DIR``) is still accepted, unlisted
    (which is why argparse cannot mark --out required: the help says so)."""
    p.add_argument("--out", dest=dest, metavar="PATH", help=f"{what} (required)" if required else what)
    p.add_argument(f"{dest}_positional", nargs="?", help=argparse.SUPPRESS)
    p.set_defaults(_outs=[*p.get_default("_outs"), (dest, required)] if p.get_default("_outs") else [(dest, required)])


def add_grading(p, fail_what: str = "the total") -> None:
    """The options of every command that grades one submission."""
    p.add_argument("--json", metavar="FILE", help="also write the result as Gradescope's results.json to FILE")
    p.add_argument("--report", metavar="DIR", help="also write feedback.html (with heatmaps) into DIR")
    p.add_argument("--fail-under", type=float, metavar="SCORE",
                   help=f"exit 1, saying why, when {fail_what} is below SCORE (the exit code is 0 otherwise)")
    add_timeout(p)


def add_timeout(p) -> None:
    p.add_argument("--timeout", type=seconds, default=ITEM_SECONDS_DEFAULT, metavar="SECONDS",
                   help=f"wall-time limit per graded item (default {ITEM_SECONDS_DEFAULT:g})")


def args_build(p):
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if any generated file is stale")


def args_grade(p):
    p.add_argument("path", help="a folder with the exercise files, or one of them")
    add_grading(p)


def args_check(p):
    p.add_argument("path", nargs="?", default=".", help="a folder with the exercise files, or one of them "
                                                        "(default: the current folder)")
    p.add_argument("--notebooks", action="store_true", help="grade the code of the notebooks in the folder")
    add_grading(p, "the total of the public checks")
    p.add_argument("--github-output", action="store_true",
                   help="also write the result for GitHub Classroom's reporter to $GITHUB_OUTPUT")


def args_course(p):
    add_out(p, "the course folder to create", dest="dir")
    p.add_argument("--cell-timeout", type=whole_seconds, default=CELL_SECONDS_DEFAULT, metavar="SECONDS",
                   help=f"nbgrader's per-cell time limit, c.Execute.timeout (default {CELL_SECONDS_DEFAULT})")
    p.add_argument("--timeout", "--item-timeout", dest="item_timeout", type=seconds, default=ITEM_SECONDS_DEFAULT,
                   metavar="SECONDS", help=f"wall-time limit per graded item (default {ITEM_SECONDS_DEFAULT:g}), "
                                           f"in the test cells")


def args_handout(p):
    add_out(p, "a new (or empty) folder for the handout")
    p.add_argument("--classroom", action="store_true",
                   help="add .github/workflows/classroom.yml for GitHub Classroom (needs --checker-url)")
    p.add_argument("--checker-url", metavar="URL",
                   help="where you will host the checker's wheel (e.g. a release asset); the workflow installs "
                        "it from there, pinned by its sha256")


def args_grade_class(p):
    p.add_argument("dir", help="one folder per student, each laid out like assignments/, or nbgrader's "
                               "submitted/ tree (<student>/<assignment>/<assignment>.ipynb)")
    add_out(p, "where grades.csv and each student's results go")
    p.add_argument("--jobs", type=jobs, default=None, help="parallel jobs (default: the CPUs this process may use)")
    add_timeout(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--unconfined", action="store_true",
                   help="grade even where this machine cannot confine student code (neither root nor "
                        "unprivileged user namespaces): a student could then read the solutions and "
                        "other students' work, so the grades cannot count")


def args_gradescope_bundle(p):
    add_out(p, "the zip to write, e.g. autograder.zip")
    p.add_argument("--secret-file", metavar="FILE", help="a file holding your secret for the hidden cases")
    p.add_argument("--unconfined", action="store_true",
                   help="grade even where the container denies the sandbox its namespaces (student code then "
                        "runs as its own user under the limits; see the README)")


# --------------------------------------------------------------------------- the commands

@dataclass(frozen=True)
class Command:
    name: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None]
    summary: str  # its line in `attnkit --help`
    description: str  # what `attnkit NAME --help` says first
    examples: tuple[str, ...]  # full command lines, each parsed by the tests
    checker: bool = False  # offered by a handout's public checker too
    extra: str | None = None  # the extra of the package whose packages it needs

    def epilog(self) -> str:
        return "examples:\n" + "\n".join(f"  {line}" for line in self.examples)


WHEEL = f"attnkit-{__version__}-py3-none-any.whl"

COMMANDS = (
    Command("grade", cmd_grade, args_grade,
            "grade a folder of exercise files, or one file, with every check",
            "Grade a submission with every check: the document's numbers, hidden randomized cases against "
            "the reference solutions, and the stages' properties. A folder grades the four assignments "
            "(out of 100), one exercise file grades its own. Prints one line per graded item with its "
            "points and the reason for any point lost.",
            ("attnkit grade assignments",
             "attnkit grade submission --json results.json --report feedback --fail-under 60")),
    Command("check", cmd_check, args_check,
            "the public checks only (no reference solution, no hidden cases)",
            "Grade with the public checks only: the document's numbers and the stages' properties, out of "
            "the points they cover. This is the self-study handout's checker; it needs no reference "
            "solution, so full marks here are necessary, not sufficient, for full marks in a course.",
            ("attnkit check .", "attnkit check . --notebooks",
             "attnkit check . --json results.json --report feedback --fail-under 47"),
            checker=True),
    Command("grade-class", cmd_grade_class, args_grade_class,
            "grade a folder of student folders in parallel",
            "Grade every student of a class, one folder per student (or nbgrader's submitted/ tree), in "
            "parallel. Writes OUT/grades.csv and, per student, results.json, feedback.txt and "
            "feedback.html; a second run grades again only what changed.",
            ("attnkit grade-class class --out grades", "attnkit grade-class submitted --out grades --jobs 2")),
    Command("handout", cmd_handout, args_handout,
            "write the self-study handout: stubs, notebooks, README, public checker",
            "Write the folder a self-study student (or a GitHub Classroom assignment) starts from: the four "
            "stubs, the four notebooks, a README and checker/, the public checker, which installs with pip "
            "and holds no reference solution.",
            ("attnkit handout --out attention-exercises",
             f"attnkit handout --out attention-classroom --classroom "
             f"--checker-url https://github.com/ORG/REPO/releases/download/v1/{WHEEL}")),
    Command("course", cmd_course, args_course,
            "create a ready nbgrader course folder (config and source notebooks)",
            "Create an nbgrader course: nbgrader_config.py and source/<assignment>/ for the four stages, "
            "pointed at this kit's reference solutions.",
            ("attnkit course --out mycourse", "attnkit course --out mycourse --cell-timeout 120 --timeout 5"),
            extra="course"),
    Command("gradescope-bundle", cmd_gradescope_bundle, args_gradescope_bundle,
            "build a Gradescope autograder zip",
            "Build the autograder zip of a Gradescope programming assignment: setup.sh, run_autograder and "
            "the kit with its reference solutions.",
            ("attnkit gradescope-bundle --out autograder.zip",
             "attnkit gradescope-bundle --out autograder.zip --secret-file secret.txt")),
    Command("build", cmd_build, args_build,
            "generate the stubs and notebooks from solutions/ (kit developers)",
            "Generate every student-facing file from solutions/: the stubs in assignments/, the public "
            "example data, the nbgrader source notebooks and the README's points table.",
            ("attnkit build", "attnkit build --check")),
)


def offered() -> tuple[Command, ...]:
    """The commands of this edition: all of them in the kit, the public ones in a handout's checker."""
    return tuple(c for c in COMMANDS if edition.EDITION == "kit" or c.checker)


def version() -> str:
    what = "the public checker of a handout" if edition.EDITION == "checker" else "the kit"
    return f"attnkit {__version__} ({what}), Python {platform.python_version()}"


class Formatter(argparse.HelpFormatter):
    """Descriptions wrapped to the terminal, example lines (indented) kept as written."""

    def _fill_text(self, text, width, indent):
        return "\n".join(line if line.startswith("  ") or not line.strip()
                         else super(Formatter, self)._fill_text(line, width, indent)
                         for line in text.splitlines())


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="attnkit", formatter_class=Formatter,
        description="Auto-graded exercises on the four attention mechanisms behind GPT-style models.",
        epilog="`attnkit COMMAND --help` describes a command, with examples.")
    top.add_argument("--version", action="version", version=version())
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in offered():
        p = sub.add_parser(command.name, help=command.summary, description=command.description,
                           epilog=command.epilog(), formatter_class=Formatter)
        command.arguments(p)
        p.set_defaults(func=command.run, extra=command.extra, parser=p)
    return top


def _resolve_outs(args) -> None:
    for dest, required in getattr(args, "_outs", []):
        option, positional = getattr(args, dest), getattr(args, f"{dest}_positional")
        if option and positional and option != positional:
            args.parser.error(f"two places to write, {positional} and --out {option}; give one")
        setattr(args, dest, option or positional)
        if required and not getattr(args, dest):
            args.parser.error("say where to write it: --out PATH")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    kit_only = {c.name for c in COMMANDS} - {c.name for c in offered()}
    first = next((a for a in argv if not a.startswith("-")), None)
    if first in kit_only:
        print(f"attnkit {first}: not part of this public checker; it comes with the full kit "
              f"(the instructors' repository). Here: attnkit check", file=sys.stderr)
        return 2
    args = parser().parse_args(argv)
    _resolve_outs(args)
    if args.extra and missing_extra(args.extra):
        print(f"attnkit {args.command}: {missing_extra(args.extra)}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except GraderError as exc:
        print(f"attnkit {args.command}: {exc}", file=sys.stderr)
        return 2


def run() -> None:
    """Console entry point. Exits without tearing the interpreter down: with
    torch loaded that takes longer than a whole grading run, and every output
    file is already written (atomically) and flushed by then."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
