"""Token state and the only operations that change it: keep, drop, merge, compact.

Shapes: B = batch, N = token slots (padded to the batch's longest), D = hidden width.
Reducers decide *actions*; the functions here turn actions into a new, smaller :class:`TokenState`.
Every function returns a new state and leaves its input untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Literal, overload

import torch


class Action(IntEnum):
    """What happens to one token at a decision layer."""

    KEEP = 0
    MERGE = 1  # fold into the most similar kept token (a later one in causal models)
    DROP = 2


N_ACTIONS = len(Action)


@dataclass(frozen=True)
class TokenState:
    """A padded batch of token states between two layers.

    hidden:    (B, N, D) float, hidden states entering the next layer.
    positions: (B, N) long, original position ids (rotary/absolute positions never shift).
    sizes:     (B, N) float32, how many original tokens each slot stands for (0 on padding).
    alive:     (B, N) bool, real tokens; padding and removed tokens are False.
    protected: (B, N) bool, never dropped or merged away (query/answer tail, BOS/sink, CLS).

    Alive tokens of a row are always stored first and in increasing position order.
    """

    hidden: torch.Tensor
    positions: torch.Tensor
    sizes: torch.Tensor
    alive: torch.Tensor
    protected: torch.Tensor

    def __post_init__(self) -> None:
        b, n = self.hidden.shape[:2]
        for name in ("positions", "sizes", "alive", "protected"):
            shape = tuple(getattr(self, name).shape)
            assert shape == (b, n), f"{name} has shape {shape}, expected {(b, n)} to match hidden {tuple(self.hidden.shape)}"

    @classmethod
    def from_hidden(
        cls,
        hidden: torch.Tensor,
        alive: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        protected: torch.Tensor | None = None,
    ) -> TokenState:
        """Fresh state: every token stands for itself. ``alive`` must be left-aligned (right padding)."""
        b, n = hidden.shape[:2]
        dev = hidden.device
        alive = torch.ones(b, n, dtype=torch.bool, device=dev) if alive is None else alive.to(dev, torch.bool)
        if positions is None:
            positions = torch.arange(n, device=dev).expand(b, n)
        protected = torch.zeros_like(alive) if protected is None else protected.to(dev, torch.bool) & alive
        return cls(hidden, positions.to(dev, torch.long), alive.float(), alive, protected)

    @property
    def n_alive(self) -> torch.Tensor:
        """(B,) long: live tokens per row."""
        return self.alive.sum(dim=1)

    def with_hidden(self, hidden: torch.Tensor) -> TokenState:
        """Same tokens, new hidden states (what a layer returns). Not a token-changing op."""
        assert hidden.shape == self.hidden.shape, f"hidden {tuple(hidden.shape)} != {tuple(self.hidden.shape)}"
        return replace(self, hidden=hidden)


def sanitize_actions(state: TokenState, actions: torch.Tensor) -> torch.Tensor:
    """(B, N) long actions with protected and dead slots forced to KEEP (dead slots stay dead)."""
    assert actions.shape == state.alive.shape, f"actions {tuple(actions.shape)} != state {tuple(state.alive.shape)}"
    actions = actions.to(device=state.alive.device, dtype=torch.long)
    bad = (actions < 0) | (actions >= N_ACTIONS)
    if bad.any():
        raise ValueError(f"actions must be in 0..{N_ACTIONS - 1}, got {actions[bad].unique().tolist()}")
    force_keep = state.protected | ~state.alive
    return torch.where(force_keep, torch.full_like(actions, Action.KEEP), actions)


def merge_targets(
    state: TokenState,
    merging: torch.Tensor,
    kept: torch.Tensor,
    match: torch.Tensor | None = None,
    causal: bool = True,
) -> torch.Tensor:
    """(B, N) long: for each merging token, the index of its most similar kept token, else -1.

    Similarity is cosine over ``match`` (B, N, F), e.g. attention keys; the hidden states by default.
    In causal models a token may only merge into a kept token at a *later* position, so no position
    ever sees the future. A merging token with no admissible destination gets -1.
    """
    feats = state.hidden if match is None else match
    assert feats.shape[:2] == state.alive.shape, f"match {tuple(feats.shape)} vs state {tuple(state.alive.shape)}"
    out = torch.full_like(state.positions, -1)
    n_src = int(merging.sum(1).max()) if merging.numel() else 0
    if n_src == 0:
        return out
    # Only the merging rows of the similarity matrix: (B, M, N) with M = most merging tokens in a row.
    src = torch.argsort((~merging).to(torch.int8), dim=1, stable=True)[:, :n_src]  # (B, M) merging slots first
    unit = torch.nn.functional.normalize(feats.float(), dim=-1)
    src_unit = torch.gather(unit, 1, src[..., None].expand(-1, -1, unit.shape[-1]))
    sim = src_unit @ unit.transpose(1, 2)  # (B, M, N_dst)
    allowed = kept[:, None, :].expand_as(sim)
    if causal:
        allowed = allowed & (state.positions[:, None, :] > torch.gather(state.positions, 1, src)[:, :, None])
    best_sim, best = sim.masked_fill(~allowed, float("-inf")).max(dim=-1)
    ok = torch.gather(merging, 1, src) & torch.isfinite(best_sim)
    return out.scatter(1, src, torch.where(ok, best, -1))  # src slots are distinct: no write collides


def merge(state: TokenState, merging: torch.Tensor, dst: torch.Tensor) -> TokenState:
    """Fold each ``merging`` token into ``dst`` (B, N long index): size-weighted average of hidden states.

    The destination's size grows by the source's size; sources die. Sizes are conserved exactly.
    Destinations must be live and not merging themselves. Returns an uncompacted state.
    """
    if not merging.any():
        return state
    b_idx, src_idx = merging.nonzero(as_tuple=True)
    dst_idx = dst[b_idx, src_idx]
    assert (dst_idx >= 0).all(), f"merging tokens without destination at {src_idx[dst_idx < 0].tolist()}"
    assert state.alive[b_idx, dst_idx].all() and not merging[b_idx, dst_idx].any(), "merge destination must be a live kept token"
    assert not state.protected[b_idx, src_idx].any(), "protected tokens cannot be merged away"
    sizes = state.sizes
    weighted = state.hidden * sizes[..., None].to(state.hidden.dtype)
    src_w = weighted[b_idx, src_idx]
    new_weighted = weighted.index_put((b_idx, dst_idx), src_w, accumulate=True)
    new_sizes = sizes.index_put((b_idx, dst_idx), sizes[b_idx, src_idx], accumulate=True)
    grown = torch.zeros_like(merging)
    grown[b_idx, dst_idx] = True
    denom = new_sizes.clamp_min(1e-6)[..., None].to(state.hidden.dtype)
    hidden = torch.where(grown[..., None], new_weighted / denom, state.hidden)
    alive = state.alive & ~merging
    new_sizes = torch.where(merging, torch.zeros_like(new_sizes), new_sizes)
    return replace(state, hidden=hidden, sizes=new_sizes, alive=alive)


def drop(state: TokenState, dropping: torch.Tensor) -> TokenState:
    """Remove ``dropping`` tokens (B, N bool); protected ones are never removed. Uncompacted."""
    dropping = dropping & state.alive & ~state.protected
    return replace(state, alive=state.alive & ~dropping, sizes=torch.where(dropping, 0.0, state.sizes))


def compact(state: TokenState) -> TokenState:
    """Gather live tokens to the front of each row (order kept) and cut padding to the longest row.

    After compaction later layers really run on fewer tokens.
    """
    n_keep = int(state.n_alive.max().item()) if state.alive.numel() else 0
    n_keep = max(n_keep, 1)
    if n_keep == state.alive.shape[1] and bool((state.alive[:, :-1] >= state.alive[:, 1:]).all()):
        return state  # already compact
    order = torch.argsort((~state.alive).to(torch.int8), dim=1, stable=True)[:, :n_keep]  # (B, n_keep)
    hidden = torch.gather(state.hidden, 1, order[..., None].expand(-1, -1, state.hidden.shape[-1]))
    alive = torch.gather(state.alive, 1, order)
    return TokenState(
        hidden=hidden,
        positions=torch.gather(state.positions, 1, order),
        sizes=torch.gather(state.sizes, 1, order) * alive,
        alive=alive,
        protected=torch.gather(state.protected, 1, order) & alive,
    )


@overload
def apply_actions(
    state: TokenState,
    actions: torch.Tensor,
    *,
    causal: bool = ...,
    match: torch.Tensor | None = ...,
    merge_dst: torch.Tensor | None = ...,
    dst_allowed: torch.Tensor | None = ...,
    return_slot_map: Literal[False] = ...,
) -> TokenState: ...


@overload
def apply_actions(
    state: TokenState,
    actions: torch.Tensor,
    *,
    causal: bool = ...,
    match: torch.Tensor | None = ...,
    merge_dst: torch.Tensor | None = ...,
    dst_allowed: torch.Tensor | None = ...,
    return_slot_map: Literal[True],
) -> tuple[TokenState, torch.Tensor]: ...


def apply_actions(
    state: TokenState,
    actions: torch.Tensor,
    *,
    causal: bool = True,
    match: torch.Tensor | None = None,
    merge_dst: torch.Tensor | None = None,
    dst_allowed: torch.Tensor | None = None,
    return_slot_map: bool = False,
) -> TokenState | tuple[TokenState, torch.Tensor]:
    """Apply one KEEP/MERGE/DROP per token (B, N long) and compact.

    Protected and padded slots are always kept. Merge destinations come from ``merge_dst`` (B, N long,
    -1 = none) when a reducer chose them (e.g. ToMe's matching), else from :func:`merge_targets` on
    ``match`` features; either way only kept slots in ``dst_allowed`` (B, N bool; default all) may
    receive a merge (e.g. not the question tail). A merging token with no admissible destination is
    kept, never lost silently (callers that hold a budget resolve such tokens first:
    :func:`rltr.decisions.resolve_actions`). With ``return_slot_map`` also returns (B, N) long: the slot
    each token occupies in the new state (a merged token: its destination's; dropped or dead: -1).
    """
    actions = sanitize_actions(state, actions)
    merging = state.alive & (actions == Action.MERGE)
    dropping = state.alive & (actions == Action.DROP)
    kept = state.alive & (actions == Action.KEEP)
    kept_as_dst = kept if dst_allowed is None else kept & dst_allowed
    dst = torch.full_like(state.positions, -1)
    if merging.any():
        if merge_dst is None:
            dst = merge_targets(state, merging, kept_as_dst, match=match, causal=causal)
        else:
            dst = _validate_dst(state, merging, kept_as_dst, merge_dst.to(state.alive.device, torch.long), causal)
        merging = merging & (dst >= 0)
        state = merge(state, merging, dst)
    reduced = drop(state, dropping)
    out = compact(reduced)
    if not return_slot_map:
        return out
    new_slot = torch.where(reduced.alive, reduced.alive.long().cumsum(1) - 1, -1)  # compact keeps live order
    slot_map = torch.where(merging, torch.gather(new_slot, 1, dst.clamp_min(0)), new_slot)
    return out, slot_map


def _validate_dst(state: TokenState, merging: torch.Tensor, kept: torch.Tensor, dst: torch.Tensor, causal: bool) -> torch.Tensor:
    assert dst.shape == merging.shape, f"merge_dst {tuple(dst.shape)} != {tuple(merging.shape)}"
    safe = dst.clamp_min(0)
    dst_kept = torch.gather(kept, 1, safe)
    ok = (dst >= 0) & dst_kept
    if causal:
        ok = ok & (torch.gather(state.positions, 1, safe) > state.positions)
    bad = merging & (dst >= 0) & ~ok
    assert not bad.any(), f"invalid merge destinations at (row, slot) {bad.nonzero().tolist()[:5]}"
    return torch.where(merging & ok, dst, torch.full_like(dst, -1))


def keep_top_k(scores: torch.Tensor, state: TokenState, n_keep: torch.Tensor) -> torch.Tensor:
    """(B, N) long actions keeping protected tokens plus the highest-``scores`` others, DROP for the rest.

    ``n_keep`` (B,) long is the total number of live tokens to keep per row, protected included; rows
    whose protected tokens alone exceed it keep just those.
    """
    free = state.alive & ~state.protected
    n_free_keep = (n_keep - (state.protected & state.alive).sum(1)).clamp_min(0)  # (B,)
    s = scores.float().masked_fill(~free, float("-inf"))
    rank = torch.argsort(torch.argsort(s, dim=1, descending=True, stable=True), dim=1)  # 0 = best
    keep = free & (rank < n_free_keep[:, None])
    actions = torch.full_like(state.positions, Action.DROP)
    return torch.where(keep | ~free, torch.full_like(actions, Action.KEEP), actions)


def scatter_to_positions(values: torch.Tensor, state: TokenState, n_positions: int) -> torch.Tensor:
    """Place per-slot ``values`` (B, N, ...) back at their original positions: (B, n_positions, ...).

    Slots that are dead, and positions no live token occupies, are zero.
    """
    b = values.shape[0]
    out = values.new_zeros((b, n_positions, *values.shape[2:]))
    rows, slots = state.alive.nonzero(as_tuple=True)
    out[rows, state.positions[rows, slots]] = values[rows, slots]
    return out
