"""Token reduction inside the plain HF forward of a LLaVA-family model: ``with reducer(model, ...): model(input_ids=...,
pixel_values=...)`` (and ``model.generate(...)`` where the causal path supports it).

:class:`VLMTokenReduction` is :class:`rltr.inference.TokenReduction` with the call's pixel values handed to the
backbone for the prompt pass (:meth:`rltr.backbones.llava.LlavaBackbone.with_pixels`); decode steps run the
original forward as for any causal LM. It lives outside ``rltr/inference/`` only while that package is being
reworked; :func:`reduction_class` picks it for LLaVA models and defers to :func:`rltr.inference.reduction_for`
otherwise.
"""

from __future__ import annotations

from rltr.inference import PromptHints, TokenReduction, reduction_for

VISION_ARGUMENTS = ("vision_feature_layer", "vision_feature_select_strategy", "image_sizes")


class VLMTokenReduction(TokenReduction):
    """Reduced prompt pass of a VLM: image features from ``pixel_values`` fill the ``<image>`` slots, then the
    decoder runs under the reducer (only image tokens are candidates: the backbone protects every text token)."""

    def _prefill(self, named: dict, hints: PromptHints | None = None):
        pixels = named.pop("pixel_values", None)
        for name in VISION_ARGUMENTS:
            if named.pop(name, None) is not None:
                raise ValueError(f"{name} is not supported under token reduction; the model's config decides it")
        with self.backbone.with_pixels(pixels):
            return super()._prefill(named, hints)


def reduction_class(model) -> type:
    """The ``with reducer(model)`` context manager class for ``model``: :class:`VLMTokenReduction` for LLaVA models."""
    if getattr(model.config, "model_type", None) == "llava":
        return VLMTokenReduction
    return reduction_for(model)
