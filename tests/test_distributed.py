"""Several processes on CPU (gloo), as CI runs them: ``accelerate launch --multi_gpu --num_processes 2 -m rltr``.

(``accelerate launch --cpu`` alone would start one process.) Every launch has a timeout and kills its whole
process group, so a dead or stuck worker fails the test instead of hanging it.
"""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from rltr.cli.main import main
from rltr.core import distributed
from tests.conftest import tiny_task_gpt2

TIMEOUT_S = 120


def launch_two(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``accelerate launch`` of ``python -m rltr ARGS`` as 2 CPU processes; fails the test on timeout."""
    cmd = distributed.launch_command(args)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"2-process launch did not finish in {TIMEOUT_S} s: {' '.join(args)}\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _rows(folder: Path) -> list[tuple]:
    keys = (
        "task",
        "method",
        "budget",
        "accuracy",
        "compute_fraction",
        "kept_ratio",
        "n_examples",
        "generated_exact_match",
        "generated_token_f1",
    )
    return [tuple(r[k] for k in keys) for r in json.loads((folder / "results.json").read_text())["results"]]


def test_two_process_evaluation_equals_one_process(tmp_path):
    """5 batches dealt to 2 processes (3 + 2): the merged results.json has the single process's numbers exactly."""
    args = [
        "evaluate",
        "--task",
        "selective_copy",
        "--methods",
        "identity,oracle,tome,random",
        "--budgets",
        "0.25",
        "--decision-layers",
        "0",
        "--n-examples",
        "40",
        "--batch-size",
        "8",
        "--generate",
    ]  # 5 batches: 3 + 2
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    done = launch_two([*args, "--out", str(tmp_path / "two")], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("held-out examples per task") == 1 and done.stdout.count("wrote ") == 1  # main process only
    one, two = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert one == two and len(one) == 4 and all(r[6] == 40 for r in one)


def test_two_process_training_keeps_the_policies_identical(tmp_path):
    """Data-parallel PPO: 2 updates; after imitation and after each update both processes hold the same weights
    (checked in the run by all-gathering them); only the main process writes the run folder."""
    tiny_task_gpt2(n_layer=2).save_pretrained(tmp_path / "model")
    sets = [
        "total_timesteps=128",
        "n_envs=4",
        "checkpoint_every=64",
        "imitation.n_episodes=8",
        "env.decision_layers=[1]",
        "ppo={n_steps: 16, batch_size: 32, n_epochs: 2}",
        "policy.hidden=16",
        f"env.model={tmp_path / 'model'}",
        "runs_dir=runs",
    ]
    done = launch_two(["train", *(a for s in sets for a in ("--set", s)), "--no-progress"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (tmp_path / "runs").iterdir()
    assert done.stdout.count("run folder:") == 1
    report = json.loads((run / "distributed.json").read_text())
    assert report == {"world_size": 2, "states_checked": 3, "max_parameter_gap": 0.0}  # before PPO + after 2 updates
    assert (run / "final_model.zip").is_file() and (run / "imitation.json").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ppo_128_steps.zip", "ppo_64_steps.zip"]


def test_target_kl_is_refused_with_several_processes(tmp_path, monkeypatch, capsys):
    """PPO's early stop on target_kl would end one process's epochs and not another's (a hang): refused up
    front (as if launched as 2 processes), before any run folder exists."""
    from rltr.core import distributed

    monkeypatch.setattr(distributed, "setup", lambda device: device)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    assert main(["train", "--set", "ppo={target_kl: 0.01}", "--set", f"runs_dir={tmp_path / 'runs'}", "--no-progress"]) == 2
    assert "ppo.target_kl" in capsys.readouterr().err and not (tmp_path / "runs").exists()
