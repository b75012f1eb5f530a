"""The output-length reward: task score minus ``length_weight`` x generated tokens, as a trl reward function."""

from __future__ import annotations

from rltr.tasks import GenerativeTask


def length_penalized(score: float, n_tokens: int, length_weight: float) -> float:
    """reward = score - length_weight * n_tokens (the end token counts: it is generated too)."""
    return score - length_weight * n_tokens


class LengthPenalizedScore:
    """A reward function with trl's signature: ``(prompts, completions, completion_ids, target, **kw) -> list[float]``.

    ``completion_ids`` are the generated ids of each completion (up to and including its end token, as
    ``GRPOTrainer`` passes them); ``target`` is the dataset column holding each prompt's answer id.
    """

    def __init__(self, task: GenerativeTask, length_weight: float) -> None:
        if length_weight < 0:
            raise ValueError(f"length_weight must be >= 0, got {length_weight}")
        self.task, self.length_weight = task, length_weight
        self.__name__ = "length_penalized_score"  # trl logs each reward function under its __name__

    def scores(self, completion_ids: list[list[int]], target: list[int]) -> list[float]:
        return [self.task.score_completion(list(c), t) for c, t in zip(completion_ids, target)]

    def __call__(self, prompts, completions, completion_ids, target, **kwargs) -> list[float]:
        scores = self.scores(completion_ids, target)
        log_metric = kwargs.get("log_metric")  # trl's hook: averaged per logging step into its log history
        if log_metric is not None and scores:
            log_metric("task_score", sum(scores) / len(scores))
        return [length_penalized(s, len(c), self.length_weight) for s, c in zip(scores, completion_ids)]
