"""Checkpoints of a run: atomic saves, the newest readable checkpoint, and one TensorBoard step axis on resume.

A run folder's ``checkpoints/ppo_<steps>_steps.zip`` are SB3 zip files. Each is written to a temporary
name and renamed into place (``os.replace``), so a process killed mid-save leaves at worst a stray
``*.tmp`` file, never a truncated checkpoint under a checkpoint's name. A checkpoint damaged anyway
(a copy cut short, a full disk) is skipped with a warning naming it, in favour of the newest readable one.
"""

from __future__ import annotations

import os
import re
import sys
import zipfile
from pathlib import Path

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import TensorBoardOutputFormat

CKPT_PREFIX = "ppo"
SB3_MEMBERS = ("data", "policy.pth")  # what every SB3 model zip holds and PPO.load reads


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
    found = [(int(m.group(1)), p) for p in (Path(run_dir) / "checkpoints").glob(f"{CKPT_PREFIX}_*_steps.zip")
             if (m := re.fullmatch(rf"{CKPT_PREFIX}_(\d+)_steps\.zip", p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def unreadable_reason(path: Path) -> str | None:
    """Why ``path`` is not a whole SB3 model zip (a bad CRC, a missing member, no zip at all); None if it is."""
    try:
        with zipfile.ZipFile(path) as z:
            missing = [m for m in SB3_MEMBERS if m not in z.namelist()]
            if missing:
                return f"no {missing[0]!r} inside"
            bad = z.testzip()
            return None if bad is None else f"CRC mismatch in {bad!r}"
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f"{type(e).__name__}: {e}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint that reads back whole; each newer, unreadable one is skipped with a warning."""
    for path in checkpoints(run_dir):
        reason = unreadable_reason(path)
        if reason is None:
            return path
        print(f"rltr: warning: skipping unreadable checkpoint {path} ({reason})", file=sys.stderr)
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
                fmt.writer.file_writer.add_event(Event(step=step + 1, session_log=SessionLog(status=SessionLog.START)))
                fmt.writer.flush()

    def _on_step(self) -> bool:
        return True
