"""Configuration of output-length training with trl's GRPO: one dataclass, YAML < ``--set key=value``.

The ``trl`` block is passed straight to ``trl.GRPOConfig`` (trl validates it) on top of
:data:`TRL_DEFAULTS`, the settings measured to work for a tiny model on a CPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from rltr.config import ConfigError, _f, from_dict, read_config_data

# Settings that worked for a tiny GPT-2 on this 2-core CPU; any of them can be overridden in the trl block.
TRL_DEFAULTS = {
    "learning_rate": 1e-4,
    "num_generations": 4,  # completions per prompt: GRPO's group, whose mean reward is the baseline
    "per_device_train_batch_size": 64,  # completions per step (16 prompts x 4)
    "max_steps": 150,
    "temperature": 1.0,
    "beta": 0.0,  # no KL term, no reference model
    "logging_steps": 10,
    "save_strategy": "no",
    "report_to": "none",
    "bf16": False,
    "gradient_checkpointing": False,
    "dataloader_num_workers": 0,
}

# Arguments transformers renamed (old -> new); the old name warns (FutureWarning) where the new one exists.
_RENAMED_TRAINING_ARGS = {"gradient_checkpointing": "activation_checkpointing"}


def renamed_trl_args(config_cls: type, kwargs: dict) -> dict:
    """``kwargs`` with each renamed training argument under the name ``config_cls`` (e.g. ``trl.GRPOConfig``)
    declares: the new name on transformers that has it, the old one before; a value given under the new name wins."""
    fields = getattr(config_cls, "__dataclass_fields__", {})
    out = dict(kwargs)
    for old, new in _RENAMED_TRAINING_ARGS.items():
        if new in fields and old in out:
            value = out.pop(old)
            out.setdefault(new, value)
    return out


@dataclass
class GRPOLengthConfig:
    name: str = _f("grpo_length", "run name (part of the run folder's name)")
    seed: int = _f(0, "seed of the prompts, the sampling and trl")
    model: str = _f("verbose", "generative model to fine-tune: built-in name (rltr zoo list) or a local HF folder")
    task: str = _f("chain", "generative task (rltr.tasks.TASKS with generative = True)")
    task_kwargs: dict = _f({}, "task keyword arguments on top of the model's own (its rltr_zoo.json)")
    length_weight: float = _f(0.02, "reward = task score - length_weight * generated tokens (>= 0)")
    n_prompts: int = _f(4096, "training prompts (split=train examples of the task)")
    max_new_tokens: int | None = _f(None, "completion cap while training; null: the task's own cap")
    device: str = _f("auto", "auto (cuda when available), cpu or cuda")
    runs_dir: str = _f("runs", "parent folder of run folders")
    trl: dict = _f({}, "keyword arguments passed straight to trl.GRPOConfig, on top of rltr's defaults")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_config(cfg: GRPOLengthConfig) -> GRPOLengthConfig:
    """Value checks that need no model: each error names the key and the value."""
    if cfg.length_weight < 0:
        raise ConfigError(f"length_weight must be >= 0, got {cfg.length_weight}")
    if cfg.n_prompts < 1:
        raise ConfigError(f"n_prompts must be >= 1, got {cfg.n_prompts}")
    if cfg.max_new_tokens is not None and cfg.max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {cfg.max_new_tokens}")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {cfg.device!r}")
    for key in ("output_dir", "seed", "max_completion_length", "use_cpu"):
        if key in cfg.trl:
            raise ConfigError(f"trl.{key} is set by rltr (run folder, seed, max_new_tokens, device); drop it")
    from rltr.tasks import get_task

    task = get_task(cfg.task)  # ValueError naming the known tasks
    if not task.generative:
        raise ConfigError(f"task {cfg.task!r} is not generative (scored on teacher-forced logits); use chain")
    return cfg


def load_grpo_config(path: str | Path | None = None, overrides: list[str] = ()) -> GRPOLengthConfig:
    """YAML file (optional) < ``--set`` overrides -> validated :class:`GRPOLengthConfig`."""
    return check_config(from_dict(GRPOLengthConfig, read_config_data(path, overrides)))
