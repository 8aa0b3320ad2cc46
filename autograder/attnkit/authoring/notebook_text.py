"""The teaching text of the notebooks: an introduction per stage, a few
paragraphs per graded item, the setup each stage works on, a "try it" cell per
item and the pictures. Code comes from ``solutions/``; only words live here."""

from __future__ import annotations

TOKENS = ["Your", "journey", "starts", "with", "one", "step"]

HOW_TO = """\
**How this notebook works.** Each graded item has three cells: a *solution cell*
where you write the body (replace the `raise NotImplementedError(...)` line), a *try it* cell
that runs your code on the example sentence, and a locked *test cell* that grades
it. A test cell does not trust this notebook's memory: it reads the **saved**
notebook file, builds `{module}.py` from your solution cells, and runs the checks
in a separate process. So **save (Ctrl-S) before you run a test cell**. In your
copy a test cell runs the public checks (the document's numbers and the stage's
properties) and scales them to the cell's points, so a correct notebook shows
full marks here and passes nbgrader's *Validate*; the instructor's grading runs
every check, hidden randomized cases included, each with its own points. The
first comment of a test cell says which checks are graded where.

Only definitions in a solution cell count (`import`, `def`, `class`,
assignments), with what they use from cells of your own (a helper you wrote in
a new cell): a trial call left at the top of a cell is ignored by the grader,
and so is a cell of your own that redefines a graded function.
Printing is fine anywhere. An item that runs for more than a few seconds (an
infinite loop?) scores 0, and only that item does."""

# The first comment of every test cell: what is graded where.
TEST_COMMENT = (
    "{points} points. Here, in your copy: the public checks ({public}), scaled to {points} points. "
    "At grading: every check with its own points, {rest} included ({need} the instructor's reference). "
    "Graded in a separate process, on your saved notebook: save it (Ctrl-S) first.")

INTRO = {
    "simplified_attention": """\
# Stage 1: simplified self-attention

A sentence reaches a language model as one vector per token. On its own, the
vector of "journey" knows nothing about "Your" or "starts". Self-attention
gives every token a new vector, its *context vector*, that mixes in the tokens
it is most related to.

In this first stage nothing is learned. Relatedness is the plain dot product
of two token vectors, the scores of a row are turned into weights that sum to
one, and the context vector of a token is the weighted sum of all token
vectors. Six small functions build it up step by step.""",
    "self_attention": """\
# Stage 2: self-attention with trainable weights

The dot product of raw embeddings is a fixed notion of similarity. A model
needs to *learn* what to look for. Scaled dot-product attention gives every
token three learned views of itself: a **query** (what it is looking for), a
**key** (what it can be found by) and a **value** (what it hands over once
found). Scores compare queries with keys, the softmax turns them into weights,
and the weights mix values.

The scores are divided by the square root of the key size before the softmax.
Without it, larger keys give larger scores, and the softmax saturates: one
weight near 1, the others near 0, and gradients that vanish.""",
    "causal_attention": """\
# Stage 3: causal attention

A GPT-style model learns by predicting each next token from the ones before
it. If token 3 could attend to token 4 while learning to predict token 4, the
task would be trivial and useless. Causal attention forbids looking ahead:
every weight above the diagonal of the weight matrix must be exactly zero.

The trick is to set those *scores* to minus infinity before the softmax:
`exp(-inf) = 0`, and the remaining weights of each row still sum to one.
Dropout on the weights is then added, a regulariser that is only active while
training.""",
    "multihead_attention": """\
# Stage 4: multi-head attention

One attention head learns one way of relating tokens. Several heads, each
with its own projections, can learn several at once: one may track the
previous word, another the subject of the sentence. Their outputs are placed
side by side.

You build it twice: first as a wrapper around several `CausalAttention`
modules, then as one fused module that projects once, splits the result into
heads, attends in every head at the same time with batched matrix products,
merges the heads and mixes them with an output projection.

This stage builds on `CausalAttention`. The cell below imports it from
`causal_attention.py` next to this notebook; the grader stands in the kit's
reference version for it, so a mistake there never costs you points here.""",
}

# Markdown per graded item: what it computes and why, in our words.
ITEM = {
    "simplified_attention.query_scores": """\
Take one token as the *query*, here "journey". Its score with each token is
the dot product of the two vectors: large when they point the same way, near
zero when they are unrelated. One query against six tokens gives six scores.""",
    "simplified_attention.attention_scores": """\
Every token is a query in turn. Stacking the six rows of scores gives a 6 x 6
matrix whose row *i* holds the scores of token *i*: the inputs times their own
transpose.""",
    "simplified_attention.normalize_by_sum": """\
Scores are not weights yet. The simplest way to make a row sum to one is to
divide it by its sum. It works for these positive scores, but a negative score
would give a negative weight, which is why the next item replaces it.""",
    "simplified_attention.softmax": """\
The softmax exponentiates each score and then divides by the row's sum. Every
weight is positive, and large scores get a larger share than with plain
division. Written naively, `exp(1000)` overflows to infinity; subtracting the
row's maximum first changes nothing mathematically and keeps it finite. A
check feeds your softmax scores of +-1000.""",
    "simplified_attention.context_vectors": """\
The context vector of a token is the weighted sum of all token vectors, using
that token's row of weights. For all tokens at once it is one matrix product.""",
    "simplified_attention.simplified_self_attention": """\
Put the pieces together: scores, softmax along each row, context vectors. The
result has one context vector per token, the same size as the inputs.""",
    "self_attention.project_qkv": """\
Three weight matrices project each 3-dimensional token into a 2-dimensional
query, key and value. In the document they are random (seed 123) and would be
learned during training; the setup cell above creates them.""",
    "self_attention.attention_scores": """\
Scores now compare each *query* with each *key* (not token with token), so the
matrix is no longer symmetric: what token 2 looks for differs from what it
offers.""",
    "self_attention.attention_weights": """\
Scale the scores by `1 / sqrt(d_k)` and apply the softmax along each row. From
this stage on you may use `torch.softmax`.""",
    "self_attention.context_vectors": """\
As in stage 1, a matrix product mixes rows, but now it mixes the *values*, not
the raw inputs.""",
    "self_attention.SelfAttention": """\
A module holds the three weight matrices as parameters, so that an optimizer
can train them, and its `forward` chains the four functions above. Creating
the parameters in the documented order makes `torch.manual_seed(123)` give the
document's numbers.""",
    "self_attention.SelfAttentionV2": """\
`nn.Linear` layers do the same projection with a better initialisation and an
optional bias. Note that a layer stores its weight transposed, as
`(d_out, d_in)`.""",
    "causal_attention.causal_mask": """\
The mask marks what a token must not see: True strictly above the diagonal.
Row *i* may look at columns 0 to *i*, itself included.""",
    "causal_attention.mask_scores": """\
Set every masked score to `-inf`, without changing the input tensor. After the
softmax those positions get a weight of exactly 0.""",
    "causal_attention.renormalize_masked": """\
The document first shows another way: apply the softmax to all scores, zero
the masked weights, and divide each row by its new sum. It gives the same
weights as masking the scores, which the try-it cell lets you verify.""",
    "causal_attention.CausalAttention": """\
The module of this stage works on a batch `(b, T, d_in)`, registers the mask as
a buffer (so it moves with the module and is saved with it), masks the scores,
scales, applies the softmax and dropout, and mixes the values. Any sequence up
to `context_length` tokens must work: slice the mask to the batch's length.""",
    "multihead_attention.MultiHeadAttentionWrapper": """\
The straightforward version: a list of independent `CausalAttention` heads,
each run on the same input, outputs concatenated along the last axis.""",
    "multihead_attention.split_heads": """\
The fused version projects once to `d_out` features and then cuts them into
`num_heads` groups of `head_dim`. Reshape, then move the head axis in front of
the tokens so that every head becomes a batch of its own.""",
    "multihead_attention.merge_heads": """\
The inverse: move the heads back behind the tokens and lay their features side
by side, head 0 first.""",
    "multihead_attention.MultiHeadAttention": """\
The fused module: project, split into heads, causal scaled attention in all
heads at once, dropout, merge, and the output projection that lets heads
exchange what they found. A `d_out` that `num_heads` does not divide must raise
a `ValueError` that says so.""",
}

# The document's six tokens, as every stage's setup cell starts with them.
INPUTS = '''\
inputs = torch.tensor([
    [0.43, 0.15, 0.89],  # Your
    [0.55, 0.87, 0.66],  # journey
    [0.57, 0.85, 0.64],  # starts
    [0.22, 0.58, 0.33],  # with
    [0.77, 0.25, 0.10],  # one
    [0.05, 0.80, 0.55],  # step
])
tokens = {tokens!r}'''

# The setup cell of each stage, after the kit's imports: the example input.
SETUP = {
    "simplified_attention": '''\
# The document's example: "Your journey starts with one step", one 3-d vector per token.
''' + INPUTS,
    "self_attention": INPUTS + '''
# The document's random projections (d_in = 3, d_out = 2), in this order.
torch.manual_seed(123)
W_query = torch.rand(3, 2)
W_key = torch.rand(3, 2)
W_value = torch.rand(3, 2)''',
    "causal_attention": INPUTS + '''
batch = torch.stack((inputs, inputs))  # two copies: a batch of shape (2, 6, 3)
# The unscaled scores of the document's SelfAttentionV2 (seed 789), to be masked.
torch.manual_seed(789)
W_query, W_key = nn.Linear(3, 2, bias=False), nn.Linear(3, 2, bias=False)
with torch.no_grad():
    scores = W_query(inputs) @ W_key(inputs).T''',
    "multihead_attention": INPUTS + '''
batch = torch.stack((inputs, inputs))  # (2, 6, 3)''',
}

TRY = {
    "simplified_attention.query_scores": "query_scores(inputs, inputs[1])  # \"journey\" as the query",
    "simplified_attention.attention_scores": "attention_scores(inputs)",
    "simplified_attention.normalize_by_sum": "normalize_by_sum(attention_scores(inputs))[1]  # row of \"journey\"",
    "simplified_attention.softmax": (
        "print(softmax(attention_scores(inputs))[1])\n"
        "softmax(torch.tensor([1000.0, 999.0, -1000.0]))  # finite, no NaN"),
    "simplified_attention.context_vectors": "context_vectors(softmax(attention_scores(inputs)), inputs)",
    "simplified_attention.simplified_self_attention": "simplified_self_attention(inputs)",
    "self_attention.project_qkv": "queries, keys, values = project_qkv(inputs, W_query, W_key, W_value)\nkeys",
    "self_attention.attention_scores": "attention_scores(queries, keys)",
    "self_attention.attention_weights": "attention_weights(attention_scores(queries, keys), keys.shape[-1])",
    "self_attention.context_vectors": (
        "context_vectors(attention_weights(attention_scores(queries, keys), keys.shape[-1]), values)"),
    "self_attention.SelfAttention": "torch.manual_seed(123)\nsa_v1 = SelfAttention(3, 2)\nsa_v1(inputs)",
    "self_attention.SelfAttentionV2": "torch.manual_seed(789)\nsa_v2 = SelfAttentionV2(3, 2)\nsa_v2(inputs)",
    "causal_attention.causal_mask": "causal_mask(6)",
    "causal_attention.mask_scores": "masked = mask_scores(scores, causal_mask(6))\nmasked",
    "causal_attention.renormalize_masked": (
        "weights = torch.softmax(scores / 2 ** 0.5, dim=-1)\n"
        "print(renormalize_masked(weights, causal_mask(6)))\n"
        "torch.softmax(mask_scores(scores, causal_mask(6)) / 2 ** 0.5, dim=-1)  # the same weights"),
    "causal_attention.CausalAttention": (
        "torch.manual_seed(123)\nca = CausalAttention(3, 2, context_length=6, dropout=0.0)\nca(batch)"),
    "multihead_attention.MultiHeadAttentionWrapper": (
        "torch.manual_seed(123)\nmha_wrapper = MultiHeadAttentionWrapper(3, 2, 6, 0.0, num_heads=2)\n"
        "mha_wrapper(batch)  # (2, 6, 4): two heads of 2 features"),
    "multihead_attention.split_heads": "x = torch.arange(24.0).view(1, 3, 8)\nsplit_heads(x, 2)",
    "multihead_attention.merge_heads": "merge_heads(split_heads(x, 2))  # x again",
    "multihead_attention.MultiHeadAttention": (
        "torch.manual_seed(123)\nmha = MultiHeadAttention(3, 2, 6, 0.0, num_heads=2)\nmha(batch)"),
}

# Pictures: (markdown, code) cells at the end of each stage.
PICTURES = {
    "simplified_attention": [(
        """\
## The attention weights

Each row is one token acting as the query; its cells show how much of each
token goes into its context vector. The weights of a row sum to one. Similar
vectors ("journey", "starts") attend strongly to each other.""",
        """\
from attnkit.kernel.plots import heatmap

try:
    heatmap(softmax(attention_scores(inputs)), tokens, "Simplified attention weights")
except Exception as exc:  # the picture waits until the functions it uses are written
    print(f"No picture yet: {type(exc).__name__}: {exc}")""")],
    "self_attention": [(
        """\
## The attention weights of the trained-style module

With learned projections the weights no longer simply follow the raw
similarity of the embeddings, and the matrix is no longer symmetric.""",
        """\
from attnkit.kernel.plots import heatmap

try:
    with torch.no_grad():
        q, k = sa_v2.W_query(inputs), sa_v2.W_key(inputs)
        heatmap(attention_weights(attention_scores(q, k), k.shape[-1]), tokens,
                "SelfAttentionV2 weights (seed 789)")
except Exception as exc:
    print(f"No picture yet: {type(exc).__name__}: {exc}")""")],
    "causal_attention": [(
        """\
## The causal mask and the masked weights

Left, the mask: the dark cells are the future, hidden from each token. Right,
the weights after masking the scores: everything above the diagonal is 0, and
the first token can only attend to itself.""",
        """\
from attnkit.kernel.plots import heatmap

try:
    heatmap(causal_mask(6).float(), tokens, "Causal mask (1 = hidden)")
    heatmap(torch.softmax(mask_scores(scores, causal_mask(6)) / 2 ** 0.5, dim=-1), tokens,
            "Causal attention weights")
except Exception as exc:
    print(f"No picture yet: {type(exc).__name__}: {exc}")""")],
    "multihead_attention": [(
        """\
## What each head attends to

The fused module's two heads on the example sentence: same mask, different
projections, so different weights.""",
        """\
from attnkit.kernel.plots import heatmap

try:
    with torch.no_grad():
        q = split_heads(mha.W_query(batch), mha.num_heads)
        k = split_heads(mha.W_key(batch), mha.num_heads)
        scores = (q @ k.transpose(2, 3)).masked_fill(causal_mask(6), float("-inf"))
        weights = torch.softmax(scores / k.shape[-1] ** 0.5, dim=-1)
    for h in range(mha.num_heads):
        heatmap(weights[0, h], tokens, f"Head {h} weights")
except Exception as exc:
    print(f"No picture yet: {type(exc).__name__}: {exc}")""")],
}
