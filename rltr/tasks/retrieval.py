"""Key-value retrieval: fused pair tokens ``k3v7`` scattered among filler; ``<sep> k3`` asks for ``v7``."""

from __future__ import annotations

import numpy as np

from rltr.tasks.base import Example, Task
from rltr.tasks.vocab import N_KEYS, N_VALUES, SEP_ID, scatter_in_filler, word_to_id


def count_range(value, name: str, lo: int, hi: int) -> tuple[int, int]:
    """``value`` as an inclusive (low, high) range: an int n is (n, n); a pair [a, b] is drawn per example.
    ValueError naming ``name`` unless lo <= low <= high <= hi."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair) or not lo <= pair[0] <= pair[1] <= hi:
        raise ValueError(f"{name}={value!r} must be an int or a range [low, high] within [{lo}, {hi}]")
    return pair


class Retrieval(Task):
    """Context: ``<bos> <retrieval>`` + ``n_pairs`` pair tokens with distinct keys among filler
    (``context_len`` tokens); keys come from ``k0..k{n_keys-1}``, values from ``v0..v{n_values-1}``
    (8 x 8 = 64 pair words by default: 16 x 16 learned ~8x slower). ``n_pairs`` may be a range
    ``[low, high]``, drawn per example (variable load). Tail: ``<sep> k_q v_q``; the answer is ``v_q``
    (1 token). ``relevant`` = the position of the queried pair; ``relevant_any`` = every pair (any key
    may be asked)."""

    name = "retrieval"
    description = "fused key-value pairs among filler; answer the value of the queried key"

    def __init__(self, context_len: int = 128, n_pairs: int | list[int] = 6, n_keys: int = 8, n_values: int = 8):
        if not (1 <= n_keys <= N_KEYS and 1 <= n_values <= N_VALUES):
            raise ValueError(f"n_keys={n_keys}, n_values={n_values} must lie in [1, {N_KEYS}], [1, {N_VALUES}]")
        self.pairs_range = count_range(n_pairs, "n_pairs", 1, min(n_keys, context_len - 2))
        self.context_len, self.n_keys, self.n_values = context_len, n_keys, n_values

    def sample(self, rng: np.random.Generator) -> Example:
        lo, hi = self.pairs_range
        n_pairs = lo if lo == hi else int(rng.integers(lo, hi + 1))
        keys = rng.choice(self.n_keys, size=n_pairs, replace=False)
        values = rng.integers(self.n_values, size=n_pairs)
        pairs = [word_to_id[f"k{k}v{v}"] for k, v in zip(keys, values)]
        context, positions = scatter_in_filler(rng, "<retrieval>", pairs, self.context_len)
        q = int(rng.integers(n_pairs))
        tail = [SEP_ID, word_to_id[f"k{keys[q]}"], word_to_id[f"v{values[q]}"]]
        return Example(context + tail, self.context_len, 1, relevant=[positions[q]], protected=[0, 1], relevant_any=positions)
