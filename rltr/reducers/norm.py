"""Knorm: score tokens by a norm, no attention map needed.

``norm`` (default, ``norm:key``): keep the tokens whose layer key has the LOWEST L2 norm (low key norm
goes with high attention received; Devoto et al. 2024, "A simple and effective L2 norm-based strategy
for KV cache compression"). ``norm:hidden``: keep the tokens with the HIGHEST hidden-state norm.
"""

from rltr.ops import keep_top_k
from rltr.reducers.base import Decision, DecisionContext, Reducer

OPTIONS = ("key", "hidden")


class Norm(Reducer):
    name = "norm"

    def __init__(self, arg: str = "key") -> None:
        if arg not in OPTIONS:
            raise ValueError(f"norm option {arg!r} is not one of {', '.join(OPTIONS)}")
        self.source = arg

    def decide(self, ctx: DecisionContext) -> Decision:
        state = ctx.state
        if self.source == "key":
            scores = -ctx.backbone.keys(ctx.layer, state).float().norm(dim=-1)  # (B, N): low norm ranks high
        else:
            scores = state.hidden.float().norm(dim=-1)  # (B, N)
        scores = scores.masked_fill(state.alive & ~ctx.context, float("inf"))  # the tail always stays
        return Decision(keep_top_k(scores, state, ctx.n_keep))

    def __repr__(self) -> str:
        return f"Norm({self.source})"
