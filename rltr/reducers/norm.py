"""Knorm: score tokens by a norm, no attention map needed.

``norm`` (default, ``norm:key``): keep the tokens whose layer key has the LOWEST L2 norm (low key norm
goes with high attention received; Devoto et al. 2024, "A simple and effective L2 norm-based strategy
for KV cache compression"). ``norm:hidden``: keep the tokens with the HIGHEST hidden-state norm.
"""

from __future__ import annotations

import torch

from rltr.core.decisions import DecisionContext
from rltr.reducers.base import ScoreReducer

OPTIONS = ("key", "hidden")


class Norm(ScoreReducer):
    name = "norm"

    def __init__(self, source: str = "key") -> None:
        if source not in OPTIONS:
            raise ValueError(f"norm option {source!r} is not one of {', '.join(OPTIONS)}")
        self.source = source

    @classmethod
    def from_spec(cls, option: str = "") -> Norm:
        return cls(option or "key")

    def score(self, ctx: DecisionContext) -> torch.Tensor:
        if self.source == "key":
            return -ctx.keys().float().transpose(1, 2).flatten(2).norm(dim=-1)  # (B, N): low norm ranks high
        return ctx.state.hidden.float().norm(dim=-1)  # (B, N)

    def __repr__(self) -> str:
        return f"Norm({self.source})"
