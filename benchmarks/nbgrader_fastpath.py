"""Benchmark: `nbgrader autograde` against the fast path on the same nbgrader class.

    python benchmarks/nbgrader_fastpath.py [--students 8] [--jobs 2] [--keep DIR]

Builds a course with `attnkit course`, releases the four assignments with
`nbgrader generate_assignment`, and submits four notebooks per student made
from the released ones with the reference answers, some with one stage wrong
(edits of the solution cells), some with stray stderr output, some unchanged.
Then times, each as its own command: `nbgrader autograde` of the four
assignments, and the fast path, `attnkit grade-class submitted/` (which pulls
the solution cells out by their nbgrader metadata and grades them with the
isolated runner). Prints both per-student totals and the speed ratio; exits 1
if a total differs or the fast path is less than 20x faster.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("simplified_attention", "self_attention", "causal_attention", "multihead_attention")

# (module, solution cell, old, new): one wrong stage each.
MISTAKES = [
    ("simplified_attention", "softmax", "shifted = scores - scores.amax(dim=dim, keepdim=True)", "shifted = scores"),
    ("self_attention", "attention_weights", "return torch.softmax(scores / d_k ** 0.5, dim=-1)",
     "return torch.softmax(scores / d_k, dim=-1)"),
    ("causal_attention", "mask_scores", 'return scores.masked_fill(mask, float("-inf"))',
     "return scores.masked_fill(mask, 0.0)"),
    ("multihead_attention", "merge_heads", "x = x.transpose(1, 2).contiguous()  # (b, T, h, head_dim)",
     "x = x.contiguous()"),
]
NOISE = ("simplified_attention", "context_vectors", "    return weights @ values",
         "    import sys, warnings\n    print('debug', file=sys.stderr)\n    warnings.warn('noise')\n"
         "    return weights @ values")


def sh(args, cwd, quiet=True) -> float:
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    start = time.monotonic()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=quiet, text=True)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{(done.stdout or '')[-2000:]}\n{(done.stderr or '')[-2000:]}")
    return elapsed


def answers(module: str) -> dict[str, str]:
    nb = json.loads((ROOT / "source" / module / f"{module}.ipynb").read_text())
    return {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) for c in nb["cells"]
            if c.get("metadata", {}).get("nbgrader", {}).get("solution")}


def student_notebook(released: dict, module: str, kind: int) -> dict:
    if kind == 1:
        return released  # handed in unchanged
    code = answers(module)
    edits = [m for m in MISTAKES if m[0] == module and kind == 2] + ([NOISE] if kind == 3 and NOISE[0] == module else [])
    for _module, cell, old, new in edits:
        assert code[cell].count(old) == 1, f"{module}.{cell}: edit does not match once"
        code[cell] = code[cell].replace(old, new)
    nb = copy.deepcopy(released)
    for c in nb["cells"]:
        meta = c.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and meta.get("grade_id") in code:
            c["source"] = code[meta["grade_id"]].splitlines(keepends=True)
    return nb


def build_class(course: Path, n: int) -> None:
    for module in MODULES:
        released = json.loads((course / "release" / module / f"{module}.ipynb").read_text())
        for i in range(n):
            folder = course / "submitted" / f"student{i:02d}" / module
            shutil.copytree(course / "release" / module, folder)
            nb = student_notebook(released, module, i % 4)  # 0 full, 1 unchanged, 2 wrong stage, 3 noise
            (folder / f"{module}.ipynb").write_text(json.dumps(nb, indent=1))


def nbgrader_totals(course: Path) -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "autograder"))
    from attnkit.frontends.nbgrader_tree import gradebook_scores

    return {s: sum(v.values()) for s, v in gradebook_scores(course / "gradebook.db").items()}


def fast_path(course: Path, out: Path, jobs: int) -> tuple[float, str]:
    return (sh([sys.executable, "-m", "attnkit.frontends.cli", "grade-class", str(course / "submitted"), "--out", str(out),
                "--jobs", str(jobs), "--quiet"], cwd=course), "attnkit grade-class submitted/")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", metavar="DIR", help="build the course here and keep it")
    args = parser.parse_args()

    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="attnkit-bench-"))
    course = base / "course"
    try:
        sh([sys.executable, "-m", "attnkit.frontends.cli", "course", str(course)], cwd=base)
        for module in MODULES:
            sh([sys.executable, "-m", "nbgrader", "generate_assignment", module], cwd=course)
        build_class(course, args.students)

        nb_seconds = sum(sh([sys.executable, "-m", "nbgrader", "autograde", m], cwd=course) for m in MODULES)
        fast_seconds, how = fast_path(course, base / "fast", args.jobs)

        nbgrader = nbgrader_totals(course)
        with open(base / "fast" / "grades.csv") as f:
            fast = {row["student"]: float(row["total"]) for row in csv.DictReader(f)}
        print(f"{'student':<12} {'nbgrader':>9} {'fast path':>9}")
        for student in sorted(nbgrader):
            mark = "" if nbgrader[student] == fast.get(student) else "   <- differs"
            print(f"{student:<12} {nbgrader[student]:>9g} {fast.get(student, float('nan')):>9g}{mark}")
        ratio = nb_seconds / fast_seconds
        notebooks = args.students * len(MODULES)
        print(f"nbgrader autograde: {nb_seconds:.1f} s for {notebooks} notebooks "
              f"({nb_seconds / notebooks:.2f} s each)")
        print(f"fast path ({how}, --jobs {args.jobs}): {fast_seconds:.1f} s")
        print(f"ratio: {ratio:.1f}x (target: at least 20x)")
        same = nbgrader == fast
        print("per-student totals: " + ("identical" if same else "DIFFERENT"))
        return 0 if same and ratio >= 20 else 1
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
