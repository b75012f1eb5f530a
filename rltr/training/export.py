"""``rltr export``: turn a training run into a router folder (config.json + model.safetensors)."""

from __future__ import annotations

import json
from pathlib import Path

from rltr.config import ConfigError
from rltr.core.ops import Action
from rltr.policies.router import FORMAT, FORMAT_VERSION, Router
from rltr.training.ppo import latest_checkpoint
from rltr.training.sb3_policy import TokenPolicy


def export_router(run_dir: str | Path, out: str | Path) -> Path:
    """Write the run's final (else latest checkpointed) policy as a router folder; return its path."""
    from stable_baselines3 import PPO


    run_dir = Path(run_dir)
    meta_file = run_dir / "meta.json"
    if not meta_file.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run folder (no meta.json)")
    meta = json.loads(meta_file.read_text())
    source = run_dir / "final_model.zip"
    if not source.is_file():
        source = latest_checkpoint(run_dir)
        if source is None:
            raise ConfigError(f"run {str(run_dir)!r} has neither final_model.zip nor a checkpoint")
    model = PPO.load(source, device="cpu", custom_objects={"policy_class": TokenPolicy})  # runs saved before the layer move too
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "features": meta["features"],
        "network": meta.get("network", {"type": "TokenActor", "hidden": meta["hidden"]}),
        "decision_layers": meta["decision_layers"],
        "query_aware": meta["query_aware"],
        "backbone": meta["backbone"],
        "actions": {a.name: int(a) for a in Action},
        "training": {"run": str(run_dir), "checkpoint": source.name, "timesteps": int(model.num_timesteps),
                     "task": meta["task"], "compute_weight": meta["compute_weight"]},
    }
    router = Router(config)
    router.actor.load_state_dict(model.policy.actor.state_dict())
    return router.save_pretrained(out)
