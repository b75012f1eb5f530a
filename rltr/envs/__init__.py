"""Gymnasium environments. ``rltr/TokenReduction-v0`` is registered when ``rltr`` is imported.

:class:`EpisodeEngine` runs B episodes in lockstep; :class:`TokenReductionEnv` is its Gymnasium view
(one episode at a time) and :class:`BatchedTokenReductionEnv` its SB3 ``VecEnv`` view (B of them).
"""

from rltr.backbones import load_backbone
from rltr.core.distributed import local_device
from rltr.envs.batched import BatchedTokenReductionEnv
from rltr.envs.engine import EpisodeEngine, EpisodeResult
from rltr.envs.token_reduction import TokenReductionEnv, env_settings
from rltr.tasks import load_task

__all__ = [
    "BatchedTokenReductionEnv",
    "EpisodeEngine",
    "EpisodeResult",
    "TokenReductionEnv",
    "make_batched_env",
    "make_env",
    "resolve_device",
]


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a CUDA GPU is available (accelerate's NVML check), else ``cpu``; others pass
    through. Launched as several processes on GPUs, ``cuda`` is this process's ``cuda:LOCAL_RANK``."""
    if device != "auto":
        return local_device(device)
    from accelerate.utils import is_cuda_available

    return local_device("cuda" if is_cuda_available() else "cpu")


def make_env(config=None, *, policy_flops=None, **kwargs) -> TokenReductionEnv:
    """The env from an :class:`rltr.config.EnvConfig` (or its fields as keywords): loads the backbone
    (built-in name, folder or hub name; one per process and device) and builds the task by name (or reads
    ``jsonl:PATH`` with the model's tokenizer)."""
    cfg = env_settings(config, kwargs)
    backbone = _cached_backbone(cfg.model, resolve_device(cfg.device))
    return TokenReductionEnv(backbone, load_task(cfg.task, backbone, **cfg.task_kwargs), cfg, policy_flops=policy_flops)


def make_batched_env(config=None, n_envs: int = 64, *, policy_flops=None, **kwargs) -> BatchedTokenReductionEnv:
    """``n_envs`` episodes in lockstep on one shared backbone; the settings are :func:`make_env`'s."""
    cfg = env_settings(config, kwargs)
    backbone = _cached_backbone(cfg.model, resolve_device(cfg.device))
    task = load_task(cfg.task, backbone, **cfg.task_kwargs)
    return BatchedTokenReductionEnv(backbone, task, n_envs, cfg, policy_flops=policy_flops)


_BACKBONES: dict = {}


def _cached_backbone(model: str, device: str):
    """One frozen backbone per (model, device) per process, shared by every env instance."""
    key = (model, device)
    if key not in _BACKBONES:
        _BACKBONES[key] = load_backbone(model, device=device)
    return _BACKBONES[key]
