import warnings

import numpy as np
import pytest
import torch

from rltr.backbones import wrap
from rltr.core.ops import Action
from rltr.envs import TokenReductionEnv
from rltr.tasks import get_task
from rltr.tasks.vocab import VOCAB_SIZE
from tests.conftest import tiny_task_gpt2


@pytest.fixture(scope="module")
def backbone():
    model = tiny_task_gpt2(n_layer=3)
    return wrap(model)


def make(backbone, **kw):
    return TokenReductionEnv(backbone, get_task("retrieval"), max_tokens=160, **kw)


def test_gymnasium_env_checker(backbone):
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(make(backbone, decision_layers=[1, 2]), skip_render_check=True)
    # the only warning: no EnvSpec when the env is built directly rather than via gymnasium.make
    assert not [w for w in caught if "spec" not in str(w.message)], [str(w.message) for w in caught]


def test_sb3_env_checker(backbone):
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(make(backbone), warn=True)
    # explained: observations are (tokens, features) on purpose; TokenPolicy consumes them per token
    assert all("unconventional shape" in str(w.message) for w in caught), [str(w.message) for w in caught]


def test_same_seed_same_episode(backbone):
    a, b = make(backbone), make(backbone)
    oa, _ = a.reset(seed=5)
    ob, _ = b.reset(seed=5)
    assert np.array_equal(oa, ob)
    act = a.action_space.sample()
    ra, rb = a.step(act), b.step(act)
    assert ra[1] == rb[1] and ra[4] == rb[4]
    oc, _ = a.reset(seed=6)
    assert not np.array_equal(oa, oc)


def test_episode_reward_parts_and_kept_tokens(backbone):
    env = make(backbone, decision_layers=[1, 2], compute_weight=0.3)
    obs, _ = env.reset(seed=0)
    n_live = int(env.engine.batch.lengths[0])
    assert int(obs[:, 0].sum()) == n_live - 1  # the teacher-forced answer is never readable
    drop_all = np.full(160, Action.DROP)
    obs, r, term, trunc, info = env.step(drop_all)
    assert not term and r == 0.0
    obs, r, term, trunc, info = env.step(drop_all)
    assert term and not trunc
    assert r == pytest.approx(info["score"] - 0.3 * info["compute_fraction"])
    n_tail = int(env.engine.batch.protected[0].sum())
    assert info["tokens_per_layer"] == [n_live, n_tail, n_tail]  # only protected tokens survive
    assert 0 < info["compute_fraction"] < 1


def test_keep_all_costs_full_compute_plus_decision_overhead(backbone):
    env = make(backbone)
    env.reset(seed=1)
    _, _, _, _, info = env.step(np.full(160, Action.KEEP))
    assert info["kept_ratio"] == 1.0 and 1.0 < info["compute_fraction"] < 1.1


def test_budget_is_enforced_on_the_policy(backbone):
    env = make(backbone, budget=0.25)
    env.reset(seed=2)
    n = int(env.engine.batch.lengths[0])
    _, _, _, _, info = env.step(np.full(160, Action.KEEP))
    assert info["tokens_per_layer"][-1] == int(np.ceil(n * 0.25))


def test_query_agnostic_observation_ignores_the_question(backbone):
    """Query-agnostic: the whole observation (not only the context rows: pooled summaries read every valid
    row) is identical when the question changes, and the tail rows are invalid (all zero)."""
    env = make(backbone, query_aware=False)
    obs, _ = env.reset(seed=3)
    batch = env.engine.batch
    ctx_len = int(batch.context_len[0])
    ids = batch.input_ids.clone()
    ids[0, ctx_len + 1] = (ids[0, ctx_len + 1] + 1) % VOCAB_SIZE  # a different question token
    engine = env.engine
    state = backbone.embed(ids, batch.attention_mask, protected=batch.protected)
    engine.state = backbone.run_layers(state, 0, 1)
    engine.ctx = engine._context()
    other = engine.observation()[0].cpu().numpy()
    assert np.array_equal(other, obs)
    assert not obs[ctx_len:].any() and obs[:ctx_len, 0].all()


def test_bad_env_settings_are_clear_errors(backbone):
    with pytest.raises(ValueError, match="decision_layers"):
        make(backbone, decision_layers=[7])
    with pytest.raises(ValueError, match="score"):
        make(backbone, score="bleu")
    with pytest.raises(ValueError, match="budget"):
        make(backbone, budget=1.5)


def test_light_features_read_no_attention_and_cost_less(backbone):
    """The light feature set: same observation shape, attention and similarity columns at 0, the
    attention map never touched, other columns identical to the full set's, fewer FLOPs charged."""
    from rltr.core.features import TOKEN_FEATURES, FeatureSpec

    full, light = make(backbone), make(backbone, features="light")
    obs_full, _ = full.reset(seed=4)
    obs_light, _ = light.reset(seed=4)
    assert obs_light.shape == obs_full.shape and "keys" not in light.engine.ctx._cache  # no keys, no attention rows
    cols = {name: i for i, name in enumerate(TOKEN_FEATURES)}
    off = [cols["attn_from_query"], cols["attn_recent"], cols["nearest_sim"]]
    assert np.all(obs_light[:, off] == 0) and np.any(obs_full[:, off] != 0)
    same = [i for i in range(obs_full.shape[1]) if i not in off]
    assert np.allclose(obs_light[:, same], obs_full[:, same])
    assert float(light.engine.ctx.flops[0]) < float(full.engine.ctx.flops[0]) / 5
    with pytest.raises(ValueError, match="'heavy'"):
        FeatureSpec.named("heavy")
    assert FeatureSpec.from_dict({"n_hidden_proj": 8, "proj_seed": 1}) == FeatureSpec(8, 1)  # older routers: full


def test_merge_cannot_bypass_the_budget(backbone):
    """All-MERGE at budget 0.25: merges that have no admissible destination are drops, never kept."""
    env = make(backbone, budget=0.25)
    env.reset(seed=2)
    n = int(env.engine.batch.lengths[0])
    for action in Action:
        env.reset(seed=2)
        _, _, _, _, info = env.step(np.full(160, action))
        assert info["tokens_per_layer"][-1] <= int(np.ceil(n * 0.25)), (action.name, info["tokens_per_layer"])


def test_query_agnostic_budget_counts_the_context_only(backbone):
    """Query-agnostic budgets are a fraction of the context (the tail is appended afterwards)."""
    env = make(backbone, query_aware=False, budget=0.25)
    env.reset(seed=2)
    batch = env.engine.batch
    n_ctx, n_tail = int(batch.context_len[0]), int(batch.lengths[0] - batch.context_len[0])
    _, _, _, _, info = env.step(np.full(160, Action.KEEP))
    assert info["tokens_per_layer"][-1] == int(np.ceil(n_ctx * 0.25)) + n_tail


def test_env_draws_examples_from_np_random(backbone):
    env = make(backbone)
    env.reset(seed=7)
    first = env.engine.batch.input_ids.clone()
    env.reset(seed=7)
    assert torch.equal(env.engine.batch.input_ids, first)
    state = env.np_random.bit_generator.state
    env.reset()
    assert env.np_random.bit_generator.state != state  # the next example came from np_random
