"""Gymnasium environments. ``rltr/TokenReduction-v0`` is registered when ``rltr`` is imported."""

from rltr.envs.token_reduction import TokenReductionEnv

__all__ = ["TokenReductionEnv", "make_env"]


def make_env(model: str = "default", task: str = "retrieval", task_kwargs: dict | None = None,
             device: str = "cpu", n_hidden_proj: int = 16, **env_kwargs) -> TokenReductionEnv:
    """Build the env from names: a backbone (built-in name, folder or hub name) and a task."""
    from rltr.features import FeatureSpec
    from rltr.tasks import get_task

    backbone = _cached_backbone(model, device)
    return TokenReductionEnv(backbone, get_task(task, **(task_kwargs or {})),
                             features=FeatureSpec(n_hidden_proj=n_hidden_proj), **env_kwargs)


_BACKBONES: dict = {}


def _cached_backbone(model: str, device: str):
    """One frozen backbone per (model, device) per process, shared by every env instance."""
    from rltr.backbones import load_backbone

    key = (model, device)
    if key not in _BACKBONES:
        _BACKBONES[key] = load_backbone(model, device=device)
    return _BACKBONES[key]
