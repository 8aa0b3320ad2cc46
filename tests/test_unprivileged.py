"""The sandbox's guarantees without root (issue 8.4).

When the suite runs as root (CI does), this runs the attack tests again as an
ordinary user, from a copy of the kit and a virtual environment of that user's
own: the worker then builds the child's namespaces inside an unprivileged user
namespace. When the suite itself runs as an ordinary user, every test already
does, and this one has nothing to add.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import ROOT, confined_only

USER = "attnkit-unprivileged"
SYSTEM_PYTHON = "/usr/bin/python3"
TESTS = ["tests/test_confine.py", "tests/test_sandbox.py", "tests/test_attacks.py"]

pytestmark = [pytest.mark.slow, confined_only]


def _tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


@pytest.fixture(scope="module")
def unprivileged():
    if os.geteuid() != 0:
        pytest.skip("the suite already runs as an ordinary user")
    if not (shutil.which("useradd") and shutil.which("runuser") and os.path.exists(SYSTEM_PYTHON)):
        pytest.skip("needs useradd, runuser and /usr/bin/python3 to make an ordinary user")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True)
    work = Path(tempfile.mkdtemp(prefix="attnkit-unprivileged-"))
    os.chmod(work, 0o755)
    kit = work / "kit"
    for rel in _tracked_files():  # the kit as checked out (not its history), where the user can read it
        (kit / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, kit / rel)
    for name in ("solutions", "assignments", "autograder"):  # and what tests may create there
        for path in (kit / name).rglob("*"):
            path.chmod(path.stat().st_mode | 0o044)
    venv = work / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    ours = Path(torch.__file__).resolve().parents[1]  # this environment's site-packages
    if _others_can_read(ours) and sys.version_info[:2] == _version(SYSTEM_PYTHON):
        # the same CPython minor version: its packages (torch, numpy, pytest) load as they are
        (site / "attnkit-test-packages.pth").write_text(f"{ours}\n")
    else:
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        # torch==2.13.0: the CPU build on this machine's disk; an open requirement would fetch a CUDA build
        subprocess.run(pip + ["torch==2.13.0", "numpy>=1.24", "pytest>=8"], check=True)
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(work)], check=True)
    yield work
    shutil.rmtree(work, ignore_errors=True)


def _others_can_read(path: Path) -> bool:
    for part in [path, *path.parents]:
        if not part.stat().st_mode & 0o005:
            return False
    return True


def _version(python: str) -> tuple[int, int]:
    out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True)
    return tuple(int(n) for n in out.stdout.split())


def test_the_attack_tests_pass_as_an_ordinary_user(unprivileged):
    kit, venv = unprivileged / "kit", unprivileged / "venv"
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(unprivileged), "LANG": "C.UTF-8",
           "TMPDIR": str(unprivileged), "PYTHONPATH": str(kit / "autograder")}
    proc = subprocess.run([shutil.which("runuser"), "-u", USER, "--", str(venv / "bin" / "python"), "-m", "pytest", "-q",
                           "-p", "no:cacheprovider", *TESTS], cwd=kit, env=env, capture_output=True, text=True,
                          timeout=900)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and "skipped" not in tail.splitlines()[-1], tail
