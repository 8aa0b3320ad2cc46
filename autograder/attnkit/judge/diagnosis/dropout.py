"""What a train-mode run of the dropout probe shows about where dropout acts.

The probe (``checks.common.dropout_probe``) makes a causal module's output
show its attention weights: zero queries and keys, so row i weighs tokens
0..i equally, and values [I | 1], so output column j < T is the weight on
token j and column T is the sum of the weights. Where dropout acts leaves a
pattern of its own:

- on the weights (right): single weights are 0, the others scaled by
  1/(1-p), and column T is still the sum of the row;
- on the scores, before the softmax: the allowed scores are 0 and stay 0,
  and a dropped -inf becomes NaN (-inf * 0), so a row with a dropped hidden
  score is all NaN and every other row is the undropped weights;
- on the values: a dropped value row is lost to every query, so a token's
  weight is 0 in every row at once (whole columns), and column T no longer
  adds up;
- on the output: single entries are 0, and column T is 0 or 1/(1-p) itself.
"""

from __future__ import annotations

import torch

from attnkit.judge.diagnosis.catalogue import finding
from attnkit.errors import CheckFailure


def _scores_dropped(dropped: torch.Tensor, weights: torch.Tensor) -> bool:
    """Some rows are all NaN, the others are the weights with nothing dropped."""
    nan_rows = torch.isnan(dropped).all(dim=-1)
    if not nan_rows.any() or not torch.equal(torch.isnan(dropped), nan_rows.unsqueeze(-1).expand_as(dropped)):
        return False
    rest = dropped[~nan_rows]
    return bool(torch.allclose(rest, weights.expand_as(dropped)[~nan_rows], rtol=1e-9, atol=1e-12))


def _whole_columns(dropped: torch.Tensor, allowed: torch.Tensor) -> bool:
    """Each token's weight is dropped in every row that may see it, or in none."""
    zero = dropped == 0
    T = allowed.shape[0]
    shared = False
    for j in range(T - 1):  # the last column has one row only
        rows = zero[:, j:, j]  # rows i >= j may see token j
        if not (rows.all(dim=1) | (~rows).all(dim=1)).all():
            return False
        shared |= bool(rows.all(dim=1).any())
    return shared


def _output_dropped(ones: torch.Tensor, p: float) -> bool:
    """The sum column itself is 0 or 1/(1-p): it was dropped, so the output was."""
    scaled = 1 / (1 - p)
    return bool(((ones == 0) | torch.isclose(ones, torch.full_like(ones, scaled), rtol=1e-9, atol=0)).all()
                and (ones == 0).any())


def train_mode_failure(out: torch.Tensor, weights: torch.Tensor, allowed: torch.Tensor,
                       p: float) -> CheckFailure | None:
    """The failure a train-mode probe output (b, T, T + 1) shows, or None if
    dropout acts on the attention weights as it should."""
    b, T = out.shape[0], weights.shape[0]
    dropped, ones = out[..., :T], out[..., T]
    allowed_b = allowed.expand(b, T, T)
    nan = torch.isnan(dropped)
    if nan.any():
        rows = int(nan.any(dim=-1).sum())
        facts = f"in train mode {rows} of {b * T} rows of the weights hold NaN"
        if _scores_dropped(dropped, weights):
            return finding("dropout_on_scores", facts)
        return CheckFailure(facts)
    leaked = dropped.masked_select(~allowed_b)
    if (leaked != 0).any():
        return CheckFailure(f"in train mode hidden (future) tokens get weight up to "
                            f"{float(leaked.abs().max()):.4g}; masked weights must stay exactly 0 in train mode too")
    kept = dropped.masked_select(allowed_b)
    w = weights.masked_select(allowed).repeat(b)
    zero = kept == 0
    if not zero.any():
        return CheckFailure(f"in train mode with dropout={p} no attention weight was dropped: apply "
                            f"self.dropout to the attention weights, after the softmax")
    scale = kept[~zero] / w[~zero]
    scaled_right = torch.allclose(scale, torch.full_like(scale, 1 / (1 - p)), rtol=1e-9, atol=0)
    sums_right = torch.allclose(ones, dropped.sum(-1), rtol=1e-9, atol=1e-12)
    if scaled_right and sums_right:
        rate = float(zero.double().mean())
        if abs(rate - p) > 0.06:
            return CheckFailure(f"dropout zeroed {rate:.0%} of the weights; with p = {p} it should zero "
                                f"about {p:.0%}")
        return None
    if _whole_columns(dropped, allowed):
        return finding("dropout_on_values", "in train mode a token's weight is 0 for every query at once "
                       "(whole columns of the weights are dropped together), and the weights no longer add "
                       "up to what the values receive")
    if _output_dropped(ones, p):
        return finding("dropout_on_output", "in train mode the output's entries are dropped one by one, "
                       "the sum of the weights included: it is 0 or 1/(1-p) itself")
    if torch.allclose(scale, torch.ones_like(scale)):
        return CheckFailure("the weights that survive dropout are not scaled by 1/(1-p); nn.Dropout does it")
    if (torch.allclose(scale, torch.full_like(scale, 1 / (1 - p)), rtol=1e-5, atol=0)
            and torch.allclose(ones, dropped.sum(-1), rtol=1e-5, atol=1e-6)):
        return CheckFailure("in train mode the weights are 0 or scaled by 1/(1-p), but only to float32's "
                            "precision on float64 input: part of your computation runs in float32 (a softmax "
                            "with dtype=torch.float32, or a tensor made inside without dtype=x.dtype); keep "
                            "the input's dtype throughout")
    if not scaled_right:
        return CheckFailure("in train mode the weights are neither 0 nor scaled by 1/(1-p): is dropout "
                            "applied to something other than the attention weights?")
    return CheckFailure("in train mode the output is not the dropped weights times the values: the last "
                        "column, which the values fill with the sum of the weights, does not add up")
