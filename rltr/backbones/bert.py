"""BERT family adapter (``BertModel``; MiniLM and sentence-transformers checkpoints are BertModels): learned
absolute positions and token types, post-norm blocks, a padding mask. The first and last real token of
each row (``[CLS]`` and ``[SEP]``) are protected."""

from __future__ import annotations

import torch

from rltr.backbones.encoder import EncoderBackbone, first_and_last, gather_rows
from rltr.core.ops import TokenState


class BertBackbone(EncoderBackbone):
    family = "bert"
    model_types = ("bert",)
    forward_args = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "return_dict", "use_cache")

    @classmethod
    def auto_class(cls, config):
        from transformers import AutoModel

        return AutoModel

    @property
    def _bert(self):
        return getattr(self.model, "bert", self.model)

    @property
    def layers(self):
        return self._bert.encoder.layer

    @torch.no_grad()
    def embed(self, input_ids, attention_mask=None, protected=None, position_ids=None, token_type_ids=None) -> TokenState:
        """As :meth:`Backbone.embed`, plus ``token_type_ids`` (B, L); positions default to the column index,
        as ``BertModel`` numbers them (so a left-padded row is embedded as BERT itself embeds it)."""
        return self._embed(input_ids, attention_mask, protected, position_ids, token_type_ids=token_type_ids)[0]

    def _embed(self, input_ids, attention_mask, protected, position_ids, **columns):
        if position_ids is None and isinstance(input_ids, torch.Tensor) and input_ids.ndim == 2:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        return super()._embed(input_ids, attention_mask, protected, position_ids, **columns)

    def special_tokens(self, alive: torch.Tensor) -> torch.Tensor:
        return first_and_last(alive)

    def embed_tokens(self, input_ids: torch.Tensor, positions: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        return self._bert.embeddings(input_ids=input_ids, token_type_ids=types, position_ids=positions)

    def _layer_forward(self, i: int, state: TokenState, bias: torch.Tensor | None) -> torch.Tensor:
        return self.layers[i](state.hidden, attention_mask=bias)

    def _heads(self, i: int, proj: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """(B, H, R, d_head) one projection of layer ``i``'s input ``x`` (B, R, D) (post-norm: no norm first)."""
        return proj(x).view(*x.shape[:2], -1, self.layers[i].attention.self.attention_head_size).transpose(1, 2)

    def key_states(self, i: int, state: TokenState) -> torch.Tensor:
        return self._heads(i, self.layers[i].attention.self.key, state.hidden)

    def query_states(self, i: int, state: TokenState, rows: torch.Tensor) -> torch.Tensor:
        return self._heads(i, self.layers[i].attention.self.query, gather_rows(state.hidden, rows))

    def attn_scaling(self, i: int) -> float:
        return self.layers[i].attention.self.scaling

    def final_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden  # post-norm: the last block's output is final

    # ---- the HF forward under reduction ------------------------------------------------------------
    def forward_inputs(self, named: dict) -> tuple[TokenState, torch.Tensor]:
        input_ids = named.get("input_ids")
        if input_ids is None:
            raise ValueError("token reduction on a bert model needs input_ids")
        state, order = self._embed(
            input_ids, named.get("attention_mask"), None, named.get("position_ids"), token_type_ids=named.get("token_type_ids")
        )
        return state, order

    def forward_output(self, state: TokenState, columns, named: dict):
        from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

        if self._bert is not self.model:
            raise ValueError(f"token reduction runs BertModel's forward; {type(self.model).__name__} adds a head it does not run")
        hidden, pooler = columns(), self._bert.pooler
        assert pooler is None or isinstance(pooler, torch.nn.Module), "BertModel.pooler is a BertPooler or None"
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden,
            pooler_output=None if pooler is None else pooler(hidden),
        )
