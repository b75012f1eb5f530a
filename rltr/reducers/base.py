"""The reducer contract: look at a :class:`~rltr.decisions.DecisionContext`, return one action per token.

Reducers never touch the token state's tensors: :mod:`rltr.decisions` turns their :class:`Decision`
into a new state through :mod:`rltr.ops`, under one budget rule, and the context charges whatever they
compute (keys, attention rows, similarities) to the decision's cost. Heuristics and routers share this.

Most heuristics rank tokens by a score: they subclass :class:`ScoreReducer` and write only ``score``.
"""

from __future__ import annotations

import torch

from rltr.decisions import Decision, DecisionContext
from rltr.ops import keep_top_k


class Reducer:
    """A method that decides KEEP/MERGE/DROP per token. Subclasses set ``name`` and implement ``decide``."""

    name: str = ""
    chooses_own_budget: bool = False  # with budget None it picks how many tokens to keep (else it keeps all)
    takes_budget: bool = True  # False: it sets its own token counts (tome:r=N) and runs with budget None only
    causal_only: bool = False  # True: its rule needs a causal order (a recent window): refused on encoders

    def decide(self, ctx: DecisionContext) -> Decision:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, model, **kw):
        """``with reducer(model, budget=0.5, protect_last=K): model.generate(...)``: a context manager that
        reduces tokens in ``model``'s prompt pass (see :class:`rltr.inference.TokenReduction` for ``kw``); for
        an encoder ``with reducer(model, budget=0.5): model(...)`` (:class:`rltr.inference.EncoderReduction`)."""
        from rltr.inference import reduction_for  # late: inference builds on this module

        return reduction_for(model)(model, self, **kw)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ScoreReducer(Reducer):
    """Keep the ``ctx.n_keep`` tokens with the highest :meth:`score`, drop the rest.

    Protected and tail tokens are pinned here, once for every score method; ties keep the earlier slot.
    """

    def score(self, ctx: DecisionContext) -> torch.Tensor:  # pragma: no cover - interface
        """(B, N) float, higher = keep first; only live, unprotected context slots are compared."""
        raise NotImplementedError

    def pinned_scores(self, ctx: DecisionContext) -> torch.Tensor:
        """(B, N) float32 :meth:`score` with the tail at +inf (it always stays)."""
        return self.score(ctx).float().masked_fill(ctx.state.alive & ~ctx.context, float("inf"))

    def decide(self, ctx: DecisionContext) -> Decision:
        return Decision(keep_top_k(self.pinned_scores(ctx), ctx.state, ctx.n_keep))
