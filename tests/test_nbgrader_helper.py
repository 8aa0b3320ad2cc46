"""The course's grading helper: the kernels nbgrader starts hold neither the
hidden-case secret nor the path of the solutions, and still get their grades.

No nbgrader here (test_nbgrader_pipeline.py runs the real thing): a small
script plays the nbgrader process that reads nbgrader_config.py, and a child
of it plays a kernel."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from attnkit.judge.engine import grade
from attnkit.intake import from_folder
from attnkit.exercises import items_of
from attnkit.frontends import nbgrader_helper
from attnkit.frontends.nbgrader_helper import PACKAGE_PARENT, Scrub
from notebook_samples import SOLUTIONS, source_notebook, student_notebook, write_modules

pytestmark = pytest.mark.slow  # the helper process and kernels

SECRET = "instructor-secret-71b3"
PRIVATE = "private-solutions-5a0c"
MODULE = "simplified_attention"

# The nbgrader process: what nbgrader_config.py does, then one "kernel" in argv[1].
NBGRADER = """\
import ctypes, json, os, subprocess, sys
from attnkit.frontends import nbgrader_helper
nbgrader_helper.start(item_seconds=10)
kernel = subprocess.run([sys.executable, "-c", sys.argv[2]], cwd=sys.argv[1], capture_output=True, text=True)
print(json.dumps({"dumpable": ctypes.CDLL(None).prctl(3, 0, 0, 0, 0),  # PR_GET_DUMPABLE
                  "environ": {k: v for k, v in os.environ.items() if k.startswith("ATTNKIT_")},
                  "kernel": kernel.stdout, "kernel_stderr": kernel.stderr}))
"""
KERNEL = """\
import json, os
from attnkit.kernel.notebook import score
keys = {keys!r}
values = [score(k, hidden=True) for k in keys]
print(json.dumps({{"environ": dict(os.environ), "values": values}}))
"""


def hidden_reason(text: str) -> str:
    return next(line.strip() for line in text.splitlines() if line.strip().startswith("hidden:"))


def test_the_helper_grades_for_a_kernel_that_holds_no_secret(zygote, tmp_path, monkeypatch):
    solutions = shutil.copytree(SOLUTIONS, tmp_path / PRIVATE)
    folder = tmp_path / "kernel"
    folder.mkdir()
    nb = student_notebook(source_notebook(MODULE), MODULE, "wrong")  # hidden tests in: nbgrader restored them
    (folder / f"{MODULE}.ipynb").write_text(json.dumps(nb))
    keys = [i.key for i in items_of(MODULE)]
    env = dict(os.environ, ATTNKIT_SECRET=SECRET, ATTNKIT_SOLUTIONS=str(solutions))
    run = subprocess.run([sys.executable, "-c", NBGRADER, str(folder), KERNEL.format(keys=keys)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    nbgrader = json.loads(run.stdout.strip().splitlines()[-1])
    # the nbgrader process: non-dumpable, and its kernels inherit the socket only
    assert nbgrader["dumpable"] == 0
    assert "ATTNKIT_GRADER" in nbgrader["environ"]
    assert not {"ATTNKIT_SECRET", "ATTNKIT_SOLUTIONS"} & set(nbgrader["environ"])
    assert nbgrader["kernel_stderr"] == ""
    kernel_output = nbgrader["kernel"]
    kernel = json.loads(kernel_output.strip().splitlines()[-1])
    assert "ATTNKIT_SECRET" not in kernel["environ"] and "ATTNKIT_SOLUTIONS" not in kernel["environ"]
    assert SECRET not in kernel_output and PRIVATE not in kernel_output
    # the same grades as `attnkit grade` of the same code, with the instructor's secret
    py = write_modules(tmp_path / "py", "wrong", (MODULE,))
    monkeypatch.setenv("ATTNKIT_SECRET", SECRET)
    report = grade(zygote, from_folder(str(py), (MODULE,), "py"))
    assert dict(zip(keys, kernel["values"])) == {r.item.key: float(r.score) for r in report.results}
    softmax = report.by_item()[f"{MODULE}.softmax"]
    assert softmax.score < softmax.max_score
    # the hidden cases were drawn from that secret: another secret gives other numbers
    with_secret = hidden_reason("\n".join(softmax.reasons))
    assert with_secret == hidden_reason(kernel_output)
    monkeypatch.delenv("ATTNKIT_SECRET")
    public_default = grade(zygote, from_folder(str(py), (MODULE,), "py")).by_item()[f"{MODULE}.softmax"]
    assert hidden_reason("\n".join(public_default.reasons)) != with_secret


def test_what_the_helper_sends_is_scrubbed_of_the_secret_and_the_path():
    scrub = Scrub({"secret": SECRET, "solutions": f"/srv/{PRIVATE}"})
    assert scrub(f"GraderError: /srv/{PRIVATE}/softmax.py is missing ({SECRET})") == (
        "GraderError: <hidden>/softmax.py is missing (<hidden>)")


# Run by the kernel's user: the nbgrader process (this script) and its helper
# against a process of the same user that reads their /proc files.
SAME_USER = """\
import json, os, subprocess, sys
from attnkit.frontends import nbgrader_helper
nbgrader_helper.start(warm=False)
helper = nbgrader_helper._helper.proc.pid
control = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                           env={"ATTNKIT_SECRET": "secret-of-the-control"})
reader = subprocess.run([sys.executable, "-c", sys.argv[1], str(os.getpid()), str(helper), str(control.pid)],
                        capture_output=True, text=True)
control.kill()
print(reader.stdout)
"""
READER = """\
import json, sys
seen = {}
for name, pid in zip(("nbgrader", "helper", "control"), sys.argv[1:]):
    for part in ("environ", "mem"):
        try:
            with open(f"/proc/{pid}/{part}", "rb") as f:
                seen[f"{name} {part}"] = "secret-of-the-" in f.read(1 << 16).decode("latin-1") if part == "environ" else "open"
        except OSError as exc:
            seen[f"{name} {part}"] = type(exc).__name__
print(json.dumps(seen))
"""


def test_a_kernel_of_the_same_user_cannot_read_the_grader_processes():
    """Non-dumpable: /proc/<pid>/environ and mem of the nbgrader process (which
    keeps the exported secret there) and of the helper are closed to a process
    of the same user, which can read those of an ordinary process."""
    if not sys.platform.startswith("linux"):
        pytest.skip("/proc and prctl are Linux's")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ATTNKIT_SECRET": "secret-of-the-instructor",
           "PYTHONPATH": PACKAGE_PARENT}
    python, as_user = sys.executable, {}
    if os.geteuid() == 0:  # root reads every /proc file: play the instructor's ordinary user
        system = Path("/usr/bin/python3")
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("no user 'nobody' to run as")
        if not system.exists():
            pytest.skip("no /usr/bin/python3 that another user can run")
        python, as_user = str(system), {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    run = subprocess.run([python, "-c", SAME_USER, READER], env=env, cwd="/", capture_output=True, text=True,
                         timeout=120, **as_user)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["control environ"] is True and seen["control mem"] == "open", "the reader could read nothing"
    for name in ("nbgrader", "helper"):
        assert seen[f"{name} environ"] == "PermissionError", seen
        assert seen[f"{name} mem"] == "PermissionError", seen


@pytest.fixture
def short_tmp():
    """A temporary folder short enough to hold a socket (pytest's own may be too deep under xdist)."""
    folder = Path(tempfile.mkdtemp(prefix="ak-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_helpers_socket_fits_a_socket_path_under_any_tmpdir(tmp_path, short_tmp, monkeypatch):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    folder = nbgrader_helper._socket_folder()
    try:
        assert Path(folder).parent == Path("/tmp") and oct(Path(folder).stat().st_mode & 0o777) == "0o700"
        assert list(deep.iterdir()) == []  # the folder that was too deep is not left behind
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(os.path.join(folder, "grader.sock"))
    finally:
        shutil.rmtree(folder)
    monkeypatch.setattr(tempfile, "tempdir", str(short_tmp))
    folder = nbgrader_helper._socket_folder()
    assert Path(folder).parent == short_tmp  # where it fits, in the temporary folder as asked


def test_the_helper_ends_with_nbgrader_even_after_kill_9(short_tmp):
    script = ("import os, sys\nfrom attnkit.frontends import nbgrader_helper\n"
              "address = nbgrader_helper.start(warm=False)\n"
              "print(address, nbgrader_helper._helper.proc.pid, flush=True)\n"
              "os.kill(os.getpid(), 9)\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, TMPDIR=str(short_tmp)))
    address, pid = run.stdout.split()
    assert Path(address).parent.parent == short_tmp
    deadline = time.monotonic() + 30
    while (Path(f"/proc/{pid}").exists() or Path(address).parent.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(address).parent.exists(), "the socket's folder outlived nbgrader"
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
