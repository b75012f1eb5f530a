"""Batched generation on a generative task's prompts (plain HF ``generate``, patched or not), scored by the task."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from rltr.inference.generation import cut_at_stop, left_padded
from rltr.tasks import Example, GenerativeTask, Task


@dataclass
class Generations:
    """What one generation pass over examples produced. Lists have one entry per example."""

    completions: list[list[int]]  # generated ids, cut after the first stop token (kept) or at the cap
    scores: list[float]  # the task's score of each completion
    seconds: float  # wall-clock of the generate calls (end to end, padding and cutting included)

    @property
    def accuracy(self) -> float:
        return sum(self.scores) / len(self.scores)

    @property
    def mean_tokens(self) -> float:
        return sum(len(c) for c in self.completions) / len(self.completions)


def check_generative(task: Task) -> GenerativeTask:
    """``task`` as a :class:`GenerativeTask` (ValueError naming it when it is scored on logits)."""
    if not getattr(task, "generative", False):
        raise ValueError(f"task {task.name!r} is scored on teacher-forced logits, not on generated output; "
                         f"use a generative task (e.g. chain)")  # fmt: skip
    if not isinstance(task, GenerativeTask):
        raise TypeError(f"task {task.name!r} sets generative = True but does not subclass rltr.tasks.GenerativeTask")
    return task


@torch.no_grad()
def generate(model, prompts: list[list[int]], *, max_new_tokens: int, stop_ids: list[int], pad_id: int,
             batch_size: int = 128, do_sample: bool = False) -> tuple[list[list[int]], float]:  # fmt: skip
    """Greedy (or sampled) completions of ``prompts``; each stops at its first token in ``stop_ids``.
    Returns (completions, seconds of generation). ``model`` may be patched (``with reducer(model): ...``)."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    was_training = model.training
    model.eval()
    out, seconds, stop = [], 0.0, set(stop_ids)
    for i in range(0, len(prompts), batch_size):
        ids, mask = left_padded(prompts[i : i + batch_size], pad_id, "cpu")
        t0 = time.perf_counter()
        seq = model.generate(
            input_ids=ids.to(model.device), attention_mask=mask.to(model.device), max_new_tokens=max_new_tokens,
            do_sample=do_sample, eos_token_id=list(stop_ids), pad_token_id=pad_id,
        )  # fmt: skip
        out += [cut_at_stop(row, stop) for row in seq[:, ids.shape[1] :].tolist()]
        seconds += time.perf_counter() - t0
    model.train(was_training)
    return out, seconds


def generate_on(model, task: Task, examples: list[Example], *, max_new_tokens: int | None = None,
                stop_ids: list[int] | None = None, pad_id: int = 0, batch_size: int = 128) -> Generations:  # fmt: skip
    """Greedy completions of ``examples``' prompts, scored by ``task``. Defaults: the task's completion
    cap and its end token as the only stop token."""
    task = check_generative(task)
    completions, seconds = generate(
        model, [task.prompt(e) for e in examples], max_new_tokens=max_new_tokens or task.max_completion_len,
        stop_ids=stop_ids or [task.eos_id], pad_id=pad_id, batch_size=batch_size,
    )  # fmt: skip
    return Generations(completions, [task.score_completion(c, task.target(e)) for c, e in zip(completions, examples)], seconds)


def generative_accuracy(model, task: Task, n: int, seed: int, split: str, pad_id: int, batch_size: int = 128) -> float:
    """Accuracy of greedy generation on ``n`` examples of ``task`` (the zoo's check for generative tasks)."""
    return generate_on(model, task, task.examples(n, seed=seed, split=split), pad_id=pad_id, batch_size=batch_size).accuracy
