"""Reducers by name: every method behind one interface, one file each, one line here."""

from __future__ import annotations

from pathlib import Path

from rltr.core.decisions import Decision, DecisionContext, check_budget, target_counts
from rltr.reducers.attn_topk import AttnTopK
from rltr.reducers.base import Reducer, ScoreReducer
from rltr.reducers.fastv import FastV
from rltr.reducers.h2o import HeavyHitters
from rltr.reducers.identity import Identity
from rltr.reducers.norm import Norm
from rltr.reducers.oracle import Oracle
from rltr.reducers.question_attn import QuestionAttention
from rltr.reducers.random import RandomDrop
from rltr.reducers.router import RouterReducer
from rltr.reducers.spatial_pool import SpatialPool
from rltr.reducers.tome import ToMe
from rltr.reducers.window import Window

REDUCERS: dict[str, type[Reducer]] = {
    cls.name: cls
    for cls in (
        Identity,
        RandomDrop,
        Oracle,
        ToMe,
        AttnTopK,
        HeavyHitters,
        Norm,
        Window,
        RouterReducer,
        FastV,
        QuestionAttention,
        SpatialPool,
    )
}


def get_reducer(spec: str) -> Reducer:
    """A reducer from its name (``random``), ``name:argument`` for those that take one, and ``...@T`` for a
    score method in threshold mode (keep tokens scoring >= T: ``norm:hidden@0.9``)."""
    full_spec = spec
    spec, at, threshold = spec.partition("@")
    reducer = _build(spec)
    reducer.label = spec_label(full_spec)
    if at:
        try:
            value = float(threshold)
        except ValueError:
            raise ValueError(f"threshold {threshold!r} of {spec + at + threshold!r} is not a number") from None
        if not isinstance(reducer, ScoreReducer):
            raise ValueError(f"method {spec!r} keeps tokens by a budget, not by a score: no threshold mode (@)")
        reducer.with_threshold(value)
    return reducer


def spec_label(spec: str) -> str:
    """How a method appears in tables: its spec (``norm:hidden``), or ``router:<folder name>`` for a router path."""
    name, _, arg = spec.partition(":")
    if name == "router" and arg:
        path, at, threshold = arg.partition("@")
        return f"router:{Path(path).name}{at}{threshold}"
    return spec


def _build(spec: str) -> Reducer:
    name, _, arg = spec.partition(":")
    if name not in REDUCERS:
        raise ValueError(f"unknown method {spec!r}; known methods: {', '.join(sorted(REDUCERS))}")
    return REDUCERS[name].from_spec(arg)


__all__ = [
    "REDUCERS",
    "Decision",
    "DecisionContext",
    "Reducer",
    "ScoreReducer",
    "check_budget",
    "get_reducer",
    "spec_label",
    "target_counts",
]
