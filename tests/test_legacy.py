"""Folders saved before the package moved into layer folders (tests/data: a run folder and a router exported
from it by the code of that time) still resume, export and evaluate. SB3 pickles the policy class by module
path (then ``rltr.policies.sb3_policy``), so loading maps it to today's class."""

from __future__ import annotations

import shutil
from pathlib import Path

from rltr.cli.main import main

DATA = Path(__file__).parent / "data"


def _legacy_run(tmp_path: Path) -> Path:
    run = tmp_path / "legacy_run"
    shutil.copytree(DATA / "legacy_run", run)
    return run


def test_a_run_saved_before_the_move_resumes(tmp_path):
    from stable_baselines3 import PPO

    run = _legacy_run(tmp_path)
    (run / "final_model.zip").unlink()
    cfg = (run / "config.yaml").read_text().replace("total_timesteps: 64", "total_timesteps: 128")
    (run / "config.yaml").write_text(cfg.replace("runs_dir: runs", f"runs_dir: {tmp_path / 'runs'}"))
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    from rltr.training.sb3_policy import TokenPolicy

    model = PPO.load(run / "final_model.zip", custom_objects={"policy_class": TokenPolicy})
    assert model.num_timesteps == 128


def test_a_run_saved_before_the_move_exports_and_evaluates(tmp_path, capsys):
    run = _legacy_run(tmp_path)
    out = tmp_path / "router"
    assert main(["export", str(run), "--out", str(out)]) == 0
    for router in (out, DATA / "legacy_router"):
        code = main(
            [
                "evaluate",
                "--model",
                "default",
                "--task",
                "retrieval",
                "--methods",
                f"router:{router}",
                "--budgets",
                "none",
                "--n-examples",
                "8",
                "--batch-size",
                "8",
                "--decision-layers",
                "1",
            ]
        )
        assert code == 0
    assert "router:" in capsys.readouterr().out
