"""Two-hop lookup: fused edges ``n3n7`` (x -> y) among filler; ``<sep> x`` asks for z in x -> y -> z."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rltr.tasks.base import Example, Task
from rltr.tasks.vocab import N_NODES, SEP_ID, scatter_in_filler, word_to_id


class Multihop(Task):
    """Context: ``<bos> <multihop>`` + ``n_edges`` edge tokens ``n{x}n{y}`` over nodes ``n0..n{n_nodes-1}``
    with distinct sources among filler (``context_len`` tokens); the chain x -> y -> z is among them (in either order). Tail:
    ``<sep> n{x} n{z}``; the answer is ``n{z}`` (1 token). ``relevant`` = both edges on the chain: the
    second edge only matters once the first has been read, so early-layer attention cannot see it."""

    name = "multihop"
    description = "edges x->y among filler; answer the two-hop target of the queried node"

    def __init__(self, context_len: int = 128, n_edges: int = 6, n_nodes: int = 8) -> None:
        if not 3 <= n_nodes <= N_NODES:
            raise ValueError(f"n_nodes={n_nodes} must lie in [3, {N_NODES}]")
        if not 2 <= n_edges <= min(n_nodes, context_len - 2):
            raise ValueError(f"n_edges={n_edges} must lie in [2, {min(n_nodes, context_len - 2)}]")
        self.context_len, self.n_edges, self.n_nodes = context_len, n_edges, n_nodes

    def sample(self, rng: np.random.Generator) -> Example:
        g = sample_edges(rng, self.n_nodes, self.n_edges, "<multihop>", self.context_len)
        tail = [SEP_ID, word_to_id[f"n{g.x}"], word_to_id[f"n{g.z}"]]
        return Example(
            g.context + tail, self.context_len, 1, relevant=sorted(g.chain_positions), protected=[0, 1], relevant_any=g.positions
        )


@dataclass
class Edges:
    """A context of fused edges among filler holding the chain x -> y -> z."""

    x: int
    y: int
    z: int
    edges: list[int]  # edge ids in context order
    context: list[int]  # context_len ids: <bos> <tag>, edges among filler
    chain_positions: list[int]  # context positions of the edges x -> y and y -> z, in that order
    positions: list[int]  # context positions of every edge, in context order


def sample_edges(rng: np.random.Generator, n_nodes: int, n_edges: int, tag: str, context_len: int) -> Edges:
    """``n_edges`` edges ``n{a}n{b}`` over ``n_nodes`` nodes with distinct sources and no self-loops,
    the chain x -> y -> z among them, scattered in random order among filler after ``<bos> <tag>``."""
    x, y, z = (int(v) for v in rng.choice(n_nodes, size=3, replace=False))
    others = rng.permutation([n for n in range(n_nodes) if n not in (x, y)])[: n_edges - 2]
    sources = [x, y] + [int(s) for s in others]
    targets = [y, z] + [int(t) for t in rng.integers(n_nodes - 1, size=len(others))]
    targets[2:] = [t + (t >= s) for s, t in zip(sources[2:], targets[2:])]  # no self-loops
    order = rng.permutation(n_edges)
    edges = [word_to_id[f"n{sources[i]}n{targets[i]}"] for i in order]
    context, positions = scatter_in_filler(rng, tag, edges, context_len)
    chain = [positions[int(np.flatnonzero(order == i)[0])] for i in (0, 1)]
    return Edges(x, y, z, edges, context, chain, positions)
