"""The reducer contract: look at a :class:`~rltr.decisions.DecisionContext`, return one action per token.

Reducers never touch the token state's tensors: :mod:`rltr.decisions` turns their :class:`Decision`
into a new state through :mod:`rltr.ops`, under one budget rule, and the context charges whatever they
compute (keys, attention rows, similarities) to the decision's cost. Heuristics and routers share this.

Most heuristics rank tokens by a score: they subclass :class:`ScoreReducer` and write only ``score``.
"""

from __future__ import annotations

import torch

from rltr.decisions import Decision, DecisionContext
from rltr.ops import Action, keep_top_k


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
        from rltr.vlm_inference import reduction_class  # late: inference builds on this module

        return reduction_class(model)(model, self, **kw)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ScoreReducer(Reducer):
    """Keep the ``ctx.n_keep`` tokens with the highest :meth:`score`, drop the rest; or, in threshold mode
    (``threshold`` set, e.g. ``norm:hidden@0.8``), keep every token whose score reaches the threshold, so
    the number kept follows each input (KVzap/DMS-style adaptive budgets; :mod:`rltr.calibration` finds
    the threshold that reaches a target mean compute on training examples).

    Protected and tail tokens are pinned here, once for every score method; ties keep the earlier slot.
    ``thresholdable`` is False for methods whose score depends on the budget itself (H2O's recent window).
    ``record`` (a list) collects the scores of every unprotected context token decided on (calibration).
    """

    thresholdable: bool = True
    threshold: float | None = None
    record: list | None = None

    @property
    def chooses_own_budget(self) -> bool:  # a threshold decides how many tokens each input keeps
        return self.threshold is not None

    def score(self, ctx: DecisionContext) -> torch.Tensor:  # pragma: no cover - interface
        """(B, N) float, higher = keep first; only live, unprotected context slots are compared."""
        raise NotImplementedError

    def pinned_scores(self, ctx: DecisionContext) -> torch.Tensor:
        """(B, N) float32 :meth:`score` with the tail at +inf (it always stays)."""
        scores = self.score(ctx).float().masked_fill(ctx.state.alive & ~ctx.context, float("inf"))
        if self.record is not None:
            self.record.append(scores[ctx.context & ~ctx.state.protected].detach().cpu())
        return scores

    def decide(self, ctx: DecisionContext) -> Decision:
        scores = self.pinned_scores(ctx)
        if self.threshold is None:
            return Decision(keep_top_k(scores, ctx.state, ctx.n_keep))
        keep = (scores >= self.threshold) | ctx.state.protected | ~ctx.state.alive
        return Decision(torch.where(keep, Action.KEEP, Action.DROP).long())

    def with_threshold(self, threshold: float | None) -> ScoreReducer:
        """This reducer in threshold mode (``None``: back to top-k by budget); returns itself."""
        if threshold is not None and not self.thresholdable:
            raise ValueError(f"{self.name} has no threshold mode: its score depends on the budget")
        self.threshold = None if threshold is None else float(threshold)
        return self
