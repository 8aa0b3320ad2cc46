"""Smoke test of every declared Python version: install, grade, check a handout.

    python benchmarks/python_versions.py [--versions 3.10 3.11 3.12 3.13] [--work DIR] [--keep]

For each version (an interpreter found by pyenv, ``$PYENV_ROOT/versions/X.Y.*``,
or ``pythonX.Y`` on PATH), in a fresh virtual environment:

1. ``pip install torch==2.13.0 <kit>``: the kit as a student installs it (no
   extra), timed, and the size of the environment measured;
2. ``attnkit grade solutions`` (with ``ATTNKIT_SOLUTIONS`` pointing at the
   kit's reference solutions, which a non-editable install does not carry):
   100/100 expected;
3. ``pip install ./checker`` of a handout written by the running kit (it
   replaces the kit in that environment, as in a student's), then ``attnkit
   check`` on the handout's stubs (0 of the public points) and on the
   solutions (all of them).

Prints one table row per version. Torch comes from the package index pip is
configured with: a large download the first time for a version whose wheel
is not already on disk. Run it in the background; it takes minutes.
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("simplified_attention", "self_attention", "causal_attention", "multihead_attention")


def interpreter(version: str) -> str | None:
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", "python")))
    if found:
        return found[-1]
    return shutil.which(f"python{version}")


def run(cmd, env=None, cwd=None, timeout=7200) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def total(text: str) -> str:
    found = re.findall(r"^Total: (\S+)$", text, re.M)
    return found[-1] if found else "none"


def smoke(version: str, work: Path, handout: Path, keep: bool) -> dict:
    row = {"version": version}
    python = interpreter(version)
    if python is None:
        return row | {"result": f"no Python {version} found"}
    venv = work / f"venv-{version}"
    shutil.rmtree(venv, ignore_errors=True)
    run([python, "-m", "venv", venv])
    bin_ = venv / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ATTNKIT_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{bin_}{os.pathsep}{env.get('PATH', '')}"
    row["python"] = run([bin_ / "python", "-c", "import platform; print(platform.python_version())"]).stdout.strip()
    run([bin_ / "python", "-m", "pip", "install", "-q", "--upgrade", "pip"], env=env)
    start = time.monotonic()
    done = run([bin_ / "python", "-m", "pip", "install", "-q", "torch==2.13.0", ROOT], env=env)
    row["install_s"] = round(time.monotonic() - start)
    if done.returncode:
        return row | {"result": "install failed: " + (done.stderr.strip().splitlines() or ["?"])[-1]}
    row["size_mb"] = round(size(venv) / 2**20)
    row["torch"] = run([bin_ / "python", "-c", "import torch; print(torch.__version__)"], env=env).stdout.strip()
    graded = run([bin_ / "attnkit", "grade", ROOT / "solutions"], env=dict(env, ATTNKIT_SOLUTIONS=str(ROOT / "solutions")))
    row["grade"] = total(graded.stdout)
    done = run([bin_ / "python", "-m", "pip", "install", "-q", "./checker"], env=env, cwd=handout)
    if done.returncode:
        return row | {"result": "checker install failed: " + (done.stderr.strip().splitlines() or ["?"])[-1]}
    row["check_stubs"] = total(run([bin_ / "attnkit", "check", "."], env=env, cwd=handout).stdout)
    row["check_solutions"] = total(run([bin_ / "attnkit", "check", ROOT / "solutions"], env=env, cwd=handout).stdout)
    public = row["check_solutions"].split("/")[-1]
    ok = (row["grade"] == "100/100" and row["check_stubs"] == f"0/{public}"
          and row["check_solutions"] == f"{public}/{public}")
    row["result"] = "pass" if ok else "FAIL"
    if not keep:
        shutil.rmtree(venv, ignore_errors=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", nargs="+", default=["3.10", "3.11", "3.12", "3.13"])
    parser.add_argument("--work", type=Path, default=None, help="where the environments go (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the environments")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="attnkit-pyversions-"))
    work.mkdir(parents=True, exist_ok=True)
    handout = work / "handout"
    shutil.rmtree(handout, ignore_errors=True)
    done = run([sys.executable, "-m", "attnkit.frontends.cli", "handout", "--out", handout])
    if done.returncode:
        print(done.stderr, file=sys.stderr)
        return 1
    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()} Linux, kit at {ROOT}")
    print("| Python | torch | install | venv | `attnkit grade solutions` | `attnkit check` stubs | solutions | result |")
    print("| --- | --- | ---: | ---: | --- | --- | --- | --- |")
    failed = 0
    for version in args.versions:
        row = smoke(version, work, handout, args.keep)
        failed += row.get("result") != "pass"
        print(f"| {row.get('python', version)} | {row.get('torch', '-')} | {row.get('install_s', '-')} s "
              f"| {row.get('size_mb', '-')} MB | {row.get('grade', '-')} | {row.get('check_stubs', '-')} "
              f"| {row.get('check_solutions', '-')} | {row['result']} |", flush=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
