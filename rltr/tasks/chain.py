"""Chain: one- or two-hop lookups over fused edges, answered after thinking out loud (a generative task).

The teacher-forced tail is a *verbose* completion: a model trained on it reads part of the context out
loud, walks the chain, and only then answers. Much of that is unnecessary (a one-hop answer needs no
scratch at all), some is not (a two-hop answer needs its intermediate step written down: the direct
two-hop lookup is what a 4-layer model fails to learn, see ``multihop``). The habit is stochastic, so a
sampling policy can find shorter completions and RL can learn which ones stay correct.
"""

from __future__ import annotations

import numpy as np

from rltr.tasks.base import Example, GenerativeTask
from rltr.tasks.multihop import sample_edges
from rltr.tasks.vocab import N_NODES, SEP_ID, VOCAB_SIZE, word_to_id, words_of

NODE_IDS = frozenset(word_to_id[f"n{i}"] for i in range(N_NODES))  # the answer-shaped tokens


class Chain(GenerativeTask):
    """Context: ``<bos> <chain>`` + ``n_edges`` edges ``n{a}n{b}`` with distinct sources among filler
    (``context_len`` tokens); the chain x -> y -> z is among them. Question: ``<sep> n{x} h1`` (answer y)
    or ``<sep> n{x} h2`` (answer z), two hops with probability ``two_hop_ratio``.

    Completion (the teacher-forced answer, ``n_answer`` tokens, ending in ``<sep>``):

    * scan: the first r context edges in context order, r uniform in [0, n_edges] (reading aloud);
    * walk: per hop, a copy of the edge followed (with probability ``copy_ratio``) and the node it
      reaches (the last node always: it is the answer; the intermediate one with ``copy_ratio``);
    * ``<sep>`` (the end-of-sequence token of models built on this task).

    Greedy decoding of a model trained on this writes the longest habit (scan all, copy every step:
    ``n_edges`` + 3 or 5 tokens); the shortest correct completions are ``y <sep>`` and ``y z <sep>``.
    Scoring (:meth:`score_completion`): the last answer-shaped token (a node ``n*``) before the first
    ``<sep>`` must equal the answer. ``relevant`` = the edges on the asked chain."""

    name = "chain"
    description = "one- or two-hop edge lookups; the answer comes after a verbose, stochastic scratchpad"
    generative = True
    vocab_size = VOCAB_SIZE
    eos_id = SEP_ID
    answer_ids = NODE_IDS

    def __init__(self, context_len: int = 128, n_edges: int = 6, n_nodes: int = 8, two_hop_ratio: float = 0.5,
                 copy_ratio: float = 0.75) -> None:  # fmt: skip
        if not 3 <= n_nodes <= N_NODES:
            raise ValueError(f"n_nodes={n_nodes} must lie in [3, {N_NODES}]")
        if not 2 <= n_edges <= min(n_nodes, context_len - 2):
            raise ValueError(f"n_edges={n_edges} must lie in [2, {min(n_nodes, context_len - 2)}]")
        if not (0 <= two_hop_ratio <= 1 and 0 <= copy_ratio <= 1):
            raise ValueError(f"two_hop_ratio={two_hop_ratio} and copy_ratio={copy_ratio} must lie in [0, 1]")
        self.context_len, self.n_edges, self.n_nodes = context_len, n_edges, n_nodes
        self.two_hop_ratio, self.copy_ratio = two_hop_ratio, copy_ratio
        self.max_completion_len = n_edges + 8  # generation cap: the longest habit (n_edges + 5) and some slack

    def sample(self, rng: np.random.Generator) -> Example:
        g = sample_edges(rng, self.n_nodes, self.n_edges, "<chain>", self.context_len)
        x, y, z, edges = g.x, g.y, g.z, g.edges
        n_hops = 2 if rng.random() < self.two_hop_ratio else 1
        path = [(word_to_id[f"n{x}n{y}"], word_to_id[f"n{y}"]), (word_to_id[f"n{y}n{z}"], word_to_id[f"n{z}"])][:n_hops]
        completion = edges[: int(rng.integers(self.n_edges + 1))]  # the scan
        for hop, (edge, node) in enumerate(path):
            if rng.random() < self.copy_ratio:
                completion.append(edge)
            if hop == n_hops - 1 or rng.random() < self.copy_ratio:
                completion.append(node)
        question = [SEP_ID, word_to_id[f"n{x}"], word_to_id[f"h{n_hops}"]]
        relevant = sorted(g.chain_positions[:n_hops])
        return Example(g.context + question + completion + [SEP_ID], self.context_len, len(completion) + 1, relevant, [0, 1])

    # ---- the generative contract: prompt, target, score -------------------------------------------
    @staticmethod
    def prompt(example: Example) -> list[int]:
        """The ids a model is given: context and question (the completion removed)."""
        return example.input_ids[: len(example.input_ids) - example.n_answer]

    @staticmethod
    def target(example: Example) -> int:
        """The answer token: the last one before the final ``<sep>`` of the completion."""
        return example.input_ids[-2]

    def final_answer(self, completion: list[int]) -> int | None:
        """The last answer-shaped token before the first end token, or None when there is none."""
        if self.eos_id in completion:
            completion = completion[: completion.index(self.eos_id)]
        return next((t for t in reversed(completion) if t in self.answer_ids), None)

    def score_completion(self, completion: list[int], target: int) -> float:
        """1.0 when the completion's final answer is ``target`` (:meth:`target` of its example), else 0.0."""
        return float(self.final_answer(completion) == target)

    @staticmethod
    def group(example: Example) -> str:
        """The kind of question, for per-kind breakdowns: ``h1`` or ``h2``."""
        return words_of([example.input_ids[len(example.input_ids) - example.n_answer - 1]])[0]
