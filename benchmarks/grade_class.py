"""Benchmark: grading a class, as a ratio to one torch import in the same run.

    python benchmarks/grade_class.py [--students 100] [--jobs 2]

Builds a class of full submissions (a mix of correct, stubbed and wrong ones,
made from solutions/ and assignments/), then times, each in a fresh process:
`python -c "import torch"` (the baseline, median of three), `attnkit grade` of
one submission, and `attnkit grade-class` of the whole class. Machines here are
noisy, so the targets are ratios to the baseline measured in the same
invocation: a class of 100 within 10x one torch import, one submission within 2x.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("simplified_attention", "self_attention", "causal_attention", "multihead_attention")

# Wrong submissions: one edit of the reference solution each.
MISTAKES = [
    ("simplified_attention", "shifted = scores - scores.amax(dim=dim, keepdim=True)", "shifted = scores"),
    ("self_attention", "return torch.softmax(scores / d_k ** 0.5, dim=-1)", "return torch.softmax(scores / d_k, dim=-1)"),
    ("causal_attention", 'return scores.masked_fill(mask, float("-inf"))', "return scores.masked_fill(mask, 0.0)"),
    ("causal_attention", "mask_scores(scores, self.mask[:num_tokens, :num_tokens])", "mask_scores(scores, self.mask)"),
    ("multihead_attention", "x = x.transpose(1, 2).contiguous()  # (b, T, h, head_dim)", "x = x.contiguous()"),
]


def build_class(folder: Path, n: int) -> None:
    for i in range(n):
        student = folder / f"student{i:03d}"
        kind = i % 5
        base = ROOT / ("assignments" if kind == 4 else "solutions")
        shutil.copytree(base, student, ignore=shutil.ignore_patterns("__pycache__"))
        if kind in (1, 2, 3):  # wrong: one mistake, a different one across students
            module, old, new = MISTAKES[i % len(MISTAKES)]
            path = student / f"{module}.py"
            text = path.read_text()
            assert old in text, old
            path.write_text(text.replace(old, new, 1))


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    attnkit = [sys.executable, "-m", "attnkit.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        klass, out = Path(tmp) / "class", Path(tmp) / "out"
        build_class(klass, args.students)
        torch_import = statistics.median(timed([sys.executable, "-c", "import torch"]) for _ in range(3))
        one = statistics.median(timed(attnkit + ["grade", "solutions"]) for _ in range(3))
        whole = timed(attnkit + ["grade-class", str(klass), "--out", str(out), "--jobs", str(args.jobs), "--quiet"])
        rerun = timed(attnkit + ["grade-class", str(klass), "--out", str(out), "--jobs", str(args.jobs), "--quiet"])
        rows = (out / "grades.csv").read_text().splitlines()
    print(f"python -c 'import torch' (median of 3):        {torch_import:6.2f} s  (baseline)")
    print(f"attnkit grade solutions (median of 3):          {one:6.2f} s  = {one / torch_import:4.1f}x  (target <= 2x)")
    print(f"attnkit grade-class, {args.students} students, --jobs {args.jobs}: {whole:6.2f} s  "
          f"= {whole / torch_import:4.1f}x  (target <= 10x)")
    print(f"  per submission:                              {whole / args.students * 1000:6.0f} ms")
    print(f"  rerun, nothing changed:                      {rerun:6.2f} s  = {rerun / torch_import:4.1f}x")
    print(f"  grades.csv rows: {len(rows) - 1}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
