"""What a peer method is: a method from another library that evaluates itself on rltr's examples (its own
code path, e.g. kvpress's two-phase prefill), scored like every row. The evaluation loop checks this class,
not a method's name."""

from __future__ import annotations

from rltr.reducers.base import Reducer


class Peer(Reducer):
    """A method that runs its own evaluation: :meth:`evaluate_task` returns the fields of an ``EvalResult``."""

    def evaluate_task(
        self,
        backbone,
        task,
        budget: float | None,
        *,
        n_examples: int = 500,
        seed: int = 0,
        query_aware: bool = False,
        progress: bool = False,
        split: str = "test",
        **ignored,
    ) -> dict:
        raise NotImplementedError  # pragma: no cover - interface
