"""Attention masks of a reduced token state: the additive bias (dead keys, causality and sliding windows by
original position, log(size) for merged tokens) and when a kernel's own causal path is exact instead."""

from __future__ import annotations

import torch

from rltr.core.ops import TokenState


def attention_bias(
    state: TokenState, causal: bool, dtype: torch.dtype, rows: torch.Tensor | None = None, window: int | None = None
) -> torch.Tensor:
    """(B, 1, Nq, N) additive attention bias for the current tokens; queries are all slots, or the
    slots ``rows`` (B, R long) only (then Nq = R).

    Dead keys are masked; in causal models a query at position p sees keys at positions <= p (by
    *original* position), and with a sliding ``window`` W only those at positions > p - W (HF's
    sliding-window mask, on original positions). Proportional attention: live keys get ``log(size)``,
    so a token standing for s originals weighs as much as s copies of itself (0 for unmerged tokens:
    identity is exact). Dead query rows attend to themselves only, so no row is all-masked (no NaNs).
    """
    neg = torch.finfo(dtype).min
    n = state.alive.shape[1]
    q_idx = torch.arange(n, device=state.alive.device).expand_as(state.alive) if rows is None else rows  # (B, Nq)
    q_pos, q_alive = torch.gather(state.positions, 1, q_idx), torch.gather(state.alive, 1, q_idx)
    allowed = state.alive[:, None, :].expand(-1, q_idx.shape[1], -1)  # (B, Nq, N)
    if causal:
        allowed = allowed & (state.positions[:, None, :] <= q_pos[:, :, None])
    if window is not None:
        allowed = allowed & (state.positions[:, None, :] > q_pos[:, :, None] - window)
    self_slot = q_idx[:, :, None] == torch.arange(n, device=q_idx.device)  # (B, Nq, N)
    allowed = allowed | (self_slot & ~q_alive[:, :, None])
    log_size = torch.log(state.sizes.clamp_min(1.0)).to(dtype)[:, None, :]  # (B, 1, N)
    bias = torch.where(allowed, log_size, torch.full_like(log_size, neg).expand_as(allowed))
    return bias[:, None]


# attention implementations whose kernels mask causally by themselves when given no mask (eager does not)
CAUSAL_KERNELS = ("sdpa", "flash_attention_2", "flash_attention_3")


def is_plain(state: TokenState) -> bool:
    """True when every slot is live, unmerged and at its own index (a plain causal mask is exact)."""
    n = state.alive.shape[1]
    return bool(
        state.alive.all() and (state.sizes == 1).all() and (state.positions == torch.arange(n, device=state.positions.device)).all()
    )
