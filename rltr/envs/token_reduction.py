"""``TokenReductionEnv``: one task example through a frozen backbone; one step per decision layer.

Observation: (max_tokens, F) float32 per-token features (:mod:`rltr.features`), zero rows past the
live tokens (column 0 = valid flag). Action: MultiDiscrete([3] * max_tokens), ``Action`` per slot
(ignored on invalid slots; protected and tail tokens are always kept). Reward, at the episode's end
only: ``score - compute_weight * compute_fraction``; ``info`` carries both parts and the tokens kept
per layer.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from rltr.backbones import Backbone
from rltr.compute import ArchSpec, compute_fraction
from rltr.features import FeatureSpec, feature_flops, merge_match, token_features
from rltr.ops import N_ACTIONS, Action, TokenState, apply_actions, keep_top_k, sanitize_actions
from rltr.reducers.base import DecisionContext, Reducer, check_budget, decision_context, target_counts
from rltr.tasks import Task, collate, exact_match
from rltr.tasks.vocab import PAD_ID

SCORES = ("accuracy", "loglik")
OBS_BOUND = 1e4  # features are clipped to +-OBS_BOUND (they are O(1) to O(N) by construction)


class TokenReductionEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(
        self,
        backbone: Backbone,
        task: Task,
        decision_layers: list[int] = (1,),
        compute_weight: float = 0.5,
        score: str = "accuracy",
        query_aware: bool = True,
        budget: float | None = None,
        max_tokens: int = 192,
        features: FeatureSpec | None = None,
        split: str = "train",
    ):
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        layers = sorted(set(decision_layers))
        if not layers or not all(0 <= i < backbone.n_layers for i in layers):
            raise ValueError(f"decision_layers {list(decision_layers)} must be non-empty and within 0..{backbone.n_layers - 1}")
        self.backbone, self.task, self.decision_layers = backbone, task, layers
        self.compute_weight, self.score, self.query_aware = float(compute_weight), score, query_aware
        self.budget, self.max_tokens, self.split = check_budget(budget), max_tokens, split
        self.features = features or FeatureSpec()
        self.arch = ArchSpec.from_config(backbone.config)  # (self.spec is gymnasium's EnvSpec)
        self.observation_space = spaces.Box(-OBS_BOUND, OBS_BOUND, shape=(max_tokens, self.features.n_features), dtype=np.float32)
        self.action_space = spaces.MultiDiscrete([N_ACTIONS] * max_tokens)
        self._rng = np.random.default_rng()

    # ---- gymnasium API ----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng([seed, 7])
        example = self.task.sample(self._rng)
        if len(example.input_ids) > self.max_tokens:
            raise ValueError(f"example of {len(example.input_ids)} tokens exceeds max_tokens={self.max_tokens}")
        self.batch = collate([example], PAD_ID).to(self.backbone.device)
        state = self.backbone.embed(self.batch.input_ids, self.batch.attention_mask, protected=self.batch.protected)
        self._counts = [0] * self.backbone.n_layers
        self._extra_flops = 0.0
        self._step = 0
        self.state = self._advance(state, 0, self.decision_layers[0])
        self._ctx = self._context()
        return self._observation(), {}

    def step(self, action):
        action = torch.as_tensor(np.asarray(action), dtype=torch.long, device=self.backbone.device)
        assert action.shape == (self.max_tokens,), f"action has shape {tuple(action.shape)}, expected ({self.max_tokens},)"
        state, ctx = self.state, self._ctx
        actions = action[: state.alive.shape[1]][None, :]
        if self.budget is not None:
            actions = enforce_budget(actions, ctx)
        n_tail = int(self.batch.lengths[0] - self.batch.context_len[0])
        self._extra_flops += float(feature_flops(self.arch, int(state.n_alive[0]), n_tail, self.features))
        state = apply_actions(state, actions, causal=self.backbone.causal, match=merge_match(ctx, self.features),
                              dst_allowed=ctx.context)
        layer = self.decision_layers[self._step]
        self._step += 1
        done = self._step == len(self.decision_layers)
        stop = self.backbone.n_layers if done else self.decision_layers[self._step]
        self.state = self._advance(state, layer, stop)
        if not done:
            self._ctx = self._context()
            return self._observation(), 0.0, False, False, {}
        score, frac = self._finish()
        reward = score - self.compute_weight * frac
        info = {"score": score, "compute_fraction": frac, "tokens_per_layer": list(self._counts),
                "kept_ratio": self._counts[-1] / int(self.batch.lengths[0])}
        return np.zeros(self.observation_space.shape, dtype=np.float32), float(reward), True, False, info

    # ---- expert actions (imitation) ----------------------------------------------------------
    def expert_action(self, reducer: Reducer, budget: float | None = None) -> np.ndarray:
        """(max_tokens,) actions ``reducer`` would take now at ``budget``, on the context the policy sees."""
        import dataclasses

        budget = check_budget(budget)
        n_keep = target_counts(self.batch.lengths, budget, self._step, len(self.decision_layers))
        d = reducer.decide(dataclasses.replace(self._ctx, n_keep=n_keep, budget=budget))
        out = np.zeros(self.max_tokens, dtype=np.int64)
        out[: d.actions.shape[1]] = d.actions[0].cpu().numpy()
        return out

    # ---- internals ---------------------------------------------------------------------------
    def _advance(self, state: TokenState, start: int, stop: int) -> TokenState:
        def count(i, s):
            self._counts[i] = int(s.n_alive[0])

        return self.backbone.run_layers(state, start, stop, on_layer=count)

    def _context(self) -> DecisionContext:
        b = self.batch
        return decision_context(self.backbone, self.state, self.decision_layers, self._step, b.lengths, self.budget,
                                b.relevant, b.context_len, self.query_aware)

    def _observation(self) -> np.ndarray:
        return padded_features(self._ctx, self.features, self.batch.lengths, self.max_tokens)[0].cpu().numpy()

    def _finish(self) -> tuple[float, float]:
        b = self.batch
        score = float(episode_score(self.backbone, b, self.state, self.score)[0])
        frac = compute_fraction(self.arch, self._counts, int(b.lengths[0]), int(b.n_answer[0]), self._extra_flops)
        return score, float(frac)


# ---- shared with the batched env (rltr.envs.batched): every function works on B rows at once ------------
def padded_features(ctx: DecisionContext, spec: FeatureSpec, n_original: torch.Tensor, max_tokens: int) -> torch.Tensor:
    """(B, max_tokens, F) float32 observations: token features clipped to +-OBS_BOUND, zero past the live slots."""
    feats = token_features(ctx, spec, n_original).clamp(-OBS_BOUND, OBS_BOUND)  # (B, N, F)
    assert feats.shape[1] <= max_tokens, f"{feats.shape[1]} token slots exceed max_tokens={max_tokens}"
    return torch.nn.functional.pad(feats, (0, 0, 0, max_tokens - feats.shape[1]))


def episode_score(backbone: Backbone, batch, state: TokenState, score: str) -> torch.Tensor:
    """(B,) float score of each row's answer from the final ``state``: exact match or answer likelihood."""
    logits = backbone.answer_logits(state, batch.answer_mask)
    return exact_match(logits, batch) if score == "accuracy" else _answer_loglik(logits, batch)


def _answer_loglik(logits: torch.Tensor, batch) -> torch.Tensor:
    """(B,) mean probability-space score in [0, 1]: exp(mean log p(answer token))."""
    logp = logits[:, :-1].float().log_softmax(-1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    mask = batch.answer_mask[:, :-1].float()
    return torch.exp((logp * mask).sum(1) / mask.sum(1))


def enforce_budget(actions: torch.Tensor, ctx: DecisionContext) -> torch.Tensor:
    """(B, N) actions; in rows keeping more than ``ctx.n_keep``, the policy's last-kept extras become DROP
    (never protected ones)."""
    actions = sanitize_actions(ctx.state, actions)
    kept = (actions == Action.KEEP) & ctx.state.alive
    over = kept.sum(1) > ctx.n_keep  # (B,)
    scores = kept.float() + ctx.state.positions.float() * 1e-6  # among kept, prefer later tokens
    limited = keep_top_k(scores, ctx.state, ctx.n_keep)
    demote = (actions == Action.KEEP) & (limited != Action.KEEP) & over[:, None]
    return torch.where(demote, torch.full_like(actions, Action.DROP), actions)
