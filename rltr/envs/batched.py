"""``BatchedTokenReductionEnv``: B :class:`~rltr.envs.TokenReductionEnv` episodes in lockstep, as one SB3 ``VecEnv``.

Every episode has the same number of decision layers, so one decision is one step for all B rows:
one batched forward of the frozen backbone per stretch of layers, features, actions, ops and rewards
as torch tensors on the backbone's device; numpy only at the SB3 boundary. Rows are padded token
states (``alive`` masks); all B episodes end together and are reset in place (SB3 auto-reset:
``terminal_observation`` in ``infos``, ``TimeLimit.truncated`` False).

Same semantics as B single envs: row i is seeded like single env i (``VecEnv.seed(s)`` gives row i
``np.random.default_rng([s + i, 7])`` at the next reset, as ``TokenReductionEnv.reset(seed=s + i)``),
samples its examples from its own generator, and gets the same observation, reward and info.

Shapes at the boundary: observations (B, max_tokens, F) float32; actions (B, max_tokens) ints;
rewards (B,) float32; dones (B,) bool.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv

from rltr.backbones import Backbone
from rltr.compute import compute_fraction
from rltr.envs.token_reduction import (
    TokenReductionEnv,
    enforce_budget,
    episode_score,
    padded_features,
)
from rltr.features import feature_flops, merge_match
from rltr.ops import TokenState, apply_actions
from rltr.reducers.base import decision_context
from rltr.tasks import Task, collate
from rltr.tasks.vocab import PAD_ID

AUTOCAST_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SHARED = ("backbone", "task", "decision_layers", "compute_weight", "score", "query_aware", "budget", "max_tokens",
           "features", "split", "arch")


class BatchedTokenReductionEnv(VecEnv):
    """``n_envs`` rows of :class:`TokenReductionEnv` (whose keyword arguments ``env_kwargs`` takes) in lockstep.

    ``dtype``: ``float32`` (default), or ``bfloat16``/``float16`` autocast of the backbone's layers and
    head on CUDA (features, ops and rewards stay float32). ``get_attr``/``env_method`` see the env's shared settings
    (the same for every row), enough for SB3.
    """

    def __init__(self, backbone: Backbone, task: Task, n_envs: int = 64, dtype: str = "float32", **env_kwargs):
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        if dtype not in AUTOCAST_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(AUTOCAST_DTYPES)}, got {dtype!r}")
        if dtype != "float32" and backbone.device.type != "cuda":
            raise ValueError(f"dtype={dtype!r} (autocast) needs a CUDA backbone; this one is on {backbone.device}")
        single = TokenReductionEnv(backbone, task, **env_kwargs)  # validates the settings; never stepped
        for name in _SHARED:
            setattr(self, name, getattr(single, name))
        self.dtype, self.device = dtype, backbone.device
        self.render_mode = None
        super().__init__(n_envs, single.observation_space, single.action_space)
        self._rngs = [np.random.default_rng() for _ in range(n_envs)]  # one example stream per row
        self._actions: np.ndarray | None = None

    # ---- VecEnv API ----------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        """Start B new episodes (rows with a pending seed restart their example stream); (B, max_tokens, F)."""
        for i, seed in enumerate(self._seeds):
            if seed is not None:
                self._rngs[i] = np.random.default_rng([seed, 7])
        self._reset_seeds()
        self._reset_options()
        return self._start()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        assert self._actions is not None, "step_wait() called without step_async()"
        actions = torch.as_tensor(np.asarray(self._actions), dtype=torch.long, device=self.device)
        self._actions = None
        expected = (self.num_envs, self.max_tokens)
        assert tuple(actions.shape) == expected, f"actions have shape {tuple(actions.shape)}, expected {expected}"
        state, ctx = self.state, self._ctx
        actions = actions[:, : state.alive.shape[1]]
        if self.budget is not None:
            actions = enforce_budget(actions, ctx)
        n_tail = (self.batch.lengths - self.batch.context_len).double()
        self._extra_flops = self._extra_flops + feature_flops(self.arch, state.n_alive.double(), n_tail, self.features)
        layer = self.decision_layers[self._step]
        self._step += 1
        done = self._step == len(self.decision_layers)
        stop = self.backbone.n_layers if done else self.decision_layers[self._step]
        state = apply_actions(state, actions, causal=self.backbone.causal, match=merge_match(ctx, self.features),
                              dst_allowed=ctx.context)
        self.state = self._advance(state, layer, stop)
        if not done:
            self._ctx = self._context()
            infos = [{"TimeLimit.truncated": False} for _ in range(self.num_envs)]
            return self._observation(), np.zeros(self.num_envs, dtype=np.float32), np.zeros(self.num_envs, dtype=bool), infos
        rewards, infos = self._finish()
        return self._start(), rewards, np.ones(self.num_envs, dtype=bool), infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        value = getattr(self, attr_name)  # AttributeError when missing, as VecEnv.has_attr expects
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        if len(list(self._get_indices(indices))) != self.num_envs:
            raise NotImplementedError("rows share their settings: set_attr applies to all of them (indices=None)")
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        """Call a shared method once; its result is returned for every requested row."""
        result = getattr(self, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    # ---- internals -----------------------------------------------------------------------------
    def _autocast(self):
        amp = AUTOCAST_DTYPES[self.dtype]
        return contextlib.nullcontext() if amp is None else torch.autocast(device_type=self.device.type, dtype=amp)

    def _start(self) -> np.ndarray:
        """Sample one example per row, embed the padded batch and run it up to the first decision layer."""
        examples = [self.task.sample(rng) for rng in self._rngs]
        longest = max(len(e.input_ids) for e in examples)
        if longest > self.max_tokens:
            raise ValueError(f"example of {longest} tokens exceeds max_tokens={self.max_tokens}")
        self.batch = collate(examples, PAD_ID).to(self.device)
        self._counts: list[torch.Tensor | None] = [None] * self.backbone.n_layers  # (B,) tokens entering each layer
        self._extra_flops = torch.zeros(self.num_envs, dtype=torch.float64, device=self.device)
        self._step = 0
        b = self.batch
        with self._autocast():
            state = self.backbone.embed(b.input_ids, b.attention_mask, protected=b.protected)
        self.state = self._advance(state, 0, self.decision_layers[0])
        self._ctx = self._context()
        return self._observation()

    def _advance(self, state: TokenState, start: int, stop: int) -> TokenState:
        def count(i, s):
            self._counts[i] = s.n_alive

        with self._autocast():  # only the backbone's own layers run in reduced precision
            return self.backbone.run_layers(state, start, stop, on_layer=count)

    def _context(self):
        b = self.batch
        return decision_context(self.backbone, self.state, self.decision_layers, self._step, b.lengths, self.budget,
                                b.relevant, b.context_len, self.query_aware)

    def _observation(self) -> np.ndarray:
        return padded_features(self._ctx, self.features, self.batch.lengths, self.max_tokens).cpu().numpy()

    def _finish(self) -> tuple[np.ndarray, list[dict]]:
        """(B,) float32 rewards and per-row infos (score, compute fraction, tokens per layer, kept ratio)."""
        b = self.batch
        with self._autocast():
            score = episode_score(self.backbone, b, self.state, self.score).double()
        counts = torch.stack(self._counts, dim=1)  # (B, L) long
        frac = compute_fraction(self.arch, list(counts.double().T), b.lengths.double(), b.n_answer.double(),
                                self._extra_flops)
        reward = score - self.compute_weight * frac
        kept = counts[:, -1].double() / b.lengths.double()
        terminal = np.zeros(self.observation_space.shape, dtype=np.float32)  # what the single env returns at the end
        infos = [
            {"score": s, "compute_fraction": f, "tokens_per_layer": c, "kept_ratio": k,
             "TimeLimit.truncated": False, "terminal_observation": terminal.copy()}
            for s, f, c, k in zip(score.tolist(), frac.tolist(), counts.tolist(), kept.tolist())
        ]
        return reward.float().cpu().numpy(), infos
