"""Scores that need no labels (fidelity to the full model) and answers scored from generation."""

import pytest
import torch

from rltr.backbones import load_backbone
from rltr.core.ops import Action
from rltr.envs.engine import EpisodeEngine
from rltr.evaluation.run import run_method
from rltr.inference.generation import token_f1
from rltr.reducers import get_reducer
from rltr.tasks import collate, get_task
from rltr.tasks.scoring import SCORES, score_function


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("default")  # the built-in model: its answers are right, so dropping context changes them


def _engine(backbone, score, **kw):
    from rltr.config import EnvConfig

    return EpisodeEngine(backbone, get_task("selective_copy"), EnvConfig(score=score, decision_layers=[0], max_tokens=140, **kw))


def _episode(engine, examples, actions):
    engine.start(examples)
    engine.step(actions)
    return engine.result().score


@pytest.mark.parametrize("score", ["fidelity", "fidelity_kl"])
def test_identity_scores_one_and_random_drop_scores_less(backbone, score):
    engine = _engine(backbone, score)
    examples = get_task("selective_copy").examples(16, seed=4)
    keep = torch.full((16, 140), int(Action.KEEP))
    assert torch.equal(_episode(engine, examples, keep), torch.ones(16, dtype=torch.float64))
    drop = torch.where(torch.rand(16, 140, generator=torch.Generator().manual_seed(0)) < 0.8, int(Action.DROP), int(Action.KEEP))
    dropped = _episode(engine, examples, drop)
    assert dropped.mean() < 0.9 and ((dropped >= 0) & (dropped <= 1)).all(), dropped


def test_fidelity_needs_no_labels(backbone):
    """Wrong answers in the examples change accuracy, not fidelity: it compares with the full model's own choices."""
    examples = get_task("retrieval").examples(8, seed=1)
    for e in examples:
        e.input_ids[-1] = e.input_ids[-2]  # the answer is now the key: wrong for the model
    keep = torch.full((8, 140), int(Action.KEEP))
    assert _episode(_engine(backbone, "accuracy"), examples, keep).sum() == 0
    assert _episode(_engine(backbone, "fidelity"), examples, keep).sum() == 8


def test_scores_without_a_reference_are_refused():
    batch = collate(get_task("retrieval").examples(2), 0)
    with pytest.raises(ValueError, match="'fidelity'.*reference"):
        score_function("fidelity", "tokens")(torch.zeros(2, batch.input_ids.shape[1], 5), batch)
    assert {"accuracy", "loglik", "fidelity", "fidelity_kl"} <= set(SCORES)


@pytest.mark.parametrize("score", ["fidelity", "fidelity_kl"])
def test_evaluation_fidelity_identity_one_random_less(backbone, score):
    task = get_task("retrieval")
    full = run_method(backbone, task, get_reducer("identity"), None, n_examples=24, batch_size=12, score=score)
    assert full.accuracy == 1.0 and full.score == score
    rand = run_method(backbone, task, get_reducer("random"), 0.1, n_examples=24, batch_size=12, score=score, decision_layers=[0])
    assert rand.accuracy < 0.9, rand


def test_generated_answers_match_teacher_forcing_for_the_full_model(backbone):
    """Multi-token answers (selective copy: 4 tokens) generated greedily with a KV cache: for the full model
    generation exact match equals teacher-forced exact match; under reduction both are reported."""
    task = get_task("selective_copy")
    full = run_method(backbone, task, get_reducer("identity"), None, n_examples=16, batch_size=8, generate=True)
    assert full.generated_exact_match == full.accuracy and full.generated_token_f1 >= full.generated_exact_match
    tome = run_method(backbone, task, get_reducer("window"), 0.3, n_examples=16, batch_size=8, generate=True, decision_layers=[0])
    assert tome.generated_exact_match is not None and tome.generated_exact_match <= tome.generated_token_f1 <= 1.0
    assert tome.generated_token_f1 < full.generated_token_f1


def test_token_f1():
    assert token_f1([1, 2, 3], [3, 2, 1]) == 1.0 and token_f1([1], [2]) == 0.0
    assert token_f1([1, 2], [1, 3]) == pytest.approx(0.5)
    assert token_f1([1, 1, 2], [1, 2, 2]) == pytest.approx(2 / 3)
