"""``TokenReductionEnv``: one task example through a frozen backbone; one step per decision layer.

The Gymnasium view (B = 1) of :class:`~rltr.envs.engine.EpisodeEngine`. Observation: (max_tokens, F)
float32 per-token features (:mod:`rltr.core.features`), zero rows past the live tokens (column 0 = valid
flag). Action: MultiDiscrete([3] * max_tokens), ``Action`` per slot (ignored on invalid slots;
protected and tail tokens are always kept). Reward, at the episode's end only: ``score -
compute_weight * compute_fraction``; ``info`` carries both parts and the tokens kept per layer.
Examples are drawn from ``self.np_random`` (seeded by ``reset(seed=...)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from rltr.backbones import Backbone
from rltr.config import EnvConfig
from rltr.core.ops import N_ACTIONS
from rltr.envs.engine import OBS_BOUND, EpisodeEngine
from rltr.tasks import Task

if TYPE_CHECKING:
    from rltr.config import EnvConfig


def env_settings(config: EnvConfig | None, kwargs: dict) -> EnvConfig:
    """An env's settings: ``config`` (validated), or one built from keyword overrides of the defaults."""
    if config is not None and kwargs:
        raise ValueError(f"pass either config or keyword settings, not both (got {sorted(kwargs)})")
    return config if config is not None else EnvConfig(**kwargs)


def spaces_for(engine: EpisodeEngine) -> tuple[spaces.Box, spaces.MultiDiscrete]:
    n = engine.settings.max_tokens
    obs = spaces.Box(-OBS_BOUND, OBS_BOUND, shape=(n, engine.n_features), dtype=np.float32)
    return obs, spaces.MultiDiscrete([N_ACTIONS] * n)


class TokenReductionEnv(gym.Env):
    """``TokenReductionEnv(backbone, task, config)`` or ``TokenReductionEnv(backbone, task, budget=0.5, ...)``
    with any :class:`~rltr.config.EnvConfig` field as a keyword (its model/task/device fields name what
    :func:`rltr.envs.make_env` loads; here the backbone and task are given)."""

    metadata = {"render_modes": []}

    def __init__(self, backbone: Backbone, task: Task, config: EnvConfig | None = None, *, policy_flops=None, **kwargs):
        super().__init__()
        self.engine = EpisodeEngine(backbone, task, env_settings(config, kwargs), policy_flops=policy_flops)
        self.observation_space, self.action_space = spaces_for(self.engine)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.engine.start([self.engine.task.sample(self.np_random)])
        return self.engine.observation()[0].cpu().numpy(), {}

    def step(self, action):
        action = torch.as_tensor(np.asarray(action), dtype=torch.long)
        expected = (self.engine.settings.max_tokens,)
        assert tuple(action.shape) == expected, f"action has shape {tuple(action.shape)}, expected {expected}"
        if not self.engine.step(action[None]):
            return self.engine.observation()[0].cpu().numpy(), 0.0, False, False, {}
        result = self.engine.result()
        terminal = np.zeros(self.observation_space.shape, dtype=np.float32)
        return terminal, float(result.reward[0]), True, False, result.infos()[0]
