"""Reducers by name: every method behind one interface, one file each, one line here."""

from __future__ import annotations

from rltr.reducers.base import Decision, DecisionContext, Reducer, check_budget, make_decide, target_counts
from rltr.reducers.identity import Identity
from rltr.reducers.random import RandomDrop

REDUCERS: dict[str, type[Reducer]] = {cls.name: cls for cls in (Identity, RandomDrop)}


def get_reducer(spec: str) -> Reducer:
    """A reducer from its name (``random``), or ``name:argument`` for those that take one."""
    name, _, arg = spec.partition(":")
    if name not in REDUCERS:
        raise ValueError(f"unknown method {spec!r}; known methods: {', '.join(sorted(REDUCERS))}")
    return REDUCERS[name](arg) if arg else REDUCERS[name]()


__all__ = [
    "REDUCERS", "Decision", "DecisionContext", "Reducer", "check_budget", "get_reducer", "make_decide", "target_counts",
]
