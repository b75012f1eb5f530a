"""PPO training of a per-token reduction policy: run folders, imitation warm start, checkpoints, resume.

A run folder ``runs/<task>__<name>__<seed>__<time>/`` holds ``config.yaml``, ``command.txt``,
``meta.json`` (what export needs), ``tb/`` (TensorBoard), ``checkpoints/`` and ``final_model.zip``.
It is created only after the config, the model, the task and PPO are built, and removed again if
training stops before its first checkpoint (nothing there to resume). A seed fixes the result on one
machine: the same config trains the same weights (tests/test_training.py checks it bit for bit).

Launched as several processes (``accelerate launch --multi_gpu --num_processes N -m rltr train ...``),
each runs its own batched env (seed + rank) and the policy's gradients are averaged across processes
(:mod:`rltr.core.distributed`); only the main process writes the run folder, which then also holds
``distributed.json`` (processes, parameter states checked identical across them).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from tqdm.auto import tqdm

from rltr.config import ConfigError, TrainConfig, from_dict
from rltr.core import distributed
from rltr.core.features import FeatureSpec
from rltr.envs import BatchedTokenReductionEnv, EpisodeEngine, TokenReductionEnv, make_batched_env, make_env, resolve_device
from rltr.policies.network import build_actor
from rltr.reducers import get_reducer
from rltr.runs.outputs import check_writable_folder, make_new_folder
from rltr.tasks import task_slug
from rltr.teachers import parse_teacher
from rltr.training.checkpoints import (
    CheckpointEvery,
    ContinueTensorBoard,
    check_resumable,
    checkpoints,
    latest_checkpoint,
    save_atomically,
)
from rltr.training.distill import has_no_spans, teacher_demonstrations
from rltr.training.imitation import behaviour_clone, collect_demonstrations
from rltr.training.sb3_policy import TokenPolicy
from rltr.training.teacher_credit import TeacherCredit

_log = logging.getLogger(__name__)

__all__ = ["latest_checkpoint", "load_run_config", "make_vec_env", "train"]


def policy_flops(cfg: TrainConfig, n_features: int):
    """The policy network's own cost of one decision on (B,) tokens, charged in the env's reward as a
    router's is at inference (one formula: the actor's ``flops``)."""
    return build_actor(n_features, cfg.policy.spec()).flops


def make_vec_env(cfg: TrainConfig) -> VecEnv:
    """``cfg.n_envs`` envs sharing one frozen backbone, each seeded differently: by default one
    :class:`~rltr.envs.BatchedTokenReductionEnv` (batched forwards), else (``env.batched: false``) a
    ``DummyVecEnv`` of single envs. Both give the same episodes for the same seed."""
    n_features = FeatureSpec.named(cfg.env.features, n_hidden_proj=cfg.env.n_hidden_proj, projection=cfg.env.projection).n_features
    cost = policy_flops(cfg, n_features)
    envs: VecEnv
    if cfg.env.batched:
        envs = make_batched_env(cfg.env, n_envs=cfg.n_envs, policy_flops=cost)
    else:
        envs = DummyVecEnv([lambda: make_env(cfg.env, policy_flops=cost) for _ in range(cfg.n_envs)])
    envs.seed(distributed.rank_seed(cfg.seed))  # several processes: each its own episodes (rank 0: cfg.seed)
    return envs


def engine_of(vec: VecEnv) -> EpisodeEngine:
    """The episode engine behind a vec env made by :func:`make_vec_env` (the first row's for single envs)."""
    env = vec.envs[0] if isinstance(vec, DummyVecEnv) else vec
    if not isinstance(env, TokenReductionEnv | BatchedTokenReductionEnv):
        raise TypeError(f"engine_of takes a vec env made by make_vec_env, got {type(vec).__name__}")
    return env.engine


class EpisodeStats(BaseCallback):
    """Logs mean score, compute fraction and kept ratio of finished episodes; drives a tqdm bar."""

    def __init__(self, total: int, progress: bool = True):
        super().__init__()
        self.total, self.progress = total, progress
        self.recent: list[dict] = []

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, initial=self.num_timesteps, desc="ppo", disable=not self.progress, unit="step")

    def _on_step(self) -> bool:
        for info, done in zip(self.locals["infos"], self.locals["dones"]):
            if done and "score" in info:
                self.recent = (self.recent + [info])[-200:]
        self.bar.update(self.training_env.num_envs)
        if self.recent and self.n_calls % 20 == 0:
            s = {k: float(np.mean([i[k] for i in self.recent])) for k in ("score", "compute_fraction", "kept_ratio")}
            for k, v in s.items():
                self.logger.record(f"rollout/{k}", v)
            self.bar.set_postfix(score=f"{s['score']:.3f}", compute=f"{s['compute_fraction']:.3f}")
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def load_run_config(run_dir: Path) -> TrainConfig:
    cfg_file = Path(run_dir) / "config.yaml"
    if not cfg_file.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run folder (no config.yaml)")
    return from_dict(TrainConfig, yaml.safe_load(cfg_file.read_text()))


@contextlib.contextmanager
def _removed_if_nothing_saved(run_dir: Path, new: bool):
    """A new run that fails before its first checkpoint leaves nothing to resume: remove its folder."""
    try:
        yield
    except BaseException:
        if new and not checkpoints(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
            _log.warning(f"training stopped before its first checkpoint; removed {run_dir}")
        elif new:
            _log.warning(f"training stopped; continue it with: rltr train --resume {run_dir}")
        raise


def _new_run(cfg: TrainConfig) -> Path:
    """Where a new run goes; the folder is created only once config, model, task and PPO are built."""
    if cfg.imitation.enabled:
        try:  # a bad name fails now, not after the folder exists
            get_reducer(cfg.imitation.reducer)
        except ValueError as e:
            raise ConfigError(f"imitation.reducer: {e}") from None
    check_writable_folder(cfg.runs_dir, "runs_dir")  # a file or a read-only folder fails now, not after the model loads
    return Path(cfg.runs_dir) / f"{task_slug(cfg.env.task)}__{cfg.name}__{cfg.seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def _resume_point(run_dir: Path) -> tuple[TrainConfig, Path]:
    """A run's own config and its newest readable checkpoint."""
    cfg = load_run_config(run_dir)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise ConfigError(f"run {str(run_dir)!r} has no readable checkpoint to resume from")
    check_resumable(ckpt)  # SB3's loader unpickles it: only what rltr writes
    _log.info(f"resuming {run_dir} from {ckpt.name}")
    return cfg, ckpt


def _start_run_dir(run_dir: Path, cfg: TrainConfig, command: str) -> Path:
    """Create the run folder (``<name>-2``, ... if a run started in the same second took the name); return it."""
    run_dir = make_new_folder(run_dir)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    (run_dir / "command.txt").write_text(command + "\n")
    return run_dir


def train(cfg: TrainConfig | None, command: str = "", resume: Path | None = None, progress: bool = True) -> Path:
    """Train (or, with ``resume``, continue a run with its own config) and return the run folder."""
    if resume is not None:
        run_dir = Path(resume)
        cfg, ckpt = _resume_point(run_dir)
    elif cfg is None:
        raise ValueError("train needs a config, or resume= a run folder to continue with its own config")
    else:
        run_dir = _new_run(cfg)
    main = _start_processes(cfg)
    run_dir = distributed.broadcast(run_dir)  # rank 0's name: it holds the start time
    torch.manual_seed(cfg.seed)
    vec = make_vec_env(cfg)  # loads the model and the task: bad names fail here, before any folder exists
    engine = engine_of(vec)
    if cfg.imitation.teacher_credit_weight > 0:
        vec = _with_teacher_credit(cfg, vec, engine, run_dir)
    device = resolve_device(cfg.env.device)  # PPO runs where the backbone runs
    tb = str(run_dir / "tb") if main else None
    progress = progress and main
    if resume is not None:
        # runs saved before the package moved into layer folders pickled the policy class as
        # rltr.training.sb3_policy.TokenPolicy: map it to today's class
        model = PPO.load(ckpt, env=vec, device=device, tensorboard_log=tb, custom_objects={"policy_class": TokenPolicy})
    else:
        ppo_kwargs = {"n_steps": 128, "batch_size": 64, "n_epochs": 4, "gamma": 1.0, "learning_rate": 3e-4, **cfg.ppo}
        policy_kwargs = {"hidden": cfg.policy.hidden, "network": cfg.policy.spec()}
        model = PPO(
            TokenPolicy, vec, policy_kwargs=policy_kwargs, seed=cfg.seed, device=device, tensorboard_log=tb, verbose=0, **ppo_kwargs
        )
        if main:
            run_dir = _start_run_dir(run_dir, cfg, command)
            model.tensorboard_log = str(run_dir / "tb")  # the name may have gained a suffix
    distributed.average_gradients(model.policy)  # several processes: rank 0's weights, averaged gradients
    with _removed_if_nothing_saved(run_dir, new=resume is None and main):
        if main:
            _write_meta(run_dir, cfg, engine)
        if resume is None and cfg.imitation.enabled:
            im = cfg.imitation
            if _teacher_default(cfg, engine):
                obs, acts, teacher = teacher_demonstrations(cfg, engine, run_dir if main else None, progress)
                if isinstance(model.env, TeacherCredit):
                    model.env.teacher = teacher
            else:
                obs, acts = collect_demonstrations(
                    engine, im.reducer, im.budget, im.n_episodes, seed=distributed.rank_seed(cfg.seed), progress=progress
                )
            policy = model.policy
            assert isinstance(policy, TokenPolicy), "PPO is built with policy TokenPolicy"
            stats = behaviour_clone(policy.actor, obs, acts, im.epochs, im.lr, im.batch_size, cfg.seed, progress, balanced=im.balanced)
            if main:
                (run_dir / "imitation.json").write_text(json.dumps(stats, indent=2))
        remaining = cfg.total_timesteps - model.num_timesteps
        callbacks = [ContinueTensorBoard(), EpisodeStats(cfg.total_timesteps, progress)]
        if main:
            callbacks.insert(0, CheckpointEvery(run_dir / "checkpoints", cfg.checkpoint_every))
        sync = distributed.check_sync_callback() if distributed.world_size() > 1 else None
        if sync is not None:
            callbacks.append(sync)
        if remaining > 0:
            model.learn(remaining, callback=CallbackList(callbacks), reset_num_timesteps=resume is None, tb_log_name="ppo")
        if main:
            save_atomically(model, run_dir / "final_model.zip")
            if sync is not None:
                (run_dir / "distributed.json").write_text(json.dumps(sync.report, indent=2))
    return run_dir


def _teacher_default(cfg: TrainConfig, engine: EpisodeEngine) -> bool:
    """Whether imitation distils a teacher: when one is configured, or (then ``auto``, said on stderr) when
    the config imitates the oracle and the training data has no relevance spans for it to read."""
    reads_labels = get_reducer(cfg.imitation.reducer).reads_labels
    if cfg.imitation.teacher is None and reads_labels and has_no_spans(engine.task, cfg.seed):
        _log.warning(f"the training data has no relevance spans; imitation.reducer {cfg.imitation.reducer} becomes imitation.teacher auto")
        cfg.imitation.teacher = "auto"
    return cfg.imitation.teacher is not None


def _with_teacher_credit(cfg: TrainConfig, vec: VecEnv, engine: EpisodeEngine, run_dir: Path) -> TeacherCredit:
    """The env with the teacher's dense credit in PPO's reward (batched env only). Its teacher: the one
    distillation chooses, a resumed run's (teacher.json), or the configured one (attention@0 when none)."""
    if isinstance(vec, DummyVecEnv):
        raise ConfigError("imitation.teacher_credit_weight needs env.batched: true")
    im, known = cfg.imitation, run_dir / "teacher.json"
    if known.is_file():
        teacher = parse_teacher(json.loads(known.read_text())["teacher"])
    elif im.teacher not in (None, "auto"):
        teacher = parse_teacher(im.teacher, im.teacher_layers)
    else:
        teacher = parse_teacher("attention@0")  # replaced by distillation's choice when imitation runs
    return TeacherCredit(vec, engine, im.teacher_credit_weight, teacher, im.teacher_top_k)


def _start_processes(cfg: TrainConfig) -> bool:
    """Join the other processes when launched as several (no-op alone); True on the main process."""
    distributed.setup(cfg.env.device)
    if distributed.world_size() > 1 and cfg.ppo.get("target_kl") is not None:
        raise ConfigError(
            "ppo.target_kl stops PPO's epochs early on one process and not another; leave it unset when training with several processes"
        )
    return distributed.is_main()


def _write_meta(run_dir: Path, cfg: TrainConfig, engine: EpisodeEngine) -> None:
    bb = engine.backbone
    meta = {
        "backbone": {"family": bb.family, "config_hash": bb.config_hash, "name": cfg.env.model},
        "features": engine.features.to_dict(),
        "decision_layers": engine.decision_layers,
        "query_aware": cfg.env.query_aware,
        "hidden": cfg.policy.hidden,
        "network": cfg.policy.spec(),
        "task": cfg.env.task,
        "compute_weight": cfg.env.compute_weight,
    }
    (run_dir / "meta.json").write_text(json.dumps(meta, indent=2))
