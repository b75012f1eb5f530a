"""``rltr export``: turn a training run into a router folder (config.json + model.safetensors).

Nothing is unpickled: the policy's weights are read from the SB3 zip's ``policy.pth`` with
``torch.load(weights_only=True)``, the step count from its ``data`` entry as plain JSON, and every other
setting from the run's own ``meta.json``. A run folder shared by someone else runs no code on export.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from rltr.config import ConfigError
from rltr.core.ops import Action
from rltr.policies.router import FORMAT, FORMAT_VERSION, Router
from rltr.training.checkpoints import latest_checkpoint, read_data, read_policy_state, unreadable_reason

_log = logging.getLogger(__name__)

META_KEYS = ("backbone", "features", "decision_layers", "query_aware", "task", "compute_weight")
ACTOR_PREFIX = "actor."  # the policy's per-token actor inside SB3's policy state dict


def read_meta(run_dir: Path) -> dict:
    """The run's meta.json (what export needs); a missing file or key is a ConfigError naming it."""
    meta_file = run_dir / "meta.json"
    if not meta_file.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run folder (no meta.json)")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{str(meta_file)!r} is not valid JSON ({e})") from None
    missing = [k for k in META_KEYS if k not in meta] + ([] if "network" in meta or "hidden" in meta else ["network"])
    if missing:
        raise ConfigError(f"{str(meta_file)!r} lacks {missing[0]!r}: not a complete run folder")
    return meta


def policy_source(run_dir: Path) -> Path:
    """final_model.zip if it reads back whole, else the newest readable checkpoint."""
    source = run_dir / "final_model.zip"
    if source.is_file():
        reason = unreadable_reason(source)
        if reason is None:
            return source
        _log.warning(f"skipping unreadable {source} ({reason})")
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise ConfigError(f"run {str(run_dir)!r} has neither a readable final_model.zip nor a readable checkpoint")
    return ckpt


def _shareable(backbone: dict) -> dict:
    """The backbone entry with a local model folder reduced to its name (no trainer's absolute path)."""
    name = backbone.get("name")
    if isinstance(name, str) and Path(name).is_absolute():
        return {**backbone, "name": Path(name).name}
    return backbone


def export_router(run_dir: str | Path, out: str | Path) -> Path:
    """Write the run's final (else latest checkpointed) policy as a router folder; return its path."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    source = policy_source(run_dir)
    state = read_policy_state(source)
    actor = {k[len(ACTOR_PREFIX) :]: v for k, v in state.items() if k.startswith(ACTOR_PREFIX)}
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "features": meta["features"],
        "network": meta.get("network", {"type": "TokenActor", "hidden": meta.get("hidden")}),
        "decision_layers": meta["decision_layers"],
        "query_aware": meta["query_aware"],
        "backbone": _shareable(meta["backbone"]),
        "actions": {a.name: int(a) for a in Action},
        # the run's folder name only: a shared router does not carry the trainer's file system
        "training": {
            "run": run_dir.resolve().name,
            "checkpoint": source.name,
            "timesteps": int(read_data(source)["num_timesteps"]),
            "task": meta["task"],
            "compute_weight": meta["compute_weight"],
        },
    }
    router = Router(config)
    try:
        router.actor.load_state_dict(actor)
    except RuntimeError as e:
        raise ConfigError(f"{str(source)!r}: its policy does not match meta.json's network ({str(e).splitlines()[0]})") from None
    return router.save_pretrained(out)
