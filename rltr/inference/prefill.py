"""Reduced prefill: run a prompt layer by layer with token reduction and fill an HF KV cache.

The adapter runs its ordinary :meth:`~rltr.backbones.base.Backbone.run` (the same code path as
evaluation and training); while it does, a forward pre-hook on every block hands the block the
``DynamicCache``, so each attention module writes the keys/values of the tokens alive at that layer
itself. Afterwards every layer's cache is cut to the *final* token set, so all layers hold the same
slots and one attention mask serves every decode step.

Shapes: B prompts, L prompt columns (padded), N token slots, N_f final slots, V vocabulary,
H_kv key/value heads, d head width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache, DynamicSlidingWindowLayer

from rltr.backbones.base import Backbone
from rltr.backbones.padding import right_aligned
from rltr.core.contracts import DecisionMaker
from rltr.core.decider import Decider, RunTrace
from rltr.core.decisions import check_decision_layers
from rltr.core.ops import TokenState
from rltr.inference.buckets import plan_buckets, run_in_buckets
from rltr.inference.cache import check_fillable, check_window, smallest_window, writing_cache


@dataclass
class PromptHints:
    """What a caller knows about its prompts beyond the tokens (evaluation on task examples), in the
    layout of ``input_ids`` (B, L). Each field is optional.

    context_len: (B,) long, real tokens of each row that are context; the rest of the row is the
                 protected tail (the question, or a teacher-forced answer). The tail is never shorter
                 than ``protect_last``.
    protected:   (B, L) bool, further tokens never removed (e.g. BOS, a task tag).
    relevant:    (B, L) bool, tokens the answer depends on (read by the oracle reducer only; query-agnostic
                 callers pass what any question could need).
    n_answer:    (B,) long, the last real tokens of each row that are a teacher-forced answer (part of the
                 tail): kept, but never read by a decision (at generation time they do not exist yet).
    """

    context_len: torch.Tensor | None = None
    protected: torch.Tensor | None = None
    relevant: torch.Tensor | None = None
    n_answer: torch.Tensor | None = None


@dataclass
class PrefixInfo:
    """A reduced prompt as held in a KV cache: what decode steps need to attend to it.

    positions:     (B, N_f) long, original positions of the cached prompt slots.
    sizes:         (B, N_f) float, how many original tokens each slot stands for (0 on dead slots).
    alive:         (B, N_f) bool, live slots (dead ones are padding and are masked out).
    key_bias:      (B, N_f) float (model dtype), additive attention bias per cached slot: log(size)
                   (proportional attention, 0 for unmerged tokens), dtype min on dead slots.
    n_columns:     L, prompt columns of the 2D attention mask that ``generate()`` keeps extending.
    next_position: (B,) long, position id of the first generated token (real prompt tokens per row):
                   positions continue from the ORIGINAL prompt length.
    trace:         the run's :class:`~rltr.core.decider.RunTrace`: tokens entering each layer, the
                   decisions' own FLOPs and slot maps (what the compute model counts).
    window:        the model's smallest sliding attention window (None: none); prompt + generated tokens
                   must stay shorter (:func:`check_window`).
    """

    positions: torch.Tensor
    sizes: torch.Tensor
    alive: torch.Tensor
    key_bias: torch.Tensor
    n_columns: int
    next_position: torch.Tensor
    trace: RunTrace

    @property
    def layer_counts(self) -> torch.Tensor:
        """(B, n_layers) long, live prompt tokens entering each layer."""
        return self.trace.tokens_per_layer

    window: int | None = None

    @property
    def n_kept(self) -> torch.Tensor:
        """(B,) long: prompt tokens left in the cache per row."""
        return self.alive.sum(1)

    @property
    def n_original(self) -> torch.Tensor:
        """(B,) long: real prompt tokens per row before reduction."""
        return self.next_position


def keep_final_slots(
    cache: DynamicCache, entering: list[TokenState], final: TokenState, trace: RunTrace, decision_layers: list[int]
) -> None:
    """Cut every layer's cache to the slots of ``final``; ``entering[i]`` is the state layer i ran on.

    A layer that ran before a decision cached every token it saw; for each final slot it keeps the
    size-weighted mean of the keys and values of the tokens that slot now stands for (a kept token
    alone, or a merge group), so the cache holds at that layer what the merge means there, and decode
    steps weigh the slot by log(final size) as they do at every layer.
    """
    n_final = final.alive.shape[1]
    for i, state in enumerate(entering):
        if state.positions is final.positions:  # no decision since this layer: same slots already
            continue
        slot = final_slots(state, trace, decision_layers, i)  # (B, N_i): final slot of each token, -1 if dropped
        weight = torch.where(slot >= 0, state.sizes, 0.0)  # (B, N_i)
        idx = slot.clamp_min(0)
        total = weight.new_zeros(weight.shape[0], n_final).scatter_add_(1, idx, weight).clamp_min(1e-6)  # (B, N_f)
        layer = cache.layers[i]
        for name in ("keys", "values"):
            kv = getattr(layer, name)  # (B, H_kv, N_i, d)
            w = (weight / torch.gather(total, 1, idx)).to(kv.dtype)[:, None, :, None]  # (B, 1, N_i, 1)
            index = idx[:, None, :, None].expand(-1, kv.shape[1], -1, kv.shape[3])
            out = kv.new_zeros(kv.shape[0], kv.shape[1], n_final, kv.shape[3]).scatter_add_(2, index, kv * w)
            setattr(layer, name, out)
    for layer in cache.layers:
        if type(layer) is DynamicSlidingWindowLayer:  # its length counts appended tokens: now the cached slots
            assert layer.keys is not None, "keep_final_slots runs on a filled cache"
            layer.cumulative_length = layer.keys.shape[2]


def final_slots(state: TokenState, trace: RunTrace, decision_layers: list[int], layer: int) -> torch.Tensor:
    """(B, N) long: the final slot each token entering ``layer`` ends up in (through every later decision)."""
    slot = torch.where(state.alive, torch.arange(state.alive.shape[1], device=state.alive.device), -1)
    for d, slot_map in zip(decision_layers, trace.slot_maps):
        if d > layer:
            slot = torch.where(slot >= 0, torch.gather(slot_map, 1, slot.clamp_min(0)), -1)
    return slot


@torch.no_grad()
def reduced_prefill(
    backbone: Backbone,
    reducer: DecisionMaker,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    budget: float | None,
    decision_layers: list[int],
    protect_last: int,
    protect_first: int = 0,
    query_aware: bool = True,
    cache: DynamicCache | None = None,
    generator: torch.Generator | None = None,
    hints: PromptHints | None = None,
    bucket: bool = True,
) -> tuple[TokenState, PrefixInfo, torch.Tensor]:
    """Run the prompt (B, L) through every layer with ``reducer`` acting before ``decision_layers``.

    The last ``protect_last`` real tokens of each row are the protected tail (the "query" for
    query-aware reducers), the first ``protect_first`` are protected too (BOS / attention sinks);
    ``hints`` may lengthen the tail per row and protect more tokens (:class:`PromptHints`).
    ``cache`` (an empty DynamicCache, optional) is filled with the keys/values of the final token set
    at every layer. ``bucket``: after a decision that leaves rows of very different lengths, run each
    group of similar rows on its own up to the next decision (:mod:`rltr.inference.buckets`), so the batch
    costs what its rows kept, not its longest row. Returns (final token state (B, N_f), its
    :class:`PrefixInfo`, order (B, L): the original column of each right-aligned slot, to map positions
    back to columns).
    """
    if input_ids.ndim != 2 or input_ids.numel() == 0:
        raise ValueError(f"input_ids must be a non-empty (batch, tokens) tensor, got shape {tuple(input_ids.shape)}")
    ids, alive, order = right_aligned(input_ids.to(backbone.device), attention_mask)
    n_real = alive.sum(1)  # (B,)
    short = (n_real < protect_last).nonzero().flatten().tolist()
    if short:
        raise ValueError(
            f"prompt of {n_real[short[0]].item()} tokens (row {short[0]}) is shorter than the protected tail protect_last={protect_last}"
        )
    idx = torch.arange(ids.shape[1], device=ids.device)[None, :]
    tail_start, extra, relevant = _apply_hints(hints, order, alive, n_real - protect_last)
    protected = alive & ((idx < protect_first) | (idx >= tail_start[:, None]) | extra)
    state = backbone.embed(ids, alive, protected=protected)
    n_answer = None if hints is None or hints.n_answer is None else hints.n_answer.to(ids.device).long().reshape(-1)
    decide = Decider(
        reducer,
        backbone,
        decision_layers,
        budget,
        relevant=relevant,
        generator=generator,
        context_len=tail_start,
        query_aware=query_aware,
        answer_start=None if n_answer is None else n_real - n_answer,
    )
    entering: list[TokenState] = []

    def on_layer(i: int, s: TokenState) -> None:
        entering.append(s)
        decide.on_layer(i, s)

    window = smallest_window(backbone)
    if cache is not None:
        check_fillable(cache, backbone.n_layers)
        check_window(window, ids.shape[1])
    state = _run_layers(backbone, state, decide, on_layer, cache, bucket)
    trace = decide.trace
    assert trace is not None, "the run calls the decider at the first decision layer, which starts its trace"
    if cache is not None:
        keep_final_slots(cache, entering, state, trace, decide.layers)
    neg = torch.finfo(backbone.dtype).min
    key_bias = torch.where(state.alive, torch.log(state.sizes.clamp_min(1.0)), neg).to(backbone.dtype)
    info = PrefixInfo(state.positions, state.sizes, state.alive, key_bias, input_ids.shape[1], n_real, trace, window)
    return state, info, order


def _run_layers(backbone: Backbone, state: TokenState, decide: Decider, on_layer, cache, bucket: bool) -> TokenState:
    """Every layer, ``decide`` before its decision layers; between decisions, rows in buckets of similar
    length when ``bucket`` and the batch is ragged."""
    check_decision_layers(decide.layers, backbone.n_layers)
    bounds = sorted({0, *decide.layers, backbone.n_layers})
    for start, stop in zip(bounds, bounds[1:]):
        if start in decide.layers:
            state = decide(start, state)
        groups = plan_buckets(state.n_alive) if bucket else None
        if groups is None:
            with writing_cache(backbone, cache):
                state = backbone.run_layers(state, start, stop, on_layer=on_layer)
        else:
            state = run_in_buckets(backbone, state, start, stop, groups, on_layer, cache)
    return state


def _apply_hints(
    hints: PromptHints | None, order: torch.Tensor, alive: torch.Tensor, tail_start: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(tail start (B,), extra protected (B, L) bool, relevant (B, L) bool or None) in the right-aligned
    layout, from ``hints`` given in the caller's column layout; ``tail_start`` is the default tail."""
    extra = torch.zeros_like(alive)
    if hints is None:
        return tail_start, extra, None
    b, n_cols = order.shape

    def aligned(mask, name):
        if mask is None:
            return None
        if tuple(mask.shape) != (b, n_cols):
            raise ValueError(f"hint {name} has shape {tuple(mask.shape)}, the prompt ({b}, {n_cols})")
        return torch.gather(mask.to(order.device).bool(), 1, order) & alive

    if hints.context_len is not None:
        ctx = hints.context_len.to(order.device).long().reshape(-1)
        if ctx.shape[0] != b or (ctx < 0).any():
            raise ValueError(f"hint context_len must be {b} counts >= 0, got {hints.context_len.tolist()}")
        tail_start = torch.minimum(tail_start, ctx)
    if hints.protected is not None:
        extra = aligned(hints.protected, "protected")
    return tail_start, extra, aligned(hints.relevant, "relevant")


@torch.no_grad()
def prompt_logits(backbone: Backbone, state: TokenState, order: torch.Tensor, logits_to_keep: int | torch.Tensor = 0) -> torch.Tensor:
    """(B, K, V) logits at the kept columns of the prompt (0 where that token was reduced away).

    ``logits_to_keep``: 0 = every column (K = L), an int k = the last k columns, a 1D tensor = those
    columns (as HF's ``logits_to_keep``). Only live slots in those columns go through the head.
    """
    b, n_cols = order.shape
    wanted = wanted_columns(n_cols, logits_to_keep, order.device)
    out_index = torch.full((n_cols,), -1, dtype=torch.long, device=order.device)
    out_index[wanted] = torch.arange(wanted.numel(), device=order.device)
    column = torch.gather(order, 1, state.positions.clamp(0, n_cols - 1))  # (B, N) original column of each slot
    target = out_index[column]  # (B, N) output index, -1 = not wanted
    rows, slots = (state.alive & (target >= 0)).nonzero(as_tuple=True)
    head = backbone.lm_head
    out = state.hidden.new_zeros((b, wanted.numel(), head.out_features))
    out[rows, target[rows, slots]] = head(backbone.final_hidden(state.hidden[rows, slots]))
    return out


def wanted_columns(n_columns: int, logits_to_keep: int | torch.Tensor, device) -> torch.Tensor:
    """(K,) long prompt columns HF's ``logits_to_keep`` asks for: 0 = all ``n_columns``, an int k = the last k,
    a 1D tensor = those columns."""
    if isinstance(logits_to_keep, int):
        return torch.arange(max(n_columns - logits_to_keep, 0) if logits_to_keep else 0, n_columns, device=device)
    return logits_to_keep.to(device).flatten()
