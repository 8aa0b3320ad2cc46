"""Stage 3: causal attention, where a token may only look back.

A language model predicts the next token from the ones before it, so while it
trains, token i must not draw on tokens i+1, i+2, ...: their attention
weights must be exactly zero. Setting their scores to -inf before the softmax
does it in one step, because exp(-inf) = 0 and the remaining weights still sum
to one. Dropout on the attention weights then regularises training.

Shapes use b for the batch, T for tokens, d_in and d_out as before.
"""

import torch
import torch.nn as nn


def causal_mask(num_tokens: int) -> torch.Tensor:
    """The causal mask: True where token i (row) would see a later token j > i.

    Shapes: -> bool (num_tokens, num_tokens). The diagonal is False: a token
    may attend to itself.

    Hint: ``torch.triu(..., diagonal=1)`` keeps what lies strictly above the diagonal.
    """
    ### BEGIN SOLUTION
    return torch.triu(torch.ones(num_tokens, num_tokens, dtype=torch.bool), diagonal=1)
    ### END SOLUTION


def mask_scores(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A copy of ``scores`` with every masked position set to -inf.

    Shapes: scores (..., T, T), mask bool (T, T) (broadcast over batch axes)
    -> (..., T, T). ``scores`` itself must not change.

    Hint: ``masked_fill`` (without the underscore) returns a new tensor.
    """
    ### BEGIN SOLUTION
    return scores.masked_fill(mask, float("-inf"))
    ### END SOLUTION


def renormalize_masked(weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The alternative the chapter shows first: zero the masked weights after
    the softmax, then divide each row by its new sum so it sums to 1 again.

    It gives the same result as masking the scores with -inf, at the cost of a
    second pass.

    Shapes: weights (..., T, T), mask bool (T, T) -> (..., T, T).

    Hint: multiply by the positions that are kept, ``~mask``.
    """
    ### BEGIN SOLUTION
    kept = weights * (~mask)  # masked positions become exactly 0
    return kept / kept.sum(dim=-1, keepdim=True)
    ### END SOLUTION


class CausalAttention(nn.Module):
    """Batched causal self-attention with dropout on the attention weights.

    Attributes: ``W_query``, ``W_key``, ``W_value`` (``nn.Linear``, created in
    that order, with bias only if ``qkv_bias``), ``dropout`` (``nn.Dropout``),
    and ``mask``, the causal mask for ``context_length`` tokens, registered as
    a buffer so it follows the module across devices and into its state.

    forward: x (b, T, d_in) with any T <= context_length -> (b, T, d_out).

    Hint: slice the mask to the T tokens of the batch, ``self.mask[:T, :T]``;
    dropout goes on the weights, after the softmax, and is off in eval mode.
    """

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float,
                 qkv_bias: bool = False):
        super().__init__()
        ### BEGIN SOLUTION
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mask", causal_mask(context_length))
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        num_tokens = x.shape[-2]
        queries = self.W_query(x)  # (b, T, d_out)
        keys = self.W_key(x)
        values = self.W_value(x)
        scores = queries @ keys.transpose(-2, -1)  # (b, T, T)
        scores = mask_scores(scores, self.mask[:num_tokens, :num_tokens])
        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)
        weights = self.dropout(weights)
        return weights @ values  # (b, T, d_out)
        ### END SOLUTION
