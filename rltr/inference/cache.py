"""Filling an HF KV cache from rltr's layer-by-layer run: every block is handed the cache as it runs; which
caches and sliding windows a reduced prefill can fill."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

from rltr.backbones.base import Backbone
from rltr.inference.hf_compat import cache_argument


@contextmanager
def writing_cache(backbone: Backbone, cache: DynamicCache | None) -> Iterator[None]:
    """While inside, every block of ``backbone`` receives the cache (under the argument name its forward
    declares: ``cache`` from transformers 5.24, ``past_key_values`` before) and ``use_cache``, so its attention
    module appends the keys/values it computes. Hooks are removed on exit."""
    if cache is None:
        yield
        return

    def hook(module, args, kwargs):
        return args, {**kwargs, cache_argument(type(module).forward): cache, "use_cache": True}

    handles = [layer.register_forward_pre_hook(hook, with_kwargs=True) for layer in backbone.layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def check_fillable(cache, n_layers: int) -> None:
    """A cache the reduced prefill can fill: an empty ``DynamicCache`` of full-attention or sliding-window
    layers (the latter only while the window masks nothing yet: :func:`check_window`)."""
    kinds = (DynamicLayer, DynamicSlidingWindowLayer)
    if not isinstance(cache, DynamicCache) or any(type(layer) not in kinds for layer in cache.layers):
        found = sorted({type(layer).__name__ for layer in getattr(cache, "layers", [])})
        raise ValueError(
            f"token reduction fills a DynamicCache of full-attention or sliding-window layers; got {type(cache).__name__} {found}"
        )
    if cache.get_seq_length() != 0:
        raise ValueError(f"token reduction needs an empty cache for the prompt pass; it holds {cache.get_seq_length()} tokens")
    if len(cache.layers) not in (0, n_layers):
        raise ValueError(f"cache has {len(cache.layers)} layers, the model {n_layers}")


def smallest_window(backbone: Backbone) -> int | None:
    """The smallest sliding attention window of ``backbone``'s layers (None: all full attention)."""
    return min((w for i in range(backbone.n_layers) if (w := backbone.sliding_window(i)) is not None), default=None)


def check_window(window: int | None, n_tokens: int) -> None:
    """Refuse ``n_tokens`` (prompt + generated so far) that reach a sliding ``window``: a reduced cache is cut
    by slot, not by position, so sliding semantics past the window cannot be guaranteed; below it the window
    masks nothing."""
    if window is not None and n_tokens >= window:
        raise ValueError(
            f"{n_tokens} tokens (prompt + generated) reach the model's sliding window of {window} tokens; token "
            f"reduction supports sliding-window attention only while prompt + generated tokens stay shorter than the window"
        )
