"""Majority: a sequence of symbols (and some filler); the answer is the most frequent symbol."""

from __future__ import annotations

import numpy as np

from rltr.tasks.base import Example, Task
from rltr.tasks.vocab import BOS_ID, FILLER_IDS, N_MAJORITY, SEP_ID, word_to_id


class Majority(Task):
    """Context: ``<bos> <majority>`` + ``context_len - 2`` tokens: up to ``max_filler_ratio`` of them
    filler, the rest symbols ``m0..m{n_symbols-1}`` whose top count beats the runner-up by a margin
    of ``min_margin_ratio..max_margin_ratio`` of the symbol count (at least 1).
    Tail: ``<sep> m_mode``; the answer is the mode (1 token). ``relevant`` = every symbol position:
    each one counts, so dropping many of them at random can flip the answer."""

    name = "majority"
    description = "symbols (and some filler); answer the most frequent symbol"

    def __init__(
        self, context_len: int = 128, n_symbols: int = 3, max_filler_ratio: float = 0.25,
        min_margin_ratio: float = 0.07, max_margin_ratio: float = 0.2,
    ) -> None:  # fmt: skip
        if not 2 <= n_symbols <= N_MAJORITY:
            raise ValueError(f"n_symbols={n_symbols} must lie in [2, {N_MAJORITY}]")
        if not (0 <= max_filler_ratio < 1 and 0 < min_margin_ratio <= max_margin_ratio < 0.5 and context_len >= 8):
            raise ValueError(
                f"need 0 <= max_filler_ratio={max_filler_ratio} < 1, 0 < min_margin_ratio={min_margin_ratio}"
                f" <= max_margin_ratio={max_margin_ratio} < 0.5 and context_len={context_len} >= 8"
            )
        self.context_len, self.n_symbols = context_len, n_symbols
        self.max_filler = int(max_filler_ratio * (context_len - 2))
        self.min_margin_ratio, self.max_margin_ratio = min_margin_ratio, max_margin_ratio

    def counts(self, rng: np.random.Generator, n_tokens: int) -> np.ndarray:
        """(n_symbols,) counts summing to ``n_tokens`` with a top-vs-second margin in range."""
        lo = max(1, round(self.min_margin_ratio * n_tokens))
        hi = max(lo, round(self.max_margin_ratio * n_tokens))
        while True:
            c = rng.multinomial(n_tokens, rng.dirichlet(np.full(self.n_symbols, 4.0)))
            top, second = np.sort(c)[::-1][:2]
            if lo <= top - second <= hi:
                return c

    def sample(self, rng: np.random.Generator) -> Example:
        n_free = self.context_len - 2
        n_filler = int(rng.integers(self.max_filler + 1))
        counts = self.counts(rng, n_free - n_filler)
        symbols = np.repeat([word_to_id[f"m{i}"] for i in range(self.n_symbols)], counts)
        body = np.concatenate([symbols, rng.choice(FILLER_IDS, size=n_filler)])
        body = body[rng.permutation(n_free)]
        context = [BOS_ID, word_to_id["<majority>"]] + body.tolist()
        relevant = (2 + np.flatnonzero(~np.isin(body, FILLER_IDS))).tolist()
        answer = word_to_id[f"m{int(np.argmax(counts))}"]
        return Example(context + [SEP_ID, answer], self.context_len, 1, relevant, [0, 1])
