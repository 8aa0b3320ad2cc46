"""What a check asked of the student's code, kept so that a failure can be
explained by recomputing known mistakes on the very same inputs."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

# Constructor parameters of the graded classes, to read a build's arguments by
# name. A test keeps these in step with the reference signatures.
# They live here, not in variants.py, so that a handout's checker (whose
# variants are a stub) can still name a module's arguments.
INIT_PARAMS = {
    "self_attention.SelfAttention": ("d_in", "d_out"),
    "self_attention.SelfAttentionV2": ("d_in", "d_out", "qkv_bias"),
    "causal_attention.CausalAttention": ("d_in", "d_out", "context_length", "dropout", "qkv_bias"),
    "multihead_attention.MultiHeadAttentionWrapper": ("d_in", "d_out", "context_length", "dropout",
                                                       "num_heads", "qkv_bias"),
    "multihead_attention.MultiHeadAttention": ("d_in", "d_out", "context_length", "dropout",
                                                "num_heads", "qkv_bias"),
}


@dataclass(frozen=True)
class Call:
    """A call of a graded function (``args``, ``kwargs``), or a build of a graded
    class (its constructor's ``args``/``kwargs``, the parameters ``state`` it
    was given and the input ``x`` of the output being judged)."""

    item: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    state: dict | None = None
    x: torch.Tensor | None = None

    def arg(self, position: int, name: str, default=None):
        if len(self.args) > position:
            return self.args[position]
        return self.kwargs.get(name, default)


def init_arguments(item: str, args, kwargs) -> dict:
    names = INIT_PARAMS[item]
    bound = dict(zip(names, args))
    bound.update({k: v for k, v in kwargs.items() if k in names})
    return bound
