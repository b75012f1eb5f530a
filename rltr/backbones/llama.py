"""Llama-like family adapter (``LlamaForCausalLM``): rotary positions, RMSNorm, grouped KV heads.

The structure Qwen2, Qwen3 and Mistral share; their adapters subclass this one and change only what
differs. Reduced tokens keep their original position ids, so rotary phases never shift after a
reduction. The phases are computed once per prompt, for its full positions 0..P-1 (some rope variants'
frequencies depend on the longest position of the call: dynamic NTK, longrope), and every layer
gathers the rows it needs by original position.
"""

from __future__ import annotations

import torch
from transformers.models.llama.modeling_llama import repeat_kv, rotate_half

from rltr.backbones.base import Backbone
from rltr.core.ops import TokenState


class LlamaBackbone(Backbone):
    family = "llama"
    model_types = ("llama",)

    def __init__(self, model, name: str = ""):
        super().__init__(model, name)
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None  # cos, sin (P, d_head) of positions 0..P-1

    @property
    def _base(self):
        return self.model.model

    @property
    def layers(self):
        return self._base.layers

    @property
    def lm_head(self):
        return self.model.lm_head

    @property
    def max_positions(self) -> int | None:
        # dynamic NTK scaling exists to run past max_position_embeddings (its frequencies follow the call's length)
        if (getattr(self.config, "rope_parameters", None) or {}).get("rope_type") == "dynamic":
            return None
        return super().max_positions

    def embed_tokens(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self._base.embed_tokens(input_ids)

    def _start_prompt(self, hidden: torch.Tensor, positions: torch.Tensor) -> None:
        self._rope = self._rotary_table(hidden, int(positions.max()) + 1)

    def _rotary_table(self, like: torch.Tensor, n_positions: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin (n_positions, d_head) of positions 0..n_positions-1, in one call of the model's rotary module."""
        cos, sin = self._base.rotary_emb(like, position_ids=torch.arange(n_positions, device=like.device)[None])
        return cos[0], sin[0]

    def _rotary(self, positions: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin (B, N, d_head) at original ``positions`` (B, N), gathered from the prompt's table."""
        if self._rope is None or self._rope[0].shape[0] <= int(positions.max()):
            # a state that outlived its prompt's table (a longer prompt embedded before it): its own positions
            self._rope = self._rotary_table(like, int(positions.max()) + 1)
        cos, sin = self._rope
        return cos[positions], sin[positions]

    def _layer_forward(self, i: int, state: TokenState, bias: torch.Tensor | None) -> torch.Tensor:
        return self.layers[i](
            state.hidden,
            attention_mask=bias,
            position_ids=state.positions,
            position_embeddings=self._rotary(state.positions, state.hidden),
        )

    def _heads(self, i: int, which: str, x: torch.Tensor) -> torch.Tensor:
        """Layer ``i``'s query (``which="q"``) or key (``"k"``) heads of normed ``x`` (B, R, D) before
        rotary: (B, H, R, d_head), H the query or key/value heads."""
        attn = self.layers[i].self_attn
        proj = attn.q_proj if which == "q" else attn.k_proj
        return proj(x).view(*x.shape[:2], -1, attn.head_dim).transpose(1, 2)

    def _rotated(self, i: int, which: str, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """:meth:`_heads` of ``x`` (B, R, D) with rotary phases at ``positions`` (B, R)."""
        h = self._heads(i, which, self.layers[i].input_layernorm(x))
        cos, sin = self._rotary(positions, x)
        return h * cos[:, None] + rotate_half(h) * sin[:, None]

    def key_states(self, i: int, state: TokenState) -> torch.Tensor:
        k = self._rotated(i, "k", state.hidden, state.positions)
        return repeat_kv(k, self.layers[i].self_attn.num_key_value_groups)

    def query_states(self, i: int, state: TokenState, rows: torch.Tensor) -> torch.Tensor:
        x = torch.gather(state.hidden, 1, rows[:, :, None].expand(-1, -1, state.hidden.shape[-1]))  # (B, R, D)
        return self._rotated(i, "q", x, torch.gather(state.positions, 1, rows))

    def attn_scaling(self, i: int) -> float:
        return self.layers[i].self_attn.scaling

    def final_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._base.norm(hidden)
