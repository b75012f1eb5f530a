"""ViT family adapter (``ViTModel``, ``ViTForImageClassification``): patch tokens plus a CLS token, pre-norm
blocks, a classifier on the final CLS state. Images enter through :meth:`ViTBackbone.embed_images`; the CLS
token (slot 0) is protected."""

from __future__ import annotations

from typing import Any

import torch

from rltr.backbones.encoder import EncoderBackbone, gather_rows
from rltr.core.ops import TokenState


class ViTBackbone(EncoderBackbone):
    family = "vit"
    model_types = ("vit",)
    inputs = "images"
    forward_args = ("pixel_values", "return_dict")

    @classmethod
    def auto_class(cls, config):
        from transformers import AutoModel, AutoModelForImageClassification

        heads = [a for a in (config.architectures or []) if a.endswith("ForImageClassification")]
        return AutoModelForImageClassification if heads else AutoModel

    @property
    def _vit(self):
        return getattr(self.model, "vit", self.model)

    @property
    def layers(self):
        vit = self._vit
        return vit.layers if hasattr(vit, "layers") else vit.encoder.layer  # transformers 5.2: encoder.layer

    @property
    def max_positions(self) -> int | None:
        return None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the images the model takes."""
        size = self.config.image_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return self.config.num_channels, h, w

    @property
    def classifier(self) -> torch.nn.Module:
        head = getattr(self.model, "classifier", None)
        if head is None:
            raise ValueError(f"vit model {self.name!r} ({type(self.model).__name__}) has no classifier head")
        return head

    def _embed(self, input_ids, attention_mask, protected, position_ids, **columns):
        raise ValueError(f"vit model {self.name!r} takes images (pixel values), not token ids")

    @torch.no_grad()
    def embed_images(self, pixel_values: torch.Tensor, protected: torch.Tensor | None = None) -> TokenState:
        """(B, C, H, W) images -> state (B, 1 + patches): CLS (protected) then the patches in raster order."""
        want = self.image_shape
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != want:
            shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
            expected = ", ".join(map(str, want))
            raise ValueError(f"image batch of shape {shape} does not fit vit model {self.name!r}: expected (batch, {expected})")
        hidden = self._vit.embeddings(pixel_values.to(self.device, self.dtype))  # (B, N, D)
        b, n = hidden.shape[:2]
        cls = torch.zeros(b, n, dtype=torch.bool, device=hidden.device)
        cls[:, 0] = True
        return TokenState.from_hidden(hidden, protected=cls if protected is None else cls | protected.to(hidden.device))

    def _layer_forward(self, i: int, state: TokenState, bias: torch.Tensor | None) -> torch.Tensor:
        layer = self.layers[i]
        if _legacy(layer):
            return _legacy_layer_forward(layer, state.hidden, bias)
        return layer(state.hidden, bias)

    def _heads(self, i: int, which: str, x: torch.Tensor) -> torch.Tensor:
        """(B, H, R, d_head) layer ``i``'s query (``which="q"``) or key (``"k"``) projection of its normed input ``x`` (B, R, D)."""
        layer = self.layers[i]
        if _legacy(layer):
            attn = layer.attention.attention
            proj, head_dim = (attn.query if which == "q" else attn.key), attn.attention_head_size
        else:
            attn = layer.attention
            proj, head_dim = (attn.q_proj if which == "q" else attn.k_proj), attn.head_dim
        return proj(layer.layernorm_before(x)).view(*x.shape[:2], -1, head_dim).transpose(1, 2)

    def key_states(self, i: int, state: TokenState) -> torch.Tensor:
        return self._heads(i, "k", state.hidden)

    def query_states(self, i: int, state: TokenState, rows: torch.Tensor) -> torch.Tensor:
        return self._heads(i, "q", gather_rows(state.hidden, rows))

    def attn_scaling(self, i: int) -> float:
        attn = self.layers[i].attention
        return attn.attention.scaling if _legacy(self.layers[i]) else attn.scaling

    def final_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._vit.layernorm(hidden)

    @torch.no_grad()
    def class_logits(self, state: TokenState) -> torch.Tensor:
        """(B, n_labels) the classifier on the final CLS state."""
        return self.classifier(self.cls_output(state))

    # ---- the HF forward under reduction ------------------------------------------------------------
    def forward_inputs(self, named: dict) -> tuple[TokenState, torch.Tensor]:
        pixel_values = named.get("pixel_values")
        if pixel_values is None:
            raise ValueError("token reduction on a vit model needs pixel_values")
        state = self.embed_images(pixel_values)
        b, n = state.alive.shape
        return state, torch.arange(n, device=state.alive.device).expand(b, n)

    def forward_output(self, state: TokenState, columns, named: dict):
        from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput

        if hasattr(self.model, "classifier"):
            return ImageClassifierOutput(logits=self.class_logits(state))
        hidden, pooler = columns(), self._vit.pooler
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=None if pooler is None else pooler(hidden))


def _legacy(layer: torch.nn.Module) -> bool:
    """True for transformers 5.2's ViTLayer (the kvpress set): attention.attention.{query,key,value}, and a
    forward that takes no attention mask."""
    return not hasattr(layer.attention, "k_proj")


def _legacy_layer_forward(layer: Any, hidden: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """transformers 5.2's ``ViTLayer.forward`` step by step, with the additive ``bias`` its forward cannot take:
    the layer's own modules and the model's attention kernel, so with ``bias=None`` it computes what the layer does."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.vit.modeling_vit import eager_attention_forward

    attn = layer.attention.attention
    x = layer.layernorm_before(hidden)
    q, k, v = (p(x).view(*x.shape[:2], -1, attn.attention_head_size).transpose(1, 2) for p in (attn.query, attn.key, attn.value))
    kernel = ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation, eager_attention_forward)
    context, _ = kernel(attn, q, k, v, bias, is_causal=False, scaling=attn.scaling, dropout=0.0)
    hidden = layer.attention.output(context.reshape(*x.shape[:2], -1), x) + hidden
    return layer.output(layer.intermediate(layer.layernorm_after(hidden)), hidden)
