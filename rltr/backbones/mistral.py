"""Mistral family adapter (``MistralForCausalLM``): the Llama structure with one sliding attention window
(``config.sliding_window`` tokens, None = full attention) at every layer."""

from __future__ import annotations

from rltr.backbones.llama import LlamaBackbone


class MistralBackbone(LlamaBackbone):
    family = "mistral"
    model_types = ("mistral",)

    def sliding_window(self, i: int) -> int | None:
        return self.config.sliding_window
