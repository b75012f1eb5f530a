"""Routers and heuristics in production: token reduction inside a plain HF model's ``forward`` and
``generate()``. ``with reducer(model, budget=0.5, protect_last=8): model.generate(...)`` for causal LMs,
``with reducer(model, budget=0.5): model(pixel_values=...)`` for encoders (ViT, BERT)."""

from rltr.backbones import adapter_for
from rltr.inference.causal import TokenReduction
from rltr.inference.encoder import EncoderReduction, ReducedForward
from rltr.inference.prefill import PrefixInfo, PromptHints, prompt_logits, reduced_prefill
from rltr.inference.vlm import VLMTokenReduction, image_budget


def reduction_for(model) -> type:
    """The context manager class for ``model``: :class:`VLMTokenReduction` for adapters that take images
    (LLaVA: pixel values to the prompt pass), :class:`EncoderReduction` for encoders, else :class:`TokenReduction`."""
    adapter = adapter_for(model)
    if adapter.takes_images:
        return VLMTokenReduction
    return TokenReduction if adapter.causal else EncoderReduction


__all__ = [
    "EncoderReduction",
    "PrefixInfo",
    "PromptHints",
    "ReducedForward",
    "TokenReduction",
    "VLMTokenReduction",
    "image_budget",
    "prompt_logits",
    "reduced_prefill",
    "reduction_for",
]
