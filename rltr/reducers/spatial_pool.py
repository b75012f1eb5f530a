"""Spatial pooling of image tokens: merge each ``wy x wx`` window of the image's patch grid into one token
(size-weighted average, proportional attention), like the 2 x 2 pooling of LLaVA-style projectors.

The candidates are the live, unprotected context tokens (the image tokens of a VLM prompt), in position order.
When they form a square raster and some window of :data:`WINDOWS` pools it to exactly the budget's room
(64 patches at 25%: 2 x 2; at 50%: 1 x 2), those windows are used; otherwise the candidates are pooled in
raster order into ``room`` runs of near-equal length (1-D windows; the budget is met exactly either way). No
budget: 2 x 2 windows on a square raster, pairs otherwise. Each window merges into its last token in position
order, so in a causal model no position sees the future. Query-agnostic by nature.
"""

from __future__ import annotations

import math

import torch

from rltr.core.decisions import Decision, DecisionContext
from rltr.core.ops import Action
from rltr.reducers.base import Reducer

WINDOWS = ((1, 1), (1, 2), (2, 2), (2, 4), (4, 4), (4, 8), (8, 8))


def pool_targets(n: int, room: int) -> torch.Tensor:
    """(n,) long: for each of ``n`` candidates in position order, the index (among them) of the candidate it merges
    into (itself: kept), so that ``min(room, n)`` remain: 2-D windows on a square raster when one fits exactly, else runs."""
    room = max(1, min(room, n))
    side = math.isqrt(n)
    k = torch.arange(n)
    if side * side == n:
        for wy, wx in WINDOWS:
            if math.ceil(side / wy) * math.ceil(side / wx) == room:
                y, x = torch.div(k, side, rounding_mode="floor"), k % side
                last_y = torch.clamp((y // wy) * wy + wy - 1, max=side - 1)
                last_x = torch.clamp((x // wx) * wx + wx - 1, max=side - 1)
                return last_y * side + last_x
    group = torch.div(k * room, n, rounding_mode="floor")  # (n,) run index, non-decreasing, room runs
    last = torch.zeros(room, dtype=torch.long).scatter_reduce(0, group, k, reduce="amax")
    return last[group]


class SpatialPool(Reducer):
    name = "spatial_pool"
    chooses_own_budget = True  # with no budget: 2 x 2 windows (pairs off a square raster)

    def decide(self, ctx: DecisionContext) -> Decision:
        state = ctx.state
        cand = ctx.context & ~state.protected  # (B, N)
        actions = torch.full_like(state.positions, Action.KEEP)
        dst = torch.full_like(state.positions, -1)
        for b in range(cand.shape[0]):
            slots = cand[b].nonzero().flatten()  # candidate slots in position order
            n = len(slots)
            if n == 0:
                continue
            if ctx.budget is None:
                room = n // 4 if math.isqrt(n) ** 2 == n else math.ceil(n / 2)
            else:
                room = int(ctx.n_keep[b]) - int(state.alive[b].sum()) + n  # the candidates the budget leaves room for
            target = slots[pool_targets(n, room).to(slots.device)]  # (n,) slot each candidate merges into
            merging = target != slots
            actions[b, slots[merging]] = Action.MERGE
            dst[b, slots[merging]] = target[merging]
        return Decision(actions, merge_dst=dst)
