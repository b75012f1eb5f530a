"""rltr: RL-guided token reduction for frozen transformers.

The public API (each name loads its module on first use, so ``import rltr`` and the CLI start fast)::

    import rltr
    model = ...                                              # any supported HF model (GPT-2, Llama-like, ViT, BERT)
    with rltr.get_reducer("attn_topk")(model, budget=0.5):   # or rltr.get_reducer("router:routers/NAME")
        model.generate(...)

    backbone = rltr.load_backbone("default")                 # built-in name, local folder or hub name
    results = rltr.evaluate(backbone, [rltr.get_task("retrieval")], ["identity", "tome"], [0.25])
    run = rltr.train(rltr.load_config("configs/default.yaml"))
    router = rltr.Router.from_pretrained("routers/NAME")       # torch + safetensors, no SB3

Importing rltr registers the Gymnasium env ``rltr/TokenReduction-v0`` (a string entry point: nothing heavy is
imported until the env is made).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import gymnasium as _gym

__version__ = "0.1.0"

ENV_ID = "rltr/TokenReduction-v0"
if ENV_ID not in _gym.registry:
    _gym.register(id=ENV_ID, entry_point="rltr.envs:make_env")

# public name -> the module that defines it
_API = {
    "load_backbone": "rltr.backbones",
    "wrap": "rltr.backbones",
    "Backbone": "rltr.backbones",
    "get_reducer": "rltr.reducers",
    "Reducer": "rltr.reducers",
    "ScoreReducer": "rltr.reducers",
    "REDUCERS": "rltr.reducers",
    "Router": "rltr.policies.router",
    "get_task": "rltr.tasks",
    "load_task": "rltr.tasks",
    "Task": "rltr.tasks",
    "make_env": "rltr.envs",
    "make_batched_env": "rltr.envs",
    "load_config": "rltr.config",
    "TrainConfig": "rltr.config",
    "train": "rltr.training.ppo",
    "export_router": "rltr.training.export",
    "evaluate": "rltr.evaluation.sweep",
    "run_method": "rltr.evaluation.run",
    "format_table": "rltr.evaluation.run",
}

__all__ = ["ENV_ID", "__version__", *_API]

if TYPE_CHECKING:
    from rltr.backbones import Backbone, load_backbone, wrap
    from rltr.config import TrainConfig, load_config
    from rltr.envs import make_batched_env, make_env
    from rltr.evaluation.run import format_table, run_method
    from rltr.evaluation.sweep import evaluate
    from rltr.policies.router import Router
    from rltr.reducers import REDUCERS, Reducer, ScoreReducer, get_reducer
    from rltr.tasks import Task, get_task, load_task
    from rltr.training.export import export_router
    from rltr.training.ppo import train


def __getattr__(name: str) -> Any:
    """Load a public name's module on first use (PEP 562)."""
    if name not in _API:
        raise AttributeError(f"module 'rltr' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
