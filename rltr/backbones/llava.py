"""LLaVA family adapter (``LlavaForConditionalGeneration``): a vision tower and projector fill the image
placeholder tokens, then a Llama decoder runs; only the decoder is run layer by layer (and reduced).

The image features are computed once per prompt, by the model's own ``get_image_features``, and scattered
into the ``<image>`` placeholder slots exactly as the HF forward does. Every non-image token (BOS, the
question, its answer) is protected: only image tokens are candidates for reduction. Pixel values reach
:meth:`embed_tokens` through :meth:`LlavaBackbone.embed_multimodal` (or :meth:`with_pixels` around any
call that embeds a prompt, e.g. the patched HF forward in :mod:`rltr.inference.vlm`).

Shapes: B rows, N tokens, D decoder width, I image tokens per image.
"""

from __future__ import annotations

import contextlib

import torch

from rltr.backbones.llama import LlamaBackbone
from rltr.core.ops import TokenState


class LlavaBackbone(LlamaBackbone):
    family = "llava"
    takes_images = True
    model_types = ("llava",)

    @classmethod
    def auto_class(cls, config):
        from transformers import AutoModelForImageTextToText

        return AutoModelForImageTextToText

    def __init__(self, model, name: str = ""):
        super().__init__(model, name)
        self.vlm_config = model.config
        self.config = model.config.text_config  # the decoder's config: FLOPs model, masks, rotary, config hash
        self.image_token_id = int(model.config.image_token_id)
        self.pending_pixels: torch.Tensor | None = None
        self.pending_features: torch.Tensor | None = None  # (B, I, D) projected features computed already (generate())
        self._text_slots: torch.Tensor | None = None

    @property
    def _base(self):
        return self.model.model.language_model

    @property
    def n_image_tokens(self) -> int:
        """Image tokens per image (the placeholder count a prompt must hold per image)."""
        return int(self.vlm_config.image_seq_length)

    @contextlib.contextmanager
    def with_pixels(self, pixel_values: torch.Tensor | None, features: torch.Tensor | None = None):
        """While active, prompts embedded by this backbone take their image features from ``pixel_values``
        (B, C, H, W), or ``features`` (B, I, D) already projected (what ``generate()`` may hand the forward)."""
        saved = self.pending_pixels, self.pending_features
        self.pending_pixels, self.pending_features = pixel_values, features
        try:
            yield self
        finally:
            self.pending_pixels, self.pending_features = saved

    @torch.no_grad()
    def embed_multimodal(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        pixel_values: torch.Tensor,
        protected: torch.Tensor | None = None,
    ) -> TokenState:
        """Token state entering decoder layer 0 for (B, N) ids with ``n_image_tokens`` placeholders per row and
        (B, C, H, W) images; every non-image token protected."""
        with self.with_pixels(pixel_values):
            return self.embed(input_ids, attention_mask, protected=protected)

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, I, D) projected image features, as the HF forward computes them."""
        cfg = self.vlm_config
        out = self.model.model.get_image_features(
            pixel_values=pixel_values.to(self.device, self.dtype),
            vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy,
        )
        return torch.stack(list(out.pooler_output))

    def embed_tokens(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        embeds = self._base.embed_tokens(input_ids)  # (B, N, D)
        image = input_ids == self.image_token_id
        self._text_slots = ~image
        if not image.any():
            return embeds
        if self.pending_pixels is None and self.pending_features is None:
            raise ValueError(f"prompt holds {int(image.sum())} <image> tokens but no pixel values were given to llava model {self.name!r}")
        if self.pending_features is not None:
            feats = self.pending_features.to(self.device)
        else:
            assert self.pending_pixels is not None, "checked above: pixels or features are pending"
            feats = self.image_features(self.pending_pixels)
        if feats.shape[0] * feats.shape[1] != int(image.sum()):
            raise ValueError(
                f"prompt holds {int(image.sum())} <image> tokens, but {feats.shape[0]} image(s) give "
                f"{feats.shape[0] * feats.shape[1]} features ({feats.shape[1]} each)"
            )
        return embeds.masked_scatter(image[..., None].expand_as(embeds), feats.to(embeds.dtype))

    def _embed(self, input_ids, attention_mask, protected, position_ids, **columns) -> tuple[TokenState, torch.Tensor]:
        state, order = super()._embed(input_ids, attention_mask, protected, position_ids, **columns)
        assert self._text_slots is not None, "embed_tokens ran first and recorded the text slots"
        text = self._text_slots & state.alive  # slots in the state's layout (embed_tokens saw aligned ids)
        self._text_slots = None
        return TokenState(state.hidden, state.positions, state.sizes, state.alive, state.protected | text), order
