"""The teacher contract: per-token importance scores from the frozen model, with the answer in view.

A teacher reads one padded :class:`~rltr.tasks.Batch` (context | question | teacher-forced answer) on
the backbone's device and returns (B, N) float32 scores: how much the answer needed each context token.
Only *candidates* get a finite score: live context tokens that are not protected (the tail, BOS and
task tags get ``-inf``), so a top-k of the scores is a set of context tokens a router may keep.

Teachers read the question and the answer: privileged information for training only. The router that
is distilled from them sees what the env shows it (in query-agnostic mode, the context alone). No
teacher reads a task's ``relevant`` / ``relevant_any`` labels.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from rltr.tasks.base import Batch, Example


def candidates(batch: Batch) -> torch.Tensor:
    """(B, N) bool: live, unprotected context tokens (what a teacher scores)."""
    idx = torch.arange(batch.input_ids.shape[1], device=batch.input_ids.device)
    return batch.attention_mask & ~batch.protected & (idx[None, :] < batch.context_len[:, None])


def answer_rows(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """((B, R) long answer-predicting positions, (B, R) bool which are real); R = the longest answer.
    The logits at position p predict token p + 1, so the rows are ``[len - n_answer - 1, len - 1)``."""
    r = int(batch.n_answer.max())
    offset = torch.arange(r, device=batch.input_ids.device)
    start = (batch.lengths - batch.n_answer - 1)[:, None]
    real = offset[None, :] < batch.n_answer[:, None]
    rows = torch.where(real, start + offset[None, :], start)
    return rows, real


def answer_logprob(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """(B,) float32 sum of log p(answer token) over the answer, from (B, N, V) logits at original positions."""
    logp = logits[:, :-1].float().log_softmax(-1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)  # (B, N-1)
    return (logp * batch.answer_mask[:, :-1]).sum(1)


class Teacher(ABC):
    """Scores context tokens by how much the answer needs them. Subclasses set ``name`` and ``cost``
    (what one example costs, in words) and implement :meth:`scores`."""

    name: str = ""
    cost: str = ""

    @abstractmethod
    def scores(self, backbone, batch: Batch) -> torch.Tensor:
        """(B, N) float32 on the backbone's device; ``-inf`` off the :func:`candidates`."""

    def describe(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"


def with_model_answers(backbone, batch: Batch) -> Batch:
    """``batch`` with every answer token replaced by the full model's own greedy prediction (teacher-forced
    on its own previous tokens: one forward per answer token), for data without answers."""
    ids = batch.input_ids.clone()
    rows, real = answer_rows(batch)
    for j in range(rows.shape[1]):
        logits = backbone.forward_logits(ids, batch.attention_mask)  # (B, N, V)
        pred = logits.gather(1, rows[:, j, None, None].expand(-1, 1, logits.shape[-1])).squeeze(1).argmax(-1)  # (B,)
        target = rows[:, j] + 1
        ids[real[:, j], target[real[:, j]]] = pred[real[:, j]]
    return Batch(**{**batch.__dict__, "input_ids": ids})


def run_teacher(
    teacher: Teacher, backbone, task, examples: Sequence[Example], batch_size: int = 64, model_answers: bool = False, progress: bool = True
) -> tuple[list[torch.Tensor], float]:
    """Per example, a CPU float32 tensor of its teacher scores (one per token, ``-inf`` off the candidates),
    and the seconds it took per 1,000 examples. Batched on the backbone's device; the progress bar shows
    the running cost."""
    out: list[torch.Tensor] = []
    t0 = time.perf_counter()
    with tqdm(total=len(examples), desc=f"teacher {teacher.describe()}", disable=not progress, leave=False, unit="ex") as bar:
        for start in range(0, len(examples), batch_size):
            chunk = list(examples[start : start + batch_size])
            batch = task.collate(chunk).to(backbone.device)
            if model_answers:
                batch = with_model_answers(backbone, batch)
            s = teacher.scores(backbone, batch).float().cpu()
            out += [s[i, : len(e.input_ids)] for i, e in enumerate(chunk)]
            bar.update(len(chunk))
            bar.set_postfix(s_per_1k=f"{1000 * (time.perf_counter() - t0) / len(out):.1f}")
    return out, 1000 * (time.perf_counter() - t0) / max(len(examples), 1)
