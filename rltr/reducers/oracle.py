"""Oracle: keep the tokens the answer depends on (the task's ``relevant``), then fill by attention.

The limit every method is measured against: it reads ``ctx.relevant``, which no real method may see.
"""

import torch

from rltr.ops import Action, keep_top_k
from rltr.reducers.base import Decision, DecisionContext, Reducer


class Oracle(Reducer):
    """Keeps protected and tail tokens, then the relevant ones (best attended first when the budget
    cannot hold them all), then fills the remaining budget by :meth:`DecisionContext.attention_from_query`.
    With no budget (``ctx.budget is None``) it keeps exactly protected + tail + relevant.

    It reads the attention map only to fill the budget, but is charged for it like every attention method.
    """

    name = "oracle"
    chooses_own_budget = True
    needs_attention = True

    def decide(self, ctx: DecisionContext) -> Decision:
        if ctx.relevant is None:
            raise ValueError("the oracle needs the task's relevant tokens (ctx.relevant is None)")
        state = ctx.state
        keep_always = state.protected | ~ctx.context  # (B, N): protected, tail, dead
        relevant = ctx.relevant & state.alive  # (B, N) bool
        if ctx.budget is None:
            keep = keep_always | relevant
            return Decision(torch.where(keep, Action.KEEP, Action.DROP).long())
        # attention_from_query is a mean of probabilities, in [0, 1]: +2 ranks every relevant token first.
        scores = ctx.attention_from_query().float() + 2.0 * relevant.float()  # (B, N)
        scores = scores.masked_fill(~ctx.context & state.alive, float("inf"))  # the tail always stays
        return Decision(keep_top_k(scores, state, ctx.n_keep))
