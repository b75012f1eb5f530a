"""Running decisions: :class:`Decider`, the ``decide(layer, state)`` callback every caller hands to
:meth:`Backbone.run` (env, evaluation, the patched HF forward), and the :class:`RunTrace` it records
(tokens entering each layer, the decisions' own FLOPs, slot maps) that reward, evaluation and prefill
read. What a decision sees and the one budget rule live in :mod:`rltr.core.decisions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rltr.core.compute import ArchSpec, compute_fraction
from rltr.core.decisions import Decision, DecisionContext, check_budget, decision_context, resolve_actions
from rltr.core.ops import Action, TokenState, apply_actions


def check_reducer(reducer, backbone, budget: float | None) -> float | None:
    """``budget`` when ``reducer`` may run on ``backbone`` at it; ValueError naming the method otherwise (a
    causal-only rule on an encoder, a budget for a method that sets its own token counts)."""
    name = getattr(reducer, "label", None) or reducer.name
    if getattr(reducer, "causal_only", False) and not backbone.causal:
        raise ValueError(
            f"method {name!r} keeps a recent window of a causal sequence: not applicable to encoders "
            f"({backbone.family} model {backbone.name!r})"
        )
    if budget is not None and not getattr(reducer, "takes_budget", True):
        raise ValueError(f"method {name!r} sets its own token counts; run it with budget none, not {budget}")
    return budget


@dataclass
class RunTrace:
    """What one run of a token-reduction pass did, per row: read by env rewards, evaluation and the prefill.

    tokens_per_layer: (B, L) long, live tokens entering each layer (after any decision before it).
    decision_flops:   (B,) float64, what the decisions themselves computed (charged by their contexts).
    slot_maps:        per decision, (B, N_before) long: the slot each token before the decision occupies
                      after it (merged tokens: their destination's slot; dropped: -1).
    n_original:       (B,) long tokens per row before any reduction.
    """

    n_original: torch.Tensor
    tokens_per_layer: torch.Tensor
    decision_flops: torch.Tensor
    slot_maps: list[torch.Tensor] = field(default_factory=list)

    def compute_fraction(self, arch: ArchSpec, n_head_tokens=0) -> torch.Tensor:
        """(B,) float64 reduced / full FLOPs, decisions included; the full pass runs every token everywhere."""
        counts = self.tokens_per_layer.double()
        return compute_fraction(arch, list(counts.T), self.n_original.double(), n_head_tokens, self.decision_flops)

    @property
    def kept_ratio(self) -> torch.Tensor:
        """(B,) float64 tokens entering the last layer / tokens before any reduction."""
        return self.tokens_per_layer[:, -1].double() / self.n_original.double()


class Decider:
    """The ``decide(layer, state)`` callback :meth:`rltr.backbones.base.Backbone.run` calls before each
    decision layer, applying ``reducer``; also its ``on_layer`` hook, which records the trace.

    A decider may be reused for any number of runs and batch sizes: each run starts at its first
    decision layer, where the row counts and the trace are taken afresh (``trace`` is the latest run's).

    relevant:     (B, N_original) bool on original positions (moved to the current slots here).
    context_len:  (B,) long, where each row's tail starts (positions >= it are the tail).
    answer_start: (B,) long, where a teacher-forced answer starts (kept, never read by a decision).
    """

    def __init__(
        self,
        reducer,
        backbone,
        decision_layers,
        budget: float | None = None,
        relevant: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        context_len: torch.Tensor | None = None,
        query_aware: bool = True,
        answer_start: torch.Tensor | None = None,
    ):
        self.reducer, self.backbone, self.budget = reducer, backbone, check_reducer(reducer, backbone, check_budget(budget))
        self.answer_start = answer_start
        self.layers = sorted(set(decision_layers))
        if not self.layers:
            raise ValueError("decision_layers is empty: give at least one layer")
        self.relevant, self.generator, self.context_len, self.query_aware = relevant, generator, context_len, query_aware
        self.arch = ArchSpec.from_config(backbone.config)
        self.trace: RunTrace | None = None
        self._counts: dict[int, torch.Tensor] = {}

    def __call__(self, layer: int, state: TokenState) -> TokenState:
        step = self.layers.index(layer)
        if step == 0:  # a new run: nothing has been reduced yet, so the live tokens are the original ones
            n = state.n_alive
            self.trace = RunTrace(n, torch.empty(0), torch.zeros(n.shape[0], dtype=torch.float64, device=n.device))
        trace = self.trace
        if trace is None:
            raise RuntimeError(f"decision layer {layer} ran before the run's first decision layer {self.layers[0]}")
        ctx = decision_context(
            self.backbone,
            state,
            self.layers,
            step,
            trace.n_original,
            self.budget,
            self.relevant,
            self.context_len,
            self.query_aware,
            self.generator,
            arch=self.arch,
            answer_start=self.answer_start,
        )
        new, slot_map = execute(ctx, self.reducer.decide(ctx))
        assert ctx.flops is not None, "DecisionContext.__post_init__ sets flops"
        trace.decision_flops = trace.decision_flops + ctx.flops
        trace.slot_maps.append(slot_map)
        return new

    def on_layer(self, i: int, state: TokenState) -> None:
        """Record the live tokens entering layer ``i`` (pass it as ``Backbone.run``'s ``on_layer``); after
        the last layer the trace holds ``tokens_per_layer``."""
        if i == 0:
            self._counts = {}
        self._counts[i] = state.n_alive
        if i == self.backbone.n_layers - 1 and self.trace is not None:
            self.trace.tokens_per_layer = torch.stack([self._counts[j] for j in range(i + 1)], dim=1)


def execute(ctx: DecisionContext, d: Decision) -> tuple[TokenState, torch.Tensor]:
    """Apply a reducer's :class:`Decision` under the one rule (:func:`resolve_actions`); returns the new
    (compacted) state and the slot map (B, N_before) of where each token went (-1: dropped).

    With chosen merge destinations (``d.merge_dst``), tokens that absorb merges are the last KEEPs the budget
    cap drops, and a MERGE whose destination was dropped all the same is dropped with it (its group is gone)."""
    if d.merge_dst is None:
        actions = resolve_actions(ctx, d.actions)
    else:
        state = ctx.state
        merging = (d.actions == Action.MERGE) & (d.merge_dst >= 0) & state.alive
        absorbs = torch.zeros_like(merging).scatter(1, d.merge_dst.clamp_min(0), merging)  # (B, N) receives a merge
        priority = state.positions.float() + absorbs.float() * (state.positions.max().float() + 1.0)
        actions = resolve_actions(ctx, d.actions, keep_priority=priority)
        lost = (actions == Action.MERGE) & (d.merge_dst >= 0) & (torch.gather(actions, 1, d.merge_dst.clamp_min(0)) != Action.KEEP)
        actions = torch.where(lost, Action.DROP, actions)
    return apply_actions(
        ctx.state, actions, causal=ctx.backbone.causal, match=d.match, merge_dst=d.merge_dst, dst_allowed=ctx.context, return_slot_map=True
    )
