"""Stage 1: simplified self-attention, with no trainable weights.

Every token asks "how similar is each other token to me?" (a dot product),
turns those similarity scores into weights that sum to one, and then mixes the
token vectors with those weights. The result, one context vector per token, is
the token's embedding enriched with what the rest of the sequence says.

Shapes use T for the number of tokens and d for the embedding size. Every
function also accepts leading batch dimensions, written ``...``.
"""

import torch


def query_scores(inputs: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Attention scores of one query against every token.

    The score of token i is the dot product ``inputs[..., i, :] . query``: the
    larger it is, the more the two vectors point the same way.

    Shapes: inputs (..., T, d), query (..., d) -> scores (..., T).

    Hint: a dot product is an elementwise product followed by a sum over the
    embedding axis. Broadcasting does it for every token at once if the query
    gets a token axis of size 1 (``unsqueeze``).
    """
    ### BEGIN SOLUTION
    # query gains a token axis so it lines up with every row of inputs
    return (inputs * query.unsqueeze(-2)).sum(dim=-1)  # (..., T)
    ### END SOLUTION


def attention_scores(inputs: torch.Tensor) -> torch.Tensor:
    """All pairwise dot products: row i holds the scores of token i as query.

    Shapes: inputs (..., T, d) -> scores (..., T, T).

    Hint: a matrix product of the inputs with their own transpose. Transpose
    the last two axes with ``transpose(-2, -1)``: ``.T`` would also flip the
    batch axes.
    """
    ### BEGIN SOLUTION
    return inputs @ inputs.transpose(-2, -1)  # (..., T, d) @ (..., d, T) -> (..., T, T)
    ### END SOLUTION


def normalize_by_sum(scores: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Turn scores into weights by dividing by their sum along ``dim``.

    This is the simple normalization the chapter starts from, before softmax.
    It only makes sense for positive scores.

    Shapes: scores (...) -> weights of the same shape, summing to 1 along dim.

    Hint: ``sum(dim=..., keepdim=True)`` keeps the summed axis so that the
    division broadcasts.
    """
    ### BEGIN SOLUTION
    return scores / scores.sum(dim=dim, keepdim=True)
    ### END SOLUTION


def softmax(scores: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax along ``dim``, written by hand from ``torch.exp`` and a sum.

    softmax(x)_i = exp(x_i) / sum_j exp(x_j). Unlike dividing by the sum, it
    gives positive weights for any scores, and it stresses the large ones.

    It must stay finite for scores as large as +-1000, where ``exp`` overflows
    to inf (inf / inf is NaN). Subtracting the maximum along ``dim`` first does
    not change the result (the factor exp(-max) cancels) and keeps every
    exponent at or below 0.

    Shapes: scores (...) -> weights of the same shape, summing to 1 along dim.

    Hint: ``scores.amax(dim=dim, keepdim=True)``.
    """
    ### BEGIN SOLUTION
    shifted = scores - scores.amax(dim=dim, keepdim=True)  # largest exponent is now 0
    exps = torch.exp(shifted)
    return exps / exps.sum(dim=dim, keepdim=True)
    ### END SOLUTION


def context_vectors(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Weighted sums of the value vectors: row i is sum_j weights[i, j] * values[j].

    Shapes: weights (..., T_q, T_k), values (..., T_k, d) -> (..., T_q, d).
    A single row of weights, shape (T_k,), gives one context vector (d,).

    Hint: that weighted sum for every row at once is a matrix product.
    """
    ### BEGIN SOLUTION
    return weights @ values  # (..., T_q, T_k) @ (..., T_k, d) -> (..., T_q, d)
    ### END SOLUTION


def simplified_self_attention(inputs: torch.Tensor) -> torch.Tensor:
    """The whole mechanism: scores, softmax over each row, context vectors.

    The tokens act as queries, keys and values at once: nothing is learned yet.

    Shapes: inputs (..., T, d) -> context vectors (..., T, d).

    Hint: chain three of the functions above.
    """
    ### BEGIN SOLUTION
    scores = attention_scores(inputs)  # (..., T, T)
    weights = softmax(scores, dim=-1)  # each row sums to 1
    return context_vectors(weights, inputs)  # (..., T, d)
    ### END SOLUTION
