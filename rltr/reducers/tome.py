"""ToMe (Bolya et al., ICLR'23): bipartite soft matching on the layer's attention keys.

Encoders (non-causal backbones: ViT, BERT) get the published algorithm exactly. One round:

1. the metric is the layer's keys averaged over heads, L2-normalised;
2. ALL live tokens, protected ones included, are split alternately by position into A (1st, 3rd, ...)
   and B (2nd, 4th, ...);
3. each A token's edge is its most cosine-similar B token; protected A tokens have no edge and protected
   B tokens receive none (so a CLS, at position 0 in A, is never merged and never absorbs a merge);
4. the ``r`` most similar edges merge, ``r`` capped at ``(tokens - protected) // 2`` (at most 50% per
   round); several A tokens may merge into one B token;
5. merging is the size-weighted average of hidden states, and merged tokens get log(size) in attention
   (proportional attention): done by :mod:`rltr.core.ops` and the backbone.

Two modes. ``tome:r=N`` is the paper's: ``N`` tokens merged before every decision layer (one round each,
no budget: run it with decision layers at every layer for the paper's setting). ``tome`` with a budget
merges what the budget asks at each decision (``n_alive - n_keep``); past 50% further rounds run on the
survivors, matching on the size-weighted mean keys of what each survivor stands for. rltr decides before
a layer, on that layer's keys; the paper merges inside each block, between attention and MLP, on the
keys that block's attention just used: the matching is the same, its place in the block is not.

Decoders (causal backbones) keep rltr's causal variant: the mergeable tokens (live, unprotected, outside
the tail) alternate into A and B, protected context tokens join B as destinations, keys of all heads
concatenated, and only a B token at a *later* position qualifies, so no position sees the future.

Either way chains of merges are resolved to their final destination, so ops' one-step size-weighted merge
gives the same result. ToMe may keep more than ``n_keep`` only when no admissible merge is left.
"""

from __future__ import annotations

import torch

from rltr.core.decisions import Decision, DecisionContext
from rltr.core.ops import Action
from rltr.reducers.base import Reducer


class ToMe(Reducer):
    name = "tome"

    def __init__(self, r: int | None = None) -> None:
        if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 1):
            raise ValueError(f"tome r must be an int >= 1 (tokens merged per decision layer), got {r!r}")
        self.r = r
        self.takes_budget = self.r is None  # tome:r=N sets its own token counts

    @property
    def chooses_own_budget(self) -> bool:
        return self.r is not None

    @classmethod
    def from_spec(cls, option: str = "") -> ToMe:
        """``tome`` (budget-driven) or ``tome:r=N`` (the paper's schedule: N merges per decision layer)."""
        if not option:
            return cls()
        key, _, value = option.partition("=")
        if key != "r" or not (value.isascii() and value.isdigit()) or int(value) < 1:
            raise ValueError(f"tome option {option!r} must be r=N, N >= 1 tokens merged per decision layer (e.g. tome:r=8)")
        return cls(r=int(value))

    def __repr__(self) -> str:
        return "ToMe()" if self.r is None else f"ToMe(r={self.r})"

    def decide(self, ctx: DecisionContext) -> Decision:
        state = ctx.state
        causal = ctx.backbone.causal
        keys = ctx.keys().float()  # (B, H, N, d_head), charged by ctx
        metric = keys.transpose(1, 2).flatten(2) if causal else keys.mean(1)  # (B, N, F)
        weighted = metric * state.sizes.float()[..., None]  # (B, N, F): size-weighted metric sums of each survivor
        alive = state.alive.clone()  # survivors of the rounds so far
        dst = torch.full_like(state.positions, -1)  # (B, N) where each merged token went
        rows = torch.arange(alive.shape[0], device=alive.device)[:, None].expand_as(dst)
        rounds = 0
        while True:
            if self.r is not None:  # the paper's mode: one round of r merges
                need = torch.full_like(ctx.n_keep, self.r)
            else:
                need = (alive.sum(1) - ctx.n_keep).clamp_min(0)  # (B,) tokens still to remove
                if not need.any():
                    break
            if causal:
                merged, best = _causal_round(weighted, alive & ctx.context, state, need)
                cost = 2 * ctx.n_live**2 * metric.shape[-1]  # the N x N similarities of every slot
            else:
                merged, best, n_surv = _bipartite_round(weighted, alive & ctx.context, state.protected, need)
                cost = 2 * torch.ceil(n_surv / 2) * torch.floor(n_surv / 2) * metric.shape[-1]  # |A| x |B|
            ctx.charge(torch.where(need > 0, cost, 0.0))
            if not merged.any():
                break  # no admissible merge left
            dst = torch.where(merged, best, dst)
            rounds += 1
            if self.r is not None:
                break
            b_idx, src = merged.nonzero(as_tuple=True)
            weighted = weighted.index_put((b_idx, best[b_idx, src]), weighted[b_idx, src], accumulate=True)
            alive = alive & ~merged
        for _ in range(int(state.alive.shape[1]).bit_length() if rounds > 1 else 0):  # resolve chains a -> b -> c to a -> c
            nxt = dst[rows, dst.clamp_min(0)]
            dst = torch.where((dst >= 0) & (nxt >= 0), nxt, dst)
        actions = torch.where(dst >= 0, Action.MERGE, Action.KEEP).long()
        return Decision(actions, merge_dst=dst)


def _bipartite_round(weighted: torch.Tensor, alive: torch.Tensor, protected: torch.Tensor, need: torch.Tensor):
    """The paper's round over the live slots ``alive`` (B, N) bool (encoders).

    weighted: (B, N, F) size-weighted metric sums; protected: (B, N) bool; need: (B,) merges wanted.
    Returns (merged (B, N) bool, best (B, N) long destination slot of each merged token, n_alive (B,) float).
    """
    b, n = alive.shape
    n_alive = alive.sum(1)  # (B,)
    slots = torch.argsort((~alive).to(torch.int8), dim=1, stable=True)  # (B, N): live slots first, in position order
    a_slot, b_slot = slots[:, 0::2], slots[:, 1::2]  # (B, Na), (B, Nb): alternate by position
    idx = torch.arange(n, device=alive.device)
    a_ok = (idx[0::2][None, :] < n_alive[:, None]) & ~torch.gather(protected, 1, a_slot)  # (B, Na) live, unprotected
    b_ok = (idx[1::2][None, :] < n_alive[:, None]) & ~torch.gather(protected, 1, b_slot)  # (B, Nb)
    unit = torch.nn.functional.normalize(weighted, dim=-1)
    feat = unit.shape[-1]
    unit_a = torch.gather(unit, 1, a_slot[..., None].expand(-1, -1, feat))  # (B, Na, F)
    unit_b = torch.gather(unit, 1, b_slot[..., None].expand(-1, -1, feat))  # (B, Nb, F)
    sim = unit_a @ unit_b.transpose(1, 2)
    sim = sim.masked_fill(~(a_ok[:, :, None] & b_ok[:, None, :]), float("-inf"))  # (B, Na, Nb)
    node_max, node_idx = sim.max(dim=-1)  # (B, Na): each A token's best edge
    n_protected = (protected & alive).sum(1)
    r = torch.minimum(need, (n_alive - n_protected) // 2)  # at most 50% of the mergeable tokens per round
    rank = torch.argsort(torch.argsort(node_max, dim=1, descending=True, stable=True), dim=1)  # 0 = most similar edge
    take = torch.isfinite(node_max) & (rank < r[:, None])  # (B, Na)
    merged = torch.zeros_like(alive).scatter(1, a_slot, take)
    best = torch.full_like(slots, -1).scatter(1, a_slot, torch.where(take, torch.gather(b_slot, 1, node_idx), -1))
    return merged, best, n_alive.double()


def _causal_round(weighted, context, state, need):
    """One causal matching round over the surviving ``context`` (B, N) bool slots (decoders).

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
    allowed = allowed & (positions[:, None, :] > positions[:, :, None])
    best_sim, best = sim.masked_fill(~allowed, float("-inf")).max(dim=-1)  # (B, N)
    order_by_sim = torch.argsort(best_sim, dim=1, descending=True, stable=True)
    rank = torch.argsort(order_by_sim, dim=1)  # (B, N): 0 = most similar edge
    merged = torch.isfinite(best_sim) & (rank < need[:, None])
    return merged, best
