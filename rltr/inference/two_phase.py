"""Query-agnostic means two-phase: the context is reduced before the question exists, then the question runs
on what is left.

In one forward over context + question, a causal model's question tokens read *every* context token in the
layers before a decision layer, so a reducer acting at layer d >= 1 would be judged on a question that had
already seen what it dropped (random at 6 of 128 tokens scored ~100% at layer 1 that way). Here:

1. **context phase**: the context alone runs through every layer with the reducer at its decision layers,
   filling a KV cache cut to the final token set at every layer
   (:func:`~rltr.inference.prefill.keep_final_slots`: merged slots hold their group's size-weighted mean);
2. **tail phase**: the tail (question + teacher-forced answer, or the last prompt tokens of a plain prompt)
   runs through the model's own forward on that cache: positions continue from the context's ORIGINAL
   length, merged slots weigh log(size) in attention, dead slots are masked (:func:`continuation_mask`),
   exactly as a decode step after a reduced prompt does.

Evaluation and ``generate()`` reach this through :class:`rltr.inference.TokenReduction` (query-agnostic), the
env reward through :class:`rltr.envs.engine.EpisodeEngine`: one tail step (:func:`run_tail`) for all three.
At decision layer 0 with drops only it equals running the model on the kept context tokens and the tail at
their original positions (tested). Encoders are not causal and stay single-pass.

Shapes: B rows, N_f cached context slots, T tail columns (right-padded), V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers.cache_utils import DynamicCache

from rltr.backbones.padding import right_aligned, to_columns
from rltr.core.decider import RunTrace
from rltr.core.ops import TokenState
from rltr.inference.hf_compat import cache_argument
from rltr.inference.prefill import PrefixInfo, PromptHints, prompt_logits, reduced_prefill, wanted_columns


def continuation_mask(key_bias: torch.Tensor, new_ok: torch.Tensor, n_query: int) -> torch.Tensor:
    """(B, 1, q, N_f + n_new) additive mask for ``q = n_query`` new tokens after a reduced prefix: ``key_bias``
    (B, N_f) over the cached prefix slots (log(size), dtype min on dead ones), then causal over the ``n_new``
    tokens appended since the prefix (the last ``q`` of them are the queries), masking those ``new_ok``
    (B, n_new) bool marks as padding."""
    b, n_prefix = key_bias.shape
    n_new = new_ok.shape[1]
    device = key_bias.device
    steps = torch.arange(n_new, device=device)
    causal = steps[None, :] <= (n_new - n_query + torch.arange(n_query, device=device))[:, None]  # (q, n_new)
    neg = torch.finfo(key_bias.dtype).min
    new_bias = torch.where(causal[None] & new_ok.to(device)[:, None, :], 0.0, neg).to(key_bias.dtype)  # (B, q, n_new)
    prefix_bias = key_bias[:, None, :].expand(b, n_query, n_prefix)
    return torch.cat([prefix_bias, new_bias], dim=-1)[:, None]


def tail_of(ids: torch.Tensor, alive: torch.Tensor, tail_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(tail ids (B, T), tail alive (B, T) bool): each row's real tokens from ``tail_start`` (B,) on, moved to
    the front (right-padded) from ``ids``/``alive`` (B, L) whose real tokens come first."""
    n_real = alive.sum(1)
    n_tail = n_real - tail_start
    width = max(int(n_tail.max()), 1)
    j = torch.arange(width, device=ids.device)[None, :]
    column = (tail_start[:, None] + j).clamp_max(ids.shape[1] - 1)
    return torch.gather(ids, 1, column), j < n_tail[:, None]


def context_only(state: TokenState, tail_start: torch.Tensor) -> TokenState:
    """``state`` with every slot at a position >= ``tail_start`` (B,) made padding: the context phase's state.
    (Real tokens come first and the tail ends each row, so the live ones stay first.)"""
    ctx = state.alive & (state.positions < tail_start.to(state.positions.device)[:, None])
    sizes = torch.where(ctx, state.sizes, torch.zeros_like(state.sizes))
    return TokenState(state.hidden, state.positions, sizes, ctx, state.protected & ctx)


@torch.no_grad()
def run_tail(
    forward: Callable,
    cache,
    key_bias: torch.Tensor,
    tail_ids: torch.Tensor,
    tail_alive: torch.Tensor,
    first_position: torch.Tensor,
) -> torch.Tensor:
    """(B, T, V) logits of the tail tokens (B, T) run by ``forward`` (the model's own, unpatched forward) on a
    ``cache`` that holds the reduced context (``key_bias`` (B, N_f) over its slots); tail token j of a row sits
    at position ``first_position + j`` (the context's original length). The cache then holds the tail too."""
    n_query = tail_ids.shape[1]
    mask = continuation_mask(key_bias, tail_alive, n_query)
    positions = first_position.to(tail_ids.device)[:, None] + torch.arange(n_query, device=tail_ids.device)[None, :]
    out = forward(input_ids=tail_ids, attention_mask=mask, position_ids=positions, use_cache=True, **{cache_argument(forward): cache})
    return out.logits


@torch.no_grad()
def two_phase_prefill(
    backbone,
    reducer,
    forward: Callable,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    budget: float | None,
    decision_layers: list[int],
    protect_last: int,
    protect_first: int = 0,
    cache=None,
    generator: torch.Generator | None = None,
    hints: PromptHints | None = None,
    bucket: bool = True,
    logits_to_keep: int | torch.Tensor = 0,
) -> tuple[torch.Tensor, PrefixInfo]:
    """The query-agnostic prompt pass of (B, L) ``input_ids``: the context (each row's real tokens before its
    tail: the last ``protect_last``, or from ``hints.context_len`` on) reduced alone by ``reducer``, then the
    tail on its cache through ``forward`` (the model's own). Returns (logits (B, K, V) at the columns
    ``logits_to_keep`` selects, as :func:`~rltr.inference.prefill.prompt_logits` (0 on reduced-away context
    columns), the :class:`PrefixInfo` of the cache: reduced context slots then the tail). ``cache`` (an empty
    DynamicCache) is filled when given; otherwise one is made for the tail and dropped."""
    ids, alive, order = right_aligned(input_ids.to(backbone.device), attention_mask)
    n_real = alive.sum(1)
    tail_start = n_real - protect_last
    if hints is not None and hints.context_len is not None:
        tail_start = torch.minimum(tail_start, hints.context_len.to(ids.device).long().reshape(-1))
    empty = (tail_start < 1).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"query-agnostic reduction reduces the context before the tail exists, but row {empty[0]} has no context "
            f"({int(n_real[empty[0]])} tokens, tail of {int(n_real[empty[0]] - tail_start[empty[0]])})"
        )
    idx = torch.arange(ids.shape[1], device=ids.device)[None, :]
    context_columns = to_columns((alive & (idx < tail_start[:, None])).long(), order)  # the caller's layout
    if cache is None:
        cache = DynamicCache(config=backbone.model.config)
    context_hints = None if hints is None else PromptHints(protected=hints.protected, relevant=hints.relevant)
    state, info, context_order = reduced_prefill(
        backbone,
        reducer,
        input_ids,
        context_columns,
        budget=budget,
        decision_layers=decision_layers,
        protect_last=0,
        protect_first=protect_first,
        query_aware=False,
        cache=cache,
        generator=generator,
        hints=context_hints,
        bucket=bucket,
    )
    tail_ids, tail_alive = tail_of(ids, alive, tail_start)
    tail_logits = run_tail(forward, cache, info.key_bias, tail_ids, tail_alive, tail_start)  # (B, T, V)
    wanted = wanted_columns(input_ids.shape[1], logits_to_keep, ids.device)
    logits = prompt_logits(backbone, state, context_order, wanted)  # context columns; the tail's are 0 here
    out_index = torch.full((input_ids.shape[1],), -1, dtype=torch.long, device=ids.device)
    out_index[wanted] = torch.arange(wanted.numel(), device=ids.device)
    t = torch.arange(tail_ids.shape[1], device=ids.device)[None, :]
    column = torch.gather(order, 1, (tail_start[:, None] + t).clamp_max(order.shape[1] - 1))  # (B, T) caller's column
    target = torch.where(tail_alive, out_index[column], -1)
    rows, slots = (target >= 0).nonzero(as_tuple=True)
    logits[rows, target[rows, slots]] = tail_logits[rows, slots].to(logits.dtype)
    return logits, _with_tail(info, tail_alive, tail_start, n_real, input_ids.shape[1])


def _with_tail(info: PrefixInfo, tail_alive: torch.Tensor, tail_start: torch.Tensor, n_real: torch.Tensor, n_columns: int) -> PrefixInfo:
    """The :class:`PrefixInfo` of a cache holding ``info``'s reduced context slots and then the tail (B, T),
    whose trace counts the tail at every layer (as the compute model charges it: it ran through all of them)."""
    t = torch.arange(tail_alive.shape[1], device=tail_alive.device)[None, :]
    neg = torch.finfo(info.key_bias.dtype).min
    n_tail = tail_alive.sum(1)
    trace = info.trace
    joined = RunTrace(n_real, trace.tokens_per_layer + n_tail[:, None], trace.decision_flops, trace.slot_maps)
    return PrefixInfo(
        positions=torch.cat([info.positions, tail_start[:, None] + t], 1),
        sizes=torch.cat([info.sizes, tail_alive.to(info.sizes.dtype)], 1),
        alive=torch.cat([info.alive, tail_alive], 1),
        key_bias=torch.cat([info.key_bias, torch.where(tail_alive, 0.0, neg).to(info.key_bias.dtype)], 1),
        n_columns=n_columns,
        next_position=n_real,
        trace=joined,
        window=info.window,
    )
