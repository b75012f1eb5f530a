"""The RL loop through the CLI on a tiny model: train, resume, export, load, evaluate, bad input."""

import json

import numpy as np
import pytest
import torch

from rltr.cli.main import main
from rltr.config import ConfigError, load_config
from tests.conftest import tiny_task_gpt2

TINY_SETS = [
    "total_timesteps=256",
    "n_envs=2",
    "checkpoint_every=128",
    "imitation.n_episodes=8",
    "ppo={n_steps: 64, batch_size: 32, n_epochs: 2}",
]
TINY = [*(a for kv in TINY_SETS for a in ("--set", kv)), "--no-progress"]


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
    code = main(
        [
            "evaluate",
            "--model",
            model,
            "--task",
            "retrieval",
            "--methods",
            f"router:{tmp_path / 'r'},random",
            "--budgets",
            "0.5",
            "--n-examples",
            "4",
        ]
    )
    assert code == 0 and "| retrieval | router:r | 0.50 |" in capsys.readouterr().out


def test_router_for_another_backbone_is_rejected(trained, tmp_path, capsys):
    root, _, run = trained
    main(["export", str(run), "--out", str(tmp_path / "r")])
    other = tiny_task_gpt2(n_layer=3)
    other.save_pretrained(tmp_path / "other")
    code = main(
        [
            "evaluate",
            "--model",
            str(tmp_path / "other"),
            "--task",
            "retrieval",
            "--methods",
            f"router:{tmp_path / 'r'}",
            "--n-examples",
            "2",
        ]
    )
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


def test_unknown_ppo_key_is_a_config_error_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"ppo\.nope.*n_steps"):
        load_config(None, ["ppo.nope=1"])
    with pytest.raises(ConfigError, match=r"ppo\.seed.*rltr sets"):
        load_config(None, ["ppo.seed=3"])  # rltr passes seed, device, policy_kwargs, ... itself
    assert load_config(None, ["ppo.ent_coef=0.01"]).ppo == {"ent_coef": 0.01}


@pytest.mark.parametrize(
    "override",
    [
        "total_timesteps=-5",
        "n_envs=0",
        "checkpoint_every=0",
        "seed=-1",
        "name=a/b",
        "imitation.n_episodes=0",
        "imitation.epochs=0",
        "imitation.batch_size=0",
        "imitation.lr=0",
        "imitation.budget=1.5",
        "policy.hidden=0",
    ],
)
def test_out_of_range_values_name_key_and_value(override):
    key, value = override.split("=")
    with pytest.raises(ConfigError) as exc:
        load_config(None, [override])
    assert key in str(exc.value) and value in str(exc.value), str(exc.value)


def test_zero_ppo_steps_only_with_imitation():
    assert load_config(None, ["total_timesteps=0"]).total_timesteps == 0  # imitation only
    with pytest.raises(ConfigError, match="total_timesteps must be >= 1, got 0"):
        load_config(None, ["total_timesteps=0", "imitation.enabled=false"])


def test_cli_bad_config_creates_no_run_folder(tmp_path, capsys):
    runs = tmp_path / "runs"
    for bad in (
        ["--set", "ppo.nope=1"],
        ["--set", "total_timesteps=-5"],
        ["--set", "env.model=/no/such/model"],
        ["--set", "env.task=nonsense"],
        ["--set", "imitation.reducer=nonsense"],
    ):
        assert main(["train", "--set", f"runs_dir={runs}", *bad, "--no-progress"]) == 2
        assert "Traceback" not in capsys.readouterr().err
        assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())


def _resumable_copy(run, tmp_path, total=None):
    """A copy of the trained run as a kill after its 256-step checkpoint would leave it: no final model."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "final_model.zip").unlink()
    if total is not None:
        cfg = (copy / "config.yaml").read_text().replace("total_timesteps: 256", f"total_timesteps: {total}")
        (copy / "config.yaml").write_text(cfg)
    return copy


def test_failure_before_the_first_checkpoint_removes_the_run_folder(tmp_path, monkeypatch, capsys):
    import rltr.training.ppo

    def broken(*args, **kwargs):
        raise ValueError("demonstrations failed")

    monkeypatch.setattr(rltr.training.ppo, "collect_demonstrations", broken)
    model = _save_tiny(tmp_path / "model")
    runs = tmp_path / "runs"
    assert main(["train", "--set", f"env.model={model}", "--set", f"runs_dir={runs}", *TINY]) == 2
    err = capsys.readouterr().err
    assert "demonstrations failed" in err and "removed" in err
    assert not any(runs.iterdir()), list(runs.iterdir())


def test_checkpoint_save_is_atomic(tmp_path):
    """A save that dies half-way leaves the previous file under the name, whole."""
    from rltr.training.checkpoints import save_atomically

    class DiesMidSave:
        def save(self, f):
            f.write(b"PK\x03\x04 half a zip")
            raise KeyboardInterrupt  # as a kill in the middle of writing

    path = tmp_path / "ppo_256_steps.zip"
    path.write_bytes(b"the intact previous file")
    with pytest.raises(KeyboardInterrupt):
        save_atomically(DiesMidSave(), path)
    assert path.read_bytes() == b"the intact previous file"


def test_resume_skips_a_truncated_latest_checkpoint(trained, tmp_path, capsys):
    import zipfile

    from stable_baselines3 import PPO

    _, _, run = trained
    copy = _resumable_copy(run, tmp_path)
    latest = copy / "checkpoints" / "ppo_256_steps.zip"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])  # killed mid-save
    assert main(["train", "--resume", str(copy), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "ppo_256_steps.zip" in err and "unreadable" in err and "ppo_128_steps.zip" in err, err
    assert PPO.load(copy / "final_model.zip").num_timesteps == 256
    assert zipfile.ZipFile(latest).testzip() is None  # rewritten whole by the resumed run


def test_export_skips_a_truncated_latest_checkpoint(trained, tmp_path, capsys):
    _, _, run = trained
    copy = _resumable_copy(run, tmp_path)
    (copy / "checkpoints" / "ppo_256_steps.zip").write_bytes(b"")
    assert main(["export", str(copy), "--out", str(tmp_path / "router")]) == 0
    config = json.loads((tmp_path / "router" / "config.json").read_text())
    assert config["training"]["checkpoint"] == "ppo_128_steps.zip"
    assert "ppo_256_steps.zip" in capsys.readouterr().err


def test_resumed_run_logs_each_step_once(trained, tmp_path):
    """The interrupted run logged up to step 256, the resumed one replays from its 128-step checkpoint:
    TensorBoard must show one value per step, on one step axis (one tb folder)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, run = trained
    copy = _resumable_copy(run, tmp_path, total=384)
    (copy / "checkpoints" / "ppo_256_steps.zip").unlink()
    assert main(["train", "--resume", str(copy), "--no-progress"]) == 0
    assert [p.name for p in (copy / "tb").iterdir()] == ["ppo_1"]
    acc = EventAccumulator(str(copy / "tb" / "ppo_1"))
    acc.Reload()
    steps = {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert steps["rollout/score"] == [128, 256, 384], steps
    assert steps["train/loss"] == [384], steps  # the interrupted run's update at 256 was lost with it
    assert all(s == sorted(set(s)) for s in steps.values()), steps


@pytest.mark.parametrize("batched", [True, False])
def test_training_is_deterministic_for_a_seed(tmp_path, batched):
    """Two trainings with one seed give identical router weights: one here, one in a fresh process with
    another hash seed (set iteration order) and the same single thread."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    from rltr.training.export import export_router
    from rltr.training.ppo import train

    model = _save_tiny(tmp_path / "model")
    sets = [f"env.model={model}", f"env.batched={str(batched).lower()}", *TINY_SETS]
    routers = []
    for i in range(2):
        runs = tmp_path / f"runs{i}"
        if i == 0:
            train(load_config(None, [*sets, f"runs_dir={runs}"]), progress=False)
        else:
            argv = [sys.executable, "-m", "rltr.cli.main", "train", "--no-progress"]
            for kv in [*sets, f"runs_dir={runs}"]:
                argv += ["--set", kv]
            env = {**os.environ, "PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1"}
            subprocess.run(argv, check=True, env=env, capture_output=True)
        (run,) = runs.iterdir()
        routers.append(load_file(export_router(run, tmp_path / f"router{i}") / "model.safetensors"))
    assert routers[0].keys() == routers[1].keys()
    for name in routers[0]:
        assert torch.equal(routers[0][name], routers[1][name]), name


# ---- bad input: one line naming the value, exit 2, no run folder or router left behind -------------------------
@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--set", "ppo.learning_rate=abc"], "ppo.learning_rate"),
        (["--set", "ppo.batch_size=0"], "ppo.batch_size"),
        (["--set", "ppo.n_steps=-8"], "ppo.n_steps"),
        (["--set", "ppo.gamma=2"], "ppo.gamma"),
        (["--set", "env.task_kwargs={nope: 1}"], "'nope'"),
        (["--set", "env.device=cuda:99"], "'cuda:99'"),
        (["--set", "seed=1", "--set", "seed.b=1"], "'seed' is not a mapping"),
        (["--config", "{tmp}/syntax.yaml"], "syntax.yaml' is not valid YAML at line"),
        (["--config", "{tmp}/tabs.yaml"], "tabs.yaml' is not valid YAML at line"),
        (["--config", "{tmp}/empty.yaml"], "empty.yaml' is empty"),
        (["--set", "runs_dir={tmp}/a_file"], "is a file"),
        (["--set", "runs_dir={tmp}/a_file/runs"], "is a file"),
        (["--algo", "grpo", "--set", "name=../../x"], "'../../x'"),
    ],
)
def test_train_bad_input_exits_2_and_leaves_no_run_folder(tmp_path, capsys, extra, needle):
    (tmp_path / "syntax.yaml").write_text("env: [retrieval\nseed: 1\n")
    (tmp_path / "tabs.yaml").write_text("env:\n\tmodel: default\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "a_file").write_text("not a folder")
    runs = tmp_path / "runs"
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    code = main(["train", "--set", f"runs_dir={runs}", *extra, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("rltr train: error: "), err
    assert not runs.exists() and not (tmp_path / "x").exists()


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    from rltr.training.ppo import _start_run_dir

    cfg = load_config(None, [])
    name = tmp_path / "retrieval__default__0__20260101-000000"
    first, second = _start_run_dir(name, cfg, "one"), _start_run_dir(name, cfg, "two")
    assert first == name and second != first and second.name.startswith(name.name)
    assert (first / "command.txt").read_text() == "one\n" and (second / "command.txt").read_text() == "two\n"


def _exported(trained, tmp_path):
    _, model, run = trained
    out = tmp_path / "r"
    assert main(["export", str(run), "--out", str(out)]) == 0
    return model, out


def _set_router_key(out, key, value):
    config = json.loads((out / "config.json").read_text())
    node = config
    *parents, last = key.split(".")
    for p in parents:
        node = node[p]
    if value is None:
        del node[last]
    else:
        node[last] = value
    (out / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("decision_layers", [99], "[99]"),
        ("decision_layers", [], "decision_layers"),
        ("features.token_features", [], "feature list is empty"),
        ("backbone.family", None, "'family'"),
        ("weights", "nan", "NaN"),
    ],
)
def test_bad_router_is_refused_with_one_line(trained, tmp_path, capsys, key, value, needle):
    from safetensors.torch import load_file, save_file

    model, out = _exported(trained, tmp_path)
    if key == "weights":
        weights = load_file(out / "model.safetensors")
        first = next(iter(weights))
        weights[first][..., 0] = float(value)
        save_file(weights, out / "model.safetensors")
    else:
        _set_router_key(out, key, value)
    capsys.readouterr()
    code = main(["evaluate", "--model", model, "--task", "retrieval", "--methods", f"router:{out}", "--n-examples", "2"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err, err


def test_router_brings_its_decision_layers_and_refuses_others(trained, tmp_path, capsys):
    model, out = _exported(trained, tmp_path)
    _set_router_key(out, "decision_layers", [0])  # as a router trained at layer 0
    capsys.readouterr()
    argv = ["evaluate", "--model", model, "--task", "retrieval", "--methods", f"router:{out},random", "--n-examples", "2"]
    assert main(argv) == 0
    assert "decision layers [0]" in capsys.readouterr().out
    code = main([*argv, "--decision-layers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "--decision-layers [1] conflicts" in err and "[0]" in err, err


def test_router_path_with_dotdot_says_what_was_loaded(trained, tmp_path, capsys, monkeypatch):
    model, out = _exported(trained, tmp_path)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    capsys.readouterr()
    assert main(["evaluate", "--model", model, "--task", "retrieval", "--methods", "router:../r", "--n-examples", "2"]) == 0
    assert f"loaded router {str(out.resolve())!r}" in capsys.readouterr().err


def test_exported_router_holds_no_path_of_the_training_machine(trained, tmp_path):
    _, _, run = trained
    _, out = _exported(trained, tmp_path)
    text = (out / "config.json").read_text()
    assert str(run.parent) not in text and json.loads(text)["training"]["run"] == run.name
    assert str(tmp_path.parent) not in text  # nor the model's folder


@pytest.mark.parametrize(
    "damage, needle",
    [
        ("meta_no_features", "'features'"),
        ("out_is_a_file", "is a file"),
    ],
)
def test_export_bad_input_exits_2(trained, tmp_path, capsys, damage, needle):
    _, _, run = trained
    copy = _resumable_copy(run, tmp_path)
    out = tmp_path / "router"
    if damage == "meta_no_features":
        meta = json.loads((copy / "meta.json").read_text())
        del meta["features"]
        (copy / "meta.json").write_text(json.dumps(meta))
    else:
        out.write_text("a file")
    code = main(["export", str(copy), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert not out.is_dir()


def _rewrite_zip(path, replace: dict | None = None, add: dict | None = None):
    """Rewrite SB3 zip ``path`` with entries replaced or added (name -> bytes)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        entries = {name: z.read(name) for name in z.namelist()}
    entries.update(replace or {})
    entries.update(add or {})
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)


class _MakesMarker:
    """Unpickling this calls os.mkdir(marker): what a crafted run folder could do with any function."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.mkdir, (self.marker,)


def _crafted_data(path, marker) -> bytes:
    """The zip's ``data`` entry plus an extra key whose cloudpickled value runs code when SB3 loads it."""
    import base64
    import zipfile

    import cloudpickle

    with zipfile.ZipFile(path) as z:
        data = json.loads(z.read("data"))
    payload = base64.b64encode(cloudpickle.dumps(_MakesMarker(marker))).decode()
    data["evil"] = {":type:": "<class 'x'>", ":serialized:": payload}
    return json.dumps(data).encode()


def test_export_of_a_crafted_run_folder_runs_no_code(trained, tmp_path):
    from stable_baselines3.common.save_util import load_from_zip_file

    _, _, run = trained
    copy = _resumable_copy(run, tmp_path)
    marker = tmp_path / "code_ran"
    for zip_file in [*(copy / "checkpoints").iterdir()]:
        _rewrite_zip(zip_file, replace={"data": _crafted_data(zip_file, marker)})
    assert main(["export", str(copy), "--out", str(tmp_path / "router")]) == 0
    assert not marker.exists(), "export unpickled the run's data"
    load_from_zip_file(copy / "checkpoints" / "ppo_256_steps.zip")  # SB3's loader: the payload is live
    assert marker.exists()


@pytest.mark.parametrize("foreign", ["entry", "data_key"])
def test_resume_refuses_a_zip_holding_what_rltr_never_writes(trained, tmp_path, capsys, foreign):
    _, _, run = trained
    copy = _resumable_copy(run, tmp_path)
    latest = copy / "checkpoints" / "ppo_256_steps.zip"
    marker = tmp_path / "code_ran"
    if foreign == "entry":
        _rewrite_zip(latest, add={"extra.pkl": b"anything"})
    else:
        _rewrite_zip(latest, replace={"data": _crafted_data(latest, marker)})
    code = main(["train", "--resume", str(copy), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "refusing to resume" in err and ("extra.pkl" if foreign == "entry" else "'evil'") in err, err
    assert not marker.exists() and not (copy / "final_model.zip").exists()


def test_resume_skips_a_latest_checkpoint_with_a_corrupt_policy(trained, tmp_path, capsys):
    from stable_baselines3 import PPO

    _, _, run = trained
    copy = _resumable_copy(run, tmp_path)
    latest = copy / "checkpoints" / "ppo_256_steps.zip"
    _rewrite_zip(latest, replace={"policy.pth": b"not a tensor file at all"})  # whole zip, CRCs fine, policy garbage
    assert main(["train", "--resume", str(copy), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "ppo_256_steps.zip" in err and "unreadable" in err and "resuming" in err and "ppo_128_steps.zip" in err, err
    assert PPO.load(copy / "final_model.zip").num_timesteps == 256
