"""Instructed retrieval: an instruction token says which group of keys the question will ask about.

The context reads ``<bos> <retrieval> m{g}`` + key-value pairs from every group among filler; the
instruction ``m{g}`` names the group (``m0``: keys k0-k3, ``m1``: k4-k7 by default) and the question
asks one of that group's keys. The other groups' pairs are decoys from the same distribution, so no
property of a pair token alone (its norm, its attention from the context) says whether it matters: a
query-agnostic method must read the instruction. The instruction and pair words are ones the built-in
``default`` model was trained on (``m*`` from majority, pairs from retrieval), so none carries an
unseen-embedding norm cue.
"""

from __future__ import annotations

import numpy as np

from rltr.tasks.base import Example, Task
from rltr.tasks.retrieval import count_range
from rltr.tasks.vocab import BOS_ID, FILLER_IDS, N_MAJORITY, SEP_ID, word_to_id


class InstructedRetrieval(Task):
    """Context (``context_len`` tokens): ``<bos> <retrieval> m{g}``, then ``pairs_per_group`` pairs of every
    one of ``n_groups`` groups (``keys_per_group`` keys each; distinct keys, values ``v0..v{n_values-1}``) at
    random positions among filler. ``pairs_per_group`` may be a range ``[low, high]`` drawn per group and
    example (variable load: the instructed group's size varies per input). Tail: ``<sep> k_q v_q`` with
    ``k_q`` from the instructed group; the answer is ``v_q``. ``relevant`` = the queried pair;
    ``relevant_any`` = the instructed group's pairs (what the instruction says any question may need)."""

    name = "instructed_retrieval"
    description = "an instruction token names the group of keys the question will ask; the other groups are decoys"
    tag = "<retrieval>"  # a retrieval variant: the model reads it as retrieval

    def __init__(
        self, context_len: int = 128, n_groups: int = 2, keys_per_group: int = 4, pairs_per_group: int | list[int] = 4, n_values: int = 8
    ):
        if not 2 <= n_groups <= N_MAJORITY - 1:  # m0..m{N_MAJORITY-2}: the symbols the default model saw
            raise ValueError(f"n_groups={n_groups} must lie in [2, {N_MAJORITY - 1}]")
        if not (1 <= keys_per_group and n_groups * keys_per_group <= 8 and 1 <= n_values <= 8):
            raise ValueError(
                f"need n_groups * keys_per_group <= 8 (keys k0-k7) and n_values in [1, 8], got "
                f"{n_groups} x {keys_per_group}, n_values={n_values}"
            )
        self.pairs_range = count_range(pairs_per_group, "pairs_per_group", 1, keys_per_group)
        if n_groups * self.pairs_range[1] > context_len - 3:
            raise ValueError(f"{n_groups} x {self.pairs_range[1]} pairs do not fit a context of {context_len} tokens")
        self.context_len, self.n_groups, self.keys_per_group, self.n_values = context_len, n_groups, keys_per_group, n_values

    def sample(self, rng: np.random.Generator) -> Example:
        lo, hi = self.pairs_range
        words, groups = [], []
        for g in range(self.n_groups):
            n = int(rng.integers(lo, hi + 1))
            keys = g * self.keys_per_group + rng.choice(self.keys_per_group, size=n, replace=False)
            words += [(int(k), int(v)) for k, v in zip(keys, rng.integers(self.n_values, size=n))]
            groups += [g] * n
        instructed = int(rng.integers(self.n_groups))
        n_free = self.context_len - 3
        order = rng.permutation(len(words))
        slots = 3 + np.sort(rng.choice(n_free, size=len(words), replace=False))
        context = [BOS_ID, word_to_id[self.tag], word_to_id[f"m{instructed}"]] + rng.choice(FILLER_IDS, size=n_free).tolist()
        position = {}
        for slot, i in zip(slots.tolist(), order.tolist()):
            context[slot] = word_to_id[f"k{words[i][0]}v{words[i][1]}"]
            position[i] = slot
        mine = [i for i, g in enumerate(groups) if g == instructed]
        q = mine[int(rng.integers(len(mine)))]
        tail = [SEP_ID, word_to_id[f"k{words[q][0]}"], word_to_id[f"v{words[q][1]}"]]
        return Example(
            context + tail, self.context_len, 1, relevant=[position[q]], protected=[0, 1], relevant_any=sorted(position[i] for i in mine)
        )
