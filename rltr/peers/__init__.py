"""Peers: other libraries' methods run on rltr's examples and scored the same way (``kvpress:NAME``).

This layer sits above :mod:`rltr.reducers`: :func:`get_method` resolves a peer's spec here and hands every
other spec to :func:`rltr.reducers.get_reducer`. A peer subclasses :class:`Peer` and implements an
``evaluate_task`` method; the evaluation loop checks that class, not the name.
"""

from __future__ import annotations

from rltr.peers.base import Peer
from rltr.peers.kvpress import PRESSES, KVPress
from rltr.reducers import REDUCERS, Reducer, get_reducer

PEERS: dict[str, type[Peer]] = {"kvpress": KVPress}


def get_method(spec: str) -> Reducer:
    """A peer method (``kvpress:snapkv``) or any reducer spec :func:`~rltr.reducers.get_reducer` knows."""
    name, _, arg = spec.partition(":")
    if name in PEERS:
        return PEERS[name].from_spec(arg)
    try:
        return get_reducer(spec)
    except ValueError as e:
        if spec.partition("@")[0].partition(":")[0] not in REDUCERS:
            raise ValueError(f"{e}; or a peer: {', '.join(f'{p}:NAME' for p in PEERS)}") from None
        raise


__all__ = ["PEERS", "PRESSES", "KVPress", "Peer", "get_method"]
