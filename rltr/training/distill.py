"""Distillation of a teacher (:mod:`rltr.teachers`) into a router: label-free imitation targets.

Per training example, the teacher's top-k context tokens (k = ``imitation.teacher_top_k``, 0: one per
answer token) are the KEEPs, every other candidate a DROP; the demonstrations then run through the
episode engine exactly as a heuristic's do (same observations, same budget rule), and
:func:`rltr.policies.imitation.behaviour_clone` fits the actor to them (``balanced``: the rare KEEPs
count as much as the DROPs). One example's teacher says which token *its* question needed; over many
examples a query-agnostic actor learns which tokens *any* question may need.

Teacher scores are cached per training set (backbone, teacher, answers, the examples' token ids) under
``<runs_dir>/.teacher_cache``; ``teacher.json`` in the run folder reports the teacher, its agreement
with occlusion and its cost per 1,000 examples.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from rltr.core.decisions import Decision, DecisionContext
from rltr.core.ops import Action
from rltr.reducers.base import Reducer
from rltr.tasks.base import Example
from rltr.teachers import OcclusionTeacher, Teacher, cheap_teachers, check_teachers, get_teacher, run_teacher

_log = logging.getLogger(__name__)

N_LABEL_PROBE = 64  # training examples looked at to decide whether the data has relevance spans (oracle only)


class TeacherTargets(Reducer):
    """Keeps each row's ``top_k`` (B,) best teacher-scored candidates (``scores`` (B, N_original), by
    original position, ``-inf`` off the candidates); protected and tail tokens stay, the rest DROP."""

    name = "teacher"

    def __init__(self, scores: torch.Tensor, top_k: torch.Tensor):
        self.scores, self.top_k = scores, top_k

    def decide(self, ctx: DecisionContext) -> Decision:
        st = ctx.state
        s = self.scores.to(st.hidden.device).gather(1, st.positions.clamp_max(self.scores.shape[1] - 1))  # (B, N)
        free = ctx.context & ~st.protected
        s = s.masked_fill(~free, float("-inf"))
        rank = torch.argsort(torch.argsort(s, dim=1, descending=True, stable=True), dim=1)
        keep = free & torch.isfinite(s) & (rank < self.top_k.to(s.device)[:, None])
        return Decision(torch.where(keep | ~free, Action.KEEP, Action.DROP).long())


def padded(scores: list[torch.Tensor]) -> torch.Tensor:
    """(B, N) the per-example score vectors, right-padded with ``-inf``."""
    out = torch.full((len(scores), max(len(s) for s in scores)), float("-inf"))
    for i, s in enumerate(scores):
        out[i, : len(s)] = s
    return out


def collect_teacher_demonstrations(
    engine, examples: list[Example], scores: list[torch.Tensor], top_k: int = 0, batch_size: int = 64, progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, max_tokens, F) observations and (M, max_tokens) teacher actions, ``examples`` run through ``engine``."""
    obs_list, act_list = [], []
    for start in tqdm(range(0, len(examples), batch_size), desc="demonstrations (teacher)", disable=not progress, leave=False):
        chunk = examples[start : start + batch_size]
        k = torch.tensor([top_k or e.n_answer for e in chunk])
        targets = TeacherTargets(padded(scores[start : start + batch_size]), k)
        engine.start(chunk)
        while not engine.done:
            obs_list.append(engine.observation().cpu())
            act_list.append(engine.expert_actions(targets, None).cpu())
            engine.step(act_list[-1])
    return torch.cat(obs_list), torch.cat(act_list)


def has_no_spans(task, seed: int = 0) -> bool:
    """True when none of ``N_LABEL_PROBE`` training examples carries a relevance span (asked only when the
    config imitates the oracle, the one path that may read labels)."""
    rng = np.random.default_rng([seed, 10_001])
    return not any(task.sample(rng).relevant_any for _ in range(N_LABEL_PROBE))


def training_examples(task, n: int, seed: int) -> list[Example]:
    """The ``n`` training examples imitation uses (the stream :func:`collect_demonstrations` draws)."""
    rng = np.random.default_rng([seed, 10_000])
    return [task.sample(rng) for _ in range(n)]


def _cache_key(backbone, teacher: Teacher, model_answers: bool, examples: list[Example]) -> str:
    h = hashlib.sha256(json.dumps([backbone.config_hash, teacher.describe(), model_answers]).encode())
    for e in examples:
        h.update(np.asarray(e.input_ids + [-1, e.context_len, e.n_answer, *e.protected, -2], dtype=np.int64).tobytes())
    return h.hexdigest()[:20]


def cached_scores(
    teacher: Teacher, backbone, task, examples: list[Example], cache_dir: Path | None, model_answers: bool, progress: bool
) -> tuple[list[torch.Tensor], float, bool]:
    """(scores per example, seconds per 1,000 examples when computed, whether they came from the cache)."""
    path = None if cache_dir is None else Path(cache_dir) / f"{_cache_key(backbone, teacher, model_answers, examples)}.pt"
    if path is not None and path.is_file():
        saved = torch.load(path)
        return saved["scores"], saved["seconds_per_1k"], True
    scores, cost = run_teacher(teacher, backbone, task, examples, model_answers=model_answers, progress=progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"scores": scores, "seconds_per_1k": cost, "teacher": teacher.describe()}, path)
    return scores, cost, False


def choose_teacher(im, backbone, task, examples: list[Example], progress: bool) -> tuple[Teacher, dict]:
    """The configured teacher (``auto``: the cheap one that agrees best with occlusion on the first
    ``imitation.teacher_check`` examples), and the agreement report (empty when the check is off)."""
    answers = im.teacher_answers == "model"
    named = None
    if im.teacher != "auto":
        named = get_teacher(im.teacher, **({"layers": im.teacher_layers} if im.teacher == "attention" else {}))
    if im.teacher_check == 0 or isinstance(named, OcclusionTeacher):
        return named or get_teacher("attention", layers=[0]), {}
    cheap = [named] if named is not None else cheap_teachers(backbone.n_layers)
    report = check_teachers(cheap, OcclusionTeacher(), backbone, task, examples[: im.teacher_check], answers, progress=progress)
    if report.warning:
        _log.warning(report.warning)
    chosen = named or next(t for t in cheap if t.describe() == report.chosen)
    return chosen, report.to_dict()


def teacher_demonstrations(cfg, engine, run_dir: Path | None, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor, Teacher]:
    """Choose and run the teacher on the imitation's training examples (cached), say which, write
    ``teacher.json`` (when ``run_dir``), and return the distillation's demonstrations and the teacher."""
    im = cfg.imitation
    examples = training_examples(engine.task, im.n_episodes, cfg.seed)
    teacher, agreement = choose_teacher(im, engine.backbone, engine.task, examples, progress)
    cache = Path(cfg.runs_dir) / ".teacher_cache"
    scores, cost, hit = cached_scores(teacher, engine.backbone, engine.task, examples, cache, im.teacher_answers == "model", progress)
    agree = agreement.get("top1", {}).get(teacher.describe())
    _log.info(
        f"imitating teacher {teacher.describe()} ({teacher.cost}; {cost:.1f} s per 1,000 examples"
        f"{', cached' if hit else ''}{'' if agree is None else f'; top-1 agreement with occlusion {agree:.0%}'})"
    )
    if run_dir is not None:
        report = {
            "teacher": teacher.describe(),
            "cost": teacher.cost,
            "seconds_per_1k": cost,
            "cached": hit,
            "n_examples": len(examples),
            "answers": im.teacher_answers,
            "top_k": im.teacher_top_k,
            "agreement": agreement,
        }
        (Path(run_dir) / "teacher.json").write_text(json.dumps(report, indent=2))
    return (*collect_teacher_demonstrations(engine, examples, scores, im.teacher_top_k, progress=progress), teacher)
