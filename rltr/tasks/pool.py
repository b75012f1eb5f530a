"""A task over fixed lists of examples (a dataset rather than a generator).

Training draws uniformly from the ``train`` split (one ``rng.integers`` per example); evaluation reads
a split in order, so ``examples(n, split="test")`` is the first ``n`` test examples whatever the seed
(the seed then only drives random reducers). ``ExamplePool.from_task`` freezes a built-in generator's
examples into a pool: training on it equals training on the same examples read from a JSONL file.
"""

from __future__ import annotations

import numpy as np

from rltr.tasks.base import SPLIT_IDS, Example, Task


class ExamplePool(Task):
    """``splits``: {split name: examples}; a split left out cannot be asked for (ValueError naming it)."""

    description = "a fixed list of examples per split"

    def __init__(self, splits: dict[str, list[Example]], name: str = "pool"):
        unknown = sorted(set(splits) - set(SPLIT_IDS))
        if unknown:
            raise ValueError(f"unknown split(s) {unknown}; expected some of {sorted(SPLIT_IDS)}")
        self.splits, self.name = {k: list(v) for k, v in splits.items()}, name

    @classmethod
    def from_task(cls, task: Task, n: int, seed: int = 0, splits: tuple[str, ...] = ("train", "validation", "test")) -> ExamplePool:
        """``n`` examples of each split of a generator task, frozen (the same ones ``task.examples`` gives)."""
        return cls({s: task.examples(n, seed=seed, split=s) for s in splits}, name=task.name)

    def split(self, name: str) -> list[Example]:
        if name not in SPLIT_IDS:
            raise ValueError(f"unknown split {name!r}; expected one of {sorted(SPLIT_IDS)}")
        if not self.splits.get(name):
            have = {k: len(v) for k, v in self.splits.items()}
            raise ValueError(f"task {self.name!r} has no {name!r} examples (examples per split: {have})")
        return self.splits[name]

    def sample(self, rng: np.random.Generator) -> Example:
        train = self.split("train")
        return train[int(rng.integers(len(train)))]

    def examples(self, n: int, seed: int = 0, split: str = "test") -> list[Example]:
        """The first ``min(n, size)`` examples of ``split``, in order (``seed`` is not used: a dataset's test
        set is what it is)."""
        return self.split(split)[:n]

    def max_length(self) -> int:
        return max(len(e.input_ids) for examples in self.splits.values() for e in examples)
