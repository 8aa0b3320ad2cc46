"""Stage 2: self-attention with trainable weights (scaled dot-product attention).

Three learned matrices project every token into a query (what am I looking
for?), a key (what do I offer to be found by?) and a value (what do I pass on
once found?). Scores compare queries with keys; they are divided by the square
root of the key size before the softmax, which keeps the softmax out of its
flat, small-gradient regions as the key size grows.

Shapes use T for tokens, d_in for the input embedding size, d_out for the
size of queries, keys and values (d_k is the key size, equal to d_out here).
Leading batch dimensions ``...`` are allowed everywhere.
"""

import torch
import torch.nn as nn


def project_qkv(inputs: torch.Tensor, W_query: torch.Tensor, W_key: torch.Tensor,
                W_value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project the tokens into queries, keys and values.

    Shapes: inputs (..., T, d_in) or a single token (d_in,); each W (d_in, d_out)
    -> (queries, keys, values), each (..., T, d_out), in that order.

    Hint: one matrix product per projection, with the token on the left:
    ``inputs @ W_query``.
    """
    ### BEGIN SOLUTION
    queries = inputs @ W_query  # (..., T, d_in) @ (d_in, d_out) -> (..., T, d_out)
    keys = inputs @ W_key
    values = inputs @ W_value
    return queries, keys, values
    ### END SOLUTION


def attention_scores(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Unscaled attention scores: every query dotted with every key.

    Shapes: queries (..., T_q, d_k) or one query (d_k,), keys (..., T_k, d_k)
    -> scores (..., T_q, T_k), or (T_k,) for one query.

    Hint: transpose the keys' last two axes, ``keys.transpose(-2, -1)``;
    ``keys.T`` would also reverse the batch axes.
    """
    ### BEGIN SOLUTION
    return queries @ keys.transpose(-2, -1)  # (..., T_q, d_k) @ (..., d_k, T_k)
    ### END SOLUTION


def attention_weights(scores: torch.Tensor, d_k: int) -> torch.Tensor:
    """Scaled softmax: ``softmax(scores / sqrt(d_k))`` over the last axis.

    Dividing by sqrt(d_k), not by d_k, keeps the scores' spread near 1 when
    queries and keys have d_k independent components of spread 1.

    Shapes: scores (..., T_q, T_k) or one row (T_k,) -> weights of the same shape,
    rows summing to 1.

    Hint: ``torch.softmax(..., dim=-1)`` is allowed from this stage on.
    """
    ### BEGIN SOLUTION
    return torch.softmax(scores / d_k ** 0.5, dim=-1)
    ### END SOLUTION


def context_vectors(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Weighted sums of the value vectors.

    Shapes: weights (..., T_q, T_k) or one row (T_k,), values (..., T_k, d_out)
    -> (..., T_q, d_out), or (d_out,) for one row.

    Hint: a matrix product.
    """
    ### BEGIN SOLUTION
    return weights @ values  # (..., T_q, T_k) @ (..., T_k, d_out) -> (..., T_q, d_out)
    ### END SOLUTION


class SelfAttention(nn.Module):
    """The document's compact self-attention class, weights as raw parameters.

    ``W_query``, ``W_key`` and ``W_value`` are ``nn.Parameter(torch.rand(d_in, d_out))``,
    created in that order, so that ``torch.manual_seed(123)`` reproduces the
    document's numbers.

    forward: x (..., T, d_in) -> context vectors (..., T, d_out).

    Hint: the four functions above, in order; d_k is the keys' last size.
    """

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        ### BEGIN SOLUTION
        self.W_query = nn.Parameter(torch.rand(d_in, d_out))
        self.W_key = nn.Parameter(torch.rand(d_in, d_out))
        self.W_value = nn.Parameter(torch.rand(d_in, d_out))
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        queries, keys, values = project_qkv(x, self.W_query, self.W_key, self.W_value)
        scores = attention_scores(queries, keys)  # (..., T, T)
        weights = attention_weights(scores, keys.shape[-1])
        return context_vectors(weights, values)  # (..., T, d_out)
        ### END SOLUTION


class SelfAttentionV2(nn.Module):
    """Self-attention with ``nn.Linear`` projections named W_query, W_key, W_value.

    ``nn.Linear`` stores its weight as (d_out, d_in) and initialises it better
    than ``torch.rand``; with ``qkv_bias=True`` each projection also adds a bias.
    Create the three layers in the order W_query, W_key, W_value so that
    ``torch.manual_seed(789)`` reproduces the document's numbers.

    forward: x (..., T, d_in) -> context vectors (..., T, d_out).

    Hint: call a layer on the tokens, ``self.W_query(x)``, instead of ``x @ W``.
    """

    def __init__(self, d_in: int, d_out: int, qkv_bias: bool = False):
        super().__init__()
        ### BEGIN SOLUTION
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        queries = self.W_query(x)  # (..., T, d_out)
        keys = self.W_key(x)
        values = self.W_value(x)
        weights = attention_weights(attention_scores(queries, keys), keys.shape[-1])
        return context_vectors(weights, values)  # (..., T, d_out)
        ### END SOLUTION
