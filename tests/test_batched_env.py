"""The batched vec env: same episodes as B single envs, SB3's VecEnv contract, training through the CLI, CUDA."""

import copy

import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from rltr.backbones import wrap
from rltr.core.ops import Action
from rltr.envs import BatchedTokenReductionEnv, TokenReductionEnv
from rltr.tasks import Task
from rltr.tasks.retrieval import Retrieval
from rltr.tasks.vocab import VOCAB_SIZE
from tests.conftest import tiny_gpt2

MAX_TOKENS = 64
N_ENVS = 3


class VariableRetrieval(Task):
    """Retrieval with a context length drawn per example (16..40), so batches are really padded."""

    name = "variable_retrieval"

    def sample(self, rng):
        return Retrieval(context_len=int(rng.integers(16, 41))).sample(rng)


@pytest.fixture(scope="module")
def backbone():
    return wrap(tiny_gpt2(n_layer=3, vocab=VOCAB_SIZE))


def make_pair(backbone, n_envs=N_ENVS, **kw):
    task = VariableRetrieval()
    single = DummyVecEnv([lambda: TokenReductionEnv(backbone, task, max_tokens=MAX_TOKENS, **kw) for _ in range(n_envs)])
    return single, BatchedTokenReductionEnv(backbone, task, n_envs=n_envs, max_tokens=MAX_TOKENS, **kw)


def random_actions(rng, n_envs=N_ENVS):
    return rng.choice(len(Action), size=(n_envs, MAX_TOKENS), p=[0.5, 0.25, 0.25])


def assert_same_step(a, b):
    (obs_a, rew_a, done_a, info_a), (obs_b, rew_b, done_b, info_b) = a, b
    np.testing.assert_allclose(obs_b, obs_a, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(rew_b, rew_a, atol=1e-5)
    assert np.array_equal(done_a, done_b) and rew_b.dtype == np.float32 and done_b.dtype == bool
    for ia, ib in zip(info_a, info_b):
        assert set(ia) == set(ib), (sorted(ia), sorted(ib))
        assert ib["TimeLimit.truncated"] is False
        for key in ("score", "compute_fraction", "kept_ratio"):
            if key in ia:
                assert ib[key] == pytest.approx(ia[key], abs=1e-6), key
        if "tokens_per_layer" in ia:
            assert ib["tokens_per_layer"] == ia["tokens_per_layer"]
            assert np.array_equal(ib["terminal_observation"], ia["terminal_observation"])


@pytest.mark.parametrize(
    "layers, query_aware, budget, score",
    [
        ([1], True, None, "accuracy"),
        ([1, 2], True, None, "loglik"),
        ([1], False, None, "accuracy"),
        ([1, 2], False, 0.5, "accuracy"),
    ],
)
def test_same_observations_rewards_and_infos_as_single_envs(backbone, layers, query_aware, budget, score):
    single, batched = make_pair(backbone, decision_layers=layers, query_aware=query_aware, budget=budget, score=score)
    single.seed(11)
    batched.seed(11)
    np.testing.assert_allclose(batched.reset(), single.reset(), atol=1e-4, rtol=1e-4)
    rng = np.random.default_rng(0)
    n_done = 0
    for _ in range(3 * len(layers)):  # three episodes: two auto-resets
        actions = random_actions(rng)
        a, b = single.step(actions), batched.step(actions)
        assert_same_step(a, b)
        n_done += int(b[2].all())
    assert n_done == 3


def test_reset_and_step_follow_the_vecenv_contract(backbone):
    env = BatchedTokenReductionEnv(backbone, VariableRetrieval(), n_envs=4, max_tokens=MAX_TOKENS, decision_layers=[1, 2])
    assert env.seed(5) == [5, 6, 7, 8]
    obs = env.reset()
    assert obs.shape == (4, MAX_TOKENS, env.engine.n_features) and obs.dtype == np.float32
    assert all(env.observation_space.contains(o) for o in obs)
    rng = np.random.default_rng(1)
    env.step_async(random_actions(rng, 4))
    obs, rew, done, infos = env.step_wait()
    assert not done.any() and (rew == 0).all() and len(infos) == 4
    assert all(i == {"TimeLimit.truncated": False} for i in infos)
    obs, rew, done, infos = env.step(random_actions(rng, 4))
    assert done.all() and obs.shape == (4, MAX_TOKENS, env.engine.n_features)
    for info in infos:
        assert info["terminal_observation"].shape == env.observation_space.shape
        assert 0 < info["compute_fraction"] < 1.2 and len(info["tokens_per_layer"]) == backbone.n_layers
    assert (obs[:, :, 0].sum(1) > 0).all()  # already the next episodes (auto-reset)


def test_attributes_methods_and_bad_input(backbone):
    env = BatchedTokenReductionEnv(backbone, VariableRetrieval(), n_envs=4, max_tokens=MAX_TOKENS)
    assert env.get_attr("decision_layers") == [[1]] * 4 and env.get_attr("budget", indices=[0, 2]) == [None, None]
    assert env.has_attr("features") and not env.has_attr("no_such_attribute")
    assert env.env_is_wrapped(object) == [False] * 4 and env.env_method("seed", 9, indices=[0, 1]) == [[9, 10, 11, 12]] * 2
    env.set_attr("compute_weight", 0.0)
    env.reset()
    _, rew, _, infos = env.step(np.zeros((4, MAX_TOKENS), dtype=np.int64))
    assert np.allclose(rew, [i["score"] for i in infos])  # no compute penalty any more
    with pytest.raises(NotImplementedError):
        env.set_attr("budget", 0.5, indices=[0])
    with pytest.raises(AssertionError, match="actions have shape"):
        env.step(np.zeros((4, MAX_TOKENS - 1), dtype=np.int64))
    with pytest.raises(ValueError, match="max_tokens"):
        BatchedTokenReductionEnv(backbone, VariableRetrieval(), n_envs=2, max_tokens=18).reset()
    with pytest.raises(ValueError, match="dtype"):
        BatchedTokenReductionEnv(backbone, VariableRetrieval(), n_envs=2, dtype="bfloat16")
    with pytest.raises(ValueError, match="n_envs"):
        BatchedTokenReductionEnv(backbone, VariableRetrieval(), n_envs=0)
    with pytest.raises(ValueError, match="decision_layers"):
        BatchedTokenReductionEnv(backbone, VariableRetrieval(), decision_layers=[9])


@pytest.mark.parametrize("batched", [True, False])
def test_ppo_trains_through_the_cli(tmp_path, batched):
    from stable_baselines3 import PPO

    from rltr.cli.main import main
    from rltr.training.ppo import load_run_config

    model = tiny_gpt2(n_layer=2, vocab=VOCAB_SIZE)
    model.save_pretrained(tmp_path / "model")
    args = [
        "train",
        "--set",
        f"env.model={tmp_path / 'model'}",
        "--set",
        f"runs_dir={tmp_path / 'runs'}",
        "--set",
        "env.task_kwargs={context_len: 32}",
        "--set",
        "env.max_tokens=48",
        "--set",
        f"env.batched={batched}",
        "--set",
        "n_envs=8",
        "--set",
        "total_timesteps=256",
        "--set",
        "imitation.enabled=false",
        "--set",
        "ppo={n_steps: 16, batch_size: 64, n_epochs: 2}",
        "--no-progress",
    ]
    assert main(args) == 0
    (run,) = list((tmp_path / "runs").iterdir())
    assert load_run_config(run).env.batched is batched
    assert PPO.load(run / "final_model.zip").num_timesteps == 256


def test_device_and_dtype_settings_are_validated():
    from rltr.config import ConfigError, load_config
    from rltr.envs import resolve_device

    assert load_config(None, []).env.device == "auto" and load_config(None, []).env.batched is True
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu") and resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="env.device"):
        load_config(None, ["env.device=gpu"])
    with pytest.raises(ConfigError, match="env.dtype"):
        load_config(None, ["env.dtype=float8"])
    with pytest.raises(ConfigError, match="batched"):
        load_config(None, ["env.dtype=bfloat16", "env.batched=false"])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(backbone):
    gpu = wrap(copy.deepcopy(backbone.model).to("cuda"))
    envs = [
        BatchedTokenReductionEnv(b, VariableRetrieval(), n_envs=8, max_tokens=MAX_TOKENS, decision_layers=[1, 2]) for b in (backbone, gpu)
    ]
    for e in envs:
        e.seed(3)
    np.testing.assert_allclose(envs[1].reset(), envs[0].reset(), atol=1e-3, rtol=1e-3)
    rng = np.random.default_rng(2)
    for _ in range(4):
        actions = random_actions(rng, 8)
        cpu, cuda = envs[0].step(actions), envs[1].step(actions)
        np.testing.assert_allclose(cuda[0], cpu[0], atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(cuda[1], cpu[1], atol=1e-4)
        assert [i.get("tokens_per_layer") for i in cuda[3]] == [i.get("tokens_per_layer") for i in cpu[3]]
    half = BatchedTokenReductionEnv(gpu, VariableRetrieval(), n_envs=8, max_tokens=MAX_TOKENS, dtype="bfloat16")
    half.seed(3)
    assert np.isfinite(half.reset()).all()
    _, rew, done, _ = half.step(random_actions(rng, 8))
    assert done.all() and np.isfinite(rew).all()
