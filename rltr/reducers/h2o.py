"""H2O (heavy hitters): a recent window of context tokens plus the tokens with the most accumulated attention.

The free budget (``n_keep`` minus the protected and tail tokens) is split equally, as H2O does:
``free // 2`` recent slots (the last unprotected context tokens) and the rest for heavy hitters, the top
tokens by :meth:`DecisionContext.attention_received` (attention received from every visible row, mean
over heads and rows: the whole map, charged by the context) among those not already in the window.
"""

import torch

from rltr.core.decisions import DecisionContext
from rltr.reducers.base import ScoreReducer


class HeavyHitters(ScoreReducer):
    name = "h2o"
    thresholdable = False  # the recent window's size is half the budget
    causal_only = True  # a recent window means nothing where every token sees every other

    def score(self, ctx: DecisionContext) -> torch.Tensor:
        state = ctx.state
        always = state.alive & (state.protected | ~ctx.context)  # (B, N) protected + tail
        free = ctx.context & ~state.protected  # (B, N) tokens competing for the budget
        n_recent = ((ctx.n_keep - always.sum(1)).clamp_min(0) // 2)[:, None]  # (B, 1)
        from_end = free.flip(1).long().cumsum(1).flip(1)  # (B, N): free tokens at or after each slot
        recent = free & (from_end <= n_recent)
        scores = ctx.attention_received().float()  # (B, N), in [0, 1]
        return torch.where(recent, scores + 2.0, scores)
