"""Routers: exported learned policies. A folder with ``config.json`` + ``model.safetensors``; loading
needs torch and safetensors only (no SB3, no pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rltr.core.features import FeatureSpec
from rltr.policies.network import build_actor

FORMAT = "rltr-router"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "features", "network", "decision_layers", "backbone", "actions")


class RouterError(ValueError):
    """A router folder that is missing, corrupt, or does not fit the model it is used with."""


def _check_config(path: Path, config: dict) -> None:
    """RouterError naming the key when config.json's values cannot describe a usable router."""
    layers, features, backbone = config["decision_layers"], config["features"], config["backbone"]
    if not isinstance(layers, list) or not layers or not all(isinstance(i, int) and i >= 0 for i in layers):
        raise RouterError(f"router {str(path)!r}: decision_layers must be a non-empty list of layer indices >= 0, got {layers!r}")
    if not isinstance(features, dict) or not features.get("token_features"):
        raise RouterError(f"router {str(path)!r}: its feature list is empty (features: {features!r})")
    missing = [k for k in ("family", "config_hash") if not isinstance(backbone, dict) or k not in backbone]
    if missing:
        raise RouterError(f"router {str(path)!r}: config.json's backbone lacks {missing[0]!r}")


class Router(torch.nn.Module):
    """A trained per-token policy plus everything needed to use it: feature spec, decision layers,
    the backbone it was trained on (family + config hash), action semantics."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        self.features = FeatureSpec.from_dict(config["features"])
        self.actor = build_actor(self.features.n_features, config["network"])

    @property
    def decision_layers(self) -> list[int]:
        return list(self.config["decision_layers"])

    def save_pretrained(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(self.config, indent=2))
        save_file({k: v.detach().contiguous().cpu() for k, v in self.actor.state_dict().items()}, path / "model.safetensors")
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> Router:
        path = Path(path)
        cfg_file, weights = path / "config.json", path / "model.safetensors"
        if not cfg_file.is_file() or not weights.is_file():
            raise RouterError(
                f"router {str(path)!r} needs config.json and model.safetensors; missing: "
                f"{[p.name for p in (cfg_file, weights) if not p.is_file()]}"
            )
        try:
            config = json.loads(cfg_file.read_text())
        except json.JSONDecodeError as e:
            raise RouterError(f"router {str(path)!r}: config.json is not valid JSON ({e})") from None
        missing = [k for k in REQUIRED_KEYS if k not in config]
        if missing or config.get("format") != FORMAT:
            raise RouterError(f"router {str(path)!r}: config.json is not an rltr router (missing {missing})")
        if config["format_version"] > FORMAT_VERSION:
            raise RouterError(f"router {str(path)!r} has format version {config['format_version']}; this rltr reads <= {FORMAT_VERSION}")
        _check_config(path, config)
        try:
            router = cls(config)
        except (KeyError, TypeError, ValueError) as e:
            raise RouterError(f"router {str(path)!r}: config.json does not describe a router ({type(e).__name__}: {e})") from None
        try:
            state = load_file(weights)
            router.actor.load_state_dict(state)
        except Exception as e:  # safetensors raises its own error types for corrupt files
            raise RouterError(f"router {str(path)!r}: model.safetensors is unreadable or does not match config.json ({e})") from None
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise RouterError(f"router {str(path)!r}: model.safetensors holds NaN or infinite weights (in {bad[0]!r})")
        return router.to(device).eval()

    def check_layers(self, n_layers: int) -> None:
        """RouterError unless every decision layer exists in an ``n_layers``-layer model."""
        beyond = [i for i in self.decision_layers if not 0 <= i < n_layers]
        if beyond:
            raise RouterError(f"router decision layer(s) {beyond} do not exist in a {n_layers}-layer model")

    def check_backbone(self, backbone) -> None:
        want = self.config["backbone"]
        if backbone.family != want["family"] or backbone.config_hash != want["config_hash"]:
            raise RouterError(
                f"router was trained on {want['family']} model {want.get('name')!r} (config hash {want['config_hash']}); "
                f"got {backbone.family} model {backbone.name!r} (config hash {backbone.config_hash})"
            )

    def network_flops(self, n_tokens):
        """FLOPs of the network's own decision on ``n_tokens`` tokens (number or tensor)."""
        return self.actor.flops(n_tokens)

    @torch.no_grad()
    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, N, F) observations -> (B, N, 3) action logits."""
        return self.actor(obs.float())
