"""Benchmark: the cost of one feedback.html with pictures, before and after, as ratios in one run.

    python benchmarks/feedback_pictures.py [--students 40]

Grades one submission with three different mistakes (a softmax, a mask filled
with 0, a CausalAttention that masks after its softmax), whose feedback holds
several heatmaps. Then writes its feedback.html once per student of a class
whose wrong answers are all different: each student's pictures are the same
matrices with the student's answer scaled by (1 + k / 997), so that no two
pictures are alike and no cache can help (real classes look like that).
Each page is rendered three ways, in this process, interleaved:

- after: the pictures drawn as inline SVG in plain Python (``outputs/heatmap.py``);
- before: the pictures drawn as matplotlib PNGs, as the kit drew them until
  now (``png_heatmap`` below is that code, kept here as the baseline), embedded
  as base64 ``<img>``;
- no pictures: the page alone (the floor a picture adds to).

matplotlib's own import, paid once per process before, is printed apart.
Machines here are noisy: compare the ratios, not the milliseconds.
"""

from __future__ import annotations

import argparse
import base64
import copy
import io
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MISTAKES = {  # module: (old, new), one edit of the reference each
    "simplified_attention": ("exps = torch.exp(shifted)", "exps = torch.exp(shifted * 1.1)"),
    "causal_attention": ('return scores.masked_fill(mask, float("-inf"))', "return scores.masked_fill(mask, 0.0)"),
}


def png_heatmap(expected, actual, title: str) -> bytes:
    """The PNG heatmap of the kit until this benchmark was written (outputs/heatmap.py, matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def label(x: float) -> str:
        return "NaN" if math.isnan(x) else ("-inf" if x < 0 else "inf") if math.isinf(x) else f"{x:.2f}"

    panels = [("expected", expected)] + ([("yours", actual)] if actual is not None else [])
    arrays = [(name, t.detach().double().cpu().numpy()) for name, t in panels]
    finite = np.concatenate([a[np.isfinite(a)].ravel() for _, a in arrays] + [np.zeros(1)])
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-12:
        hi = lo + 1.0
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")
    rows, cols = arrays[0][1].shape
    width = max(2.6, 0.55 * cols + 1.2)
    fig, axes = plt.subplots(1, len(arrays), figsize=(width * len(arrays), max(2.2, 0.5 * rows + 1.0)), squeeze=False)
    for ax, (name, a) in zip(axes[0], arrays):
        image = ax.imshow(np.ma.masked_invalid(a), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        ax.set_title(name)
        ax.set_xlabel("key (column)")
        ax.set_ylabel("query (row)")
        r, c = a.shape
        ax.set_xticks(range(c) if c <= 16 else [])
        ax.set_yticks(range(r) if r <= 16 else [])
        if r * c <= 81:
            for i in range(r):
                for j in range(c):
                    v = float(a[i, j])
                    dark = math.isfinite(v) and (v - lo) / (hi - lo) < 0.6
                    ax.text(j, i, label(v), ha="center", va="center", fontsize=7, color="white" if dark else "black")
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8)
    fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def png_picture(p) -> str:
    data = base64.b64encode(png_heatmap(p.expected, p.actual, p.title)).decode("ascii")
    return f'<img alt="{p.title}: expected values next to yours" src="data:image/png;base64,{data}">'


def graded_report():
    from attnkit.config import secret_paths
    from attnkit.exercises import MODULES
    from attnkit.intake import from_folder
    from attnkit.judge.engine import grade
    from attnkit.sandbox import Zygote

    causal = ("scores = mask_scores(scores, self.mask[:num_tokens, :num_tokens])\n"
              "        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)",
              "weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)\n"
              "        weights = weights.masked_fill(self.mask[:num_tokens, :num_tokens], 0.0)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "student"
        shutil.copytree(ROOT / "solutions", folder, ignore=shutil.ignore_patterns("__pycache__"))
        for module, edits in {**{m: [e] for m, e in MISTAKES.items()},
                              "causal_attention": [MISTAKES["causal_attention"], causal]}.items():
            path = folder / f"{module}.py"
            text = path.read_text()
            for old, new in edits:
                assert text.count(old) == 1, old
                text = text.replace(old, new)
            path.write_text(text)
        zygote = Zygote(hide=secret_paths())
        try:
            return grade(zygote, from_folder(str(folder), MODULES, "student"))
        finally:
            zygote.close()


def student_report(report, k: int):
    """The same report with the student's matrices scaled by (1 + k / 997): every picture unique."""
    from attnkit.judge.diagnosis.pictures import Picture

    mine = copy.copy(report)
    mine.results = []
    for r in report.results:
        r = copy.copy(r)
        r.checks = [copy.copy(c) for c in r.checks]
        for c in r.checks:
            c.pictures = [Picture(p.title, p.expected, None if p.actual is None else
                                  (p.actual.double() * (1 + k / 997) if p.actual.is_floating_point() else p.actual))
                          for p in c.pictures]
        mine.results.append(r)
    return mine


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=40)
    args = parser.parse_args()
    from attnkit.outputs import feedback

    report = graded_report()
    svg_picture = feedback._picture
    reports = [student_report(report, k) for k in range(1, args.students + 1)]
    feedback.render(reports[0])  # jinja2 and the template, once: both ways pay it once per process
    start = time.perf_counter()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    mpl_import = time.perf_counter() - start
    ways = {"after (SVG)": svg_picture, "before (matplotlib PNG)": png_picture, "no pictures": lambda p: None}
    times: dict[str, list[float]] = {w: [] for w in ways}
    pages: dict[str, str] = {}
    for r in reports:  # interleaved, so that load on the machine falls on all three alike
        for way, draw in ways.items():
            feedback._picture = draw
            start = time.perf_counter()
            pages[way] = feedback.render(r, "attnkit feedback for a student")
            times[way].append(time.perf_counter() - start)
    feedback._picture = svg_picture
    pictures = pages["after (SVG)"].count("<svg ")
    assert pictures == pages["before (matplotlib PNG)"].count("<img ") > 0, "both ways draw the same pictures"
    median = {w: statistics.median(t) for w, t in times.items()}
    floor = median["no pictures"]
    print(f"one feedback.html with {pictures} pictures, {args.students} students whose pictures all differ "
          f"(median per file; python {sys.version.split()[0]})")
    for way, t in median.items():
        print(f"  {way:<24} {t * 1000:8.2f} ms   {len(pages[way]) / 1024:7.1f} KiB")
    before, after = median["before (matplotlib PNG)"], median["after (SVG)"]
    print(f"  per picture: before {(before - floor) / pictures * 1000:.2f} ms, after {(after - floor) / pictures * 1000:.3f} ms")
    print(f"  ratio before / after, per file: {before / after:6.1f}x")
    print(f"  ratio of the pictures' own cost, before / after: {(before - floor) / max(after - floor, 1e-9):6.1f}x")
    print(f"  matplotlib import, paid once per process before: {mpl_import * 1000:.0f} ms")
    print(f"  a class of 100 such students: before {before * 100:.1f} s, after {after * 100:.2f} s of feedback files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
