"""ToMe (Bolya et al., ICLR'23): bipartite soft matching on the layer's attention keys.

One round: the mergeable tokens (live, unprotected, outside the tail) are split alternately, in
position order, into sets A and B; protected context tokens join B as destinations (tail slots never
do). Each A token's best cosine match in B is its edge (in causal models only B tokens at a *later*
position qualify, so no position sees the future); the ``r`` most similar edges merge, with ``r`` the
tokens still to remove to reach ``n_keep``, at most |A| per round (ToMe's 50% per step).

When one round cannot reach ``n_keep``, further rounds run within the same decision on the survivors,
matching on size-weighted mean keys of what each survivor now stands for; chains of merges are
resolved to their final destination, so ops' one-step size-weighted merge gives the same result.
ToMe may keep more than ``n_keep`` only when no admissible merge is left (e.g. a single mergeable
token, or, causally, none with a later destination). Size-weighted averaging and proportional
attention are done by ops and the backbone.
"""

import torch

from rltr.decisions import Decision, DecisionContext
from rltr.ops import Action
from rltr.reducers.base import Reducer


class ToMe(Reducer):
    name = "tome"

    def decide(self, ctx: DecisionContext) -> Decision:
        state = ctx.state
        causal = ctx.backbone.causal
        keys = ctx.keys().float().transpose(1, 2).flatten(2)  # (B, N, F) the layer's keys, charged by ctx
        sizes = state.sizes.float().clone()  # (B, N)
        weighted = keys * sizes[..., None]  # (B, N, F): size-weighted key sums of each survivor
        alive = state.alive.clone()  # survivors of the rounds so far
        dst = torch.full_like(state.positions, -1)  # (B, N) where each merged token went
        rows = torch.arange(alive.shape[0], device=alive.device)[:, None].expand_as(dst)
        while True:
            need = (alive.sum(1) - ctx.n_keep).clamp_min(0)  # (B,) tokens still to remove
            if not need.any():
                break
            merged, best = _round(weighted, alive & ctx.context, state, need, causal)
            if ctx.arch is not None:  # the round's cosine similarities of every slot (N x N x F), rows still merging
                ctx.charge(torch.where(need > 0, 2 * ctx.n_live**2 * keys.shape[-1], 0.0))
            if not merged.any():
                break  # no admissible merge left
            b_idx, src = merged.nonzero(as_tuple=True)
            d_idx = best[b_idx, src]
            weighted = weighted.index_put((b_idx, d_idx), weighted[b_idx, src], accumulate=True)
            sizes = sizes.index_put((b_idx, d_idx), sizes[b_idx, src], accumulate=True)
            dst = torch.where(merged, best, dst)
            alive = alive & ~merged
        for _ in range(int(state.alive.shape[1]).bit_length()):  # resolve chains a -> b -> c to a -> c
            nxt = dst[rows, dst.clamp_min(0)]
            dst = torch.where((dst >= 0) & (nxt >= 0), nxt, dst)
        actions = torch.where(dst >= 0, Action.MERGE, Action.KEEP).long()
        return Decision(actions, merge_dst=dst)


def _round(weighted, context, state, need, causal):
    """One bipartite matching round over the surviving ``context`` (B, N) bool slots.

    weighted: (B, N, F) size-weighted key sums; need: (B,) merges wanted.
    Returns (merged (B, N) bool, best (B, N) long destination slot of each A token).
    """
    protected, positions = state.protected, state.positions
    mergeable = context & ~protected  # (B, N)
    order = mergeable.long().cumsum(1) - 1  # index among mergeable tokens
    set_a = mergeable & (order % 2 == 0)
    set_b = (mergeable & (order % 2 == 1)) | (context & protected)
    unit = torch.nn.functional.normalize(weighted, dim=-1)
    sim = unit @ unit.transpose(1, 2)  # (B, N_a, N_b)
    allowed = set_a[:, :, None] & set_b[:, None, :]
    if causal:
        allowed = allowed & (positions[:, None, :] > positions[:, :, None])
    best_sim, best = sim.masked_fill(~allowed, float("-inf")).max(dim=-1)  # (B, N)
    order_by_sim = torch.argsort(best_sim, dim=1, descending=True, stable=True)
    rank = torch.argsort(order_by_sim, dim=1)  # (B, N): 0 = most similar edge
    merged = torch.isfinite(best_sim) & (rank < need[:, None])
    return merged, best
