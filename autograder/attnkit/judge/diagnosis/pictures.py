"""Which failed answers are worth a picture, and of what.

Only items whose result is a matrix of attention weights, or a mask, get one:
a heatmap of the expected matrix next to the student's. The pictures carry
plain tensors (the first matrix of a batch); drawing them is the feedback
file's job.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# item -> [(title, how to get the matrix to draw from the result)]
PICTURED = {
    "simplified_attention.normalize_by_sum": [("attention weights", None)],
    "simplified_attention.softmax": [("attention weights", None)],
    "self_attention.attention_weights": [("attention weights", None)],
    "causal_attention.causal_mask": [("causal mask (True = hidden)", None)],
    "causal_attention.mask_scores": [
        ("masked scores", None),
        ("their softmax: the attention weights", lambda t: torch.softmax(t.double(), dim=-1)),
    ],
    "causal_attention.renormalize_masked": [("attention weights", None)],
}
# Classes whose output hides the weights: a probe run reads them off instead
# (checks/common.weights_pictures).
PROBED = ("causal_attention.CausalAttention", "multihead_attention.MultiHeadAttention")
PROBE_TITLE = "attention weights, read off a probe run of your module"


@dataclass(frozen=True)
class Picture:
    title: str
    expected: torch.Tensor  # 2-D
    actual: torch.Tensor  # 2-D, or None when the answer has no matrix to show


def first_matrix(t) -> torch.Tensor | None:
    """The first (rows, columns) matrix of a batch; a vector is one row."""
    if not isinstance(t, torch.Tensor) or t.dim() == 0 or t.numel() == 0:
        return None
    while t.dim() > 2:
        t = t[0]
    t = t.detach()
    return t.unsqueeze(0) if t.dim() == 1 else t


def _shown(t, transform) -> torch.Tensor | None:
    if not isinstance(t, torch.Tensor):
        return None
    if transform is None:
        return first_matrix(t)
    if not t.is_floating_point():
        return None
    try:
        return first_matrix(transform(t))
    except Exception:  # noqa: BLE001 - the answer may not be drawable that way
        return None


def pictures_for(item: str, expected, actual) -> list[Picture]:
    out = []
    for title, transform in PICTURED.get(item, []):
        want, got = _shown(expected, transform), _shown(actual, transform)
        if want is None:
            continue
        if got is not None and got.shape != want.shape:
            got = None  # a wrong shape is said in words; drawing it could be any size
        out.append(Picture(title, want, got))
    return out
