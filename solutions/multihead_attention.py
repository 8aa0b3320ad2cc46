"""Stage 4: multi-head attention.

Several attention heads look at the same tokens with their own projections,
so each can learn a different kind of relation. The wrapper stacks whole
CausalAttention modules; the fused module does the same work with one big
projection per Q, K and V that is split into heads, then merges the heads
again and mixes them with an output projection.

Shapes use b for the batch, T for tokens, h for heads and head_dim = d_out // h.
"""

import torch
import torch.nn as nn

from causal_attention import CausalAttention, causal_mask


class MultiHeadAttentionWrapper(nn.Module):
    """``num_heads`` independent CausalAttention heads, outputs side by side.

    Attribute ``heads``: an ``nn.ModuleList`` of CausalAttention modules, each
    built with the same arguments and created in order.

    forward: x (b, T, d_in) -> (b, T, num_heads * d_out), head 0's output first.

    Hint: ``torch.cat([...], dim=-1)``.
    """

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float,
                 num_heads: int, qkv_bias: bool = False):
        super().__init__()
        ### BEGIN SOLUTION
        self.heads = nn.ModuleList(
            [CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)
             for _ in range(num_heads)]
        )
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        return torch.cat([head(x) for head in self.heads], dim=-1)  # (b, T, h * d_out)
        ### END SOLUTION


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Split the last axis into heads and move the head axis before the tokens.

    Shapes: (b, T, d_out) -> (b, num_heads, T, d_out // num_heads). Head k
    holds features ``k * head_dim`` up to ``(k + 1) * head_dim``.

    Hint: ``view`` to (b, T, num_heads, head_dim), then ``transpose(1, 2)``;
    a ``view`` straight to (b, num_heads, T, head_dim) mixes tokens and heads.
    """
    ### BEGIN SOLUTION
    b, num_tokens, d_out = x.shape
    x = x.view(b, num_tokens, num_heads, d_out // num_heads)  # (b, T, h, head_dim)
    return x.transpose(1, 2)  # (b, h, T, head_dim)
    ### END SOLUTION


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """The inverse of ``split_heads``: put the heads side by side again.

    Shapes: (b, num_heads, T, head_dim) -> (b, T, num_heads * head_dim), head 0
    first.

    Hint: ``transpose(1, 2)``, then ``contiguous()`` before ``view`` (or use ``reshape``).
    """
    ### BEGIN SOLUTION
    b, num_heads, num_tokens, head_dim = x.shape
    x = x.transpose(1, 2).contiguous()  # (b, T, h, head_dim)
    return x.view(b, num_tokens, num_heads * head_dim)  # (b, T, h * head_dim)
    ### END SOLUTION


class MultiHeadAttention(nn.Module):
    """Fused multi-head causal attention with an output projection.

    Attributes: ``W_query``, ``W_key``, ``W_value`` (``nn.Linear(d_in, d_out)``,
    bias only if ``qkv_bias``), ``out_proj`` (``nn.Linear(d_out, d_out)`` with
    bias), created in that order; ``dropout`` (``nn.Dropout``); ``mask`` (a
    registered causal-mask buffer for ``context_length`` tokens); ``num_heads``;
    ``head_dim = d_out // num_heads``. A ``d_out`` that ``num_heads`` does not
    divide raises ``ValueError`` saying so.

    forward: x (b, T, d_in) with any T <= context_length -> (b, T, d_out).

    Hint: project, split into heads, scaled causal attention per head (scale by
    sqrt(head_dim)), dropout on the weights, merge the heads, then ``out_proj``.
    """

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float,
                 num_heads: int, qkv_bias: bool = False):
        super().__init__()
        ### BEGIN SOLUTION
        if d_out % num_heads != 0:
            raise ValueError(
                f"d_out ({d_out}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)  # mixes what the heads found
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mask", causal_mask(context_length))
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        num_tokens = x.shape[1]
        queries = split_heads(self.W_query(x), self.num_heads)  # (b, h, T, head_dim)
        keys = split_heads(self.W_key(x), self.num_heads)
        values = split_heads(self.W_value(x), self.num_heads)
        scores = queries @ keys.transpose(2, 3)  # (b, h, T, T)
        scores = scores.masked_fill(self.mask[:num_tokens, :num_tokens], float("-inf"))
        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)
        weights = self.dropout(weights)
        context = merge_heads(weights @ values)  # (b, h, T, head_dim) -> (b, T, d_out)
        return self.out_proj(context)
        ### END SOLUTION
