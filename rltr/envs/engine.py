"""The episode engine: B token-reduction episodes in lockstep, torch end to end.

An episode is one task example through the frozen backbone; a step is one decision layer. Every row
of a batch has the same decision layers, so one step is one batched forward of the layers up to the
next decision for all B rows. The Gymnasium env is the engine's B = 1 view, the SB3 VecEnv its B = n
view, and imitation collects expert actions with it: reward, budget rule and compute fraction exist
once, here and in :mod:`rltr.core.decisions`.

Shapes: observations (B, max_tokens, F) float32; actions (B, max_tokens) long (``Action`` per slot,
ignored on invalid slots); results per row (B,).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rltr.backbones import Backbone
from rltr.config import AUTOCAST_DTYPES
from rltr.core.compute import ArchSpec
from rltr.core.decider import RunTrace, execute
from rltr.core.decisions import Decision, check_budget, decision_context, resolve_actions
from rltr.core.features import FeatureSpec, merge_match, token_features
from rltr.core.ops import TokenState
from rltr.envs.tail_phase import TailPhase
from rltr.inference.cache import writing_cache
from rltr.tasks import Task
from rltr.tasks.scoring import NEEDS_REFERENCE, episode_score, score_function

OBS_BOUND = 1e4  # features are clipped to +-OBS_BOUND (they are O(1) to O(N) by construction)


@dataclass
class EpisodeResult:
    """Per-row outcome of finished episodes, all (B,) tensors (``tokens_per_layer`` (B, L))."""

    reward: torch.Tensor
    score: torch.Tensor
    compute_fraction: torch.Tensor
    tokens_per_layer: torch.Tensor
    kept_ratio: torch.Tensor

    def infos(self) -> list[dict]:
        """One Gymnasium-style info dict per row: the reward's parts and the tokens per layer."""
        return [
            {"score": s, "compute_fraction": f, "tokens_per_layer": c, "kept_ratio": k}
            for s, f, c, k in zip(
                self.score.tolist(), self.compute_fraction.tolist(), self.tokens_per_layer.tolist(), self.kept_ratio.tolist()
            )
        ]


class EpisodeEngine:
    """B episodes in lockstep: :meth:`start` a batch of examples, :meth:`observation`, :meth:`step` once
    per decision layer with the policy's actions, then :meth:`result`.

    ``settings`` is an :class:`rltr.config.EnvConfig` (validated there); the engine reads its episode
    fields (decision layers, budget, mode, score, compute weight, features, max_tokens, dtype); ``max_tokens:
    auto`` becomes the task's longest example here (``settings.max_tokens`` is then that number).
    ``policy_flops(n_tokens)`` is the policy network's own cost of one decision on (B,) tokens, charged
    with the features' cost (None: the network is not charged).
    """

    features: FeatureSpec  # set by configure()

    def __init__(self, backbone: Backbone, task: Task, settings, policy_flops: Callable | None = None):
        self.backbone, self.task, self.policy_flops = backbone, task, policy_flops
        task.prepare(backbone)  # ValueError when the task's inputs do not fit the model
        self.arch = ArchSpec.from_config(backbone.config)
        self.device = backbone.device
        self.configure(settings)

    def configure(self, settings) -> None:
        """Use ``settings`` (an EnvConfig) from the next step on; the observation layout may not change."""
        bad = [i for i in settings.decision_layers if not 0 <= i < self.backbone.n_layers]
        if bad:
            raise ValueError(f"env.decision_layers {list(settings.decision_layers)} must lie within 0..{self.backbone.n_layers - 1}")
        score_function(settings.score, self.task.kind)
        if settings.dtype != "float32" and self.device.type != "cuda":
            raise ValueError(f"env.dtype={settings.dtype!r} (autocast) needs a CUDA backbone; this one is on {self.device}")
        if settings.max_tokens == "auto":  # the task's longest example (a dataset's exactly; a generator's from samples)
            settings = dataclasses.replace(settings, max_tokens=self.task.max_length())
        features = FeatureSpec.named(settings.features, n_hidden_proj=settings.n_hidden_proj, projection=settings.projection)
        old = getattr(self, "settings", None)
        if old is not None and (features != self.features or settings.max_tokens != old.max_tokens):
            raise ValueError("features, n_hidden_proj and max_tokens fix the observation space: make a new env to change them")
        self.settings, self.features, self.n_features = settings, features, features.n_features
        self.decision_layers = list(settings.decision_layers)
        self.budget = check_budget(settings.budget)

    # ---- one episode per row --------------------------------------------------------------------
    def start(self, examples: list) -> None:
        """Embed the padded batch of ``examples`` (the task collates them) and run it up to the first decision layer."""
        self.batch = self.task.collate(examples).to(self.device)
        with self._autocast():
            state = self.batch.embed(self.backbone)
        n = state.n_alive  # (B,) tokens per row before any reduction
        if int(n.max()) > self.settings.max_tokens:
            raise ValueError(f"example of {int(n.max())} tokens exceeds env.max_tokens={self.settings.max_tokens}")
        self._step = 0
        self._counts: dict[int, torch.Tensor] = {}
        self.trace = RunTrace(n, torch.empty(0), torch.zeros(len(examples), dtype=torch.float64, device=self.device))
        self._tail = TailPhase.start(self.backbone, self.batch, state) if self._two_phase() else None
        if self._tail is not None:  # the context runs alone (the question does not exist yet); the tail at the end
            state = self._tail.context
        self._n_decide = state.n_alive  # what budgets count: every token, or (two-phase) the context's
        self.state = self._advance(state, 0, self.decision_layers[0])
        if self.settings.score in NEEDS_REFERENCE and self.batch.kind == "tokens":  # what token fidelity compares with
            self.batch.reference = self._reference()
        self.ctx = self._context()

    @property
    def done(self) -> bool:
        return self._step == len(self.decision_layers)

    def observation(self) -> torch.Tensor:
        """(B, max_tokens, F) float32 features of the current decision (clipped; zero past the live slots)."""
        feats = token_features(self.ctx, self.features).clamp(-OBS_BOUND, OBS_BOUND)  # (B, N, F)
        assert feats.shape[1] <= self.settings.max_tokens, f"{feats.shape[1]} slots exceed max_tokens={self.settings.max_tokens}"
        return torch.nn.functional.pad(feats, (0, 0, 0, self.settings.max_tokens - feats.shape[1]))

    def step(self, actions: torch.Tensor) -> bool:
        """Apply (B, max_tokens) actions at the current decision layer under the one budget rule, run the
        layers up to the next decision; True when the episodes have ended."""
        assert not self.done, "step() after the last decision: start() a new batch"
        expected = (len(self.trace.n_original), self.settings.max_tokens)
        assert tuple(actions.shape) == expected, f"actions have shape {tuple(actions.shape)}, expected {expected}"
        ctx = self.ctx
        if self.policy_flops is not None:
            ctx.charge(self.policy_flops(ctx.observers().sum(1).double()))
        proposed = actions.to(self.device, torch.long)[:, : ctx.state.alive.shape[1]]
        state, slot_map = execute(ctx, Decision(proposed, match=merge_match(ctx, self.features)))
        self.trace.decision_flops = self.trace.decision_flops + ctx.flops
        self.trace.slot_maps.append(slot_map)
        layer = self.decision_layers[self._step]
        self._step += 1
        stop = self.backbone.n_layers if self.done else self.decision_layers[self._step]
        self.state = self._advance(state, layer, stop)
        if not self.done:
            self.ctx = self._context()
        return self.done

    def result(self) -> EpisodeResult:
        """Score, compute fraction and reward of every row's finished episode."""
        assert self.done, "result() before the episodes ended"
        b = self.batch
        with self._autocast():
            if self._tail is None:
                score = episode_score(self.backbone, b, self.state, self.settings.score).double()
            else:
                output = self._tail.finish(self.backbone, b, self.state, self.trace, self.decision_layers)
                score = score_function(self.settings.score, b.kind)(output, b).double()
        frac = self.trace.compute_fraction(self.arch, b.n_head_tokens.double())
        reward = score - self.settings.compute_weight * frac
        return EpisodeResult(reward, score, frac, self.trace.tokens_per_layer, self.trace.kept_ratio)

    def expert_actions(self, reducer, budget: float | None = None) -> torch.Tensor:
        """(B, max_tokens) long: what ``reducer`` would do now at ``budget``, on the context the policy sees
        (its own context: nothing it computes is charged to the episode)."""
        ctx = self._context(budget=check_budget(budget), charge=False)
        actions = resolve_actions(ctx, reducer.decide(ctx).actions)
        out = torch.zeros(actions.shape[0], self.settings.max_tokens, dtype=torch.long, device=actions.device)
        out[:, : actions.shape[1]] = actions
        return out

    # ---- internals ------------------------------------------------------------------------------
    def _autocast(self):
        amp = AUTOCAST_DTYPES[self.settings.dtype]
        return contextlib.nullcontext() if amp is None else torch.autocast(device_type=self.device.type, dtype=amp)

    def _two_phase(self) -> bool:
        """Query-agnostic on a causal model: the context is reduced alone, the tail runs on its cache at the end
        (:mod:`rltr.inference.two_phase`), so no question token reads a context token the policy removed."""
        return not self.settings.query_aware and self.backbone.causal and self.batch.kind == "tokens"

    def _reference(self) -> torch.Tensor:
        """The full model's head output (token tasks: (B, N, V) logits at the answer positions), what the
        fidelity scores compare with (not charged: it is the reward's yardstick, not the policy's work): the
        unreduced state at the first decision run through the remaining layers, or, two-phase, the embedded
        batch with its tail through every layer (the episode's state holds the context alone)."""
        if self._tail is None:
            start, state = self.decision_layers[0], self.state
        else:
            start, state = 0, self._tail.full
        with self._autocast():
            full = self.backbone.run_layers(state, start, self.backbone.n_layers)
            return self.batch.head_output(self.backbone, full)

    def _advance(self, state: TokenState, start: int, stop: int) -> TokenState:
        tail = self._tail
        n_tail = 0 if tail is None else tail.n_tail  # the tail runs through every layer too (at the end)

        def count(i, s):
            self._counts[i] = s.n_alive + n_tail
            if tail is not None:
                tail.entering.append(s)

        with self._autocast(), writing_cache(self.backbone, None if tail is None else tail.cache):
            state = self.backbone.run_layers(state, start, stop, on_layer=count)  # only the backbone's layers in reduced precision
        if stop == self.backbone.n_layers:
            self.trace.tokens_per_layer = torch.stack([self._counts[i] for i in range(stop)], dim=1)
        return state

    def _context(self, budget: float | None | str = "env", charge: bool = True):
        b = self.batch
        if isinstance(budget, str):
            if budget != "env":
                raise ValueError(f"budget must be a fraction, None or 'env' (the env's own), got {budget!r}")
            budget = self.budget
        return decision_context(
            self.backbone,
            self.state,
            self.decision_layers,
            self._step,
            self._n_decide,
            budget,
            b.relevant_for(self.settings.query_aware),
            b.context_len,
            self.settings.query_aware,
            arch=self.arch if charge else None,
            answer_start=b.answer_start,
        )
