"""The patch every ``with reducer(model, ...)`` context shares: the model's ``forward`` replaced on the instance
while active (removed on exit, also after an exception), settings checked up front.

:class:`~rltr.inference.causal.TokenReduction` (causal LMs: prompt pass + cached decode) and
:class:`~rltr.inference.encoder.EncoderReduction` (ViT, BERT: one full forward) differ only in what the
patched forward does (:meth:`ForwardPatch._forward`).
"""

from __future__ import annotations

import functools
import inspect
from typing import Literal

from rltr.backbones import adapter_for, wrap
from rltr.core.contracts import DecisionMaker
from rltr.core.decider import check_reducer
from rltr.core.decisions import check_budget, check_decision_layers
from rltr.inference.hf_compat import warn_if_untested


class _DefaultBudget:
    """The budget when none is given: 0.5, or None for a reducer that sets its own token counts (tome:r=N)."""

    def __repr__(self) -> str:
        return "default"


DEFAULT_BUDGET = _DefaultBudget()


class ForwardPatch:
    """Context manager that routes ``model``'s forward through :meth:`_forward` while active.

    budget:          fraction of tokens to keep, in (0, 1] (None: the reducer's own choice; default 0.5, or
                     None for reducers that take no budget).
    decision_layers: layers before which the reducer acts; default: a router's own, else ``default_layers``.
    query_aware:     default: a router's own setting, else True.
    seed:            seed of the generator random reducers draw from (one per forward call).
    """

    last: object | None  # what the last reduced pass recorded (subclasses name its type); None before one

    def __init__(self, model, reducer: DecisionMaker, *, budget, decision_layers, query_aware, seed: int, default_layers: list[int]):
        adapter_for(model)  # ValueError naming the family when no adapter supports it
        warn_if_untested()
        own = reducer.decision_layers
        layers = decision_layers if decision_layers is not None else (own if own is not None else default_layers)
        if not layers:
            raise ValueError("decision_layers is empty: give at least one layer")
        if budget is DEFAULT_BUDGET:
            budget = 0.5 if reducer.takes_budget else None
        self.model, self.reducer, self.budget, self.seed = model, reducer, check_budget(budget), seed
        self.decision_layers = sorted({int(i) for i in layers})
        own_mode = reducer.query_aware if query_aware is None else query_aware
        self.query_aware = True if own_mode is None else bool(own_mode)
        self.last = None
        self._saved = None

    def __enter__(self):
        model = self.model
        if getattr(vars(model).get("forward"), "_rltr_reduction", None) is not None:
            raise ValueError("model is already under token reduction; nest no reductions")
        self._saved = (model.training, [p.requires_grad for p in model.parameters()], vars(model).get("forward"))
        try:
            self.backbone = wrap(model)  # sets eval mode and requires_grad=False: restored on exit
            check_decision_layers(self.decision_layers, self.backbone.n_layers)
            check_reducer(self.reducer, self.backbone, self.budget)
            self.reducer.check_backbone(self.backbone)  # e.g. RouterError (a ValueError) on a config-hash mismatch
            model.forward = self._patched(model.forward)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc) -> Literal[False]:
        self._restore()
        return False

    def _restore(self) -> None:
        if self._saved is None:
            return
        training, requires_grad, forward = self._saved
        if forward is None:
            vars(self.model).pop("forward", None)
        else:
            self.model.forward = forward
        for p, flag in zip(self.model.parameters(), requires_grad):
            p.requires_grad_(flag)
        self.model.train(training)
        self._saved = None

    def _patched(self, original):
        sig = inspect.signature(original)

        @functools.wraps(original)
        def forward(*args, **kwargs):
            return self._forward(original, sig, args, kwargs)

        forward._rltr_reduction = self
        return forward

    def _forward(self, original, sig: inspect.Signature, args: tuple, kwargs: dict):  # pragma: no cover - interface
        """What the patched forward does with the call's ``args``/``kwargs`` (``original``: the model's own forward)."""
        raise NotImplementedError


def named_arguments(sig: inspect.Signature, args: tuple, kwargs: dict) -> dict:
    """The call's arguments by name (positional ones mapped through the original signature, **kwargs flattened)."""
    bound = sig.bind(*args, **kwargs)
    named = dict(bound.arguments)
    for name, p in sig.parameters.items():
        if p.kind is inspect.Parameter.VAR_KEYWORD and name in named:
            named.update(named.pop(name))
    return named
