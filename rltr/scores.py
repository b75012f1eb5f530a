"""How an episode's answer is scored from the final token state: one function per score, by name.

Every score is (B,) float in [0, 1], higher is better; the env's reward is ``score - compute_weight *
compute_fraction``.
"""

from __future__ import annotations

import torch

from rltr.ops import TokenState
from rltr.tasks import Batch, exact_match


def answer_loglik(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """(B,) mean probability-space score in [0, 1]: exp(mean log p(answer token)) under teacher forcing."""
    logp = logits[:, :-1].float().log_softmax(-1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    mask = batch.answer_mask[:, :-1].float()
    return torch.exp((logp * mask).sum(1) / mask.sum(1))


SCORES = {
    "accuracy": exact_match,  # 1 where every teacher-forced answer token is the argmax (= greedy generation)
    "loglik": answer_loglik,  # denser: the answer's probability
}


def check_score(name: str) -> str:
    if name not in SCORES:
        raise ValueError(f"score must be one of {sorted(SCORES)}, got {name!r}")
    return name


def episode_score(backbone, batch: Batch, state: TokenState, score: str) -> torch.Tensor:
    """(B,) score of each row's answer, from the logits of the final ``state`` at the answer positions."""
    logits = backbone.answer_logits(state, batch.answer_mask)
    return SCORES[check_score(score)](logits, batch)
