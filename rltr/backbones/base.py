"""The backbone contract: a frozen HF model run layer by layer on a :class:`~rltr.core.ops.TokenState`.

A family adapter knows one model family's internals (embedding, blocks, attention projections, head)
and nothing else. Everything that decides or changes tokens lives outside: ``decide`` callbacks
(reducers) and :mod:`rltr.core.ops`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from rltr.backbones.masks import CAUSAL_KERNELS, attention_bias, is_plain
from rltr.backbones.padding import aligned, right_aligned, to_columns
from rltr.core.decisions import check_decision_layers
from rltr.core.ops import TokenState, scatter_to_positions

if TYPE_CHECKING:  # annotations only: transformers loads with the first model
    from transformers import PretrainedConfig, PreTrainedModel

# decide(layer_index, state) -> new state, called before each decision layer runs.
Decide = Callable[[int, TokenState], TokenState]

_VOLATILE_CONFIG_KEYS = {"transformers_version", "_name_or_path", "torch_dtype", "dtype", "_attn_implementation"}


def config_hash(config) -> str:
    """Short, stable hash of a model config (architecture and vocabulary; not paths or versions)."""
    d = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class Backbone:
    """Frozen transformer run layer by layer (causal LMs here; encoders in :mod:`rltr.backbones.encoder`).
    Subclasses set ``family`` and implement the hooks.

    Shapes: B batch, N current tokens, D hidden, H heads, V vocabulary.
    """

    family: str = ""
    model_types: tuple[str, ...] = ()
    causal: bool = True
    takes_images: bool = False  # its prompt pass also reads images (a VLM): pixel values go to the embedding
    inputs: str = "tokens"  # what the model reads: token ids, or images (pixel values)

    @classmethod
    def auto_class(cls, config):
        """The transformers Auto class that loads this family's model for ``config``."""
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def __init__(self, model: PreTrainedModel, name: str = ""):
        self.model = model.eval().requires_grad_(False)
        self.config: PretrainedConfig = model.config
        self.name = name or getattr(self.config, "_name_or_path", "")

    # ---- family hooks -------------------------------------------------------------------------
    @property
    def layers(self) -> nn.ModuleList:
        raise NotImplementedError

    def embed_tokens(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """(B, N) ids -> (B, N, D) hidden states entering layer 0."""
        raise NotImplementedError

    def _layer_forward(self, i: int, state: TokenState, bias: torch.Tensor | None) -> torch.Tensor:
        """Run block ``i`` on ``state`` with the additive ``bias``; return (B, N, D)."""
        raise NotImplementedError

    def key_states(self, i: int, state: TokenState) -> torch.Tensor:
        """(B, H, N, d_head) layer ``i``'s keys on ``state`` (kv heads repeated; no query or value
        projection is computed)."""
        raise NotImplementedError

    def query_states(self, i: int, state: TokenState, rows: torch.Tensor) -> torch.Tensor:
        """(B, H, R, d_head) layer ``i``'s queries for the slots ``rows`` (B, R long) only."""
        raise NotImplementedError

    def final_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm: (B, N, D) -> (B, N, D)."""
        raise NotImplementedError

    def sliding_window(self, i: int) -> int | None:
        """Layer ``i``'s sliding attention window in tokens (None: full attention)."""
        return None

    def special_tokens(self, alive: torch.Tensor) -> torch.Tensor | None:
        """(B, N) bool: tokens the family always protects, on the right-aligned slots with ``alive`` (B, N)
        (encoders: CLS, SEP); None: none."""
        return None

    def embed_images(self, pixel_values: torch.Tensor, protected: torch.Tensor | None = None) -> TokenState:
        """Token state entering layer 0 for a (B, C, H, W) image batch (vision families only)."""
        raise ValueError(f"{self.family} model {self.name!r} takes token ids, not images (pixel values)")

    def _start_prompt(self, hidden: torch.Tensor, positions: torch.Tensor) -> None:
        """Called once per embedded prompt with its full positions (B, N), before any reduction
        (e.g. to compute rotary phases for the whole prompt)."""

    @property
    def lm_head(self) -> nn.Linear:
        raise NotImplementedError

    def attn_scaling(self, i: int) -> float:
        raise NotImplementedError

    # ---- shared machinery -----------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def max_positions(self) -> int | None:
        return getattr(self.config, "n_positions", None) or getattr(self.config, "max_position_embeddings", None)

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    @torch.no_grad()
    def embed(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        protected: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> TokenState:
        """Token state entering layer 0 for (B, N) ids; ``attention_mask`` (B, N), 1 = real token.

        Either padding side: each row's real tokens are moved to its front (the state's layout),
        positions count real tokens (0, 1, ...); ``protected`` / ``position_ids`` are given in the
        caller's columns and move with their tokens. :meth:`forward_logits` maps results back.
        """
        return self._embed(input_ids, attention_mask, protected, position_ids)[0]

    def _embed(self, input_ids, attention_mask, protected, position_ids, **columns) -> tuple[TokenState, torch.Tensor]:
        """(state, order (B, N) long: the caller's column of each slot). ``columns``: further per-column
        (B, N) inputs of :meth:`embed_tokens` (e.g. BERT's token types), aligned like the ids; None ones are left out."""
        input_ids = input_ids.to(self.device)
        if input_ids.ndim != 2 or input_ids.numel() == 0:
            raise ValueError(f"input must be a non-empty (batch, tokens) tensor, got shape {tuple(input_ids.shape)}")
        b, n = input_ids.shape
        if self.max_positions is not None and n > self.max_positions:
            raise ValueError(f"input of {n} tokens is longer than {self.name or self.family}'s {self.max_positions} positions")
        ids, alive, order = right_aligned(input_ids, attention_mask)
        if protected is not None:
            protected = aligned(protected.to(self.device).expand(b, n), order)
        special = self.special_tokens(alive)
        if special is not None:
            protected = special if protected is None else protected | special
        if position_ids is None:
            positions = torch.arange(n, device=self.device).expand(b, n)
        else:
            positions = aligned(position_ids.to(self.device).expand(b, n), order)
        extra = {k: aligned(v.to(self.device).expand(b, n), order) for k, v in columns.items() if v is not None}
        hidden = self.embed_tokens(ids, positions, **extra)
        self._start_prompt(hidden, positions)
        return TokenState.from_hidden(hidden, alive=alive, positions=positions, protected=protected), order

    @torch.no_grad()
    def run_layer(self, i: int, state: TokenState) -> TokenState:
        return state.with_hidden(self._layer_forward(i, state, self._layer_bias(i, state)))

    def _layer_bias(self, i: int, state: TokenState) -> torch.Tensor | None:
        """Layer ``i``'s additive attention bias on ``state`` (with the layer's window), or None where the
        attention kernel's own causal path is exact and faster: an unreduced, unpadded state within the
        window, under an implementation that masks causally by itself (sdpa; eager applies no mask at all)."""
        window = self.sliding_window(i)
        kernel_causal = self.causal and self.config._attn_implementation in CAUSAL_KERNELS
        if kernel_causal and (window is None or state.alive.shape[1] <= window) and is_plain(state):
            return None
        return attention_bias(state, self.causal, self.dtype, window=window)

    @torch.no_grad()
    def run(
        self,
        state: TokenState,
        decide: Decide | None = None,
        decision_layers: Iterable[int] = (),
        on_layer: Callable[[int, TokenState], None] | None = None,
    ) -> TokenState:
        """Run every layer; call ``decide`` before each layer in ``decision_layers``.

        ``on_layer(i, state)`` sees the state entering layer ``i`` (after any decision), e.g. to
        record token counts for the compute model.
        """
        decision_layers = set(check_decision_layers(decision_layers, self.n_layers))
        for i in range(self.n_layers):
            if decide is not None and i in decision_layers:
                state = decide(i, state)
            if on_layer is not None:
                on_layer(i, state)
            state = self.run_layer(i, state)
        return state

    @torch.no_grad()
    def run_layers(self, state: TokenState, start: int, stop: int, on_layer=None) -> TokenState:
        """Run layers ``start .. stop-1`` with no decisions (the env steps between decision layers)."""
        for i in range(start, stop):
            if on_layer is not None:
                on_layer(i, state)
            state = self.run_layer(i, state)
        return state

    @torch.no_grad()
    def logits(self, state: TokenState, select: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, V) logits for the current slots; with ``select`` (B, N bool) only those are computed
        (the rest are 0), which is what the compute model counts for the LM head."""
        hidden = self.final_hidden(state.hidden)
        if select is None:
            return self.lm_head(hidden)
        out = hidden.new_zeros((*hidden.shape[:2], self.lm_head.out_features))
        out[select] = self.lm_head(hidden[select])
        return out

    @torch.no_grad()
    def answer_logits(self, state: TokenState, answer_mask: torch.Tensor) -> torch.Tensor:
        """(B, N_original, V) logits at original positions, computed only where ``answer_mask``
        (B, N_original bool) is set and the token is still live; 0 elsewhere."""
        select = torch.gather(answer_mask, 1, state.positions) & state.alive
        return scatter_to_positions(self.logits(state, select), state, answer_mask.shape[1])

    def query_key(self, i: int, state: TokenState) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``i``'s queries and keys for every slot of ``state``: (B, H, N, d_head) each."""
        b, n = state.alive.shape
        rows = torch.arange(n, device=state.alive.device).expand(b, n)
        return self.query_states(i, state, rows), self.key_states(i, state)

    @torch.no_grad()
    def attention(self, i: int, state: TokenState) -> torch.Tensor:
        """(B, H, N, N) attention probabilities layer ``i`` would use on ``state``.

        Computed on demand (one QK^T at this layer only), with the same masks and proportional
        attention as the layer itself; no layer ever materialises attention maps otherwise.
        """
        q, k = self.query_key(i, state)
        scores = (q @ k.transpose(-1, -2)).float() * self.attn_scaling(i)
        return (scores + attention_bias(state, self.causal, torch.float32, window=self.sliding_window(i))).softmax(dim=-1)

    @torch.no_grad()
    def attention_rows(self, i: int, state: TokenState, rows: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H, R, N) layer ``i``'s attention probabilities for query slots ``rows`` (B, R long) only.

        Same masks and proportional attention as :meth:`attention`, at R x N instead of N x N cost:
        queries are projected for the R rows only; ``keys`` (B, H, N, d_head), when given, are the
        layer's :meth:`key_states` on ``state`` already computed (callers reading several row sets
        project the keys once).
        """
        q = self.query_states(i, state, rows)  # (B, H, R, dh)
        k = self.key_states(i, state) if keys is None else keys
        scores = (q @ k.transpose(-1, -2)).float() * self.attn_scaling(i)
        return (scores + attention_bias(state, self.causal, torch.float32, rows, self.sliding_window(i))).softmax(dim=-1)

    @torch.no_grad()
    def forward_logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        protected: torch.Tensor | None = None,
        decide: Decide | None = None,
        decision_layers: Iterable[int] = (),
    ) -> torch.Tensor:
        """(B, N, V) logits at the caller's columns (0 where a token was reduced away, and on padding);
        either padding side."""
        state, order = self._embed(input_ids, attention_mask, protected, None)
        state = self.run(state, decide, decision_layers)
        return to_columns(scatter_to_positions(self.logits(state), state, input_ids.shape[1]), order)
