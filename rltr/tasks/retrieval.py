"""Key-value retrieval: fused pair tokens ``k3v7`` scattered among filler; ``<sep> k3`` asks for ``v7``."""

from __future__ import annotations

import numpy as np

from rltr.tasks.base import Example, Task
from rltr.tasks.vocab import N_KEYS, N_VALUES, SEP_ID, scatter_in_filler, word_to_id


class Retrieval(Task):
    """Context: ``<bos> <retrieval>`` + ``n_pairs`` pair tokens with distinct keys among filler
    (``context_len`` tokens); keys come from ``k0..k{n_keys-1}``, values from ``v0..v{n_values-1}``
    (8 x 8 = 64 pair words by default: 16 x 16 learned ~8x slower). Tail: ``<sep> k_q v_q``; the
    answer is ``v_q`` (1 token). ``relevant`` = the position of the queried pair ``k_q v_q``."""

    name = "retrieval"
    description = "fused key-value pairs among filler; answer the value of the queried key"

    def __init__(self, context_len: int = 128, n_pairs: int = 6, n_keys: int = 8, n_values: int = 8):
        if not (1 <= n_keys <= N_KEYS and 1 <= n_values <= N_VALUES):
            raise ValueError(f"n_keys={n_keys}, n_values={n_values} must lie in [1, {N_KEYS}], [1, {N_VALUES}]")
        if not 1 <= n_pairs <= min(n_keys, context_len - 2):
            raise ValueError(f"n_pairs={n_pairs} must lie in [1, {min(n_keys, context_len - 2)}]")
        self.context_len, self.n_pairs, self.n_keys, self.n_values = context_len, n_pairs, n_keys, n_values

    def sample(self, rng: np.random.Generator) -> Example:
        keys = rng.choice(self.n_keys, size=self.n_pairs, replace=False)
        values = rng.integers(self.n_values, size=self.n_pairs)
        pairs = [word_to_id[f"k{k}v{v}"] for k, v in zip(keys, values)]
        context, positions = scatter_in_filler(rng, "<retrieval>", pairs, self.context_len)
        q = int(rng.integers(self.n_pairs))
        tail = [SEP_ID, word_to_id[f"k{keys[q]}"], word_to_id[f"v{values[q]}"]]
        return Example(context + tail, self.context_len, 1, relevant=[positions[q]], protected=[0, 1])
