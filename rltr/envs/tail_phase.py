"""The env's query-agnostic episodes, two-phase as in evaluation (:mod:`rltr.inference.two_phase`): the policy
reduces the context alone, layer by layer, while every layer's keys/values go to a KV cache; when the episode
ends the cache is cut to the final slots and the tail (question + teacher-forced answer) runs on it through the
model's own forward. The reward is scored on those tail logits, so it is the number evaluation reports.

Shapes: B rows, N slots (the batch's columns: right-padded, position = column), V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers.cache_utils import DynamicCache

from rltr.core.decider import RunTrace
from rltr.core.ops import TokenState
from rltr.inference.prefill import keep_final_slots
from rltr.inference.two_phase import context_only, run_tail, tail_of


@dataclass
class TailPhase:
    """One batch's two-phase bookkeeping. ``full``: the embedded batch (tail included; the fidelity reference
    reads it); ``context``: the same with the tail made padding (what the episode runs); ``cache``: filled as the
    context runs; ``entering``: the state entering each layer (what :func:`keep_final_slots` cuts);
    ``n_tail`` (B,): tail tokens per row (charged at every layer, as they run through all of them)."""

    full: TokenState
    context: TokenState
    cache: DynamicCache
    n_tail: torch.Tensor
    entering: list[TokenState] = field(default_factory=list)

    @classmethod
    def start(cls, backbone, batch, embedded: TokenState) -> TailPhase:
        context_len = batch.context_len.to(embedded.alive.device)
        context = context_only(embedded, context_len)
        return cls(embedded, context, DynamicCache(config=backbone.model.config), embedded.n_alive - context.n_alive)

    @torch.no_grad()
    def finish(self, backbone, batch, final: TokenState, trace: RunTrace, decision_layers: list[int]) -> torch.Tensor:
        """(B, N, V) logits at the tail's positions (0 elsewhere) after the episode left ``final`` (the reduced
        context after the last layer) and ``trace`` (its slot maps)."""
        assert len(self.entering) == backbone.n_layers, f"the context ran {len(self.entering)} of {backbone.n_layers} layers"
        keep_final_slots(self.cache, self.entering, final, trace, decision_layers)
        neg = torch.finfo(backbone.dtype).min
        key_bias = torch.where(final.alive, torch.log(final.sizes.clamp_min(1.0)), neg).to(backbone.dtype)
        ids, alive = batch.input_ids, batch.attention_mask.bool()
        start = batch.context_len.to(ids.device)
        tail_ids, tail_alive = tail_of(ids, alive, start)
        logits = run_tail(backbone.model.forward, self.cache, key_bias, tail_ids, tail_alive, start)  # (B, T, V)
        out = logits.new_zeros((*ids.shape, logits.shape[-1]))
        j = torch.arange(tail_ids.shape[1], device=ids.device)[None, :]
        rows, slots = tail_alive.nonzero(as_tuple=True)
        out[rows, (start[:, None] + j)[rows, slots]] = logits[rows, slots]
        return out
