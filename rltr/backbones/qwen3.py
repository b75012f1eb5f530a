"""Qwen3 family adapter (``Qwen3ForCausalLM``): Qwen2's structure plus an RMSNorm over each query and key
head (``q_norm`` / ``k_norm``, before rotary)."""

from __future__ import annotations

import torch

from rltr.backbones.qwen2 import Qwen2Backbone


class Qwen3Backbone(Qwen2Backbone):
    family = "qwen3"
    model_types = ("qwen3",)

    def _heads(self, i: int, which: str, x: torch.Tensor) -> torch.Tensor:
        attn = self.layers[i].self_attn
        proj, norm = (attn.q_proj, attn.q_norm) if which == "q" else (attn.k_proj, attn.k_norm)
        return norm(proj(x).view(*x.shape[:2], -1, attn.head_dim)).transpose(1, 2)
