"""Filling an HF KV cache from rltr's layer-by-layer run: every block is handed the cache as it runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from transformers.cache_utils import DynamicCache

from rltr.backbones.base import Backbone


@contextmanager
def writing_cache(backbone: Backbone, cache: DynamicCache | None) -> Iterator[None]:
    """While inside, every block of ``backbone`` receives ``past_key_values=cache`` (and ``use_cache``),
    so its attention module appends the keys/values it computes. Hooks are removed on exit."""
    if cache is None:
        yield
        return

    def hook(module, args, kwargs):
        return args, {**kwargs, "past_key_values": cache, "use_cache": True}

    handles = [layer.register_forward_pre_hook(hook, with_kwargs=True) for layer in backbone.layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
