"""Benchmark: the portable runner against the fork runner, in the same run.

    python benchmarks/portable_runner.py [--rounds 3] [--limit 3]

1. ``attnkit grade solutions``, each in a fresh process, alternating the fork
   runner and the portable one (``ATTNKIT_SANDBOX=portable``), with one
   ``python -c "import torch"`` per round as the baseline; medians and the
   portable/fork ratio.
2. The time limit: one submission whose ``softmax`` never returns (the attack
   ``tests/attacks/infinite_loop.py``), graded with ``--timeout LIMIT``, against
   the same file without its loop, on both runners. The difference is what the
   loop costs: the limit, and on the portable runner one respawn (a torch
   import), which the fork runner pays as a fork.
3. Sessions in a row on one runner (the notebooks' test cells, one after the
   other, each grading one item): the fork runner forks each session's child,
   the portable runner takes its warm spare and starts the next one, so cells
   run back to back wait for that start.

Machines here are noisy and shared: only ratios within one run count.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ATTACK = ROOT / "tests" / "attacks" / "infinite_loop.py"
TRICK = re.compile(r"^[ \t]*# --- trick ---\n.*?^[ \t]*# --- end trick ---\n", re.S | re.M)


def timed(cmd: list[str], runner: str | None = None) -> float:
    env = dict(os.environ)
    env.pop("ATTNKIT_SANDBOX", None)
    if runner == "portable":
        env["ATTNKIT_SANDBOX"] = "portable"
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
    return time.perf_counter() - start


def grade(path: Path | str, limit: float | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "attnkit.frontends.cli", "grade", str(path)]
    return cmd + (["--timeout", str(limit)] if limit else [])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=float, default=3.0)
    parser.add_argument("--sessions", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hostile, honest = Path(tmp) / "hostile", Path(tmp) / "honest"
        for folder, text in ((hostile, ATTACK.read_text()), (honest, TRICK.sub("", ATTACK.read_text()))):
            folder.mkdir()
            (folder / "simplified_attention.py").write_text(text)
        times: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            times.setdefault("torch", []).append(timed([sys.executable, "-c", "import torch"]))
            for runner in ("fork", "portable"):
                times.setdefault(f"solutions {runner}", []).append(timed(grade("solutions"), runner))
                times.setdefault(f"honest {runner}", []).append(timed(grade(honest, args.limit), runner))
                times.setdefault(f"loop {runner}", []).append(timed(grade(hostile, args.limit), runner))
        for runner in ("fork", "portable"):
            times[f"session {runner}"] = sessions_in_a_row(runner, args.sessions)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"rounds: {args.rounds}; medians in seconds (all runs: {', '.join(f'{k} {v}' for k, v in _rounded(times))})")
    print(f"python -c 'import torch'                    {med['torch']:6.2f}")
    for runner in ("fork", "portable"):
        print(f"attnkit grade solutions, {runner:8} runner      {med[f'solutions {runner}']:6.2f}  "
              f"({med[f'solutions {runner}'] / med['torch']:.2f}x one torch import)")
    print(f"portable / fork, attnkit grade solutions     {med['solutions portable'] / med['solutions fork']:6.2f}x")
    for runner in ("fork", "portable"):
        cost = med[f"loop {runner}"] - med[f"honest {runner}"]
        print(f"an infinite loop costs ({runner:8} runner)   {cost:6.2f}  "
              f"(limit {args.limit:g} s; beyond it {cost - args.limit:.2f} s)")
    for runner in ("fork", "portable"):
        print(f"a session in a row, one item ({runner:8})     {med[f'session {runner}']:6.2f}  "
              f"(median of {args.sessions})")
    return 0


def sessions_in_a_row(runner: str, n: int) -> list[float]:
    """In a fresh process: one runner, then ``n`` sessions back to back, each
    grading softmax of the solutions on the public checks, timed one by one."""
    code = f"""
import sys, time
from attnkit.judge.engine import grade
from attnkit.intake import from_folder
from attnkit.sandbox import Zygote
z = Zygote()
z.ready()
grade(z, from_folder("solutions", ("simplified_attention",), "warm"), public=True)
out = []
for _ in range({n}):
    start = time.perf_counter()
    grade(z, from_folder("solutions", ("simplified_attention",), "x"), public=True)
    out.append(time.perf_counter() - start)
z.close()
print(" ".join(f"{{t:.3f}}" for t in out))
"""
    env = dict(os.environ)
    env.pop("ATTNKIT_SANDBOX", None)
    if runner == "portable":
        env["ATTNKIT_SANDBOX"] = "portable"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT,
                         env=env).stdout
    return [float(x) for x in out.split()]


def _rounded(times):
    return [(k, [round(x, 2) for x in v]) for k, v in times.items()]


if __name__ == "__main__":
    sys.exit(main())
