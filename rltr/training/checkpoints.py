"""Checkpoints of a run: atomic saves, the newest readable checkpoint, and one TensorBoard step axis on resume.

A run folder's ``checkpoints/ppo_<steps>_steps.zip`` are SB3 zip files. Each is written to a temporary
name and renamed into place (``os.replace``), so a process killed mid-save leaves at worst a stray
``*.tmp`` file, never a truncated checkpoint under a checkpoint's name. A checkpoint damaged anyway
(a copy cut short, a full disk, a ``policy.pth`` that is not a tensor file) is skipped with a warning
naming it, in favour of the newest readable one.

Reading a checkpoint here unpickles nothing: the weights come from ``policy.pth`` through
``torch.load(weights_only=True)`` and the step count from the ``data`` entry read as plain JSON (its
cloudpickled values are left alone). Only resuming needs SB3's own loader, which does unpickle them: a
run folder is trusted input, like any pickle, and a zip holding entries or keys rltr never writes is refused.
"""

from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from pathlib import Path

import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import TensorBoardOutputFormat

_log = logging.getLogger(__name__)

CKPT_PREFIX = "ppo"
SB3_MEMBERS = ("data", "policy.pth")  # what every SB3 model zip holds and PPO.load reads
# every entry an SB3 PPO zip written by rltr holds, and every key of its ``data`` entry
SB3_ENTRIES = frozenset(
    {"data", "pytorch_variables.pth", "policy.pth", "policy.optimizer.pth", "_stable_baselines3_version", "system_info.txt"}
)
PPO_DATA_KEYS = frozenset(
    {
        "_current_progress_remaining",
        "_episode_num",
        "_last_episode_starts",
        "_last_obs",
        "_last_original_obs",
        "_n_updates",
        "_num_timesteps_at_start",
        "_stats_window_size",
        "_total_timesteps",
        "action_noise",
        "action_space",
        "batch_size",
        "clip_range",
        "clip_range_vf",
        "ent_coef",
        "ep_info_buffer",
        "ep_success_buffer",
        "gae_lambda",
        "gamma",
        "learning_rate",
        "lr_schedule",
        "max_grad_norm",
        "n_envs",
        "n_epochs",
        "n_steps",
        "normalize_advantage",
        "num_timesteps",
        "observation_space",
        "policy_class",
        "policy_kwargs",
        "rollout_buffer_class",
        "rollout_buffer_kwargs",
        "sde_sample_freq",
        "seed",
        "start_time",
        "target_kl",
        "tensorboard_log",
        "use_sde",
        "verbose",
        "vf_coef",
    }
)


def save_atomically(model, path: Path) -> Path:
    """``model.save`` to ``path`` via ``path.tmp`` + ``os.replace``: the final name only ever holds a whole file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        model.save(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoint files, newest (most steps) first."""
    found = [
        (int(m.group(1)), p)
        for p in (Path(run_dir) / "checkpoints").glob(f"{CKPT_PREFIX}_*_steps.zip")
        if (m := re.fullmatch(rf"{CKPT_PREFIX}_(\d+)_steps\.zip", p.name))
    ]
    return [p for _, p in sorted(found, reverse=True)]


def unreadable_reason(path: Path) -> str | None:
    """Why ``path`` is not a whole SB3 model zip (a bad CRC, a missing member, no zip at all, a ``policy.pth``
    that is no tensor file, a ``data`` entry that is no JSON); None if it is. Unpickles nothing."""
    try:
        with zipfile.ZipFile(path) as z:
            missing = [m for m in SB3_MEMBERS if m not in z.namelist()]
            if missing:
                return f"no {missing[0]!r} inside"
            bad = z.testzip()
            if bad is not None:
                return f"CRC mismatch in {bad!r}"
        read_policy_state(path)
        read_data(path)
        return None
    except Exception as e:  # zipfile, torch's weights-only unpickler and json each raise their own types
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def read_policy_state(path: Path) -> dict[str, torch.Tensor]:
    """The policy's state dict from the zip's ``policy.pth``, with ``torch.load(weights_only=True)``: tensors only."""
    with zipfile.ZipFile(path) as z, z.open("policy.pth") as f:
        return torch.load(f, map_location="cpu", weights_only=True)


def read_data(path: Path) -> dict:
    """The zip's ``data`` entry as plain JSON (SB3's cloudpickled values stay strings: nothing runs)."""
    with zipfile.ZipFile(path) as z:
        data = json.loads(z.read("data"))
    if not isinstance(data, dict):
        raise ValueError(f"'data' holds {type(data).__name__}, not a mapping")
    return data


def foreign_content(path: Path) -> list[str]:
    """Entries of the zip, and keys of its ``data``, that rltr never writes (a crafted file's payload)."""
    with zipfile.ZipFile(path) as z:
        names = sorted(set(z.namelist()) - SB3_ENTRIES)
    return names + [f"data[{k!r}]" for k in sorted(set(read_data(path)) - PPO_DATA_KEYS)]


def check_resumable(path: Path) -> Path:
    """``path`` if it holds only what rltr writes; resuming unpickles it with SB3's loader, so anything else
    is a ValueError naming it."""
    foreign = foreign_content(path)
    if foreign:
        raise ValueError(
            f"refusing to resume from {str(path)!r}: it holds {', '.join(foreign)}, which rltr never writes "
            "(a run folder is unpickled on resume: only resume runs you trust)"
        )
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint that reads back whole; each newer, unreadable one is skipped with a warning."""
    for path in checkpoints(run_dir):
        reason = unreadable_reason(path)
        if reason is None:
            return path
        _log.warning(f"skipping unreadable checkpoint {path} ({reason})")
    return None


class CheckpointEvery(BaseCallback):
    """Saves ``folder/ppo_<steps>_steps.zip`` (atomically) each time the step count passes a multiple of
    ``every``; a resumed run keeps to the same multiples."""

    def __init__(self, folder: Path, every: int):
        super().__init__()
        self.folder, self.every = Path(folder), every

    def _on_training_start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.n_saved = self.model.num_timesteps // self.every  # intervals already covered

    def _on_step(self) -> bool:
        if self.num_timesteps // self.every > self.n_saved:
            self.n_saved = self.num_timesteps // self.every
            save_atomically(self.model, self.folder / f"{CKPT_PREFIX}_{self.num_timesteps}_steps.zip")
        return True


class ContinueTensorBoard(BaseCallback):
    """Keeps one step axis in TensorBoard when a run resumes from a checkpoint.

    With ``reset_num_timesteps=False`` SB3 logs a resumed run into the run's own ``tb/ppo_1`` folder from
    the checkpoint's step on, but the interrupted run may have logged beyond that step. At the start of a
    resumed run this writes a session START event at (checkpoint step + 1): TensorBoard then discards
    the earlier events from that step on (its purge of orphaned steps after a restart), so every step
    shows once, from the run that the final model continues."""

    def _on_training_start(self) -> None:
        step = self.model.num_timesteps
        if step == 0:
            return  # a fresh run: nothing logged before it
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        for fmt in self.logger.output_formats:
            if isinstance(fmt, TensorBoardOutputFormat):
                file_writer = fmt.writer.file_writer
                assert file_writer is not None, "SummaryWriter opens its file writer in __init__"
                file_writer.add_event(Event(step=step + 1, session_log=SessionLog(status=SessionLog.START)))
                fmt.writer.flush()

    def _on_step(self) -> bool:
        return True
