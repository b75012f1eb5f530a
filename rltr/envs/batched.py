"""``BatchedTokenReductionEnv``: B :class:`~rltr.envs.TokenReductionEnv` episodes in lockstep, as one SB3 ``VecEnv``.

The VecEnv view (B = n) of :class:`~rltr.envs.engine.EpisodeEngine`: one batched forward of the frozen
backbone per stretch of layers, features, actions, ops and rewards as torch tensors on the backbone's
device; numpy only at the SB3 boundary. All B episodes end together and are reset in place (SB3
auto-reset: ``terminal_observation`` in ``infos``, ``TimeLimit.truncated`` False).

Same episodes as B single envs: ``VecEnv.seed(s)`` gives row i the generator
``TokenReductionEnv.reset(seed=s + i)`` gives (Gymnasium's ``np_random``), and each row then samples its
examples from its own generator.

Shapes at the boundary: observations (B, max_tokens, F) float32; actions (B, max_tokens) ints;
rewards (B,) float32; dones (B,) bool.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env import VecEnv

from rltr.backbones import Backbone
from rltr.envs.engine import EpisodeEngine
from rltr.envs.token_reduction import env_settings, spaces_for
from rltr.tasks import Task

if TYPE_CHECKING:
    from rltr.config import EnvConfig


class BatchedTokenReductionEnv(VecEnv):
    """``n_envs`` rows of :class:`TokenReductionEnv` in lockstep; ``config`` or keyword settings as there.

    ``get_attr``/``env_method`` see the engine's shared settings (the same for every row), enough for SB3.
    """

    def __init__(self, backbone: Backbone, task: Task, n_envs: int = 64, config: EnvConfig | None = None, *, policy_flops=None, **kwargs):
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        self.engine = EpisodeEngine(backbone, task, env_settings(config, kwargs), policy_flops=policy_flops)
        if n_envs % self.engine.settings.group_size:
            raise ValueError(f"n_envs={n_envs} must be a multiple of env.group_size={self.engine.settings.group_size}")
        self.render_mode = None
        super().__init__(n_envs, *spaces_for(self.engine))
        self._rngs = [np.random.default_rng() for _ in range(n_envs)]  # one example stream per row, unseeded
        self._actions: np.ndarray | None = None

    # ---- VecEnv API ----------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        """Start B new episodes (rows with a pending seed restart their example stream); (B, max_tokens, F)."""
        for i, seed in enumerate(self._seeds):
            if seed is not None:
                self._rngs[i], _ = seeding.np_random(seed)
        self._reset_seeds()
        self._reset_options()
        return self._start()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        assert self._actions is not None, "step_wait() called without step_async()"
        actions = torch.as_tensor(np.asarray(self._actions), dtype=torch.long)
        self._actions = None
        if not self.engine.step(actions):
            infos = [{"TimeLimit.truncated": False} for _ in range(self.num_envs)]
            return self._observation(), np.zeros(self.num_envs, dtype=np.float32), np.zeros(self.num_envs, dtype=bool), infos
        result = self.engine.result()
        terminal = np.zeros(self.observation_space.shape, dtype=np.float32)  # what the single env returns at the end
        infos = [{**info, "TimeLimit.truncated": False, "terminal_observation": terminal.copy()} for info in result.infos()]
        return self._start(), self._relative(result.reward).float().cpu().numpy(), np.ones(self.num_envs, dtype=bool), infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        """An attribute of this env, else a setting of the engine (``budget``, ``decision_layers`` ...),
        the same for every row; AttributeError when neither has it, as ``VecEnv.has_attr`` expects."""
        value = getattr(self, attr_name) if hasattr(self, attr_name) else getattr(self.engine.settings, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        """Set an engine setting (validated again) or an attribute, for every row at once."""
        if len(list(self._get_indices(indices))) != self.num_envs:
            raise NotImplementedError("rows share their settings: set_attr applies to all of them (indices=None)")
        if hasattr(self.engine.settings, attr_name):
            self.engine.configure(dataclasses.replace(self.engine.settings, **{attr_name: value}))
        else:
            setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        """Call a shared method once; its result is returned for every requested row."""
        result = getattr(self, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    # ---- internals -----------------------------------------------------------------------------
    def _start(self) -> np.ndarray:
        """One new example per row from the row's own generator (with ``group_size`` k > 1: one per group of k
        rows, from the group's first row's generator), run up to the first decision."""
        k = self.engine.settings.group_size
        leaders = [self.engine.task.sample(rng) for rng in self._rngs[::k]]
        self.engine.start([leaders[i // k] for i in range(self.num_envs)])
        return self._observation()

    def _relative(self, reward: torch.Tensor) -> torch.Tensor:
        """(B,) rewards minus their group's mean (``group_size`` rows that shared an example), so a row is
        rewarded for doing better than the other samples on the same input; plain rewards when k = 1."""
        k = self.engine.settings.group_size
        if k == 1:
            return reward
        return (reward.view(-1, k) - reward.view(-1, k).mean(1, keepdim=True)).view(-1)

    def _observation(self) -> np.ndarray:
        return self.engine.observation().cpu().numpy()
