"""Teacher credit inside RL: a dense reward term from a teacher (:mod:`rltr.teachers`), on top of PPO.

The episode's reward (score - compute_weight x compute) says only that *something* kept mattered; the
teacher says *which* tokens this example's answer needed. :class:`TeacherCredit` wraps the batched env
and adds ``teacher_credit_weight x`` (the fraction of the example's teacher top-k tokens that the last
decision keeps) to each finished episode's reward (``info["teacher_credit"]``). The teacher runs on
each new batch of examples, with its question and answer (training only; the policy never sees it).
"""

from __future__ import annotations

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs

from rltr.core.decisions import resolve_actions
from rltr.core.ops import Action
from rltr.teachers import Teacher


def top_k_mask(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(B, N) bool: each row's ``k`` (B,) best finite scores."""
    rank = torch.argsort(torch.argsort(scores, dim=1, descending=True, stable=True), dim=1)
    return torch.isfinite(scores) & (rank < k[:, None])


class TeacherCredit(VecEnvWrapper):
    """``venv`` (a batched env over ``engine``) with the teacher's credit added to finished episodes'
    rewards. ``teacher`` may be set later (after distillation chose it), before the first reset."""

    def __init__(self, venv, engine, weight: float, teacher: Teacher | None = None, top_k: int = 0):
        super().__init__(venv)
        self.engine, self.weight, self.teacher, self.top_k = engine, weight, teacher, top_k
        self.targets: torch.Tensor | None = None
        self.credit = torch.zeros(venv.num_envs)

    def _new_targets(self) -> None:
        assert self.teacher is not None, "TeacherCredit needs its teacher before the first reset"
        batch = self.engine.batch
        k = batch.n_answer if self.top_k == 0 else torch.full_like(batch.n_answer, self.top_k)
        self.targets = top_k_mask(self.teacher.scores(self.engine.backbone, batch).float(), k)  # (B, N_original)

    def reset(self) -> VecEnvObs:
        obs = self.venv.reset()
        self._new_targets()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        ctx = self.engine.ctx
        if ctx.step == ctx.n_steps - 1:  # the last decision: what it keeps survives to the answer
            st = ctx.state
            proposed = torch.as_tensor(np.asarray(actions), dtype=torch.long, device=st.alive.device)[:, : st.alive.shape[1]]
            kept = (resolve_actions(ctx, proposed) == Action.KEEP) & st.alive  # (B, N)
            assert self.targets is not None, "reset() computed this batch's teacher targets"
            hit = (self.targets.gather(1, st.positions.clamp_max(self.targets.shape[1] - 1)) & kept).sum(1)
            self.credit = (hit / self.targets.sum(1).clamp_min(1)).float().cpu()
        self.venv.step_async(actions)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        if dones.all():  # the batched env ends every row together and starts a new batch
            rewards = rewards + self.weight * self.credit.numpy()
            for info, c in zip(infos, self.credit.tolist()):
                info["teacher_credit"] = c
            self._new_targets()
        return obs, rewards.astype(np.float32), dones, infos
