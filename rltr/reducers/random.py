"""Random: keep a uniformly random subset of the unprotected tokens that meets the budget (seeded)."""

import torch

from rltr.core.decisions import DecisionContext
from rltr.reducers.base import ScoreReducer


class RandomDrop(ScoreReducer):
    name = "random"
    thresholdable = False
    no_threshold_reason = "its score is uniform noise, a threshold would only set a random keep fraction (use a budget)"

    def score(self, ctx: DecisionContext) -> torch.Tensor:
        return torch.rand(ctx.state.alive.shape, generator=ctx.generator, device="cpu").to(ctx.state.alive.device)
