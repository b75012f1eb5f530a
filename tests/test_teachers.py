"""Teachers from the frozen model (rltr.teachers) and their distillation into routers (rltr.training.distill):
tiny runs on the built-in ``default`` model."""

import json
import logging

import numpy as np
import pytest
import torch

from rltr.backbones import load_backbone
from rltr.config import ConfigError, load_config
from rltr.tasks import TASKS, get_task
from rltr.tasks.instructed import InstructedRetrieval
from rltr.teachers import (
    AttentionTeacher,
    GradientTeacher,
    OcclusionTeacher,
    candidates,
    check_teachers,
    get_teacher,
    parse_teacher,
    run_teacher,
    with_model_answers,
)


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("default")


@pytest.fixture(scope="module")
def instructed(backbone):
    task = get_task("instructed_retrieval")
    task.prepare(backbone)
    return task, task.examples(6, seed=3, split="train")


def _top1_in_relevant(scores, examples) -> float:
    return float(np.mean([int(s.argmax()) in e.relevant for s, e in zip(scores, examples)]))


@pytest.mark.parametrize(
    "teacher", [AttentionTeacher([0]), GradientTeacher(), OcclusionTeacher(max_candidates=6, prefilter=GradientTeacher())]
)
def test_teachers_find_the_queried_pair(backbone, instructed, teacher):
    task, examples = instructed
    scores, seconds_per_1k = run_teacher(teacher, backbone, task, examples, batch_size=4, progress=False)
    assert _top1_in_relevant(scores, examples) == 1.0, teacher
    assert seconds_per_1k > 0


def test_full_occlusion_agrees_with_attention_at_layer_0(backbone, instructed):
    task, examples = instructed
    report = check_teachers(
        [AttentionTeacher([0]), AttentionTeacher([3])], OcclusionTeacher(), backbone, task, examples[:2], progress=False
    )
    assert report.top1["attention@0"] == 1.0 and report.chosen == "attention@0", report
    assert set(report.seconds_per_1k) == {"occlusion", "attention@0", "attention@3"}


def test_scores_are_finite_on_candidates_only(backbone):
    task = get_task("selective_copy")
    task.prepare(backbone)
    examples = task.examples(3, seed=0, split="train")
    batch = task.collate(examples)
    for teacher in (AttentionTeacher([0, 1]), GradientTeacher()):
        s = teacher.scores(backbone, batch)
        assert torch.equal(torch.isfinite(s), candidates(batch)), teacher
        assert not candidates(batch)[:, 0].any()  # <bos> is protected


def test_model_answers_equal_gold_on_the_default_model(backbone, instructed):
    task, examples = instructed
    batch = task.collate(examples)
    assert torch.equal(with_model_answers(backbone, batch).input_ids, batch.input_ids)


def test_bad_names_and_values_are_named():
    with pytest.raises(ValueError, match="'bogus'"):
        get_teacher("bogus")
    with pytest.raises(ConfigError, match="'bogus'"):
        load_config(None, ["imitation.teacher=bogus"])
    with pytest.raises(ConfigError, match="teacher_answers.*'maybe'"):
        load_config(None, ["imitation.teacher_answers=maybe"])
    with pytest.raises(ConfigError, match=r"teacher_layers.*\[-1\]"):
        load_config(None, ["imitation.teacher_layers=[-1]"])
    assert parse_teacher("attention@0,2").describe() == "attention@0,2"


class Relabelled(InstructedRetrieval):
    """Instructed retrieval whose relevance labels are replaced: ``labels`` none (no spans) or random
    (positions drawn from the example's own ids, so the examples themselves do not change)."""

    name = "relabelled_instructed"

    def __init__(self, labels: str = "none", **kw):
        super().__init__(**kw)
        self.labels = labels

    def sample(self, rng):
        e = super().sample(rng)
        pos = [] if self.labels == "none" else sorted(set(np.random.default_rng(e.input_ids).integers(3, e.context_len, 4).tolist()))
        e.relevant, e.relevant_any = pos[:1], pos
        return e


def _train(tmp_path, labels: str, *sets):
    from rltr.training.ppo import train

    cfg = load_config(
        "configs/instructed.yaml",
        [
            "env.task=relabelled_instructed",
            f"env.task_kwargs={{labels: {labels}}}",
            f"runs_dir={tmp_path / labels}",
            "n_envs=8",
            "imitation.n_episodes=16",
            "imitation.epochs=1",
            "total_timesteps=16",
            "ppo.batch_size=64",
            "checkpoint_every=1000",
            *sets,
        ],
    )
    run = train(cfg, progress=False)
    from stable_baselines3 import PPO

    return run, PPO.load(run / "final_model.zip").policy.state_dict()


@pytest.fixture
def relabelled(monkeypatch):
    monkeypatch.setitem(TASKS, Relabelled.name, Relabelled)


def test_no_training_path_reads_labels_unless_the_oracle_is_imitated(tmp_path, relabelled):
    teacher = ["imitation.teacher=attention", "imitation.teacher_check=0", "imitation.teacher_credit_weight=0.5"]
    _, none = _train(tmp_path, "none", *teacher)
    _, poisoned = _train(tmp_path, "random", *teacher)
    assert all(torch.equal(none[k], poisoned[k]) for k in none)
    _, oracle_none = _train(tmp_path / "o", "none", "imitation.teacher=null", "imitation.reducer=oracle")  # default: a teacher
    _, oracle_poisoned = _train(tmp_path / "o", "random", "imitation.teacher=null", "imitation.reducer=oracle")
    assert not all(torch.equal(oracle_none[k], oracle_poisoned[k]) for k in oracle_none)  # the oracle does read them


def test_no_spans_means_a_teacher_by_default_and_it_is_reported(tmp_path, relabelled, caplog):
    with caplog.at_level(logging.INFO, logger="rltr"):
        run, _ = _train(tmp_path, "none", "imitation.teacher=null", "imitation.reducer=oracle", "imitation.teacher_check=2")
    err = caplog.text
    assert "no relevance spans" in err and "imitating teacher attention@0" in err
    report = json.loads((run / "teacher.json").read_text())
    assert report["teacher"] == "attention@0" and report["agreement"]["top1"]["attention@0"] == 1.0
    assert report["seconds_per_1k"] > 0 and report["agreement"]["reference"] == "occlusion"
    run2, _ = _train(tmp_path, "none", "imitation.teacher=attention", "imitation.teacher_check=0")
    assert json.loads((run2 / "teacher.json").read_text())["cached"]  # the same training set: scores from the cache


def test_ablate_has_the_teacher_rows():
    from rltr.cli.demo import ablation_variants

    variants = ablation_variants(load_config("configs/instructed.yaml"))
    assert {"teacher_only", "teacher_ppo", "teacher_ppo_credit"} <= set(variants)
    assert "imitation.teacher=auto" in variants["teacher_ppo"] and "total_timesteps=0" in variants["teacher_only"]
    assert "imitation.teacher_credit_weight=0.5" in variants["teacher_ppo_credit"]
