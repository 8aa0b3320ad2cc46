"""One voice for the command line: every command described with examples that parse,
the same option names for the same things, --version, --fail-under that says why,
and the commands of the instructors' extra that say how to get it."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shlex
import subprocess
import sys

import pytest

from attnkit import __version__

from attnkit.frontends import cli
from conftest import ASSIGNMENTS, ROOT, SOLUTIONS

# the options that mean the same thing wherever they appear
SHARED = ("--out", "--json", "--report", "--fail-under", "--timeout")


def command_parser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def options(name: str) -> dict[str, str]:
    """{option string: its help} of one command."""
    return {s: a.help for a in command_parser(name)._actions for s in a.option_strings}


def test_every_command_has_a_description_and_examples_that_parse():
    assert {c.name for c in cli.COMMANDS} == {"build", "grade", "check", "grade-class", "handout", "course",
                                             "gradescope-bundle"}
    for command in cli.COMMANDS:
        assert len(command.summary) > 20 and len(command.description) > len(command.summary), command.name
        assert command.examples, command.name
        for example in command.examples:
            argv = shlex.split(example)
            assert argv[:2] == ["attnkit", command.name], example
            args = cli.parser().parse_args(argv[1:])
            cli._resolve_outs(args)
            assert args.func is command.run
        help_text = command_parser(command.name).format_help()
        assert command.description.split()[0] in help_text and command.examples[-1] in help_text


def test_the_same_names_for_the_same_things():
    helps: dict[str, set[str]] = {}
    for command in cli.COMMANDS:
        for option, text in options(command.name).items():
            if option in SHARED and option != "--out":
                helps.setdefault(option, set()).add(text)
    # --json and --report read the same everywhere; --fail-under says what it compares with
    assert len(helps["--json"]) == len(helps["--report"]) == 1
    assert all(t.startswith("exit 1, saying why, when ") for t in helps["--fail-under"])
    assert all("wall-time limit per graded item (default 10)" in t for t in helps["--timeout"]), helps["--timeout"]
    for name in ("grade", "check"):
        assert set(SHARED) - {"--out"} <= set(options(name)), name
    assert "--timeout" in options("grade-class") and "--timeout" in options("course")
    for name in ("grade-class", "handout", "course", "gradescope-bundle"):  # every command that writes a folder or file
        assert "--out" in options(name), name


@pytest.mark.parametrize("argv, dest", [
    (["handout", "h"], "out"), (["handout", "--out", "h"], "out"),
    (["course", "h"], "dir"), (["course", "--out", "h"], "dir"),
    (["gradescope-bundle", "h"], "out"), (["gradescope-bundle", "--out", "h"], "out"),
    (["grade-class", "class", "--out", "h"], "out"),
])
def test_out_is_an_option_and_the_old_positional_still_works(argv, dest):
    args = cli.parser().parse_args(argv)
    cli._resolve_outs(args)
    assert getattr(args, dest) == "h"


def test_out_missing_or_given_twice_is_a_usage_error(capsys):
    for argv in (["handout"], ["grade-class", "class"], ["handout", "a", "--out", "b"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "say where to write it: --out PATH" in err and "two places to write, a and --out b" in err


def test_version():
    done = subprocess.run([sys.executable, "-m", "attnkit.frontends.cli", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    assert done.stdout.startswith(f"attnkit {__version__} (the kit), Python ")
    assert importlib.metadata.version("attnkit") == __version__  # pyproject's version is attnkit.__version__


def test_fail_under_says_why(attnkit_cli, tmp_path):
    done = attnkit_cli("grade", ASSIGNMENTS / "simplified_attention.py", "--fail-under", "5", "--json", tmp_path / "r.json")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1] == "attnkit grade: 0/20 is under --fail-under 5: exit 1"
    assert json.loads((tmp_path / "r.json").read_text())["score"] == 0
    (tmp_path / "solved").mkdir()
    (tmp_path / "solved" / "simplified_attention.py").write_bytes((SOLUTIONS / "simplified_attention.py").read_bytes())
    done = attnkit_cli("check", tmp_path / "solved", "--fail-under", "6", "--json", tmp_path / "c.json")
    assert done.returncode == 0 and "fail-under" not in done.stderr, done.stdout + done.stderr
    assert json.loads((tmp_path / "c.json").read_text())["score"] > 0


@pytest.mark.parametrize("command", [["gradescope-bundle", "--out", "b.zip"], ["grade", "assignments"]])
def test_without_the_solutions_a_command_says_how_to_find_them(monkeypatch, capsys, tmp_path, command):
    """As after `pip install .` without -e, which leaves the clone's solutions/
    behind: one line naming the fix, no traceback, nothing written."""
    from attnkit.judge import reference

    monkeypatch.setenv("ATTNKIT_SOLUTIONS", str(tmp_path / "nowhere"))
    monkeypatch.chdir(ROOT)
    args = [str(tmp_path / a) if a.endswith(".zip") else a for a in command]
    # in a process of its own, as the command runs; the suite's process has loaded them already
    reference.solutions.cache_clear()
    reference.warm_up.cache_clear()
    try:
        assert cli.main(args) == 2
    finally:
        reference.solutions.cache_clear()
        reference.warm_up.cache_clear()
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"attnkit {command[0]}: reference solution {tmp_path / 'nowhere'}") and "\n" not in err
    assert "pip install -e ." in err and "ATTNKIT_SOLUTIONS" in err
    assert not (tmp_path / "b.zip").exists()


@pytest.mark.parametrize("args, said", [
    (["grade", "solutions", "--timeout", "0"], "a time limit is a number of seconds from 0.5 up"),
    (["check", "solutions", "--timeout", "-1"], "(below, correct code runs out of time too), not -1"),
    (["grade", "solutions", "--timeout", "1e-6"], "a time limit is a number of seconds from 0.5 up"),
    (["grade", "solutions", "--timeout", "inf"], "(below, correct code runs out of time too), not inf"),
    (["grade-class", "solutions", "--out", "o", "--jobs", "0"], "at least 1 job, not 0"),
    (["course", "--out", "c", "--cell-timeout", "2.5"], "a whole number of seconds, not 2.5"),
])
def test_limits_that_would_fail_every_item_are_refused(capsys, args, said):
    """--timeout 0 once graded every item 0 ("took more than 0 s")."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(args)
    assert exit_.value.code == 2 and said in capsys.readouterr().err


def test_course_without_the_extra_says_which_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "nbgrader", None)  # as if nbgrader were not installed
    assert cli.main(["course", "--out", str(tmp_path / "course")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'attnkit course: needs nbgrader, which the instructors\' extra brings: pip install "attnkit[course]"'
    assert not (tmp_path / "course").exists()


@pytest.mark.slow  # grades a class through the command (2 s)
def test_grade_class_on_a_gradebook_without_the_extra_grades_and_says_which_to_install(attnkit_cli, monkeypatch,
                                                                                      tmp_path):
    """The grades need no nbgrader; only the comparison with nbgrader's gradebook does."""
    from notebook_samples import SOURCE

    course = tmp_path / "course"
    folder = course / "submitted" / "eve" / "simplified_attention"
    folder.mkdir(parents=True)
    (folder / "simplified_attention.ipynb").write_text((SOURCE / "simplified_attention" / "simplified_attention.ipynb")
                                                       .read_text())
    (course / "gradebook.db").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "nbgrader", None)  # as if nbgrader were not installed
    done = attnkit_cli("grade-class", course / "submitted", "--out", tmp_path / "out", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'not compared: needs nbgrader, which the instructors\' extra brings: pip install "attnkit[course]"' in done.stderr
    assert "Traceback" not in done.stderr
    assert (tmp_path / "out" / "grades.csv").read_text().splitlines()[1].startswith("eve,20,")


def test_extras_match_pyproject():
    from attnkit.authoring.distribution import KIT_ROOT
    from attnkit.exercises import tomllib

    declared = tomllib.loads((KIT_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, modules in cli.EXTRAS.items():
        assert all(any(r.startswith(m) for r in declared[extra]) for m in modules), extra
    assert "attnkit[course]" in declared["dev"]  # a kit developer runs the nbgrader tests too


def test_a_row_with_more_reasons_says_where_they_all_are(attnkit_cli, tmp_path):
    """A row shows one reason and "(+N more)"; the command says where the rest
    are, and says nothing of the kind when --report wrote them."""
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "causal_attention.py").write_text((SOLUTIONS / "causal_attention.py").read_text().replace(
        'return scores.masked_fill(mask, float("-inf"))', "return scores.masked_fill(mask, 0.0)"))
    done = attnkit_cli("grade", folder)
    assert "more)" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == (f"every reason of each item, with pictures: attnkit grade {folder} "
                                                    f"--report DIR, then open DIR/feedback.html")
    done = attnkit_cli("grade", folder, "--report", tmp_path / "out")
    assert "every reason" not in done.stdout and (tmp_path / "out" / "feedback.html").exists()


@pytest.mark.parametrize("secret", ["", "our-course-2026"])
def test_grade_class_says_when_the_hidden_cases_are_the_public_ones(monkeypatch, capsys, tmp_path, secret):
    from attnkit.frontends import classgrade

    monkeypatch.setenv("ATTNKIT_SECRET", secret)
    monkeypatch.setattr(classgrade, "main", lambda *args, **kwargs: 0)
    assert cli.main(["grade-class", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    said = "ATTNKIT_SECRET is not set, so the hidden cases use the kit's public default secret" in capsys.readouterr().err
    assert said == (not secret)


def test_a_class_folder_given_to_grade_is_said_to_be_one(attnkit_cli, tmp_path):
    """A newcomer's review: `attnkit grade CLASS_DIR` took each module from one
    student's folder and gave 100/100 with notes alone; it now says so first."""
    for student in ("ada", "bob"):
        (tmp_path / student).mkdir()
        for module in ("simplified_attention", "self_attention"):
            (tmp_path / student / f"{module}.py").write_text((SOLUTIONS / f"{module}.py").read_text())
    done = attnkit_cli("grade", tmp_path)
    assert (f"note: {tmp_path} holds the work of several folders (ada/, bob/): this grades one submission"
            in done.stderr), done.stderr
    done = attnkit_cli("grade", tmp_path / "ada")
    assert "several folders" not in done.stderr


def test_the_public_checker_gives_no_point_to_a_module_whose_forward_does_not_run(attnkit_cli, tmp_path):
    """A newcomer's review: a wrapper whose forward still raised
    NotImplementedError got the structure point from `attnkit check` (1/4) and
    none from `attnkit grade` (0/7): the public checker now runs the forward on
    its witness too, and, with no reference to compare with, asks no more."""
    folder = tmp_path / "sub"
    folder.mkdir()
    for module in ("causal_attention", "multihead_attention"):
        (folder / f"{module}.py").write_text((SOLUTIONS / f"{module}.py").read_text())
    wrapper = (folder / "multihead_attention.py").read_text().replace(
        "        return torch.cat([head(x) for head in self.heads], dim=-1)  # (b, T, h * d_out)",
        "        raise NotImplementedError('not yet')")
    (folder / "multihead_attention.py").write_text(wrapper)
    for command in ("check", "grade"):
        done = attnkit_cli(command, folder / "multihead_attention.py", "--json", tmp_path / f"{command}.json")
        rows = {t["name"]: t["score"] for t in json.loads((tmp_path / f"{command}.json").read_text())["tests"]}
        assert rows["multihead_attention.MultiHeadAttentionWrapper"] == 0, (command, done.stdout)
    done = attnkit_cli("check", SOLUTIONS, "--json", tmp_path / "solutions.json")
    from attnkit.exercises import PUBLIC_KINDS, items

    public_points = sum(p for i in items().values() for k, p in i.checks.items() if k in PUBLIC_KINDS)
    assert json.loads((tmp_path / "solutions.json").read_text())["score"] == public_points  # no reference needed
