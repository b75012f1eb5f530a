"""Random: keep a uniformly random subset of the unprotected tokens that meets the budget (seeded)."""

import torch

from rltr.ops import keep_top_k
from rltr.reducers.base import Decision, DecisionContext, Reducer


class RandomDrop(Reducer):
    name = "random"

    def decide(self, ctx: DecisionContext) -> Decision:
        state = ctx.state
        scores = torch.rand(state.alive.shape, generator=ctx.generator, device="cpu").to(state.alive.device)
        return Decision(keep_top_k(scores, state, ctx.n_keep))
