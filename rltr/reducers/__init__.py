"""Reducers by name: every method behind one interface, one file each, one line here."""

from __future__ import annotations

from rltr.decider import make_decide
from rltr.decisions import Decision, DecisionContext, check_budget, target_counts
from rltr.reducers.attn_topk import AttnTopK
from rltr.reducers.base import Reducer, ScoreReducer
from rltr.reducers.h2o import HeavyHitters
from rltr.reducers.identity import Identity
from rltr.reducers.norm import Norm
from rltr.reducers.oracle import Oracle
from rltr.reducers.random import RandomDrop
from rltr.reducers.router import RouterReducer
from rltr.reducers.tome import ToMe
from rltr.reducers.window import Window

REDUCERS: dict[str, type[Reducer]] = {
    cls.name: cls for cls in (Identity, RandomDrop, Oracle, ToMe, AttnTopK, HeavyHitters, Norm, Window, RouterReducer)
}


def get_reducer(spec: str) -> Reducer:
    """A reducer from its name (``random``), ``name:argument`` for those that take one, and ``...@T`` for a
    score method in threshold mode (keep tokens scoring >= T: ``norm:hidden@0.9``)."""
    spec, at, threshold = spec.partition("@")
    reducer = _build(spec)
    if at:
        try:
            value = float(threshold)
        except ValueError:
            raise ValueError(f"threshold {threshold!r} of {spec + at + threshold!r} is not a number") from None
        if not isinstance(reducer, ScoreReducer):
            raise ValueError(f"method {spec!r} keeps tokens by a budget, not by a score: no threshold mode (@)")
        reducer.with_threshold(value)
    return reducer


def _build(spec: str) -> Reducer:
    name, _, arg = spec.partition(":")
    if name not in REDUCERS:
        raise ValueError(f"unknown method {spec!r}; known methods: {', '.join(sorted(REDUCERS))}")
    cls = REDUCERS[name]
    if not arg:
        return cls()
    try:
        return cls(arg)
    except TypeError:
        raise ValueError(f"method {name!r} takes no option, got {spec!r}") from None


__all__ = [
    "REDUCERS", "Decision", "DecisionContext", "Reducer", "ScoreReducer", "check_budget", "get_reducer", "make_decide",
    "target_counts",
]
