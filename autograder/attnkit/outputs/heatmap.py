"""Heatmaps of an expected matrix next to the student's, as PNG bytes.

Both panels share one colour scale, so a difference in colour is a difference
in value. Cells that are -inf (masked scores) or NaN get a colour of their own
and a label, since those are exactly the cells a masking mistake is about.
"""

from __future__ import annotations

import hashlib
import io
import math

import torch

ANNOTATE_MAX_CELLS = 81  # beyond 9 x 9 the numbers no longer fit in the cells


def _label(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "-inf" if x < 0 else "inf"
    return f"{x:.2f}"


# Rendering costs ~0.1-0.2 s a figure, and a class makes the same few mistakes:
# identical pictures are drawn once per grading process.
_RENDERED: dict[bytes, bytes] = {}


def _digest(expected: torch.Tensor, actual: torch.Tensor | None, title: str) -> bytes:
    h = hashlib.blake2b(title.encode(), digest_size=16)
    for t in (expected, actual):
        if t is None:
            h.update(b"none")
        else:
            t = t.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes())
    return h.digest()


def heatmap_png(expected: torch.Tensor, actual: torch.Tensor | None, title: str) -> bytes:
    key = _digest(expected, actual, title)
    if key not in _RENDERED:
        if len(_RENDERED) > 512:
            _RENDERED.clear()
        _RENDERED[key] = _render(expected, actual, title)
    return _RENDERED[key]


def _render(expected: torch.Tensor, actual: torch.Tensor | None, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display on a grading server
    import matplotlib.pyplot as plt
    import numpy as np

    panels = [("expected", expected)] + ([("yours", actual)] if actual is not None else [])
    arrays = [(name, t.detach().double().cpu().numpy()) for name, t in panels]
    finite = np.concatenate([a[np.isfinite(a)].ravel() for _, a in arrays] + [np.zeros(1)])
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-12:
        hi = lo + 1.0
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")  # NaN, +-inf: grey, with a label

    rows, cols = arrays[0][1].shape
    width = max(2.6, 0.55 * cols + 1.2)
    fig, axes = plt.subplots(1, len(arrays), figsize=(width * len(arrays), max(2.2, 0.5 * rows + 1.0)),
                             squeeze=False)
    for ax, (name, a) in zip(axes[0], arrays):
        image = ax.imshow(np.ma.masked_invalid(a), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        ax.set_title(name)
        ax.set_xlabel("key (column)")
        ax.set_ylabel("query (row)")
        r, c = a.shape
        ax.set_xticks(range(c) if c <= 16 else [])
        ax.set_yticks(range(r) if r <= 16 else [])
        if r * c <= ANNOTATE_MAX_CELLS:
            for i in range(r):
                for j in range(c):
                    v = float(a[i, j])
                    dark = math.isfinite(v) and (v - lo) / (hi - lo) < 0.6
                    ax.text(j, i, _label(v), ha="center", va="center", fontsize=7,
                            color="white" if dark else "black")
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8)
    fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
