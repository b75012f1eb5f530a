"""Identity: keep every token. The full model through the same code path as every reducer."""

import torch

from rltr.core.decisions import Decision, DecisionContext
from rltr.core.ops import Action
from rltr.reducers.base import Reducer


class Identity(Reducer):
    name = "identity"
    full_model = True
    reference = True
    chooses_own_budget = True

    def decide(self, ctx: DecisionContext) -> Decision:
        return Decision(torch.full_like(ctx.state.positions, Action.KEEP))
