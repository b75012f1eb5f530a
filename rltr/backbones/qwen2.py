"""Qwen2 family adapter (``Qwen2ForCausalLM``): the Llama structure with biases on the q/k/v projections
(part of their ``nn.Linear``, so the Llama code applies as is) and optional sliding-window layers
(``use_sliding_window``: layers from ``max_window_layers`` on attend to the last ``sliding_window`` tokens)."""

from __future__ import annotations

from rltr.backbones.llama import LlamaBackbone


class Qwen2Backbone(LlamaBackbone):
    family = "qwen2"
    model_types = ("qwen2",)

    def sliding_window(self, i: int) -> int | None:
        return self.layers[i].self_attn.sliding_window  # None on full-attention layers
