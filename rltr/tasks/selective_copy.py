"""Selective copy: a few data tokens among filler; after ``<sep>`` the answer is the data in order."""

from __future__ import annotations

import numpy as np

from rltr.tasks.base import Example, Task
from rltr.tasks.vocab import N_DATA, SEP_ID, scatter_in_filler, word_to_id


class SelectiveCopy(Task):
    """Context: ``<bos> <selective_copy>`` + ``n_data`` data tokens ``d*`` (repeats allowed) at random
    positions among filler (``context_len`` tokens). Tail: ``<sep> d_1 .. d_n``; the answer is the
    ``n_data`` data tokens in context order. ``relevant`` = the data positions."""

    name = "selective_copy"
    description = "a few data tokens among filler; answer them in order"

    def __init__(self, context_len: int = 128, n_data: int = 4) -> None:
        if not 1 <= n_data <= context_len - 2:
            raise ValueError(f"n_data={n_data} must lie in [1, {context_len - 2}]")
        self.context_len, self.n_data = context_len, n_data

    def sample(self, rng: np.random.Generator) -> Example:
        data = [word_to_id[f"d{i}"] for i in rng.integers(N_DATA, size=self.n_data)]
        context, positions = scatter_in_filler(rng, "<selective_copy>", data, self.context_len)
        return Example(context + [SEP_ID] + data, self.context_len, self.n_data, positions, [0, 1])
