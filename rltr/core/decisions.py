"""Decisions: what a reducer sees before a decision layer (:class:`DecisionContext`, which charges the
FLOPs of what it computes), budgets, and the one rule that turns proposed actions into a valid plan.

Every caller — the env (a policy's actions), routers, heuristics in evaluation and in the patched HF
forward — goes through :class:`rltr.core.decider.Decider` or :func:`resolve_actions`, so a budget means the
same thing everywhere and compute is counted by one formula (``RunTrace.compute_fraction``).

Shapes: B rows, N token slots (padded), D hidden width, H heads, R attention rows read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from rltr.core.compute import ArchSpec, builds_whole_map
from rltr.core.contracts import DecisionBackbone
from rltr.core.ops import Action, TokenState, keep_top_k, sanitize_actions


@dataclass
class DecisionContext:
    """What a reducer sees before decision layer ``layer``.

    state:    token state entering the layer (B, N slots).
    n_keep:   (B,) long, live tokens to keep after this decision (protected and tail included), from the budget.
    step:     index of this decision among the run's decision layers; ``n_steps`` of them in all.
    relevant: (B, N) bool on the current slots, the tokens the answer depends on, when the task knows
              them (only the oracle may read it).
    tail:     (B, N) bool on the current slots, the question/answer tail (None: no tail).
    query_aware: whether the tail may be looked at. When False (query-agnostic: the context is reduced
              once, then any question is appended), reducers see the context rows only; in a causal
              model context rows never depend on the tail, so this equals deciding before it exists.
    n_context: (B,) long, context tokens per row before any reduction (what budgets and relative
              positions are measured against when query-agnostic).
    answer:   (B, N) bool on the current slots, a teacher-forced answer at the end of the tail (None:
              none). It is kept like the tail but never read by any decision, in either mode: at
              generation time it does not exist yet.
    arch:     the FLOPs model of the backbone; with it every computation below charges its cost to
              ``flops`` ((B,) float64, per row, counted on each row's live tokens). None: nothing charged.
    """

    backbone: DecisionBackbone
    layer: int
    state: TokenState
    n_keep: torch.Tensor
    step: int = 0
    n_steps: int = 1
    budget: float | None = None
    relevant: torch.Tensor | None = None
    generator: torch.Generator | None = None
    tail: torch.Tensor | None = None
    query_aware: bool = True
    n_original: torch.Tensor | None = None  # (B,) long tokens per row before any reduction (tail included)
    n_context: torch.Tensor | None = None
    answer: torch.Tensor | None = None
    arch: ArchSpec | None = None
    flops: torch.Tensor | None = None
    _cache: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.flops is None:
            self.flops = torch.zeros(self.state.alive.shape[0], dtype=torch.float64, device=self.state.alive.device)

    # ---- cost ----------------------------------------------------------------------------------
    def charge(self, flops) -> None:
        """Add ``flops`` (a number or (B,) per row) to this decision's own cost (nothing when the context
        counts no cost: ``arch`` None)."""
        if self.arch is None:
            return
        assert self.flops is not None, "__post_init__ sets flops"
        self.flops = self.flops + torch.as_tensor(flops, dtype=torch.float64, device=self.flops.device)

    @property
    def n_live(self) -> torch.Tensor:
        """(B,) float64 live tokens per row: what a per-row computation over the tokens costs."""
        return self.state.n_alive.double()

    # ---- who is who -----------------------------------------------------------------------------
    @property
    def context(self) -> torch.Tensor:
        """(B, N) bool: live slots outside the tail (what reducers may drop or merge, unless protected)."""
        tail = torch.zeros_like(self.state.alive) if self.tail is None else self.tail
        return self.state.alive & ~tail

    def observers(self) -> torch.Tensor:
        """(B, N) bool: the slots a reducer may read: the live ones but a teacher-forced answer (query-aware),
        or the context only (query-agnostic)."""
        if not self.query_aware:
            return self.context
        return self.state.alive if self.answer is None else self.state.alive & ~self.answer

    def can_merge(self, kept: torch.Tensor) -> torch.Tensor:
        """(B, N) bool: unkept context tokens that some ``kept`` context token may absorb (a later one if
        causal): exactly the tokens for which MERGE has a destination in :func:`rltr.ops.apply_actions`."""
        state = self.state
        dst = kept & self.context
        src = self.context & ~kept & ~state.protected
        if not self.backbone.causal:
            return src & dst.any(1, keepdim=True)
        dst_pos = torch.where(dst, state.positions, torch.full_like(state.positions, -1))
        return src & (state.positions < dst_pos.max(1, keepdim=True).values)

    def query_rows(self) -> torch.Tensor:
        """(B, N) bool: the "query": the question (the tail but any teacher-forced answer) when query-aware,
        else the last context token, the latest thing a query-agnostic method can see; a row without
        question tokens uses its last readable token. Encoders (non-causal, no tail): the first token,
        CLS, whose attention EViT ranks tokens by."""
        seen = self.observers()
        if not self.backbone.causal and (self.tail is None or not self.tail.any()):
            return seen & (seen.long().cumsum(1) == 1)  # first readable slot per row: CLS
        last = (seen.long().cumsum(1) == seen.sum(1, keepdim=True)) & seen  # the last readable slot per row
        if not self.query_aware or self.tail is None:
            return last
        question = self.tail & seen
        return torch.where(question.any(1, keepdim=True), question, last)

    def recent_rows(self, n: int = 16) -> torch.Tensor:
        """(B, N) bool: the last ``n`` :meth:`observers` of each row (a recent window of queries)."""
        obs = self.observers()
        from_end = obs.sum(1, keepdim=True) - obs.long().cumsum(1)  # observers after this slot
        return obs & (from_end < n)

    # ---- what the backbone computes on demand (each charged once) ---------------------------------
    def keys(self) -> torch.Tensor:
        """(B, H, N, d_head) this layer's keys (kv heads repeated), projected once per decision."""
        if "keys" not in self._cache:
            k = self.backbone.key_states(self.layer, self.state)
            # stored with N innermost, so every q @ k^T of this decision reads it without a transposing copy
            self._cache["keys"] = k.transpose(-1, -2).contiguous().transpose(-1, -2)
            if self.arch is not None:
                self.charge(2 * self.n_live * self.arch.d_model * self.arch.n_kv_heads * self.arch.head_dim)
        return self._cache["keys"]

    def attention(self) -> torch.Tensor:
        """(B, H, N, N) attention probabilities of this layer on the current tokens (computed once)."""
        if "attention" not in self._cache:
            b, n = self.state.alive.shape
            rows = torch.arange(n, device=self.state.alive.device).expand(b, n)
            self._cache["attention"] = self._rows_attention(rows, self.n_live)
        return self._cache["attention"]

    def _rows_attention(self, rows: torch.Tensor, n_rows: torch.Tensor) -> torch.Tensor:
        """(B, H, R, N) attention of the slots ``rows`` (B, R long); ``n_rows`` (B,) real rows, charged."""
        att = self.backbone.attention_rows(self.layer, self.state, rows, keys=self.keys())
        self._charge_attention(n_rows)
        return att

    def _charge_attention(self, n_rows: torch.Tensor) -> None:
        """Charge each row what reading ``n_rows`` (B,) attention rows costs it on its own tokens: their
        queries and R x N scores, or the whole map where that is cheaper (more than a quarter of the
        rows; then once per decision). Rows are charged as if decided alone, whatever padding the batch
        has, so a row costs the same in a batch as in a single episode."""
        if self.arch is None:
            return
        n, q_width = self.n_live, self.arch.n_heads * self.arch.head_dim
        have_map = self._cache.setdefault("map_charged", torch.zeros_like(n, dtype=torch.bool))
        whole = builds_whole_map(n_rows, n)
        rows_cost = 2 * n_rows * self.arch.d_model * q_width + 2 * n_rows * n * q_width
        map_cost = 2 * n * self.arch.d_model * q_width + 2 * n * n * q_width
        self.charge(torch.where(have_map, 0.0, torch.where(whole, map_cost, rows_cost)))
        self._cache["map_charged"] = have_map | whole

    def attention_from_query(self) -> torch.Tensor:
        """(B, N) float: attention each token receives from :meth:`query_rows`, mean over heads and rows."""
        return self._attention_received_from("from_query", self.query_rows())

    def attention_received(self) -> torch.Tensor:
        """(B, N) float: attention each token receives from all :meth:`observers`, mean over heads and rows
        (accumulated attention, as in H2O)."""
        return self._attention_received_from("received", self.observers())

    def attention_from_recent(self, n: int = 16) -> torch.Tensor:
        """(B, N) float: attention each token receives from the last ``n`` observer rows (cheap: n x N)."""
        return self._attention_received_from(f"recent{n}", self.recent_rows(n))

    def _attention_received_from(self, key: str, rows: torch.Tensor) -> torch.Tensor:
        """Mean over heads and ``rows`` (B, N bool) of the attention each token receives. Uses the whole
        map when it is already computed or cheaper (:func:`rltr.compute.builds_whole_map`), else only the
        selected rows (R x N instead of N x N)."""
        if key not in self._cache:
            w = rows.float()
            if "attention" in self._cache or builds_whole_map(int(rows.sum(1).max()), rows.shape[1]):
                att = self.attention().mean(dim=1)  # (B, Nq, Nk)
            else:
                n_rows = max(int(rows.sum(1).max()), 1)
                idx = torch.argsort((~rows).to(torch.int8), dim=1, stable=True)[:, :n_rows]  # (B, R) selected first
                w = torch.gather(w, 1, idx)
                att = self._rows_attention(idx, rows.sum(1).double()).mean(dim=1)
            self._cache[key] = (att * w[:, :, None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)
        return self._cache[key]


@dataclass
class Decision:
    """actions: (B, N) long KEEP/MERGE/DROP; merge_dst: optional (B, N) long destination slots (-1 = none)."""

    actions: torch.Tensor
    merge_dst: torch.Tensor | None = None
    match: torch.Tensor | None = None  # (B, N, F) features to pick merge destinations by, when merge_dst is None


def check_decision_layers(layers, n_layers: int) -> list[int]:
    """The decision layers sorted and deduplicated; ValueError naming those outside a ``n_layers``-layer model."""
    layers = sorted({int(i) for i in layers})
    bad = [i for i in layers if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"decision layers {bad} out of range for a {n_layers}-layer model")
    return layers


def check_budget(budget: float | None) -> float | None:
    """A budget is the fraction of tokens to keep, in (0, 1]; None means the reducer's own choice."""
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or math.isnan(float(budget)) or not 0 < float(budget) <= 1:
        raise ValueError(f"budget must be in (0, 1], got {budget!r}")
    return float(budget)


def target_counts(
    n_original: torch.Tensor, budget: float | None, step: int, n_steps: int, n_tail: torch.Tensor | None = None
) -> torch.Tensor:
    """(B,) long tokens to keep after decision ``step`` of ``n_steps``: the budget is reached geometrically.

    Query-aware (``n_tail`` None): ``ceil(n_original * budget ** ((step + 1) / n_steps))`` of all tokens.
    Query-agnostic (``n_tail`` (B,) given): the budget applies to the context alone, which is all a
    query-agnostic method may know of — ``ceil(n_context * frac)`` context tokens plus the ``n_tail``
    tail tokens appended afterwards. Everything when no budget is set.
    """
    if budget is None:
        return n_original.clone()
    frac = budget ** ((step + 1) / n_steps)
    if n_tail is None:
        return torch.ceil(n_original.double() * frac).long().clamp_min(1)
    n_context = n_original - n_tail
    return torch.ceil(n_context.double() * frac).long().clamp_min(1) + n_tail


def resolve_actions(ctx: DecisionContext, actions: torch.Tensor, keep_priority: torch.Tensor | None = None) -> torch.Tensor:
    """The one rule that turns proposed actions (B, N) into the plan :func:`rltr.ops.apply_actions` executes.

    1. Protected, tail and dead slots KEEP (:func:`rltr.ops.sanitize_actions`).
    2. A row never keeps more than ``ctx.n_keep`` tokens: extra KEEPs become DROP, lowest
       ``keep_priority`` (B, N) first (default: the earliest positions, so recent tokens stay).
    3. A MERGE with no admissible destination among the KEEPs (:meth:`DecisionContext.can_merge`) stays
       as it is (ops keeps it) only while the row has room under ``n_keep``, latest first; the rest
       become DROP. So a merge can never smuggle a token past the budget, and with no budget nothing
       the policy meant to keep in some form is lost.
    """
    state = ctx.state
    actions = sanitize_actions(state, actions)
    tail = state.alive & ~ctx.context
    actions = actions.masked_fill(tail, int(Action.KEEP))  # the tail always stays, protected or not
    priority = state.positions.float() if keep_priority is None else keep_priority.float()
    kept = _capped(ctx, (actions == Action.KEEP) & state.alive, priority.masked_fill(tail, float("inf")))
    actions = torch.where((actions == Action.KEEP) & ~kept, Action.DROP, actions)
    stranded = (actions == Action.MERGE) & ~ctx.can_merge(kept)
    if stranded.any():  # candidates for the room left, after every KEEP
        fits = _capped(ctx, kept | stranded, priority + torch.where(kept, 2.0 * priority.abs().max() + 1.0, 0.0))
        actions = torch.where(stranded & ~fits, Action.DROP, actions)
    return actions


def _capped(ctx: DecisionContext, kept: torch.Tensor, priority: torch.Tensor) -> torch.Tensor:
    """(B, N) bool: ``kept`` limited to ``ctx.n_keep`` per row, the highest ``priority`` first (protected
    tokens always among them)."""
    over = kept.sum(1) > ctx.n_keep  # (B,)
    if not over.any():
        return kept
    limited = keep_top_k(priority.masked_fill(~kept, float("-inf")), ctx.state, ctx.n_keep) == Action.KEEP
    return kept & (limited | ~over[:, None])


def decision_context(
    backbone,
    state: TokenState,
    decision_layers: list[int],
    step: int,
    n_original: torch.Tensor,
    budget: float | None = None,
    relevant: torch.Tensor | None = None,
    context_len: torch.Tensor | None = None,
    query_aware: bool = True,
    generator: torch.Generator | None = None,
    arch: ArchSpec | None = None,
    answer_start: torch.Tensor | None = None,
) -> DecisionContext:
    """The context of decision ``step`` (before layer ``decision_layers[step]``) for ``state``.

    ``n_original`` (B,) tokens per row before any reduction; ``relevant`` (B, N_original) bool on
    original positions (moved to the current slots here); ``context_len`` (B,) marks where each row's
    tail starts (positions >= it are the tail); ``answer_start`` (B,) where a teacher-forced answer
    starts (no decision reads it). Query-agnostic budgets count the context only.
    """
    dev = state.alive.device
    rel = None if relevant is None else torch.gather(relevant.to(dev), 1, state.positions) & state.alive
    answer = None if answer_start is None else (state.positions >= answer_start.to(dev)[:, None]) & state.alive
    tail, n_context = None, n_original
    if context_len is not None:
        context_len = context_len.to(dev)
        tail = (state.positions >= context_len[:, None]) & state.alive
        n_context = torch.minimum(context_len, n_original)
    n_tail = None if query_aware or context_len is None else n_original - n_context
    return DecisionContext(
        backbone=backbone,
        layer=decision_layers[step],
        state=state,
        step=step,
        n_steps=len(decision_layers),
        budget=budget,
        n_keep=target_counts(n_original, budget, step, len(decision_layers), n_tail),
        relevant=rel,
        generator=generator,
        tail=tail,
        query_aware=query_aware,
        n_original=n_original,
        n_context=n_context,
        arch=arch,
        answer=answer,
    )
