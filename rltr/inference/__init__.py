"""Routers and heuristics in production: token reduction inside a plain HF model's ``forward`` and
``generate()``. ``with reducer(model, budget=0.5, protect_last=8): model.generate(...)``."""

from rltr.inference.patch import TokenReduction
from rltr.inference.prefill import PrefixInfo, PromptHints, prompt_logits, reduced_prefill

__all__ = ["PrefixInfo", "PromptHints", "TokenReduction", "prompt_logits", "reduced_prefill"]
