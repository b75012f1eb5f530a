"""Llama-like family adapter (``LlamaForCausalLM``): rotary positions, RMSNorm, grouped KV heads.

Reduced tokens keep their original position ids, so rotary phases never shift after a reduction.
"""

from __future__ import annotations

import torch
from transformers.models.llama.modeling_llama import repeat_kv, rotate_half

from rltr.backbones.base import Backbone
from rltr.ops import TokenState


class LlamaBackbone(Backbone):
    family = "llama"
    model_types = ("llama",)

    @property
    def _base(self):
        return self.model.model

    @property
    def layers(self):
        return self._base.layers

    @property
    def lm_head(self):
        return self.model.lm_head

    def embed_tokens(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self._base.embed_tokens(input_ids)

    def _rotary(self, state: TokenState) -> tuple[torch.Tensor, torch.Tensor]:
        return self._base.rotary_emb(state.hidden, position_ids=state.positions)

    def _layer_forward(self, i: int, state: TokenState, bias: torch.Tensor) -> torch.Tensor:
        return self.layers[i](
            state.hidden, attention_mask=bias, position_ids=state.positions, position_embeddings=self._rotary(state)
        )

    def key_states(self, i: int, state: TokenState) -> torch.Tensor:
        attn = self.layers[i].self_attn
        x = self.layers[i].input_layernorm(state.hidden)
        k = attn.k_proj(x).view(*x.shape[:2], -1, attn.head_dim).transpose(1, 2)
        cos, sin = self._rotary(state)
        k = k * cos[:, None] + rotate_half(k) * sin[:, None]
        return repeat_kv(k, attn.num_key_value_groups)

    def query_states(self, i: int, state: TokenState, rows: torch.Tensor) -> torch.Tensor:
        attn = self.layers[i].self_attn
        x = torch.gather(state.hidden, 1, rows[:, :, None].expand(-1, -1, state.hidden.shape[-1]))  # (B, R, D)
        q = attn.q_proj(self.layers[i].input_layernorm(x)).view(*x.shape[:2], -1, attn.head_dim).transpose(1, 2)
        cos, sin = self._base.rotary_emb(x, position_ids=torch.gather(state.positions, 1, rows))
        return q * cos[:, None] + rotate_half(q) * sin[:, None]

    def attn_scaling(self, i: int) -> float:
        return self.layers[i].self_attn.scaling

    def final_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._base.norm(hidden)
