"""How an episode's answer is scored from the final token state: one function per score, by name.

Every score is (B,) float in [0, 1], higher is better; the env's reward is ``score - compute_weight *
compute_fraction``. ``accuracy`` and ``loglik`` compare with the example's answer; the ``fidelity`` scores
need no labels: they compare with the FULL model's own predictions at the answer positions (its
``reference`` logits, from the same tokens without reduction), so raw prompts can be trained on.
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


def exact_agreement(logits: torch.Tensor, batch: Batch, reference: torch.Tensor) -> torch.Tensor:
    """(B,) 1.0 where the argmax at every answer position equals the full model's (``reference`` (B, N, V)):
    the reduced model reproduces the full model's greedy answer (when the answer tokens are that answer,
    e.g. ``model_answers``; else its next-token choices along the given answer)."""
    mask = batch.answer_mask[:, :-1]
    differ = (logits[:, :-1].argmax(-1) != reference[:, :-1].argmax(-1)) & mask
    return (~differ.any(dim=1)).float()


def kl_fidelity(logits: torch.Tensor, batch: Batch, reference: torch.Tensor) -> torch.Tensor:
    """(B,) exp(-mean KL(full || reduced)) over the answer positions: 1.0 for the full model's own
    distributions, towards 0 as the reduced model's answer distributions drift from them."""
    mask = batch.answer_mask[:, :-1].float()
    ref = reference[:, :-1].float().log_softmax(-1)
    kl = (ref.exp() * (ref - logits[:, :-1].float().log_softmax(-1))).sum(-1).clamp_min(0.0)  # (B, N-1)
    return torch.exp(-(kl * mask).sum(1) / mask.sum(1))


SCORES = {
    "accuracy": exact_match,  # 1 where every teacher-forced answer token is the argmax (= greedy generation)
    "loglik": answer_loglik,  # denser: the answer's probability
    "fidelity": exact_agreement,  # no labels: the full model's own answer reproduced exactly
    "fidelity_kl": kl_fidelity,  # no labels, denser: exp(-KL) of the answer-token distributions
}
NEEDS_REFERENCE = ("fidelity", "fidelity_kl")  # scores that read the full model's logits


def check_score(name: str) -> str:
    if name not in SCORES:
        raise ValueError(f"score must be one of {sorted(SCORES)}, got {name!r}")
    return name


def score_logits(score: str, logits: torch.Tensor, batch: Batch, reference: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) ``score`` of (B, N, V) answer-position ``logits``; ``reference``: the full model's logits there
    (needed by the fidelity scores, ValueError without them)."""
    if check_score(score) not in NEEDS_REFERENCE:
        return SCORES[score](logits, batch)
    if reference is None:
        raise ValueError(f"score {score!r} compares with the full model's logits: pass reference")
    return SCORES[score](logits, batch, reference)


def episode_score(backbone, batch: Batch, state: TokenState, score: str, reference: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) score of each row's answer, from the logits of the final ``state`` at the answer positions."""
    return score_logits(score, backbone.answer_logits(state, batch.answer_mask), batch, reference)
