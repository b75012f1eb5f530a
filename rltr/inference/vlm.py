"""Token reduction inside the plain HF forward of a LLaVA-family model: ``with reducer(model, ...): model(input_ids=...,
pixel_values=...)`` (and ``model.generate(...)`` where the causal path supports it).

:class:`VLMTokenReduction` is :class:`rltr.inference.TokenReduction` with the call's pixel values handed to the
backbone for the prompt pass (:meth:`rltr.backbones.llava.LlavaBackbone.with_pixels`); decode steps run the
original forward as for any causal LM; :func:`rltr.inference.reduction_for` picks it for LLaVA models.
"""

from __future__ import annotations

import math

import torch

from rltr.inference.causal import TokenReduction

VISION_ARGUMENTS = ("vision_feature_layer", "vision_feature_select_strategy", "image_sizes")


class VLMTokenReduction(TokenReduction):
    """Reduced prompt pass of a VLM: image features from ``pixel_values`` fill the ``<image>`` slots, then the
    decoder runs under the reducer (only image tokens are candidates: the backbone protects every text token)."""

    def _prefill(self, named: dict, *args, **kwargs):
        """The prompt pass with the call's pixel values (``args``/``kwargs``: :class:`TokenReduction`'s own, e.g. cache, hints)."""
        pixels = named.pop("pixel_values", None)
        encoded = named.pop("mm_encoder_outputs", None) or {}  # transformers 5.24's generate(): {"image": encoder output}
        image = encoded.get("image") if isinstance(encoded, dict) else None
        features = None if image is None else torch.stack(list(image.pooler_output))  # (B, I, D)
        for name in VISION_ARGUMENTS:
            if named.pop(name, None) is not None:
                raise ValueError(f"{name} is not supported under token reduction; the model's config decides it")
        with self.backbone.with_pixels(None if features is not None else pixels, features):
            return super()._prefill(named, *args, **kwargs)


def image_budget(n_tokens: int, n_image: int, image_ratio: float) -> float:
    """The token budget (fraction of all ``n_tokens`` prompt tokens, query-aware) that keeps ``image_ratio`` of the
    ``n_image`` image tokens and every text token: e.g. vlm-digits (70 tokens, 64 image), 25% -> 22/70."""
    if not 0 < image_ratio <= 1:
        raise ValueError(f"image_ratio must lie in (0, 1], got {image_ratio!r}")
    if not 0 < n_image <= n_tokens:
        raise ValueError(f"n_image={n_image!r} must lie in (0, n_tokens={n_tokens!r}]")
    return (n_tokens - n_image + math.ceil(image_ratio * n_image)) / n_tokens
