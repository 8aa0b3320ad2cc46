"""The ``attnkit`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from attnkit.outcomes import GraderError

CHECKS_DIR = Path(__file__).resolve().parent / "checks"
GRADE_INI = Path(__file__).resolve().parent / "grade.ini"


def cmd_build(args) -> int:
    from attnkit.build import BuildError, build

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
    from attnkit.sandbox import Limits, Zygote
    from attnkit.settings import secret_paths

    # The worker imports torch while this process does the same: start it first.
    zygote = Zygote(hide=secret_paths())
    import pytest

    from attnkit import report as render
    from attnkit.pytest_plugin import GradingPlugin

    limits = Limits(seconds=args.timeout)
    plugin = GradingPlugin(target, limits, args.json, zygote=zygote)
    for var in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS"):
        os.environ.pop(var, None)  # the grading run's configuration is ours alone
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # no installed plugin joins in
    code = pytest.main([str(CHECKS_DIR), "-c", str(GRADE_INI), "--rootdir", str(CHECKS_DIR),
                        "-p", "attnkit.pytest_plugin", "-p", "no:cacheprovider",
                        "-p", "no:terminal",
                        # these two sweep the garbage collector at exit, which with torch
                        # loaded costs half a second; checks raise, they never leak
                        "-p", "no:unraisableexception", "-p", "no:threadexception"], plugins=[plugin])
    if plugin.report is None:
        print(f"attnkit grade: the checks did not run (pytest exit code {code})", file=sys.stderr)
        return 2
    print(render.table(plugin.report, f"attnkit grade {args.path}"))
    if plugin.isolation_notice:
        print(plugin.isolation_notice, file=sys.stderr)
    if args.json:
        print(f"results written to {args.json}")
    if args.report:
        from attnkit import feedback_html

        path = feedback_html.write(plugin.report, args.report, f"attnkit feedback: {target.label}")
        print(f"feedback written to {path}")
    if args.fail_under is not None and plugin.report.score < args.fail_under:
        return 1
    return 0


def cmd_course(args) -> int:
    from attnkit.course import create

    for path in create(args.dir, cell_timeout=args.cell_timeout, item_seconds=args.item_timeout):
        print(f"wrote {path}")
    print(f"next: cd {args.dir} && nbgrader generate_assignment simplified_attention")
    return 0


def cmd_handout(args) -> int:
    from attnkit.handout import create

    for path in create(args.out, classroom=args.classroom):
        print(f"wrote {path}")
    return 0


def cmd_check(args) -> int:
    from attnkit import checker

    output = checker.github_output_path(args.github_output)
    report, text = checker.run(args.path, notebooks=args.notebooks, timeout=args.timeout,
                               github_output=output)
    print(text)
    return 0


def cmd_grade_class(args) -> int:
    from attnkit.classgrade import main

    # 0: every student graded; 1: some could not be (grades.csv says why); 2: nothing to grade
    return main(args.dir, args.out, jobs=args.jobs, seconds=args.timeout, quiet=args.quiet,
                unconfined=args.unconfined)


def cmd_gradescope_bundle(args) -> int:
    from attnkit.gradescope import build_bundle

    path = build_bundle(args.out, args.secret_file, unconfined=args.unconfined)
    print(f"wrote {path}: upload it as the autograder of a Gradescope programming assignment")
    if not args.secret_file:
        print("note: no --secret-file given, so the hidden cases use the kit's public default secret",
              file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attnkit", description="The attention exercise kit.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="generate the stubs and notebooks from solutions/")
    p.add_argument("--check", action="store_true", help="fail if any generated file is stale")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("grade", help="grade a folder or one exercise file")
    p.add_argument("path", help="a folder with the exercise files, or one of them")
    p.add_argument("--json", metavar="FILE", help="write Gradescope's results.json here")
    p.add_argument("--report", metavar="DIR", help="write feedback.html for the student into DIR")
    p.add_argument("--fail-under", type=float, metavar="SCORE", help="exit 1 below this score")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="wall-time limit per graded item (default 10)")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("course", help="create a ready nbgrader course folder (config and source notebooks)")
    p.add_argument("dir", help="the course folder to create")
    p.add_argument("--cell-timeout", type=int, default=60, metavar="SECONDS",
                   help="nbgrader's per-cell time limit, c.Execute.timeout (default 60)")
    p.add_argument("--item-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="the test cells' time limit per graded item (default 10)")
    p.set_defaults(func=cmd_course)

    p = sub.add_parser("handout", help="write the self-study handout: stubs, notebooks, README, public checker")
    p.add_argument("out", help="a new folder for the handout")
    p.add_argument("--classroom", action="store_true",
                   help="add .github/workflows/classroom.yml for GitHub Classroom")
    p.set_defaults(func=cmd_handout)

    p = sub.add_parser("check", help="the public checks only (no reference solution, no hidden cases)")
    p.add_argument("path", nargs="?", default=".", help="a folder with the exercise files, or one of them")
    p.add_argument("--notebooks", action="store_true", help="grade the code of the notebooks in the folder")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="wall-time limit per graded item (default 10)")
    p.add_argument("--github-output", action="store_true",
                   help="also write the result for GitHub Classroom's reporter to $GITHUB_OUTPUT")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("grade-class", help="grade a folder of student folders in parallel")
    p.add_argument("dir", help="one folder per student, each laid out like assignments/, or nbgrader's "
                                "submitted/ tree (<student>/<assignment>/<assignment>.ipynb)")
    p.add_argument("--out", required=True, help="where grades.csv and each student's results go")
    p.add_argument("--jobs", type=int, default=None, help="parallel jobs (default: the CPU count)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="wall-time limit per graded item (default 10)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--unconfined", action="store_true",
                   help="grade even where this machine cannot confine student code (neither root nor "
                        "unprivileged user namespaces): a student could then read the solutions and "
                        "other students' work, so the grades cannot count")
    p.set_defaults(func=cmd_grade_class)

    p = sub.add_parser("gradescope-bundle", help="build a Gradescope autograder zip")
    p.add_argument("out", help="the zip to write, e.g. autograder.zip")
    p.add_argument("--secret-file", help="a file holding your secret for the hidden cases")
    p.add_argument("--unconfined", action="store_true",
                   help="grade even where the container denies the sandbox its namespaces (student code then "
                        "runs as its own user under the limits; see the README)")
    p.set_defaults(func=cmd_gradescope_bundle)

    args = parser.parse_args(argv)
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
