"""Oracle: keeps the tokens the task says the answer depends on (training-time labels, never a real method).

With no budget it keeps exactly protected + tail + relevant; with a budget, the relevant tokens rank
first (best attended first when the budget cannot hold them all) and the rest of the budget is filled
by :meth:`DecisionContext.attention_from_query`, which it computes (and is charged for) only then.
"""

import torch

from rltr.core.decisions import Decision, DecisionContext
from rltr.core.ops import Action
from rltr.reducers.base import ScoreReducer


class Oracle(ScoreReducer):
    name = "oracle"
    reads_labels = True
    reference = True
    chooses_own_budget = True

    def score(self, ctx: DecisionContext) -> torch.Tensor:
        # attention_from_query is a mean of probabilities, in [0, 1]: +2 ranks every relevant token first.
        return ctx.attention_from_query().float() + 2.0 * self._relevant(ctx).float()  # (B, N)

    def decide(self, ctx: DecisionContext) -> Decision:
        if ctx.budget is not None:
            return super().decide(ctx)
        keep = ctx.state.protected | ~ctx.context | self._relevant(ctx)  # protected, tail, dead, relevant
        return Decision(torch.where(keep, Action.KEEP, Action.DROP).long())

    @staticmethod
    def _relevant(ctx: DecisionContext) -> torch.Tensor:
        if ctx.relevant is None:
            raise ValueError("the oracle needs the task's relevant tokens (ctx.relevant is None)")
        return ctx.relevant & ctx.state.alive
