"""The RL loop through the CLI on a tiny model: train, resume, export, load, evaluate, bad input."""

import json

import numpy as np
import pytest
import torch

from rltr.cli import main
from rltr.config import ConfigError, load_config
from tests.conftest import tiny_task_gpt2

TINY = ["--set", "total_timesteps=256", "--set", "n_envs=2", "--set", "checkpoint_every=128",
        "--set", "imitation.n_episodes=8", "--set", "ppo={n_steps: 64, batch_size: 32, n_epochs: 2}", "--no-progress"]


def _save_tiny(path, seed=0):
    model = tiny_task_gpt2(n_layer=2, seed=seed)
    model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl")
    model = _save_tiny(root / "model")
    assert main(["train", "--set", f"env.model={model}", "--set", f"runs_dir={root / 'runs'}", *TINY]) == 0
    (run,) = list((root / "runs").iterdir())
    return root, model, run


def test_run_folder_layout(trained):
    _, _, run = trained
    assert run.name.startswith("retrieval__default__0__")
    for name in ("config.yaml", "command.txt", "meta.json", "final_model.zip", "imitation.json"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ppo_128_steps.zip", "ppo_256_steps.zip"]
    assert any((run / "tb").rglob("events.out.tfevents*"))


def test_resume_continues_the_step_count(trained, tmp_path):
    import shutil

    from stable_baselines3 import PPO

    _, _, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "final_model.zip").unlink()
    (copy / "checkpoints" / "ppo_256_steps.zip").unlink()
    cfg = (copy / "config.yaml").read_text().replace("total_timesteps: 256", "total_timesteps: 384")
    (copy / "config.yaml").write_text(cfg)
    assert main(["train", "--resume", str(copy), "--no-progress"]) == 0
    assert PPO.load(copy / "final_model.zip").num_timesteps == 384


def test_export_load_gives_identical_actions(trained, tmp_path):
    from stable_baselines3 import PPO

    from rltr.envs import make_env
    from rltr.policies import Router

    _, model, run = trained
    assert main(["export", str(run), "--out", str(tmp_path / "router")]) == 0
    assert {p.name for p in (tmp_path / "router").iterdir()} == {"config.json", "model.safetensors"}
    router = Router.from_pretrained(tmp_path / "router")
    ppo = PPO.load(run / "final_model.zip")
    env = make_env(model=model, task="retrieval")
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        expected, _ = ppo.predict(obs, deterministic=True)
        got = router.logits(torch.as_tensor(obs)[None]).argmax(-1)[0].numpy()
        assert np.array_equal(expected, got)


def test_router_evaluates_through_the_common_loop(trained, tmp_path, capsys):
    root, model, run = trained
    main(["export", str(run), "--out", str(tmp_path / "r")])
    code = main(["evaluate", "--model", model, "--task", "retrieval", "--methods", f"router:{tmp_path / 'r'},random",
                 "--budgets", "0.5", "--n-examples", "4"])
    assert code == 0 and "| retrieval | router:r | 0.50 |" in capsys.readouterr().out


def test_router_for_another_backbone_is_rejected(trained, tmp_path, capsys):
    root, _, run = trained
    main(["export", str(run), "--out", str(tmp_path / "r")])
    other = tiny_task_gpt2(n_layer=3)
    other.save_pretrained(tmp_path / "other")
    code = main(["evaluate", "--model", str(tmp_path / "other"), "--task", "retrieval", "--methods",
                 f"router:{tmp_path / 'r'}", "--n-examples", "2"])
    assert code == 2 and "config hash" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["missing", "corrupt", "json"])
def test_missing_or_corrupt_router_is_a_clear_error(trained, tmp_path, capsys, damage):
    _, model, run = trained
    out = tmp_path / "r"
    main(["export", str(run), "--out", str(out)])
    if damage == "missing":
        (out / "model.safetensors").unlink()
    elif damage == "corrupt":
        (out / "model.safetensors").write_bytes(b"not a safetensors file")
    else:
        (out / "config.json").write_text("{broken")
    code = main(["evaluate", "--model", model, "--task", "retrieval", "--methods", f"router:{out}", "--n-examples", "2"])
    err = capsys.readouterr().err
    assert code == 2 and str(out) in err and "Traceback" not in err


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="env.compute_wieght"):
        load_config(None, ["env.compute_wieght=0.3"])
    with pytest.raises(ConfigError, match="total_timesteps must be int"):
        load_config(None, ["total_timesteps=lots"])
    with pytest.raises(ConfigError, match="env.budget"):
        load_config(None, ["env.budget=2"])
    with pytest.raises(ConfigError, match="env.features .*'heavy'"):
        load_config(None, ["env.features=heavy"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("env:\n  decision_layers: 1\n")
    with pytest.raises(ConfigError, match="env.decision_layers must be list"):
        load_config(bad)


def test_yaml_then_set_precedence(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("seed: 3\nenv:\n  compute_weight: 0.2\nppo:\n  n_steps: 32\n")
    cfg = load_config(f, ["env.compute_weight=0.7"])
    assert cfg.seed == 3 and cfg.env.compute_weight == 0.7 and cfg.ppo == {"n_steps": 32}


def test_cli_train_with_unknown_key_exits_2(capsys):
    assert main(["train", "--set", "nope=1"]) == 2
    assert "nope" in capsys.readouterr().err


def test_meta_names_the_backbone(trained):
    _, _, run = trained
    meta = json.loads((run / "meta.json").read_text())
    assert meta["backbone"]["family"] == "gpt2" and len(meta["backbone"]["config_hash"]) == 16


def test_network_tanh_is_torch_tanh_and_loads_nn_tanh_weights():
    """The policy's fast tanh is the same function as torch.tanh (and its gradient), and routers saved
    from networks built with nn.Tanh load unchanged (no parameters, same state-dict keys)."""
    from torch import nn

    from rltr.policies.network import Tanh, TokenActor

    x = torch.linspace(-30, 30, 10_001, requires_grad=True)
    torch.testing.assert_close(Tanh()(x), torch.tanh(x), atol=2e-7, rtol=0)
    (g_fast,) = torch.autograd.grad(Tanh()(x).sum(), x)
    (g_ref,) = torch.autograd.grad(torch.tanh(x).sum(), x)
    torch.testing.assert_close(g_fast, g_ref, atol=1e-6, rtol=0)
    actor = TokenActor(28, 16)
    legacy = nn.Sequential(nn.Linear(28, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh())
    assert set(actor.embed.state_dict()) == set(legacy.state_dict())
