"""Padding side: token states keep each row's real tokens first (right padding); callers may pad on either side.

Shapes: B rows, L columns.
"""

from __future__ import annotations

import torch


def right_aligned(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move each row's real tokens to the front, in order (left, right or no padding all fine).

    input_ids (B, L) long, attention_mask (B, L) 0/1 or None (all real).
    Returns (ids (B, L), alive (B, L) bool, order (B, L) long: the caller's column of each aligned slot).
    """
    mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.to(input_ids.device).bool()
    if mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask has shape {tuple(mask.shape)}, input_ids {tuple(input_ids.shape)}")
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # (B, L)
    return torch.gather(input_ids, 1, order), torch.gather(mask, 1, order), order


def aligned(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Per-column ``values`` (B, L, ...) in the right-aligned slot order of :func:`right_aligned`."""
    index = order.reshape(*order.shape, *[1] * (values.ndim - 2)).expand_as(values)
    return torch.gather(values, 1, index)


def to_columns(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`aligned`: per-slot ``values`` (B, L, ...) back at the caller's columns."""
    index = order.reshape(*order.shape, *[1] * (values.ndim - 2)).expand_as(values)
    return torch.zeros_like(values).scatter_(1, index, values)
