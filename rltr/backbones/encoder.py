"""Encoder families (ViT, BERT): every token attends to every other one, a CLS token sums the sequence up.

Non-causal: a token may merge into any kept token (:func:`rltr.ops.apply_actions` with ``causal=False``)
and attention is masked only on dead slots, with proportional attention (``log(size)``) on merged ones.
The adapters here also know how a family's HF forward is called and what it returns, so
:mod:`rltr.inference.encoder` can run that forward with token reduction (:meth:`forward_inputs`,
:meth:`forward_output`).

Shapes: B batch, N current token slots, L input columns, D hidden.
"""

from __future__ import annotations

import torch

from rltr.backbones.base import Backbone
from rltr.core.ops import TokenState


def first_and_last(alive: torch.Tensor) -> torch.Tensor:
    """(B, N) bool: the first and the last live slot of each row (live slots come first)."""
    rank = alive.long().cumsum(1)
    return alive & ((rank == 1) | (rank == alive.sum(1, keepdim=True)))


def gather_rows(hidden: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(B, R, D) the slots ``rows`` (B, R long) of ``hidden`` (B, N, D)."""
    return torch.gather(hidden, 1, rows[:, :, None].expand(-1, -1, hidden.shape[-1]))


class EncoderBackbone(Backbone):
    """A bidirectional encoder run layer by layer. Subclasses add the family's hooks, its input reading
    (:meth:`forward_inputs`) and output assembly (:meth:`forward_output`)."""

    causal = False
    forward_args: tuple[str, ...] = ()  # the HF forward's arguments a reduced forward honours

    def _layer_bias(self, i: int, state: TokenState) -> torch.Tensor | None:
        """None (the kernel's unmasked path, exact and fastest) while every slot is live and unmerged; else
        (B, 1, 1, N): non-causal attention masks by key only, so one row serves every query: dead keys
        masked, log(size) on live ones (proportional attention). Every row keeps a live key (CLS), so no
        softmax row is empty; dead query rows compute values nobody reads."""
        if bool(state.alive.all()) and bool((state.sizes == 1).all()):
            return None
        neg = torch.finfo(self.dtype).min
        log_size = torch.log(state.sizes.clamp_min(1.0)).to(self.dtype)
        return torch.where(state.alive, log_size, torch.full_like(log_size, neg))[:, None, None, :]

    @property
    def lm_head(self):
        raise ValueError(f"{self.family} model {self.name!r} is an encoder: it has no LM head")

    def sequence_output(self, state: TokenState) -> torch.Tensor:
        """(B, N, D) the model's final hidden states of the current slots (after its final norm)."""
        return self.final_hidden(state.hidden)

    @torch.no_grad()
    def mean_pooled(self, state: TokenState) -> torch.Tensor:
        """(B, D) size-weighted mean of :meth:`sequence_output` over live slots: a merged slot counts as
        many times as the tokens it stands for, so with merges only it equals the full model's mean pool
        of those tokens' final states (sentence-transformers' mean pooling)."""
        w = (state.sizes * state.alive)[..., None].to(state.hidden.dtype)  # (B, N, 1)
        return (self.sequence_output(state) * w).sum(1) / w.sum(1).clamp_min(1e-6)

    @torch.no_grad()
    def cls_output(self, state: TokenState) -> torch.Tensor:
        """(B, D) the final state of the first live slot: the CLS token (protected, never moved)."""
        return self.sequence_output(state)[:, 0]

    # ---- the HF forward under reduction ------------------------------------------------------------
    def forward_inputs(self, named: dict) -> tuple[TokenState, torch.Tensor]:
        """The state entering layer 0 for the HF forward's arguments ``named``, and order (B, L) long:
        the input column of each slot."""
        raise NotImplementedError

    def forward_output(self, state: TokenState, columns, named: dict):
        """The HF forward's output object for the final ``state``; ``columns()`` gives (B, L, D): at each input
        column the final state of the slot that token ended up in (0 where it was dropped), computed on demand."""
        raise NotImplementedError
