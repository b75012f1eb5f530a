"""The reducer contract: look at the token state at a decision layer, return one action per token.

Reducers never touch tensors of the token state; :func:`make_decide` turns a reducer's
:class:`Decision` into a new state through :mod:`rltr.ops`. Heuristics and routers share this path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from rltr.backbones.base import Backbone
from rltr.compute import attention_map_flops, builds_whole_map
from rltr.ops import TokenState, apply_actions


@dataclass
class DecisionContext:
    """What a reducer sees before decision layer ``layer``.

    state:    token state entering the layer (B, N slots).
    n_keep:   (B,) long, live tokens to keep after this decision (protected ones included), from the budget.
    step:     index of this decision among the run's decision layers; ``n_steps`` of them in all.
    relevant: (B, N) bool on the current slots, the tokens the answer depends on, when the task knows
              them (only the oracle may read it).
    tail:     (B, N) bool on the current slots, the question/answer tail (None: no tail).
    query_aware: whether the tail may be looked at. When False (query-agnostic: the context is reduced
              once, then any question is appended), reducers see the context rows only; in a causal
              model context rows never depend on the tail, so this equals deciding before it exists.
    """

    backbone: Backbone
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
    n_original: torch.Tensor | None = None  # (B,) long tokens per row before any reduction
    _cache: dict = field(default_factory=dict)

    def attention(self) -> torch.Tensor:
        """(B, H, N, N) attention probabilities of this layer on the current tokens (computed once)."""
        if "attention" not in self._cache:
            self._cache["attention"] = self.backbone.attention(self.layer, self.state)
        return self._cache["attention"]

    @property
    def context(self) -> torch.Tensor:
        """(B, N) bool: live slots outside the tail (what reducers may drop or merge, unless protected)."""
        tail = torch.zeros_like(self.state.alive) if self.tail is None else self.tail
        return self.state.alive & ~tail

    def can_merge(self, kept: torch.Tensor) -> torch.Tensor:
        """(B, N) bool: unkept context tokens that some ``kept`` context token may absorb (a later one if
        causal), i.e. those for which MERGE will not fall back to KEEP."""
        state = self.state
        dst = kept & self.context
        src = self.context & ~kept & ~state.protected
        if not self.backbone.causal:
            return src & dst.any(1, keepdim=True)
        dst_pos = torch.where(dst, state.positions, torch.full_like(state.positions, -1))
        return src & (state.positions < dst_pos.max(1, keepdim=True).values)

    def observers(self) -> torch.Tensor:
        """(B, N) bool: rows whose attention a reducer may read (all live rows, or context rows only)."""
        return self.state.alive if self.query_aware else self.context

    def query_rows(self) -> torch.Tensor:
        """(B, N) bool: the "query": the tail when query-aware (or the last live token if there is no
        tail), else the last context token, the latest thing a query-agnostic method can see."""
        if self.query_aware and self.tail is not None and self.tail.any():
            return self.tail & self.state.alive
        rows = self.context
        return (rows.long().cumsum(1) == rows.sum(1, keepdim=True)) & rows  # last context slot per row

    def attention_from_query(self) -> torch.Tensor:
        """(B, N) float: attention each token receives from :meth:`query_rows`, mean over heads and rows."""
        return self._attention_received_from("from_query", self.query_rows())

    def attention_received(self) -> torch.Tensor:
        """(B, N) float: attention each token receives from all :meth:`observers`, mean over heads and rows
        (accumulated attention, as in H2O)."""
        return self._attention_received_from("received", self.observers())

    def recent_rows(self, n: int = 16) -> torch.Tensor:
        """(B, N) bool: the last ``n`` :meth:`observers` of each row (a recent window of queries)."""
        obs = self.observers()
        from_end = obs.sum(1, keepdim=True) - obs.long().cumsum(1)  # observers after this slot
        return obs & (from_end < n)

    def attention_from_recent(self, n: int = 16) -> torch.Tensor:
        """(B, N) float: attention each token receives from the last ``n`` observer rows (cheap: n x N)."""
        return self._attention_received_from(f"recent{n}", self.recent_rows(n))

    def _attention_received_from(self, key: str, rows: torch.Tensor) -> torch.Tensor:
        """Mean over heads and ``rows`` (B, N bool) of the attention each token receives. Uses the full
        map when it is already computed, else only the selected rows (R x N instead of N x N)."""
        if key not in self._cache:
            w = rows.float()
            if "attention" in self._cache or builds_whole_map(int(rows.sum(1).max()), rows.shape[1]):
                att = self.attention().mean(dim=1)  # (B, Nq, Nk)
            else:
                n_rows = max(int(rows.sum(1).max()), 1)
                idx = torch.argsort((~rows).to(torch.int8), dim=1, stable=True)[:, :n_rows]  # (B, R) selected first
                w = torch.gather(w, 1, idx)
                if "keys" not in self._cache:  # shared by every row set read at this decision; stored with
                    # N innermost, so the q @ k^T of each row set reads it without a transposing copy
                    k = self.backbone.key_states(self.layer, self.state)
                    self._cache["keys"] = k.transpose(-1, -2).contiguous().transpose(-1, -2)
                att = self.backbone.attention_rows(self.layer, self.state, idx, keys=self._cache["keys"]).mean(dim=1)
            self._cache[key] = (att * w[:, :, None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)
        return self._cache[key]


@dataclass
class Decision:
    """actions: (B, N) long KEEP/MERGE/DROP; merge_dst: optional (B, N) long destination slots (-1 = none)."""

    actions: torch.Tensor
    merge_dst: torch.Tensor | None = None
    match: torch.Tensor | None = None  # (B, N, F) features to pick merge destinations by, when merge_dst is None


class Reducer:
    """A method that decides KEEP/MERGE/DROP per token. Subclasses set ``name`` and implement ``decide``.

    ``needs_attention``: the method reads this layer's whole attention map, whose extra cost (one QK^T
    at the decision layer) the compute model charges to it. Methods that read only some rows of it
    (attention top-k, routers) override :meth:`decision_flops` instead.
    """

    name: str = ""
    needs_attention: bool = False
    chooses_own_budget: bool = False  # with budget None it picks how many tokens to keep (else it keeps all)

    def decide(self, ctx: DecisionContext) -> Decision:  # pragma: no cover - interface
        raise NotImplementedError

    def decision_flops(self, spec, n_tokens, n_query_rows):
        """Extra FLOPs of one decision on ``n_tokens`` tokens (``n_query_rows`` in the question tail):
        the full attention map for methods that read it, nothing otherwise."""
        return attention_map_flops(spec, n_tokens) if self.needs_attention else 0

    def __call__(self, model, **kw):
        """``with reducer(model, budget=0.5, protect_last=K): model.generate(...)``: a context manager that
        reduces tokens in ``model``'s prompt pass (see :class:`rltr.inference.TokenReduction` for ``kw``)."""
        from rltr.inference import TokenReduction  # late: inference builds on this module

        return TokenReduction(model, self, **kw)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def check_budget(budget: float | None) -> float | None:
    """A budget is the fraction of tokens to keep, in (0, 1]; None means the reducer's own choice."""
    if budget is None:
        return None
    if not isinstance(budget, (int, float)) or not 0 < float(budget) <= 1 or math.isnan(float(budget)):
        raise ValueError(f"budget must be in (0, 1], got {budget!r}")
    return float(budget)


def target_counts(n_original: torch.Tensor, budget: float | None, step: int, n_steps: int) -> torch.Tensor:
    """(B,) long tokens to keep after decision ``step`` of ``n_steps``: the budget is reached geometrically,
    ``ceil(n_original * budget ** ((step + 1) / n_steps))``; everything when no budget is set."""
    if budget is None:
        return n_original.clone()
    frac = budget ** ((step + 1) / n_steps)
    return torch.ceil(n_original.double() * frac).long().clamp_min(1)


def decision_context(
    backbone: Backbone,
    state: TokenState,
    decision_layers: list[int],
    step: int,
    n_original: torch.Tensor,
    budget: float | None = None,
    relevant: torch.Tensor | None = None,
    context_len: torch.Tensor | None = None,
    query_aware: bool = True,
    generator: torch.Generator | None = None,
) -> DecisionContext:
    """The context of decision ``step`` (before layer ``decision_layers[step]``) for ``state``.

    ``n_original`` (B,) tokens per row before any reduction; ``relevant`` (B, N_original) bool on
    original positions (moved to the current slots here); ``context_len`` (B,) marks where each row's
    tail starts (positions >= it are the tail).
    """
    dev = state.alive.device
    rel = None if relevant is None else torch.gather(relevant.to(dev), 1, state.positions) & state.alive
    tail = None if context_len is None else (state.positions >= context_len.to(dev)[:, None]) & state.alive
    return DecisionContext(
        backbone=backbone, layer=decision_layers[step], state=state, step=step, n_steps=len(decision_layers),
        budget=budget, n_keep=target_counts(n_original, budget, step, len(decision_layers)), relevant=rel,
        generator=generator, tail=tail, query_aware=query_aware, n_original=n_original,
    )


def make_decide(
    reducer: Reducer,
    backbone: Backbone,
    decision_layers: list[int],
    budget: float | None = None,
    relevant: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    context_len: torch.Tensor | None = None,
    query_aware: bool = True,
):
    """A ``decide(layer, state)`` callback for :meth:`Backbone.run` applying ``reducer`` at each layer.

    ``relevant`` (B, N_original) bool is given on original positions and moved to the current slots;
    ``context_len`` (B,) long marks where each row's tail starts (positions >= it are the tail).
    """
    budget = check_budget(budget)
    layers = sorted(decision_layers)
    n_original: list[torch.Tensor] = []

    def decide(layer: int, state: TokenState) -> TokenState:
        if not n_original:
            n_original.append(state.n_alive)
        ctx = decision_context(backbone, state, layers, layers.index(layer), n_original[0], budget, relevant,
                               context_len, query_aware, generator)
        d = reducer.decide(ctx)
        return apply_actions(
            state, d.actions, causal=backbone.causal, match=d.match, merge_dst=d.merge_dst, dst_allowed=ctx.context
        )

    return decide
