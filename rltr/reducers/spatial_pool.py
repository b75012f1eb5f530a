"""Spatial pooling of image tokens: merge each ``wy x wx`` window of the image's patch grid into one token
(size-weighted average, proportional attention), like the 2 x 2 pooling of LLaVA-style projectors.

The candidates (live, unprotected context tokens: the image tokens of a VLM prompt) must form one square
raster in position order. The window is the smallest of 1x1, 1x2, 2x2, 2x4, 4x4, ... whose pooled count fits
the budget's room for candidates (no budget: 2 x 2). Each window merges into its last token in raster order
(its bottom-right patch), so in a causal model no position sees the future. Query-agnostic by nature.
"""

from __future__ import annotations

import math

import torch

from rltr.decisions import Decision, DecisionContext
from rltr.ops import Action
from rltr.reducers.base import Reducer

WINDOWS = ((1, 1), (1, 2), (2, 2), (2, 4), (4, 4), (4, 8), (8, 8))


def pick_window(side: int, room: int) -> tuple[int, int]:
    """The smallest window (wy, wx) of :data:`WINDOWS` that pools a ``side x side`` raster into at most ``room`` tokens."""
    for wy, wx in WINDOWS:
        if math.ceil(side / wy) * math.ceil(side / wx) <= room:
            return wy, wx
    return side, side


class SpatialPool(Reducer):
    name = "spatial_pool"
    chooses_own_budget = True  # with no budget: 2 x 2 windows

    def decide(self, ctx: DecisionContext) -> Decision:
        state = ctx.state
        cand = ctx.context & ~state.protected  # (B, N)
        actions = torch.full_like(state.positions, Action.KEEP)
        dst = torch.full_like(state.positions, -1)
        for b in range(cand.shape[0]):
            slots = cand[b].nonzero().flatten()  # candidate slots in raster order
            side = math.isqrt(len(slots))
            if side * side != len(slots) or side == 0:
                raise ValueError(f"spatial_pool needs the candidate (image) tokens to form a square raster; row {b} has {len(slots)}")
            room = len(slots) if ctx.budget is None else int(ctx.n_keep[b]) - int(state.alive[b].sum()) + len(slots)
            wy, wx = (2, 2) if ctx.budget is None else pick_window(side, max(room, 1))
            y, x = torch.div(torch.arange(side * side), side, rounding_mode="floor"), torch.arange(side * side) % side
            last_y = torch.clamp((y // wy) * wy + wy - 1, max=side - 1)
            last_x = torch.clamp((x // wx) * wx + wx - 1, max=side - 1)
            target = slots[(last_y * side + last_x).to(slots.device)]  # (side^2,) slot each candidate merges into
            merging = target != slots
            actions[b, slots[merging]] = Action.MERGE
            dst[b, slots[merging]] = target[merging]
        return Decision(actions, merge_dst=dst)
