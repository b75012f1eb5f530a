"""The reducer contract: look at a :class:`~rltr.core.decisions.DecisionContext`, return one action per token.

Reducers never touch the token state's tensors: :mod:`rltr.core.decisions` turns their :class:`Decision`
into a new state through :mod:`rltr.core.ops`, under one budget rule, and the context charges whatever they
compute (keys, attention rows, similarities) to the decision's cost. Heuristics and routers share this.

Most heuristics rank tokens by a score: they subclass :class:`ScoreReducer` and write only ``score``.
"""

from __future__ import annotations

import torch

from rltr.core.decisions import Decision, DecisionContext
from rltr.core.ops import Action, keep_top_k
from rltr.inference import reduction_for


class Reducer:
    """A method that decides KEEP/MERGE/DROP per token. Subclasses set ``name`` and implement ``decide``."""

    name: str = ""
    label: str = ""  # how tables name it (get_reducer sets it from the spec); '' -> name
    takes_budget: bool = True  # False: it sets its own token counts (tome:r=N) and runs with budget None only
    causal_only: bool = False  # True: its rule needs a causal order (a recent window): refused on encoders
    full_model: bool = False  # True: the unreduced reference (identity)
    reads_labels: bool = False  # True: it reads the task's hand-made relevance spans (the oracle)
    reference: bool = False  # True: a reference point (identity, oracle, router), not a matched-compute competitor
    query_aware: bool | None = None  # its own mode (a router's); None: the caller's

    # read-only properties, so that subclasses may compute them (a threshold, a router's layers) or set them as class attributes
    @property
    def chooses_own_budget(self) -> bool:
        """With budget None it picks how many tokens to keep (else it keeps all)."""
        return False

    @property
    def decision_layers(self) -> list[int] | None:
        """Its own decision layers (a router's); None: the caller's."""
        return None

    def decide(self, ctx: DecisionContext) -> Decision:  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def from_spec(cls, option: str = "") -> Reducer:
        """The reducer a CLI spec's option names (the part after ``name:``); typed reducers parse it here, so
        their constructors take typed values (``ToMe(r=8)``). Default: no option, or one string argument."""
        if not option:
            return cls()
        try:
            return cls(option)  # type: ignore[call-arg]
        except TypeError:
            raise ValueError(f"method {cls.name!r} takes no option, got {cls.name + ':' + option!r}") from None

    def check_backbone(self, backbone) -> None:
        """Raise ValueError when this reducer cannot act on ``backbone``; heuristics act on any."""

    @property
    def title(self) -> str:
        """How tables and logs name it: its label, else its name."""
        return self.label or self.name

    def __call__(self, model, **kw):
        """``with reducer(model, budget=0.5, protect_last=K): model.generate(...)``: a context manager that
        reduces tokens in ``model``'s prompt pass (see :class:`rltr.inference.TokenReduction` for ``kw``); for
        an encoder ``with reducer(model, budget=0.5): model(...)`` (:class:`rltr.inference.EncoderReduction`)."""
        return reduction_for(model)(model, self, **kw)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ScoreReducer(Reducer):
    """Keep the ``ctx.n_keep`` tokens with the highest :meth:`score`, drop the rest; or, in threshold mode
    (``threshold`` set, e.g. ``norm:hidden@0.8``), keep every token whose score reaches the threshold, so
    the number kept follows each input (KVzap/DMS-style adaptive budgets; :mod:`rltr.evaluation.calibration` finds
    the threshold that reaches a target mean compute on training examples).

    Protected and tail tokens are pinned here, once for every score method; ties keep the earlier slot.
    ``thresholdable`` is False for methods whose score depends on the budget itself (H2O's recent window).
    ``record`` (a list) collects the scores of every unprotected context token decided on (calibration).
    """

    thresholdable: bool = True
    no_threshold_reason: str = "its score depends on the budget"  # said when ``thresholdable`` is False
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
            raise ValueError(f"{self.name} has no threshold mode: {self.no_threshold_reason}")
        self.threshold = None if threshold is None else float(threshold)
        return self
