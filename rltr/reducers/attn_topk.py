"""Attention top-k (EViT / FastV): keep the tokens the query attends to most, drop (or merge) the rest.

``attn_topk``: keep the top ``n_keep`` tokens by :meth:`DecisionContext.attention_from_query` (attention
received from the question tail when query-aware, else from the last context token), drop the rest.
``attn_topk:merge``: EViT's "fuse the inattentive tokens" within our ops: each inattentive token is
MERGED into its most similar kept context token (ops' default destination, by hidden state) instead of
dropped. In a causal model a token with no later kept context token has nowhere to go and is dropped,
so the budget is still met exactly.
"""

from __future__ import annotations

import torch

from rltr.core.decisions import Decision, DecisionContext
from rltr.core.ops import Action
from rltr.reducers.base import ScoreReducer

OPTIONS = ("drop", "merge")


class AttnTopK(ScoreReducer):
    name = "attn_topk"

    def __init__(self, merge: bool = False) -> None:
        self.merge = bool(merge)

    @classmethod
    def from_spec(cls, option: str = "") -> AttnTopK:
        if option and option not in OPTIONS:
            raise ValueError(f"attn_topk option {option!r} is not one of {', '.join(OPTIONS)}")
        return cls(merge=option == "merge")

    def score(self, ctx: DecisionContext) -> torch.Tensor:
        return ctx.attention_from_query()  # (B, N): reads the query rows only (R x N), charged by ctx

    def decide(self, ctx: DecisionContext) -> Decision:
        actions = super().decide(ctx).actions  # (B, N) KEEP / DROP
        if self.merge:
            actions = torch.where(ctx.can_merge(actions == Action.KEEP), Action.MERGE, actions)
        return Decision(actions)

    def __repr__(self) -> str:
        return f"AttnTopK({'merge' if self.merge else 'drop'})"
