"""Rows of different lengths after a decision, run in buckets of similar length.

After a decision that lets each input keep its own number of tokens (a router's own choice, a threshold),
a padded batch would run every later layer at its longest row: a batch where one row keeps 60% and the
rest 5% costs as much as 60% everywhere. Here the rows are grouped by how many tokens they kept, each
group is cut to its own longest row and run through the layers up to the next decision on its own, and
the groups are put back together (same slots as before, so masks, traces and caches line up). A KV cache
being filled is filled per group and assembled the same way.

Shapes: B rows, N slots (live slots first in every row), D width, H_kv key/value heads, d head width.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers.cache_utils import CacheLayerMixin, DynamicCache

from rltr.core.ops import TokenState
from rltr.inference.cache import writing_cache

MAX_WASTE = 0.25  # a row joins a bucket while it is at most this much shorter than the bucket's longest row


def plan_buckets(n_alive: torch.Tensor, max_waste: float = MAX_WASTE) -> list[torch.Tensor] | None:
    """Row groups (B_k,) long, longest rows first, in which no row is more than ``max_waste`` shorter than
    its group's longest; None when one group would do (the padded batch wastes less than that overall)."""
    total, longest = int(n_alive.sum()), int(n_alive.max())
    if n_alive.numel() < 2 or total >= (1 - max_waste) * longest * n_alive.numel():
        return None
    order = torch.argsort(n_alive, descending=True, stable=True)
    lengths = n_alive[order].tolist()
    groups, start = [], 0
    for i in range(1, len(lengths) + 1):
        if i == len(lengths) or lengths[i] < (1 - max_waste) * lengths[start]:
            groups.append(order[start:i])
            start = i
    return groups


def take_rows(state: TokenState, rows: torch.Tensor) -> TokenState:
    """The rows ``rows`` of ``state``, cut to their longest live row (their live slots come first)."""
    width = max(int(state.alive[rows].sum(1).max()), 1)
    return TokenState(
        state.hidden[rows, :width],
        state.positions[rows, :width],
        state.sizes[rows, :width],
        state.alive[rows, :width],
        state.protected[rows, :width],
    )


def put_rows(like: TokenState, parts: list[tuple[torch.Tensor, TokenState]]) -> TokenState:
    """``like`` with the rows of every (rows, sub-state) part written back (hidden states past a part's width: 0)."""
    hidden = like.hidden.new_zeros(like.hidden.shape)
    for rows, part in parts:
        hidden[rows, : part.hidden.shape[1]] = part.hidden
    return like.with_hidden(hidden)


def run_in_buckets(
    backbone,
    state: TokenState,
    start: int,
    stop: int,
    groups: list[torch.Tensor],
    on_layer: Callable | None = None,
    cache: DynamicCache | None = None,
) -> TokenState:
    """Layers ``start .. stop-1`` for each row group on its own; ``on_layer(i, state)`` sees ``state``'s token
    set (its hidden states are those entering ``start``). With ``cache``, each group's keys and values at
    these layers are assembled into it at ``state``'s slots."""
    for i in range(start, stop):
        if on_layer is not None:
            on_layer(i, state)
    parts, caches = [], []
    for rows in groups:
        part_cache = None if cache is None else DynamicCache(config=backbone.config)
        with writing_cache(backbone, part_cache):
            parts.append((rows, backbone.run_layers(take_rows(state, rows), start, stop)))
        if part_cache is not None:
            caches.append(part_cache)
    if cache is not None:
        _assemble(cache, groups, caches, start, stop, state.alive.shape)
    return put_rows(state, parts)


def _assemble(
    cache: DynamicCache, groups: list[torch.Tensor], caches: list[DynamicCache], start: int, stop: int, shape: torch.Size
) -> None:
    """Write layers ``start .. stop-1`` of every group's cache into ``cache`` as (B, H_kv, N, d) at the full
    batch's slots (0 past a group's width: those slots are dead)."""
    b, n = shape
    for i in range(start, stop):
        first_keys, first_values = _attention_kv(caches[0], i)
        keys = first_keys.new_zeros(b, first_keys.shape[1], n, first_keys.shape[3])
        values = first_values.new_zeros(b, first_values.shape[1], n, first_values.shape[3])
        for rows, part in zip(groups, caches):
            part_keys, part_values = _attention_kv(part, i)
            width = part_keys.shape[2]
            keys[rows, :, :width] = part_keys
            values[rows, :, :width] = part_values
        layer = cache.layers[i]
        if not isinstance(layer, CacheLayerMixin):
            raise TypeError(f"cache layer {i} is a {type(layer).__name__}, not an attention (keys/values) layer")
        layer.update(keys, values)


def _attention_kv(cache: DynamicCache, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer ``i``'s (B, H_kv, N, d) keys and values in ``cache`` (written by the group's forward)."""
    layer = cache.layers[i]
    if not isinstance(layer, CacheLayerMixin) or layer.keys is None or layer.values is None:
        raise RuntimeError(f"cache layer {i} holds no attention keys/values after the group's forward")
    return layer.keys, layer.values
