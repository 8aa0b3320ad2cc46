"""Correct answers written in other styles earn full marks.

Each case rewrites one or a few items of the reference solutions the way a
student might: loops, einsum, torch.where, additive and float masks,
F.scaled_dot_product_attention, unflatten, per-head loops, a logsumexp
softmax, the chapter's own code. The module it touches must score full marks
on every item, the rewritten ones and the rest. A case that loses a point is
a false negative of the grader, to fix in the grader, not here.

Cases are edits of the reference solutions (``conftest.make_submission``
checks each edit matches exactly once), usually a whole new body for one
function or method (``body``).
"""

from __future__ import annotations

import textwrap

import pytest
from conftest import SOLUTIONS, full_marks, grade_folder, make_submission, scores

S, SA, CA, MH = "simplified_attention", "self_attention", "causal_attention", "multihead_attention"


def body(module: str, qualname: str, code: str) -> tuple[str, str]:
    """An edit that replaces the solution body of ``qualname`` ("f" or "Class.method") with ``code``."""
    text = (SOLUTIONS / f"{module}.py").read_text()
    start = 0
    *owner, name = qualname.split(".")
    if owner:
        start = text.index(f"\nclass {owner[0]}(")
    start = text.index(f"def {name}(", start)
    begin = text.index("### BEGIN SOLUTION", start)
    end = text.index("### END SOLUTION", begin)
    indent = text[text.rindex("\n", 0, begin) + 1:begin]
    head = text[start:text.index("\n", begin) + 1]
    return text[start:end], head + textwrap.indent(textwrap.dedent(code).strip("\n"), indent) + "\n" + indent


CA_INIT_FLOAT_MASK = """
    self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
    self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
    self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
    self.dropout = nn.Dropout(dropout)
    self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), diagonal=1))
"""

MHA_INIT = """
    if d_out % num_heads != 0:
        raise ValueError("d_out must be divisible by num_heads")
    self.d_out = d_out
    self.num_heads = num_heads
    self.head_dim = d_out // num_heads
    self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
    self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
    self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
    self.out_proj = nn.Linear(d_out, d_out)
    self.dropout = nn.Dropout(dropout)
    self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), diagonal=1))
"""

# id -> (module, edits)
CASES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    # -- stage 1: simplified self-attention
    "query_scores_matmul": (S, [body(S, "query_scores", "return (inputs @ query.unsqueeze(-1)).squeeze(-1)")]),
    "query_scores_einsum": (S, [body(S, "query_scores", 'return torch.einsum("...td,...d->...t", inputs, query)')]),
    "query_scores_token_loop": (S, [body(S, "query_scores", """
        scores = [(inputs[..., i, :] * query).sum(dim=-1) for i in range(inputs.shape[-2])]
        return torch.stack(scores, dim=-1)
    """)]),
    "query_scores_chapter_dot_loop": (S, [body(S, "query_scores", """
        # the chapter's loop of torch.dot, over a flattened batch
        flat = inputs.reshape(-1, *inputs.shape[-2:])
        queries = query.reshape(-1, query.shape[-1]).expand(flat.shape[0], -1)
        scores = torch.empty(flat.shape[:2], dtype=inputs.dtype)
        for b in range(flat.shape[0]):
            for i, x_i in enumerate(flat[b]):
                scores[b, i] = torch.dot(x_i, queries[b])
        return scores.reshape(inputs.shape[:-1])
    """)]),
    "attention_scores_einsum": (S, [body(S, "attention_scores",
                                         'return torch.einsum("...id,...jd->...ij", inputs, inputs)')]),
    "attention_scores_mT": (S, [body(S, "attention_scores", "return inputs @ inputs.mT")]),
    "attention_scores_matmul_swapaxes": (S, [body(S, "attention_scores",
                                                  "return torch.matmul(inputs, inputs.swapaxes(-1, -2))")]),
    "attention_scores_chapter_double_loop": (S, [body(S, "attention_scores", """
        flat = inputs.reshape(-1, *inputs.shape[-2:])
        T = flat.shape[1]
        scores = torch.empty(flat.shape[0], T, T, dtype=inputs.dtype)
        for b, x in enumerate(flat):
            for i, x_i in enumerate(x):
                for j, x_j in enumerate(x):
                    scores[b, i, j] = torch.dot(x_i, x_j)
        return scores.reshape(*inputs.shape[:-1], T)
    """)]),
    "normalize_torch_sum": (S, [body(S, "normalize_by_sum",
                                     "return scores / torch.sum(scores, dim=dim, keepdim=True)")]),
    "normalize_unsqueeze": (S, [body(S, "normalize_by_sum", "return scores / scores.sum(dim).unsqueeze(dim)")]),
    "normalize_reciprocal": (S, [body(S, "normalize_by_sum",
                                      "return scores * scores.sum(dim=dim, keepdim=True).reciprocal()")]),
    "softmax_logsumexp": (S, [body(S, "softmax",
                                   "return torch.exp(scores - torch.logsumexp(scores, dim=dim, keepdim=True))")]),
    "softmax_max_values": (S, [body(S, "softmax", """
        exps = (scores - scores.max(dim=dim, keepdim=True).values).exp()
        return exps / exps.sum(dim=dim, keepdim=True)
    """)]),
    "softmax_torch_max_index": (S, [body(S, "softmax", """
        m, _ = torch.max(scores, dim, keepdim=True)
        e = torch.exp(torch.sub(scores, m))
        return torch.div(e, torch.sum(e, dim, keepdim=True))
    """)]),
    "softmax_functional": (S, [body(S, "softmax", "return torch.nn.functional.softmax(scores, dim=dim)")]),
    "context_vectors_einsum": (S, [body(S, "context_vectors", """
        if weights.dim() == 1:
            return torch.einsum("k,kd->d", weights, values)
        return torch.einsum("...qk,...kd->...qd", weights, values)
    """)]),
    "context_vectors_matmul": (S, [body(S, "context_vectors", "return torch.matmul(weights, values)")]),
    "context_vectors_broadcast_sum": (S, [body(S, "context_vectors", """
        if weights.dim() == 1:
            return (weights.unsqueeze(-1) * values).sum(dim=-2)
        return (weights.unsqueeze(-1) * values.unsqueeze(-3)).sum(dim=-2)
    """)]),
    "context_vectors_chapter_loop": (S, [body(S, "context_vectors", """
        # the chapter's running sum of weighted value vectors, one key at a time
        context = 0
        for k in range(weights.shape[-1]):
            w_k = weights[..., k].unsqueeze(-1)  # (..., T_q, 1), or (1,) for one row
            v_k = values[..., k, :]  # (..., d)
            context = context + w_k * (v_k.unsqueeze(-2) if weights.dim() > 1 else v_k)
        return context
    """)]),
    "simplified_inline": (S, [body(S, "simplified_self_attention",
                                   "return torch.softmax(inputs @ inputs.transpose(-2, -1), dim=-1) @ inputs")]),
    "simplified_einsum_inline": (S, [body(S, "simplified_self_attention", """
        weights = torch.einsum("...id,...jd->...ij", inputs, inputs).softmax(dim=-1)
        return torch.einsum("...ij,...jd->...id", weights, inputs)
    """)]),

    # -- stage 2: self-attention with trainable weights
    "project_qkv_functional_linear": (SA, [body(SA, "project_qkv", """
        linear = torch.nn.functional.linear
        return linear(inputs, W_query.T), linear(inputs, W_key.T), linear(inputs, W_value.T)
    """)]),
    "project_qkv_fused": (SA, [body(SA, "project_qkv", """
        qkv = inputs @ torch.cat([W_query, W_key, W_value], dim=-1)  # (..., T, 3 * d_out)
        return tuple(qkv.split(W_query.shape[1], dim=-1))
    """)]),
    "project_qkv_einsum_list": (SA, [body(SA, "project_qkv", """
        return [torch.einsum("...i,io->...o", inputs, W) for W in (W_query, W_key, W_value)]
    """)]),
    "sa_attention_scores_mT": (SA, [body(SA, "attention_scores", "return torch.matmul(queries, keys.mT)")]),
    "sa_attention_scores_einsum": (SA, [body(SA, "attention_scores", """
        if queries.dim() == 1:
            return torch.einsum("d,kd->k", queries, keys)
        return torch.einsum("...qd,...kd->...qk", queries, keys)
    """)]),
    "attention_weights_math_sqrt": (SA, [body(SA, "attention_weights", """
        import math
        return torch.softmax(scores / math.sqrt(d_k), dim=-1)
    """)]),
    "attention_weights_rsqrt_multiply": (SA, [body(SA, "attention_weights",
                                                   "return torch.softmax(scores * d_k ** -0.5, dim=-1)")]),
    "attention_weights_float32_sqrt": (SA, [body(SA, "attention_weights",
                                                 "return torch.softmax(scores / torch.sqrt(torch.tensor(d_k)), -1)")]),
    # a memory-light backward that reuses what its forward saved: the value is read before
    # the backward runs (fourth review: it was read after, and said to differ)
    "attention_weights_autograd_function": (SA, [body(SA, "attention_weights", """
        class ScaledSoftmax(torch.autograd.Function):
            @staticmethod
            def forward(ctx, scores, d_k):
                z = scores / d_k ** 0.5
                y = torch.exp(z - z.amax(dim=-1, keepdim=True))
                y = y / y.sum(dim=-1, keepdim=True)
                ctx.save_for_backward(y)
                ctx.scale = d_k ** 0.5
                return y

            @staticmethod
            def backward(ctx, g):
                (y,) = ctx.saved_tensors
                dot = (g * y).sum(dim=-1, keepdim=True)
                y.mul_(g - dot).div_(ctx.scale)  # in place: no second (..., T, T) buffer
                return y, None

        return ScaledSoftmax.apply(scores, d_k)
    """)]),
    "attention_weights_own_softmax": (SA, [body(SA, "attention_weights", """
        scaled = scores / d_k ** 0.5
        exps = torch.exp(scaled - scaled.amax(dim=-1, keepdim=True))
        return exps / exps.sum(dim=-1, keepdim=True)
    """)]),
    "attention_weights_method": (SA, [body(SA, "attention_weights", "return scores.div(d_k ** 0.5).softmax(dim=-1)")]),
    "sa_context_vectors_einsum": (SA, [body(SA, "context_vectors", """
        if weights.dim() == 1:
            return torch.einsum("k,kd->d", weights, values)
        return torch.einsum("...qk,...kd->...qd", weights, values)
    """)]),
    "self_attention_v1_chapter": (SA, [  # the document's class, with the batch-safe transpose
        body(SA, "SelfAttention.__init__", """
            self.W_query = nn.Parameter(torch.rand(d_in, d_out))
            self.W_key   = nn.Parameter(torch.rand(d_in, d_out))
            self.W_value = nn.Parameter(torch.rand(d_in, d_out))
        """),
        body(SA, "SelfAttention.forward", """
            keys = x @ self.W_key
            queries = x @ self.W_query
            values = x @ self.W_value

            attn_scores = queries @ keys.transpose(-2, -1)
            attn_weights = torch.softmax(attn_scores / keys.shape[-1]**0.5, dim=-1)
            context_vec = attn_weights @ values

            return context_vec
        """)]),
    "self_attention_v1_empty_uniform_einsum": (SA, [
        body(SA, "SelfAttention.__init__", """
            self.W_query = nn.Parameter(torch.empty(d_in, d_out).uniform_(), requires_grad=True)
            self.W_key = nn.Parameter(torch.empty(d_in, d_out).uniform_(), requires_grad=True)
            self.W_value = nn.Parameter(torch.empty(d_in, d_out).uniform_(), requires_grad=True)
        """),
        body(SA, "SelfAttention.forward", """
            q, k, v = (torch.einsum("...ti,io->...to", x, W) for W in (self.W_query, self.W_key, self.W_value))
            weights = torch.einsum("...qd,...kd->...qk", q, k).div(k.shape[-1] ** 0.5).softmax(-1)
            return torch.einsum("...qk,...kd->...qd", weights, v)
        """)]),
    "self_attention_v1_sdpa": (SA, [body(SA, "SelfAttention.forward", """
        q, k, v = x @ self.W_query, x @ self.W_key, x @ self.W_value
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)
    """)]),
    "self_attention_v2_chapter": (SA, [body(SA, "SelfAttentionV2.forward", """
        keys = self.W_key(x)
        queries = self.W_query(x)
        values = self.W_value(x)
        attn_scores = queries @ keys.transpose(-2, -1)
        attn_weights = torch.softmax(attn_scores / keys.shape[-1]**0.5, dim=-1)
        return attn_weights @ values
    """)]),
    "self_attention_v2_functional_linear": (SA, [body(SA, "SelfAttentionV2.forward", """
        F = torch.nn.functional
        q = F.linear(x, self.W_query.weight, self.W_query.bias)
        k = F.linear(x, self.W_key.weight, self.W_key.bias)
        v = F.linear(x, self.W_value.weight, self.W_value.bias)
        return F.softmax(q @ k.mT / k.size(-1) ** 0.5, dim=-1) @ v
    """)]),

    # -- stage 3: causal attention
    "causal_mask_float_to_bool": (CA, [body(CA, "causal_mask", "return torch.ones(num_tokens, num_tokens).triu(1).bool()")]),
    "causal_mask_not_tril": (CA, [body(CA, "causal_mask",
                                       "return ~torch.tril(torch.ones(num_tokens, num_tokens, dtype=torch.bool))")]),
    "causal_mask_arange": (CA, [body(CA, "causal_mask", """
        positions = torch.arange(num_tokens)
        return positions.unsqueeze(0) > positions.unsqueeze(1)  # column j after row i
    """)]),
    "causal_mask_loop": (CA, [body(CA, "causal_mask", """
        mask = torch.zeros(num_tokens, num_tokens, dtype=torch.bool)
        for i in range(num_tokens):
            for j in range(i + 1, num_tokens):
                mask[i, j] = True
        return mask
    """)]),
    "causal_mask_full": (CA, [body(CA, "causal_mask", "return torch.full((num_tokens, num_tokens), True).triu(diagonal=1)")]),
    "causal_mask_chapter_triu_eq": (CA, [body(CA, "causal_mask",
                                              "return torch.triu(torch.ones(num_tokens, num_tokens), diagonal=1) == 1")]),
    "mask_scores_where_scalar": (CA, [body(CA, "mask_scores", 'return torch.where(mask, float("-inf"), scores)')]),
    "mask_scores_where_full_like": (CA, [body(CA, "mask_scores",
                                              'return torch.where(mask, torch.full_like(scores, -torch.inf), scores)')]),
    "mask_scores_additive": (CA, [body(CA, "mask_scores", """
        additive = torch.zeros(mask.shape, dtype=scores.dtype).masked_fill(mask, float("-inf"))
        return scores + additive
    """)]),
    "mask_scores_index_assign": (CA, [body(CA, "mask_scores", """
        masked = scores.clone()
        masked[..., mask] = float("-inf")
        return masked
    """)]),
    "mask_scores_chapter_bool": (CA, [body(CA, "mask_scores", "return scores.masked_fill(mask.bool(), -torch.inf)")]),
    "renormalize_masked_fill": (CA, [body(CA, "renormalize_masked", """
        kept = weights.masked_fill(mask, 0.0)
        return kept / kept.sum(dim=-1, keepdim=True)
    """)]),
    "renormalize_one_minus_masked_sum": (CA, [body(CA, "renormalize_masked", """
        kept = weights * (~mask)
        return kept / (1 - (weights * mask).sum(dim=-1, keepdim=True))  # softmax rows sum to 1
    """)]),
    "renormalize_where": (CA, [body(CA, "renormalize_masked", """
        kept = torch.where(mask, torch.zeros_like(weights), weights)
        return kept / kept.sum(-1, keepdim=True)
    """)]),
    "renormalize_l1_normalize": (CA, [body(CA, "renormalize_masked",
                                           "return torch.nn.functional.normalize(weights * ~mask, p=1, dim=-1)")]),
    "renormalize_chapter_float_mask": (CA, [body(CA, "renormalize_masked", """
        masked_simple = weights * (1 - mask.to(weights.dtype))  # the chapter's tril of ones, as a float
        row_sums = masked_simple.sum(dim=-1, keepdim=True)
        return masked_simple / row_sums
    """)]),
    "causal_attention_chapter": (CA, [  # the chapter's class: float buffer, in-place fill of its own scores
        body(CA, "CausalAttention.__init__", CA_INIT_FLOAT_MASK),
        body(CA, "CausalAttention.forward", """
            b, num_tokens, d_in = x.shape
            keys = self.W_key(x)
            queries = self.W_query(x)
            values = self.W_value(x)

            attn_scores = queries @ keys.transpose(1, 2)
            attn_scores.masked_fill_(self.mask.bool()[:num_tokens, :num_tokens], -torch.inf)
            attn_weights = torch.softmax(attn_scores / keys.shape[-1]**0.5, dim=-1)
            attn_weights = self.dropout(attn_weights)

            context_vec = attn_weights @ values
            return context_vec
        """)]),
    "causal_attention_sdpa_is_causal": (CA, [body(CA, "CausalAttention.forward", """
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        return torch.nn.functional.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout.p if self.training else 0.0)
    """)]),
    "causal_attention_sdpa_attn_mask": (CA, [body(CA, "CausalAttention.forward", """
        T = x.shape[1]
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        return torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=~self.mask[:T, :T], dropout_p=self.dropout.p if self.training else 0.0)
    """)]),
    "causal_attention_additive_buffer": (CA, [
        body(CA, "CausalAttention.__init__", """
            self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
            self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
            self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
            self.dropout = nn.Dropout(dropout)
            # 0 where a token may look, -inf above the diagonal: added to the scores
            self.register_buffer("mask", torch.full((context_length, context_length), float("-inf")).triu(1))
        """),
        body(CA, "CausalAttention.forward", """
            T = x.shape[1]
            q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
            scores = q @ k.transpose(-2, -1) + self.mask[:T, :T]
            return self.dropout(torch.softmax(scores / k.shape[-1] ** 0.5, dim=-1)) @ v
        """)]),
    "causal_attention_where_inline": (CA, [body(CA, "CausalAttention.forward", """
        T = x.size(1)
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        scores = torch.where(self.mask[:T, :T], float("-inf"), q @ k.mT)
        return self.dropout(torch.softmax(scores / k.size(-1) ** 0.5, dim=-1)) @ v
    """)]),
    "causal_attention_allowed_buffer": (CA, [
        body(CA, "CausalAttention.__init__", """
            self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
            self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
            self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
            self.dropout = nn.Dropout(dropout)
            # True where a token may look: on and below the diagonal
            self.register_buffer("mask", torch.tril(torch.ones(context_length, context_length, dtype=torch.bool)),
                                 persistent=False)
        """),
        ("scores = mask_scores(scores, self.mask[:num_tokens, :num_tokens])",
         "scores = mask_scores(scores, ~self.mask[:num_tokens, :num_tokens])")]),
    "causal_attention_functional_dropout": (CA, [
        ("weights = self.dropout(weights)",
         "weights = torch.nn.functional.dropout(weights, self.dropout.p, training=self.training)")]),
    "causal_attention_own_helpers": (CA, [  # every step through the student's own stage-2 and stage-3 functions
        ("import torch\n", "import torch\nfrom self_attention import attention_scores, attention_weights, "
                           "context_vectors, project_qkv\n"),
        body(CA, "CausalAttention.forward", """
            T = x.shape[1]
            queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
            scores = mask_scores(attention_scores(queries, keys), causal_mask(T))
            weights = self.dropout(attention_weights(scores, keys.shape[-1]))
            return context_vectors(weights, values)
        """)]),
    "causal_attention_einsum": (CA, [body(CA, "CausalAttention.forward", """
        T = x.shape[1]
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        scores = torch.einsum("btd,bsd->bts", q, k).masked_fill(self.mask[:T, :T], float("-inf"))
        weights = self.dropout(torch.softmax(scores / k.shape[-1] ** 0.5, dim=-1))
        return torch.einsum("bts,bsd->btd", weights, v)
    """)]),
    "causal_attention_per_sequence_loop": (CA, [body(CA, "CausalAttention.forward", """
        outputs = []
        for seq in x:  # one sequence (T, d_in) at a time
            T = seq.shape[0]
            q, k, v = self.W_query(seq), self.W_key(seq), self.W_value(seq)
            scores = (q @ k.T).masked_fill(self.mask[:T, :T], float("-inf"))
            outputs.append(self.dropout(torch.softmax(scores / k.shape[-1] ** 0.5, dim=-1)) @ v)
        return torch.stack(outputs)
    """)]),

    # -- stage 4: multi-head attention
    "wrapper_stack_flatten": (MH, [body(MH, "MultiHeadAttentionWrapper.forward",
                                        "return torch.stack([head(x) for head in self.heads], dim=-2).flatten(-2)")]),
    "wrapper_append_loop": (MH, [
        body(MH, "MultiHeadAttentionWrapper.__init__", """
            self.heads = nn.ModuleList()
            for _ in range(num_heads):
                self.heads.append(CausalAttention(d_in, d_out, context_length, dropout, qkv_bias=qkv_bias))
        """),
        body(MH, "MultiHeadAttentionWrapper.forward", """
            outputs = []
            for head in self.heads:
                outputs.append(head(x))
            return torch.concat(outputs, dim=2)
        """)]),
    "wrapper_generator": (MH, [body(MH, "MultiHeadAttentionWrapper.__init__", """
        self.heads = nn.ModuleList(CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)
                                   for _ in range(num_heads))
    """)]),
    "split_heads_unflatten": (MH, [body(MH, "split_heads", "return x.unflatten(-1, (num_heads, -1)).transpose(1, 2)")]),
    "split_heads_reshape_permute": (MH, [body(MH, "split_heads", """
        b, T, d = x.shape
        return x.reshape(b, T, num_heads, d // num_heads).permute(0, 2, 1, 3)
    """)]),
    "split_heads_chunk_stack": (MH, [body(MH, "split_heads", "return torch.stack(x.chunk(num_heads, dim=-1), dim=1)")]),
    "split_heads_rearrange_by_hand": (MH, [body(MH, "split_heads", """
        # einops' "b t (h d) -> b h t d", written with view
        return x.view(*x.shape[:-1], num_heads, -1).transpose(-3, -2)
    """)]),
    "merge_heads_reshape": (MH, [body(MH, "merge_heads", "return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)")]),
    "merge_heads_permute_flatten": (MH, [body(MH, "merge_heads", "return x.permute(0, 2, 1, 3).flatten(2)")]),
    "merge_heads_cat_unbind": (MH, [body(MH, "merge_heads", "return torch.cat(x.unbind(1), dim=-1)")]),
    "merge_heads_loop": (MH, [body(MH, "merge_heads", "return torch.cat([x[:, h] for h in range(x.shape[1])], dim=-1)")]),
    "mha_chapter": (MH, [  # the chapter's class, with ValueError where it asserts
        body(MH, "MultiHeadAttention.__init__", MHA_INIT),
        body(MH, "MultiHeadAttention.forward", """
            b, num_tokens, d_in = x.shape
            keys = self.W_key(x)
            queries = self.W_query(x)
            values = self.W_value(x)

            keys = keys.view(b, num_tokens, self.num_heads, self.head_dim)
            values = values.view(b, num_tokens, self.num_heads, self.head_dim)
            queries = queries.view(b, num_tokens, self.num_heads, self.head_dim)

            keys = keys.transpose(1, 2)
            queries = queries.transpose(1, 2)
            values = values.transpose(1, 2)

            attn_scores = queries @ keys.transpose(2, 3)
            mask_bool = self.mask.bool()[:num_tokens, :num_tokens]
            attn_scores.masked_fill_(mask_bool, -torch.inf)

            attn_weights = torch.softmax(attn_scores / keys.shape[-1]**0.5, dim=-1)
            attn_weights = self.dropout(attn_weights)

            context_vec = (attn_weights @ values).transpose(1, 2)
            context_vec = context_vec.contiguous().view(b, num_tokens, self.d_out)
            context_vec = self.out_proj(context_vec)
            return context_vec
        """)]),
    "mha_sdpa_is_causal": (MH, [body(MH, "MultiHeadAttention.forward", """
        q, k, v = (split_heads(layer(x), self.num_heads) for layer in (self.W_query, self.W_key, self.W_value))
        context = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout.p if self.training else 0.0)
        return self.out_proj(merge_heads(context))
    """)]),
    "mha_sdpa_attn_mask": (MH, [body(MH, "MultiHeadAttention.forward", """
        T = x.shape[1]
        q, k, v = (split_heads(layer(x), self.num_heads) for layer in (self.W_query, self.W_key, self.W_value))
        context = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=~self.mask[:T, :T], dropout_p=self.dropout.p if self.training else 0.0)
        return self.out_proj(merge_heads(context))
    """)]),
    "mha_per_head_loop": (MH, [body(MH, "MultiHeadAttention.forward", """
        T = x.shape[1]
        q, k, v = (split_heads(layer(x), self.num_heads) for layer in (self.W_query, self.W_key, self.W_value))
        heads = []
        for h in range(self.num_heads):
            scores = q[:, h] @ k[:, h].transpose(-2, -1)  # (b, T, T)
            scores = scores.masked_fill(self.mask[:T, :T], float("-inf"))
            weights = self.dropout(torch.softmax(scores / self.head_dim ** 0.5, dim=-1))
            heads.append(weights @ v[:, h])
        return self.out_proj(torch.stack(heads, dim=1).transpose(1, 2).reshape(x.shape[0], T, -1))
    """)]),
    "mha_wrapper_plus_projection": (MH, [body(MH, "MultiHeadAttention.forward", """
        # each head on its own slice of the projections, side by side, then out_proj
        T, hd = x.shape[1], self.head_dim
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        outputs = []
        for h in range(self.num_heads):
            part = slice(h * hd, (h + 1) * hd)
            scores = q[..., part] @ k[..., part].transpose(1, 2)
            scores = scores.masked_fill(self.mask[:T, :T], float("-inf"))
            outputs.append(self.dropout(torch.softmax(scores / hd ** 0.5, dim=-1)) @ v[..., part])
        return self.out_proj(torch.cat(outputs, dim=-1))
    """)]),
    "mha_einsum_unflatten": (MH, [body(MH, "MultiHeadAttention.forward", """
        T = x.shape[1]
        q, k, v = (layer(x).unflatten(-1, (self.num_heads, self.head_dim))
                   for layer in (self.W_query, self.W_key, self.W_value))  # (b, T, h, head_dim)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k).masked_fill(self.mask[:T, :T], float("-inf"))
        weights = self.dropout(torch.softmax(scores / self.head_dim ** 0.5, dim=-1))
        context = torch.einsum("bhqk,bkhd->bqhd", weights, v).flatten(2)  # (b, T, d_out)
        return self.out_proj(context)
    """)]),
    "mha_math_sqrt_functional": (MH, [body(MH, "MultiHeadAttention.forward", """
        import math
        F = torch.nn.functional
        T = x.shape[1]
        q = split_heads(F.linear(x, self.W_query.weight, self.W_query.bias), self.num_heads)
        k = split_heads(F.linear(x, self.W_key.weight, self.W_key.bias), self.num_heads)
        v = split_heads(F.linear(x, self.W_value.weight, self.W_value.bias), self.num_heads)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(self.mask[:T, :T], float("-inf"))
        weights = F.dropout(F.softmax(scores, dim=-1), self.dropout.p, training=self.training)
        return F.linear(merge_heads(weights @ v), self.out_proj.weight, self.out_proj.bias)
    """)]),
    "mha_float_mask_where": (MH, [
        body(MH, "MultiHeadAttention.__init__", MHA_INIT),
        ('scores = scores.masked_fill(self.mask[:num_tokens, :num_tokens], float("-inf"))',
         'scores = torch.where(self.mask[:num_tokens, :num_tokens] == 1, float("-inf"), scores)')]),
    "mha_own_value_error_subclass": (MH, [  # a ValueError of the student's own kind is one
        ("            raise ValueError(", "            class HeadsError(ValueError):\n                pass\n\n"
                                       "            raise HeadsError(")]),
    "causal_attention_gpt2_mask_buffer": (CA, [  # the mask kept as (1, 1, T, T), as GPT-2 keeps it
        ('        self.register_buffer("mask", causal_mask(context_length))',
         '        self.register_buffer("mask", causal_mask(context_length).view(1, 1, context_length, context_length))'),
        ("mask_scores(scores, self.mask[:num_tokens, :num_tokens])",
         "mask_scores(scores, self.mask[0, 0, :num_tokens, :num_tokens])")]),
    # a dropout of the student's own kind, a subclass of nn.Dropout (its p is nn.Dropout's)
    "causal_attention_dropout_subclass": (CA, [
        ("class CausalAttention(nn.Module):",
         "class AttentionDropout(nn.Dropout):\n    \"\"\"Dropout on attention weights.\"\"\"\n\n\n"
         "class CausalAttention(nn.Module):"),
        ("self.dropout = nn.Dropout(dropout)", "self.dropout = AttentionDropout(dropout)")]),
    # torch's own nn.MultiheadAttention keeps out_proj as this subclass of nn.Linear (bias included)
    "mha_out_proj_linear_subclass": (MH, [
        ("self.out_proj = nn.Linear(d_out, d_out)",
         "self.out_proj = nn.modules.linear.NonDynamicallyQuantizableLinear(d_out, d_out)")]),
    "mha_scale_multiply": (MH, [("torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)",
                                 "torch.softmax(scores * self.head_dim ** -0.5, dim=-1)")]),
    # project_qkv returns a NamedTuple of the student's own, and SelfAttention reads its fields: while
    # SelfAttention is graded, the stand-in for project_qkv answers in that type (read from the source)
    "project_qkv_namedtuple": (SA, [
        ("import torch.nn as nn\n", "import torch.nn as nn\nfrom typing import NamedTuple\n\n\n"
                                     "class QKV(NamedTuple):\n    queries: torch.Tensor\n    keys: torch.Tensor\n"
                                     "    values: torch.Tensor\n"),
        ("    return queries, keys, values", "    return QKV(queries, keys, values)"),
        ("        queries, keys, values = project_qkv(x, self.W_query, self.W_key, self.W_value)",
         "        qkv = project_qkv(x, self.W_query, self.W_key, self.W_value)\n"
         "        queries, keys, values = qkv.queries, qkv.keys, qkv.values")]),
    # the same NamedTuple built into a name first, and through _make: the stand-in's answer is of that type too
    "project_qkv_namedtuple_kept_in_a_name": (SA, [
        ("import torch.nn as nn\n", "import torch.nn as nn\nfrom typing import NamedTuple\n\n\n"
                                     "class QKV(NamedTuple):\n    queries: torch.Tensor\n    keys: torch.Tensor\n"
                                     "    values: torch.Tensor\n"),
        ("    return queries, keys, values", "    result = QKV(queries, keys, values)\n    return result"),
        ("        queries, keys, values = project_qkv(x, self.W_query, self.W_key, self.W_value)",
         "        qkv = project_qkv(x, self.W_query, self.W_key, self.W_value)\n"
         "        queries, keys, values = qkv.queries, qkv.keys, qkv.values")]),
    "project_qkv_namedtuple_make": (SA, [
        ("import torch.nn as nn\n", "import torch.nn as nn\nfrom typing import NamedTuple\n\n\n"
                                     "class QKV(NamedTuple):\n    queries: torch.Tensor\n    keys: torch.Tensor\n"
                                     "    values: torch.Tensor\n"),
        ("    return queries, keys, values", "    return QKV._make([queries, keys, values])"),
        ("        queries, keys, values = project_qkv(x, self.W_query, self.W_key, self.W_value)",
         "        qkv = project_qkv(x, self.W_query, self.W_key, self.W_value)\n"
         "        queries, keys, values = qkv.queries, qkv.keys, qkv.values")]),
    # the three layers kept in a ModuleList first, then as the attributes of the contract: each
    # parameter is registered twice, qkv.0.weight first; it is reported by the contract's name
    "causal_attention_layers_in_a_module_list_first": (CA, [body(CA, "CausalAttention.__init__", """
        self.qkv = nn.ModuleList([nn.Linear(d_in, d_out, bias=qkv_bias) for _ in range(3)])
        self.W_query, self.W_key, self.W_value = self.qkv
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mask", causal_mask(context_length))
    """)]),
    # mask_scores with a fill value of its own, passed -inf by the forward: JSON has no inf, so the
    # stand-in for mask_scores runs the student's own code for that call (it raised before)
    "causal_attention_mask_scores_with_a_fill_argument": (CA, [
        ("def mask_scores(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:",
         'def mask_scores(scores: torch.Tensor, mask: torch.Tensor, fill: float = float("-inf")) -> torch.Tensor:'),
        ('    return scores.masked_fill(mask, float("-inf"))', "    return scores.masked_fill(mask, fill)"),
        ("mask_scores(scores, self.mask[:num_tokens, :num_tokens])",
         'mask_scores(scores, self.mask[:num_tokens, :num_tokens], float("-inf"))')]),
    # a tuple subclass whose metaclass raises on unknown attributes: the stand-in reads none of them
    "project_qkv_tuple_of_a_strict_metaclass": (SA, [
        ("import torch.nn as nn\n", "import torch.nn as nn\n\n\nclass _Meta(type):\n"
                                     "    def __getattr__(cls, name):\n        raise RuntimeError(f'no {name} yet')\n\n\n"
                                     "class QKV(tuple, metaclass=_Meta):\n    pass\n"),
        ("    return queries, keys, values", "    return QKV((queries, keys, values))")]),
    # torch.compile: as a decorator, a decorator factory, and Module.compile(); the sandbox
    # cannot compile (no C++ compiler run, no cache), and compiled code computes what eager code does
    "causal_attention_compiled_forward": (CA, [
        ("    def forward(self, x: torch.Tensor) -> torch.Tensor:",
         "    @torch.compile(dynamic=True)\n    def forward(self, x: torch.Tensor) -> torch.Tensor:")]),
    "causal_mask_compiled": (CA, [("def causal_mask(", "@torch.compile\ndef causal_mask(")]),
    "mha_module_compile": (MH, [
        ("        self.out_proj = nn.Linear(d_out, d_out)  # mixes what the heads found",
         "        self.out_proj = nn.Linear(d_out, d_out)  # mixes what the heads found\n"
         "        self.compile()")]),
}

SLOW = {"attention_scores_chapter_double_loop"}  # Python loops over every hidden case: 1.6 s


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(CASES)])
def test_correct_alternative_earns_full_marks(zygote, tmp_path, name):
    module, edits = CASES[name]
    folder = make_submission(tmp_path / name, {module: edits})
    report = grade_folder(zygote, folder, (module,))
    lost = {r.item.key: r.reasons for r in report.results if r.score != r.max_score}
    assert lost == {}
    assert scores(report) == full_marks((module,))


def test_there_are_many_styles():
    assert len(CASES) >= 60


def test_own_helper_wider_than_the_stand_in(zygote, tmp_path):
    """The chapter's float mask (a triu of ones as the buffer) through the student's
    own mask_scores, which converts it with .bool(): correct, but the reference
    mask_scores that stage isolation stands in accepts bool masks only. The
    sandbox must fall back to the student's helper for that call, silently."""
    folder = make_submission(tmp_path / "sub", {CA: [
        ('return scores.masked_fill(mask, float("-inf"))', 'return scores.masked_fill(mask.bool(), float("-inf"))'),
        body(CA, "CausalAttention.__init__", CA_INIT_FLOAT_MASK)]})
    report = grade_folder(zygote, folder, (CA,))
    assert scores(report) == full_marks((CA,)), {r.item.key: r.reasons for r in report.results}
    assert not any("stand-in" in c.reason or "reference" in c.reason for r in report.results for c in r.checks)


# The student's own CausalAttention as the wrapper may use it: an attribute the
# chapter's class keeps, a helper method and a property. While the wrapper is
# graded, its heads are the grader's stand-ins, which make only the declared
# layers and buffer; the rest must come from the student's class.
CA_OWN_EXTRAS = [
    ("        self.dropout = nn.Dropout(dropout)\n",
     "        self.dropout = nn.Dropout(dropout)\n        self.d_out = d_out\n"),
    ("    def forward(self, x: torch.Tensor) -> torch.Tensor:\n        ### BEGIN SOLUTION\n        num_tokens",
     "    @property\n    def width(self) -> int:\n        return self.W_value.out_features\n\n"
     "    def attend(self, x):\n        return self.forward(x)\n\n"
     "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n        ### BEGIN SOLUTION\n        num_tokens"),
]


WRAPPER_INIT_READS_HEADS = """
        heads = []
        for _ in range(num_heads):  # each head checked as it is made: between the draws of a seeded run
            head = CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)
            assert head.d_out == d_out
            heads.append(head)
        self.heads = nn.ModuleList(heads)
"""


@pytest.mark.parametrize("forward", [
    """
        b, T, _ = x.shape
        d = self.heads[0].d_out  # each head's output size, kept by the head
        out = x.new_empty(b, T, len(self.heads) * d)
        for i, head in enumerate(self.heads):
            out[..., i * d:(i + 1) * d] = head(x)
        return out
    """,
    """
        assert all(head.width == head.d_out for head in self.heads)
        return torch.cat([head.attend(x) for head in self.heads], dim=-1)
    """,
], ids=["attribute", "method_and_property"])
def test_the_wrapper_may_use_what_its_own_heads_keep(zygote, tmp_path, forward):
    folder = make_submission(tmp_path / "sub", {
        CA: CA_OWN_EXTRAS, MH: [body(MH, "MultiHeadAttentionWrapper.__init__", WRAPPER_INIT_READS_HEADS),
                                body(MH, "MultiHeadAttentionWrapper.forward", forward)]})
    report = grade_folder(zygote, folder, (CA, MH))
    assert scores(report) == full_marks((CA, MH)), {r.item.key: r.reasons for r in report.results}


def test_what_neither_the_stand_in_nor_the_students_class_has_is_named_truly(zygote, tmp_path):
    """The wrapper reads head.d_out, which the student's own CausalAttention
    never keeps: the error is the student's class's own, and the wrapper alone
    loses points."""
    folder = make_submission(tmp_path / "sub", {MH: [body(MH, "MultiHeadAttentionWrapper.forward", """
        return torch.cat([head(x)[..., :head.d_out] for head in self.heads], dim=-1)
    """)]})
    report = grade_folder(zygote, folder, (CA, MH))
    lost = {r.item.key: r.reasons for r in report.results if r.score != r.max_score}
    assert list(lost) == [MH + ".MultiHeadAttentionWrapper"]
    assert "'CausalAttention' object has no attribute 'd_out'" in lost[MH + ".MultiHeadAttentionWrapper"][0]


# The student's CausalAttention written in ways that reach past the stand-in
# while the wrapper is graded: its constructor names its own class (old-style
# super), its forward reads the class by name or through type(self), keeps
# its weights through a helper or setattr, or the class takes one more
# parameter the wrapper passes by position (the student's class then runs).
CA_OWN_STYLES = {
    "old_style_super_and_d_out": (
        [("        super().__init__()\n", "        super(CausalAttention, self).__init__()\n        self.d_out = d_out\n")],
        """
        b, T, _ = x.shape
        out = x.new_zeros(b, T, self.heads[0].d_out * len(self.heads))
        for i, head in enumerate(self.heads):
            out[..., i * head.d_out:(i + 1) * head.d_out] = head(x)
        return out
        """),
    "static_method_by_class_name": (
        [("    def forward(self, x: torch.Tensor) -> torch.Tensor:",
          "    @staticmethod\n    def _weights(scores, d_k):\n        return torch.softmax(scores / d_k ** 0.5, dim=-1)\n\n"
          "    def forward(self, x: torch.Tensor, return_weights: bool = False):"),
         ("        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)\n        weights = self.dropout(weights)\n"
          "        return weights @ values  # (b, T, d_out)",
          "        weights = self.dropout(CausalAttention._weights(scores, keys.shape[-1]))\n"
          "        out = weights @ values\n        return (out, weights) if return_weights else out")],
        """
        return torch.cat([head(x, return_weights=True)[0] for head in self.heads], dim=-1)
        """),
    "class_constant_through_type_of_self": (
        [("class CausalAttention(nn.Module):\n", "class CausalAttention(nn.Module):\n    NEG_INF = float('-inf')\n\n"),
         ("    def forward(self, x: torch.Tensor) -> torch.Tensor:",
          "    def forward(self, x: torch.Tensor, return_weights: bool = False):"),
         ("        scores = mask_scores(scores, self.mask[:num_tokens, :num_tokens])",
          "        scores = scores.masked_fill(self.mask[:num_tokens, :num_tokens], type(self).NEG_INF)"),
         ("        return weights @ values  # (b, T, d_out)",
          "        out = weights @ values\n        return (out, weights) if return_weights else out")],
        """
        return torch.cat([head(x, return_weights=True)[0] for head in self.heads], dim=-1)
        """),
    "weights_kept_by_a_helper_method": (
        [("    def forward(self, x: torch.Tensor) -> torch.Tensor:",
          "    def _attend(self, q, k, v):\n        T = q.shape[-2]\n"
          "        scores = mask_scores(q @ k.transpose(-2, -1), self.mask[:T, :T])\n"
          "        weights = self.dropout(torch.softmax(scores / k.shape[-1] ** 0.5, dim=-1))\n"
          "        self.last_weights = weights.detach()  # kept for a plot\n        return weights @ v\n\n"
          "    def forward(self, x: torch.Tensor) -> torch.Tensor:"),
         ("        return weights @ values  # (b, T, d_out)",
          "        return self._attend(queries, keys, values)")],
        """
        out = torch.cat([head(x) for head in self.heads], dim=-1)
        self.last_weights = torch.stack([head.last_weights for head in self.heads], dim=1)  # (b, h, T, T)
        return out
        """),
    "weights_kept_through_setattr": (
        [("        weights = self.dropout(weights)\n",
          "        weights = self.dropout(weights)\n        setattr(self, 'attn_weights', weights.detach())\n")],
        """
        out = torch.cat([head(x) for head in self.heads], dim=-1)
        self.weights = [head.attn_weights for head in self.heads]
        return out
        """),
    "one_more_parameter_passed_by_position": (
        [("                 qkv_bias: bool = False):", "                 qkv_bias: bool = False, scale: bool = True):"),
         ("        self.dropout = nn.Dropout(dropout)\n",
          "        self.dropout = nn.Dropout(dropout)\n        self.scale = scale\n"),
         ("        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)",
          "        weights = torch.softmax(scores / keys.shape[-1] ** 0.5 if self.scale else scores, dim=-1)")],
        [("CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)",
          "CausalAttention(d_in, d_out, context_length, dropout, qkv_bias, True)")]),
    # a second review: the kept weights start as None in __init__ (the helper's value replaces it)
    "weights_none_at_first_then_kept_by_a_helper": (
        [("        self.dropout = nn.Dropout(dropout)\n",
          "        self.dropout = nn.Dropout(dropout)\n        self.last_weights = None  # for a plot\n"),
         ("    def forward(self, x: torch.Tensor) -> torch.Tensor:",
          "    def _keep(self, w):\n        self.last_weights = w.detach()\n\n"
          "    def forward(self, x: torch.Tensor) -> torch.Tensor:"),
         ("        weights = self.dropout(weights)\n", "        weights = self.dropout(weights)\n        self._keep(weights)\n")],
        """
        out = torch.cat([head(x) for head in self.heads], dim=-1)
        self.last_weights = torch.stack([head.last_weights for head in self.heads], dim=1)
        return out
        """),
    # and the context kept by a helper, read after each head ran: each input's own, never the last one's
    "context_kept_by_a_helper_read_after_the_forward": (
        [("    def forward(self, x: torch.Tensor) -> torch.Tensor:",
          "    def _attend(self, w, v):\n        self.context = w @ v\n        return self.context\n\n"
          "    def forward(self, x: torch.Tensor) -> torch.Tensor:"),
         ("        return weights @ values  # (b, T, d_out)", "        return self._attend(weights, values)")],
        """
        for head in self.heads:
            head(x)
        return torch.cat([head.context for head in self.heads], dim=-1)
        """),
    # the constructor's parameters named otherwise, the wrapper passing them by those names
    "parameters_of_other_names_by_keyword": (
        [("    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float,",
          "    def __init__(self, d_in: int, d_out: int, block_size: int, p_drop: float,"),
         ("        self.dropout = nn.Dropout(dropout)\n", "        self.dropout = nn.Dropout(p_drop)\n"),
         ('        self.register_buffer("mask", causal_mask(context_length))',
          '        self.register_buffer("mask", causal_mask(block_size))')],
        [("CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)",
          "CausalAttention(d_in, d_out, block_size=context_length, p_drop=dropout, qkv_bias=qkv_bias)")]),
}


@pytest.mark.parametrize("name", sorted(CA_OWN_STYLES))
def test_the_wrapper_may_use_its_heads_class_as_written(zygote, tmp_path, name):
    ca_edits, wrapper = CA_OWN_STYLES[name]
    mh_edits = [body(MH, "MultiHeadAttentionWrapper.forward", wrapper)] if isinstance(wrapper, str) else wrapper
    folder = make_submission(tmp_path / "sub", {CA: ca_edits, MH: mh_edits})
    report = grade_folder(zygote, folder, (CA, MH))
    assert scores(report) == full_marks((CA, MH)), {r.item.key: r.reasons for r in report.results}


UNSCALED = ("        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)",
            "        weights = torch.softmax(scores, dim=-1)  # not scaled: wrong")
WITH_SCALE_OPTION = [
    ("                 qkv_bias: bool = False):", "                 qkv_bias: bool = False, scale: bool = True):"),
    ("        self.dropout = nn.Dropout(dropout)\n", "        self.dropout = nn.Dropout(dropout)\n        self.scale = scale\n"),
    ("        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)",
     "        weights = torch.softmax(scores / keys.shape[-1] ** 0.5 if self.scale else scores, dim=-1)")]


@pytest.mark.parametrize("ca_edits, call, lost", [
    # a wrong head class built through a classmethod of its own: the wrapper's heads still stand in
    ([UNSCALED, ("    def forward(self, x: torch.Tensor) -> torch.Tensor:",
                 "    @classmethod\n    def make(cls, *args):\n        return cls(*args)\n\n"
                 "    def forward(self, x: torch.Tensor) -> torch.Tensor:")],
     "CausalAttention.make(d_in, d_out, context_length, dropout, qkv_bias)", {f"{CA}.CausalAttention"}),
    # a right head class whose option the wrapper turns off: the wrapper is wrong, by keyword as by position
    (WITH_SCALE_OPTION, "CausalAttention(d_in, d_out, context_length, dropout, qkv_bias, scale=False)",
     {f"{MH}.MultiHeadAttentionWrapper"}),
    (WITH_SCALE_OPTION, "CausalAttention(d_in, d_out, context_length, dropout, qkv_bias, False)",
     {f"{MH}.MultiHeadAttentionWrapper"}),
], ids=["wrong_heads_through_a_classmethod", "option_off_by_keyword", "option_off_by_position"])
def test_a_mistake_costs_the_item_that_makes_it(zygote, tmp_path, ca_edits, call, lost):
    """From a second review: arguments the chapter's constructor does not take
    mean what the student's class makes of them, so it runs (a keyword was
    dropped, and a wrapper that turned scaling off kept its points); a
    classmethod of the student's builds stand-ins (it built their own class)."""
    folder = make_submission(tmp_path / "sub", {CA: ca_edits, MH: [
        ("CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)", call)]})
    report = grade_folder(zygote, folder, (CA, MH))
    assert {r.item.key for r in report.results if r.score < r.max_score} == lost, \
        {r.item.key: r.reasons for r in report.results if r.score < r.max_score}


# A CausalAttention whose forward does more than the contract asks: it can
# return its weights too, and it keeps the last ones on the module (for a
# plot); the wrapper uses either. While the wrapper is graded, its heads are
# the grader's stand-ins: the student's own forward runs where it is called
# with more than x, and, for what it keeps, next to the reference output.
CA_FORWARD_DOES_MORE = [
    ("    def forward(self, x: torch.Tensor) -> torch.Tensor:",
     "    def forward(self, x: torch.Tensor, return_weights: bool = False):"),
    ("        weights = self.dropout(weights)\n        return weights @ values  # (b, T, d_out)",
     "        weights = self.dropout(weights)\n        self.last_weights = weights.detach()  # for a plot\n"
     "        out = weights @ values  # (b, T, d_out)\n        return (out, weights) if return_weights else out"),
]


@pytest.mark.parametrize("forward", [
    """
        outputs, weights = zip(*(head(x, return_weights=True) for head in self.heads))
        self.last_weights = torch.stack(weights, dim=1)  # (b, num_heads, T, T)
        return torch.cat(outputs, dim=-1)
    """,
    """
        out = torch.cat([head(x) for head in self.heads], dim=-1)
        self.last_weights = torch.stack([head.last_weights for head in self.heads], dim=1)
        return out
    """,
    """
        return torch.cat([head(inputs=x) for head in self.heads], dim=-1)  # by the name of the head's own
    """,
], ids=["return_weights", "reads_last_weights", "input_by_keyword"])
def test_the_wrapper_may_use_what_its_heads_forward_does_more(zygote, tmp_path, forward):
    edits = CA_FORWARD_DOES_MORE if "inputs=" not in forward else [
        ("    def forward(self, x: torch.Tensor) -> torch.Tensor:\n        ### BEGIN SOLUTION\n",
         "    def forward(self, inputs: torch.Tensor) -> torch.Tensor:\n        ### BEGIN SOLUTION\n        x = inputs\n")]
    folder = make_submission(tmp_path / "sub", {
        CA: edits, MH: [body(MH, "MultiHeadAttentionWrapper.forward", forward)]})
    report = grade_folder(zygote, folder, (CA, MH))
    assert scores(report) == full_marks((CA, MH)), {r.item.key: r.reasons for r in report.results}


# The head's forward keeps its weights and reads what its own constructor made
# (self.d_out); the wrapper reads either, after calls with and without more
# than the input. What the forward keeps is made from the last plain call,
# once, and what it reads comes from the student's own class.
CA_KEEPS_AND_READS = CA_FORWARD_DOES_MORE + [
    ("        self.dropout = nn.Dropout(dropout)\n",
     "        self.dropout = nn.Dropout(dropout)\n        self.d_out = d_out\n        self.last_weights = None\n"),
    ("        values = self.W_value(x)\n", "        values = self.W_value(x)\n        assert values.shape[-1] == self.d_out\n"),
    ("self.last_weights = weights.detach()  # for a plot", "self.last_weights = weights  # gradients flow through it"),
]


@pytest.mark.parametrize("forward", [
    """
        out = torch.cat([head(x) for head in self.heads], dim=-1)
        self.last_weights = torch.stack([head.last_weights for head in self.heads], dim=1)
        return out
    """,
    """
        out = torch.cat([head(x) for head in self.heads], dim=-1)
        assert all(head.d_out * len(self.heads) == out.shape[-1] for head in self.heads)
        return out
    """,
    """
        outs = []
        for head in self.heads:
            head(x * 2, return_weights=True)  # kept weights of another input, then the right ones
            outs.append(head(x))
            outs[-1] = head.last_weights @ head.W_value(x)
        return torch.cat(outs, dim=-1)
    """,
], ids=["keeps_what_reads_its_own", "reads_its_own_after_forward", "kept_after_a_call_with_more"])
def test_what_a_head_keeps_is_made_once_from_the_last_call(zygote, tmp_path, forward):
    folder = make_submission(tmp_path / "sub", {
        CA: CA_KEEPS_AND_READS, MH: [body(MH, "MultiHeadAttentionWrapper.forward", forward)]})
    report = grade_folder(zygote, folder, (CA, MH))
    assert scores(report) == full_marks((CA, MH)), {r.item.key: r.reasons for r in report.results}
