"""What a check asked of the student's code, kept so that a failure can be
explained by recomputing known mistakes on the very same inputs."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


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
