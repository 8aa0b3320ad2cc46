"""`attnkit grade-class`: a whole class, in parallel, resumable, and unbothered
by one student's hostility.

The command runs in this process on a shared warm worker (conftest's
``class_zygote``), but for the run killed with SIGKILL, which must be a process."""

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ASSIGNMENTS, ROOT, cli_in_process, confined_only, make_submission

from attnkit.exercises import MODULES, items

pytestmark = pytest.mark.slow  # whole classes graded with two jobs

S = "simplified_attention"


@pytest.fixture(scope="module")
def attnkit(class_zygote):
    """``attnkit ARGS`` in-process, on the shared class worker, for this module's tests and fixtures."""
    with pytest.MonkeyPatch.context() as mp:
        yield cli_in_process(mp, lambda *args, **kwargs: class_zygote)


def build_class(folder: Path) -> Path:
    make_submission(folder / "ada")  # correct
    make_submission(folder / "bob", base=ASSIGNMENTS)  # the stubs
    make_submission(folder / "cyd", {S: [("shifted = scores - scores.amax(dim=dim, keepdim=True)",
                                          "shifted = scores")]})  # loses softmax stability (2)
    make_submission(folder / "dee", {"causal_attention": [(
        "    return torch.triu(torch.ones(num_tokens, num_tokens, dtype=torch.bool), diagonal=1)",
        "    while True:\n        pass")]})  # causal_mask loops forever: loses its 3 points
    return folder


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def graded(attnkit, tmp_path_factory):
    base = tmp_path_factory.mktemp("class")
    klass, out = build_class(base / "class"), base / "out"
    proc = attnkit("grade-class", str(klass), "--out", str(out), "--jobs", "2", "--timeout", "3", cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return klass, out, proc


def test_grades_csv_has_every_student_and_item(graded):
    _, out, _ = graded
    rows = read_csv(out / "grades.csv")
    assert [r["student"] for r in rows] == ["ada", "bob", "cyd", "dee"]
    assert list(rows[0]) == ["student", "total", "status", *items()]
    assert {r["status"] for r in rows} == {"graded"}
    totals = {r["student"]: int(r["total"]) for r in rows}
    assert totals == {"ada": 100, "bob": 0, "cyd": 98, "dee": 97}
    dee = next(r for r in rows if r["student"] == "dee")
    assert dee["causal_attention.causal_mask"] == "0" and dee["causal_attention.CausalAttention"] == "13"
    for r in rows:
        assert sum(int(r[k]) for k in items()) == int(r["total"])


def test_each_student_gets_results_and_feedback(graded):
    _, out, _ = graded
    for student in ("ada", "bob", "cyd", "dee"):
        data = json.loads((out / student / "results.json").read_text())
        assert data["max_score"] == 100 and len(data["tests"]) == len(items())
        assert (out / student / "feedback.txt").read_text().startswith(f"attnkit feedback for {student}")
        assert (out / student / "feedback.html").exists()
    dee = json.loads((out / "dee" / "results.json").read_text())
    mask = next(t for t in dee["tests"] if t["name"] == "causal_attention.causal_mask")
    assert "time limit exceeded" in mask["output"]


def test_progress_and_summary(graded):
    _, _, proc = graded
    assert "4 students: 4 graded, 0 unchanged" in proc.stdout
    assert "4/4 students" in proc.stderr


def test_an_honest_class_has_no_flag_but_the_copies_of_the_solutions(graded):
    """This class is made from copies of solutions/ (ada's whole, the others' but
    for the file they changed): those copies, and nothing else, are flagged."""
    _, out, proc = graded
    with open(out / "integrity.csv", newline="") as f:
        rows = [(r["flag"], r["students"], r["item"]) for r in csv.DictReader(f)]
    copy = "the reference solution, byte for byte"
    assert rows == [(copy, "ada", ", ".join(MODULES)),
                    (copy, "cyd", ", ".join(m for m in MODULES if m != S)),
                    (copy, "dee", ", ".join(m for m in MODULES if m != "causal_attention"))]
    assert ("integrity (flags inform, they never change a grade): 0 hard-coded public output?, "
            "0 nbgrader score above the isolated grade, 0 near-identical code, "
            "3 the reference solution, byte for byte") in proc.stdout


def test_rerun_skips_unchanged_students_and_regrades_changed_ones(attnkit, graded, tmp_path):
    klass, out, _ = graded
    before = (out / "grades.csv").read_text()
    proc = attnkit("grade-class", str(klass), "--out", str(out), "--jobs", "2", "--quiet")
    assert "0 graded, 4 unchanged" in proc.stdout
    assert (out / "grades.csv").read_text() == before
    # cyd fixes the mistake: only cyd is graded again
    fixed = tmp_path / "klass"
    subprocess.run(["cp", "-r", str(klass), str(fixed)], check=True)
    (fixed / "cyd" / f"{S}.py").write_text((ROOT / "solutions" / f"{S}.py").read_text())
    proc = attnkit("grade-class", str(fixed), "--out", str(out), "--jobs", "2", "--quiet", "--timeout", "3")
    assert "1 graded, 3 unchanged" in proc.stdout
    rows = {r["student"]: r["total"] for r in read_csv(out / "grades.csv")}
    assert rows == {"ada": "100", "bob": "0", "cyd": "100", "dee": "97"}


@pytest.mark.slow
def test_a_run_killed_with_sigkill_loses_nothing(attnkit, tmp_path):
    klass = tmp_path / "class"
    for i in range(6):
        make_submission(klass / f"s{i}")
    make_submission(klass / "stub", base=ASSIGNMENTS)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "attnkit.frontends.cli", "grade-class", str(klass), "--out", str(out), "--jobs", "2", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("*/results.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # the job processes die with the run; give the kernel a moment
    done_before = len(list(out.glob("*/results.json")))
    assert 2 <= done_before
    for path in out.glob("*/results.json"):  # whatever was written is whole
        json.loads(path.read_text())
    finish = attnkit("grade-class", str(klass), "--out", str(out), "--jobs", "2", "--quiet")
    assert finish.returncode == 0, finish.stderr
    assert f"{7 - done_before} graded, {done_before} unchanged" in finish.stdout
    clean = attnkit("grade-class", str(klass), "--out", str(tmp_path / "clean"), "--jobs", "1", "--quiet")
    assert clean.returncode == 0
    assert (out / "grades.csv").read_text() == (tmp_path / "clean" / "grades.csv").read_text()


def test_a_student_cannot_touch_another_students_files(attnkit, tmp_path):
    klass, out = tmp_path / "class", tmp_path / "out"
    victim = make_submission(klass / "victim")
    original = (victim / f"{S}.py").read_text()
    attack = (
        "\nimport os\n"
        f"for path in ({str(victim / (S + '.py'))!r}, {str(out / 'victim' / 'results.json')!r}):\n"
        "    try:\n"
        "        os.makedirs(os.path.dirname(path), exist_ok=True)\n"
        "        open(path, 'w').write('def softmax(scores, dim=-1):\\n    return scores * 0\\n')\n"
        "    except OSError:\n"
        "        pass\n")
    mallory = make_submission(klass / "mallory")
    (mallory / f"{S}.py").write_text((mallory / f"{S}.py").read_text() + attack)
    proc = attnkit("grade-class", str(klass), "--out", str(out), "--jobs", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (victim / f"{S}.py").read_text() == original
    rows = {r["student"]: r["total"] for r in read_csv(out / "grades.csv")}
    assert rows == {"mallory": "100", "victim": "100"}


def test_bad_class_folder_is_a_clear_error(attnkit, tmp_path):
    proc = attnkit("grade-class", str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "not a folder of student folders" in proc.stderr
    assert "Traceback" not in proc.stderr
    (tmp_path / "k").mkdir()
    proc = attnkit("grade-class", str(tmp_path / "k"), "--out", str(tmp_path / "k" / "out"))
    assert proc.returncode == 2 and "must not be inside the class folder" in proc.stderr


@confined_only
def test_a_job_process_that_dies_costs_a_retry_and_leaves_no_child_behind(tmp_path, monkeypatch):
    """Never tested before: a job process that dies (the pool breaks) costs a retry
    of its students, not the run. The child it was talking to is stopped between
    requests and cannot see its socket close (second review): the worker that
    forked it is replaced, so it is gone before the retry grades anyone."""
    import os

    import attnkit.sandbox
    from attnkit.frontends import classgrade, classjobs
    from attnkit.judge import engine
    from attnkit.sandbox import Session, runners

    # a worker of its own, which it replaces (this module's other tests lend one that cannot close)
    monkeypatch.setattr(attnkit.sandbox, "Zygote", runners.Zygote)
    klass = tmp_path / "class"
    for name in ("alice", "bob", "carol"):
        make_submission(klass / name)
    marker, seen = tmp_path / "died", tmp_path / "seen"
    real = engine.grade

    def dying(zygote, submission, *args, **kwargs):
        """In the job process (forked: nothing is pickled): at bob, once, die holding a
        stopped child; the next student graded records what became of it."""
        if submission.label == "bob" and not marker.exists():
            session = Session(classjobs._ZYGOTE, submission.files, ("simplified_attention",))
            session.request("simplified_attention.softmax", "call", (torch.zeros(2, 3),))
            with open(f"/proc/self/fdinfo/{session.child.pidfd}") as f:
                marker.write_text(next(line.split()[1] for line in f if line.startswith("Pid:")))
            os._exit(1)
        if marker.exists() and not seen.exists():
            try:
                with open(f"/proc/{marker.read_text()}/status") as f:
                    seen.write_text(next(line for line in f if line.startswith("State:")))
            except FileNotFoundError:
                seen.write_text("gone")
        return real(zygote, submission, *args, **kwargs)

    monkeypatch.setattr(engine, "grade", dying)
    run = classgrade.grade_class(str(klass), str(tmp_path / "out"), jobs=1, progress=False)
    assert sorted((o.student, o.total, o.error) for o in run.outcomes) == [
        ("alice", 100, ""), ("bob", 100, ""), ("carol", 100, "")]
    assert marker.exists() and seen.read_text() in ("gone", "State:\tZ (zombie)\n"), seen.read_text()


@pytest.mark.parametrize("n, said", [(1, "1 student: 1 graded"), (2, "2 students: 2 graded")])
def test_the_summary_counts_students_in_words(n, said):
    from attnkit.frontends.classfiles import StudentOutcome
    from attnkit.frontends.classgrade import ClassRun, Roster, summary
    from attnkit.intake import PLAIN

    run = ClassRun([StudentOutcome(f"s{i}", 100, {}) for i in range(n)], Roster(PLAIN, {}, {}, []), [])
    assert said in summary(run, "out")[0]
