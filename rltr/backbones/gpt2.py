"""GPT-2 family adapter (``GPT2LMHeadModel``): learned absolute positions, LayerNorm blocks."""

from __future__ import annotations

import torch

from rltr.backbones.base import Backbone
from rltr.core.ops import TokenState


class GPT2Backbone(Backbone):
    family = "gpt2"
    model_types = ("gpt2",)

    @property
    def _tf(self):
        return self.model.transformer

    @property
    def layers(self):
        return self._tf.h

    @property
    def lm_head(self):
        return self.model.lm_head

    def embed_tokens(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self._tf.wte(input_ids) + self._tf.wpe(positions)

    def _layer_forward(self, i: int, state: TokenState, bias: torch.Tensor | None) -> torch.Tensor:
        out = self.layers[i](state.hidden, attention_mask=bias)
        return out[0] if isinstance(out, tuple) else out  # transformers 5.2 (the kvpress set): (hidden, ...)

    def _projection(self, i: int, which: int, x: torch.Tensor) -> torch.Tensor:
        """One of c_attn's three projections (0 query, 1 key, 2 value) of ``x`` (..., D): (..., H, d_head).
        c_attn is a Conv1D (x @ W + b with W (D, 3D)); slicing W computes a third of its output."""
        attn = self.layers[i].attn
        d = attn.split_size
        w, b = attn.c_attn.weight[:, which * d : (which + 1) * d], attn.c_attn.bias[which * d : (which + 1) * d]
        return torch.addmm(b, x.reshape(-1, x.shape[-1]), w).view(*x.shape[:-1], -1, attn.head_dim)

    def key_states(self, i: int, state: TokenState) -> torch.Tensor:
        return self._projection(i, 1, self.layers[i].ln_1(state.hidden)).transpose(1, 2)

    def query_states(self, i: int, state: TokenState, rows: torch.Tensor) -> torch.Tensor:
        x = torch.gather(state.hidden, 1, rows[:, :, None].expand(-1, -1, state.hidden.shape[-1]))  # (B, R, D)
        return self._projection(i, 0, self.layers[i].ln_1(x)).transpose(1, 2)

    def attn_scaling(self, i: int) -> float:
        attn = self.layers[i].attn
        if hasattr(attn, "scaling"):
            return attn.scaling
        # transformers 5.2 keeps no scaling: its eager attention applies these two flags
        scaling = attn.head_dim**-0.5 if attn.scale_attn_weights else 1.0
        return scaling / (attn.layer_idx + 1) if attn.scale_attn_by_inverse_layer_idx else scaling

    def final_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._tf.ln_f(hidden)
