"""Gymnasium environments. ``rltr/TokenReduction-v0`` is registered when ``rltr`` is imported.

:class:`TokenReductionEnv` runs one episode at a time; :class:`BatchedTokenReductionEnv` is an SB3
``VecEnv`` running B of them in lockstep with one batched forward per decision layer (same semantics).
"""

from rltr.envs.batched import BatchedTokenReductionEnv
from rltr.envs.token_reduction import TokenReductionEnv

__all__ = ["BatchedTokenReductionEnv", "TokenReductionEnv", "make_batched_env", "make_env", "resolve_device"]


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a CUDA GPU is available (accelerate's NVML check), else ``cpu``; others pass through."""
    if device != "auto":
        return device
    from accelerate.utils import is_cuda_available

    return "cuda" if is_cuda_available() else "cpu"


def make_env(model: str = "default", task: str = "retrieval", task_kwargs: dict | None = None,
             device: str = "cpu", n_hidden_proj: int = 16, feature_set: str = "full", **env_kwargs) -> TokenReductionEnv:
    """Build the env from names: a backbone (built-in name, folder or hub name) and a task; ``feature_set``
    is ``full`` or ``light`` (:meth:`rltr.features.FeatureSpec.named`)."""
    from rltr.features import FeatureSpec
    from rltr.tasks import get_task

    backbone = _cached_backbone(model, resolve_device(device))
    return TokenReductionEnv(backbone, get_task(task, **(task_kwargs or {})),
                             features=FeatureSpec.named(feature_set, n_hidden_proj=n_hidden_proj), **env_kwargs)


def make_batched_env(model: str = "default", task: str = "retrieval", task_kwargs: dict | None = None,
                     device: str = "auto", n_hidden_proj: int = 16, feature_set: str = "full", n_envs: int = 64,
                     dtype: str = "float32",
                     **env_kwargs) -> BatchedTokenReductionEnv:
    """``n_envs`` episodes in lockstep on one shared backbone; the other arguments are :func:`make_env`'s."""
    from rltr.features import FeatureSpec
    from rltr.tasks import get_task

    backbone = _cached_backbone(model, resolve_device(device))
    return BatchedTokenReductionEnv(backbone, get_task(task, **(task_kwargs or {})), n_envs=n_envs, dtype=dtype,
                                    features=FeatureSpec.named(feature_set, n_hidden_proj=n_hidden_proj), **env_kwargs)


_BACKBONES: dict = {}


def _cached_backbone(model: str, device: str):
    """One frozen backbone per (model, device) per process, shared by every env instance."""
    from rltr.backbones import load_backbone

    key = (model, device)
    if key not in _BACKBONES:
        _BACKBONES[key] = load_backbone(model, device=device)
    return _BACKBONES[key]
