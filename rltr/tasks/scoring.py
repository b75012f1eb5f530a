"""How an episode's output is scored: one function per (score, kind of output), by name.

Every score is (B,) float in [0, 1], higher is better; the env's reward is ``score - compute_weight *
compute_fraction``. A task's batches say what their head outputs (``batch.kind``):

* ``tokens``:    (B, N, V) logits at the answer positions (built-in token tasks, JSONL datasets);
* ``classes``:   (B, C) class logits (image classification);
* ``embedding``: (B, D) pooled sentence embeddings.

``accuracy`` and ``loglik`` compare with the example's label; the ``fidelity`` scores need no labels: they
compare with the FULL model's own output (``batch.reference``: its answer logits, from the same tokens
without reduction, or its embeddings), so raw prompts can be trained on. The env computes the output from
the final token state (``batch.head_output``), evaluation from the HF forward's output
(``batch.model_output``); both score it here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rltr.core.ops import TokenState
from rltr.tasks import Batch, exact_match


def answer_loglik(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """(B,) mean probability-space score in [0, 1]: exp(mean log p(answer token)) under teacher forcing."""
    logp = logits[:, :-1].float().log_softmax(-1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    mask = batch.answer_mask[:, :-1].float()
    return torch.exp((logp * mask).sum(1) / mask.sum(1))


def _reference(batch: Batch, score: str) -> torch.Tensor:
    """(B, N, V) the full model's answer logits the token fidelity scores compare with (ValueError without them)."""
    reference = getattr(batch, "reference", None)
    if reference is None:
        raise ValueError(f"score {score!r} compares with the full model's logits, but the batch has no reference")
    return reference


def exact_agreement(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """(B,) 1.0 where the argmax at every answer position equals the full model's (``batch.reference`` (B, N, V)):
    the reduced model reproduces the full model's greedy answer (when the answer tokens are that answer,
    e.g. ``model_answers``; else its next-token choices along the given answer)."""
    mask = batch.answer_mask[:, :-1]
    differ = (logits[:, :-1].argmax(-1) != _reference(batch, "fidelity")[:, :-1].argmax(-1)) & mask
    return (~differ.any(dim=1)).float()


def kl_fidelity(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """(B,) exp(-mean KL(full || reduced)) over the answer positions: 1.0 for the full model's own
    distributions (``batch.reference``), towards 0 as the reduced model's answer distributions drift from them."""
    mask = batch.answer_mask[:, :-1].float()
    ref = _reference(batch, "fidelity_kl")[:, :-1].float().log_softmax(-1)
    kl = (ref.exp() * (ref - logits[:, :-1].float().log_softmax(-1))).sum(-1).clamp_min(0.0)  # (B, N-1)
    return torch.exp(-(kl * mask).sum(1) / mask.sum(1))


def class_accuracy(logits: torch.Tensor, batch) -> torch.Tensor:
    """(B,) 1.0 where the top class is the label."""
    return (logits.argmax(-1) == batch.labels).float()


def class_probability(logits: torch.Tensor, batch) -> torch.Tensor:
    """(B,) the probability the classifier gives the label (denser than accuracy)."""
    return logits.float().softmax(-1).gather(-1, batch.labels[:, None]).squeeze(-1)


def _cosines(embedding: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(B, M) cosine of each embedding (B, D) with each reference embedding (M, D)."""
    unit = torch.nn.functional.normalize(embedding.float(), dim=-1)
    return unit @ torch.nn.functional.normalize(reference.float(), dim=-1).T


def embedding_fidelity(embedding: torch.Tensor, batch) -> torch.Tensor:
    """(B,) cosine of each embedding with the full model's embedding of the same sentence, clamped to [0, 1]."""
    cos = _cosines(embedding, batch.reference).gather(1, batch.index[:, None]).squeeze(1)
    return cos.clamp(0.0, 1.0)


def self_retrieval(embedding: torch.Tensor, batch) -> torch.Tensor:
    """(B,) 1.0 where, among the full embeddings of every corpus sentence, the nearest is the sentence's own."""
    return (_cosines(embedding, batch.reference).argmax(1) == batch.index).float()


def pair_retrieval(embedding: torch.Tensor, batch) -> torch.Tensor:
    """(B,) 1.0 where, among the full embeddings of every other corpus sentence, the nearest is the sentence's
    pair (its paraphrase): the task sentence embeddings exist for, done with a reduced query."""
    cos = _cosines(embedding, batch.reference).scatter(1, batch.index[:, None], float("-inf"))  # not itself
    return (cos.argmax(1) == batch.pair).float()


SCORES: dict[str, dict[str, Callable]] = {
    "accuracy": {
        "tokens": exact_match,  # 1 where every teacher-forced answer token is the argmax (= greedy generation)
        "classes": class_accuracy,
    },
    "loglik": {
        "tokens": answer_loglik,  # denser: the answer's probability
        "classes": class_probability,
    },
    "fidelity": {
        "tokens": exact_agreement,  # no labels: the full model's own answer reproduced exactly
        "embedding": embedding_fidelity,  # cosine with the full model's embedding
    },
    "fidelity_kl": {"tokens": kl_fidelity},  # no labels, denser: exp(-KL) of the answer-token distributions
    "retrieval": {"embedding": self_retrieval},
    "pair_retrieval": {"embedding": pair_retrieval},
}
NEEDS_REFERENCE = ("fidelity", "fidelity_kl")  # token scores that read the full model's logits (batch.reference)


def check_score(name: str) -> str:
    if name not in SCORES:
        raise ValueError(f"score must be one of {sorted(SCORES)}, got {name!r}")
    return name


def score_function(name: str, kind: str) -> Callable:
    """The function scoring outputs of ``kind`` by score ``name``; ValueError naming both when it does not apply."""
    fns = SCORES[check_score(name)]
    if kind not in fns:
        usable = sorted(n for n, f in SCORES.items() if kind in f)
        raise ValueError(f"score {name!r} does not apply to a task whose outputs are {kind}; use one of {usable}")
    return fns[kind]


def episode_score(backbone, batch, state: TokenState, score: str) -> torch.Tensor:
    """(B,) score of each row's output, computed from the final ``state`` by the batch's head."""
    return score_function(score, batch.kind)(batch.head_output(backbone, state), batch)
