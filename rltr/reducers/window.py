"""StreamingLLM: keep the first few tokens (attention sinks) plus the most recent context tokens.

``window`` keeps the first 4 live tokens; ``window:N`` the first N (``window:0``: a plain recent window).
Protected and tail tokens always stay; the sinks come next; the rest of ``n_keep`` goes to the most
recent context tokens.
"""

from __future__ import annotations

import torch

from rltr.core.decisions import DecisionContext
from rltr.reducers.base import ScoreReducer


class Window(ScoreReducer):
    name = "window"
    causal_only = True  # a recent window means nothing where every token sees every other

    def __init__(self, n_sink: int = 4) -> None:
        if isinstance(n_sink, bool) or not isinstance(n_sink, int) or n_sink < 0:
            raise ValueError(f"window n_sink must be an int >= 0 (attention-sink tokens kept), got {n_sink!r}")
        self.n_sink = n_sink

    @classmethod
    def from_spec(cls, option: str = "") -> Window:
        if not option:
            return cls()
        if not (option.isascii() and option.isdigit()):
            raise ValueError(f"window option {option!r} must be a number of sink tokens >= 0, e.g. window:4")
        return cls(n_sink=int(option))

    def score(self, ctx: DecisionContext) -> torch.Tensor:
        state = ctx.state
        rank = state.alive.long().cumsum(1) - 1  # (B, N): index among live tokens, in position order
        sinks = state.alive & (rank < self.n_sink)
        big = float(state.positions.max().item()) + 1.0  # above every position score
        scores = state.positions.float()  # (B, N): later = more recent = higher
        return torch.where(sinks, scores + big, scores)

    def __repr__(self) -> str:
        return f"Window({self.n_sink})"
