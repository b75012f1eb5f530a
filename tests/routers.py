"""A randomly initialised router for a test backbone (no training): what a router costs and how it is wired
does not depend on its weights."""

from pathlib import Path

import torch

from rltr.core.features import FeatureSpec
from rltr.core.ops import Action
from rltr.policies.network import network_spec
from rltr.policies.router import FORMAT, FORMAT_VERSION, Router


def random_router(
    backbone,
    folder,
    decision_layers=(1,),
    query_aware=True,
    features: FeatureSpec | None = None,
    seed: int = 0,
    hidden: int = 16,
    network: str = "mlp",
) -> Path:
    """Save a random router for ``backbone`` in ``folder``/router and return that path (``network``: mlp or attention)."""
    features = features or FeatureSpec()
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "features": features.to_dict(),
        "network": network_spec(network, hidden, 8),
        "decision_layers": list(decision_layers),
        "query_aware": query_aware,
        "actions": {a.name: int(a) for a in Action},
        "backbone": {"family": backbone.family, "config_hash": backbone.config_hash, "name": "test"},
    }
    torch.manual_seed(seed)
    return Router(config).save_pretrained(Path(folder) / "router")
