"""StreamingLLM: keep the first few tokens (attention sinks) plus the most recent context tokens.

``window`` keeps the first 4 live tokens; ``window:N`` the first N (``window:0``: a plain recent window).
Protected and tail tokens always stay; the sinks come next; the rest of ``n_keep`` goes to the most
recent context tokens.
"""

import torch

from rltr.core.decisions import DecisionContext
from rltr.reducers.base import ScoreReducer


class Window(ScoreReducer):
    name = "window"
    causal_only = True  # a recent window means nothing where every token sees every other

    def __init__(self, arg: str = "4") -> None:
        if not (arg.isascii() and arg.isdigit()):
            raise ValueError(f"window option {arg!r} must be a number of sink tokens >= 0, e.g. window:4")
        self.n_sink = int(arg)

    def score(self, ctx: DecisionContext) -> torch.Tensor:
        state = ctx.state
        rank = state.alive.long().cumsum(1) - 1  # (B, N): index among live tokens, in position order
        sinks = state.alive & (rank < self.n_sink)
        big = float(state.positions.max().item()) + 1.0  # above every position score
        scores = state.positions.float()  # (B, N): later = more recent = higher
        return torch.where(sinks, scores + big, scores)

    def __repr__(self) -> str:
        return f"Window({self.n_sink})"
