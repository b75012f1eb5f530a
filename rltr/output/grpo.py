"""Output-length reduction with trl's ``GRPOTrainer``: fine-tune a generative model so it answers as
briefly as correctness allows (reward = task score - ``length_weight`` x generated tokens).

The policy-gradient loop is trl's; rltr supplies the prompts (a generative task's train split), the
reward (the task's scorer) and the run folder. A run folder ``runs/<task>__<name>__<seed>__<time>/``
holds ``config.yaml``, ``command.txt``, ``grpo.json`` (trl's log history, timing) and ``model/``: an
ordinary HF folder (``from_pretrained``) with tokenizer files and ``rltr_zoo.json`` naming its task.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import yaml

from rltr.config import ConfigError
from rltr.output.config import TRL_DEFAULTS, GRPOLengthConfig, renamed_trl_args
from rltr.output.reward import LengthPenalizedScore
from rltr.tasks import Task, get_task
from rltr.tasks.vocab import words_of

MODEL_META = "rltr_zoo.json"  # the file that names a model's tasks (written by the zoo build and by this trainer)


def require_trl():
    """The ``trl`` module, or a one-line ValueError saying how to install the optional extra."""
    try:
        import trl
    except ImportError:
        raise ValueError("output-length training needs trl, an optional extra: pip install -e '.[trl]'") from None
    return trl


def model_folder(model: str) -> Path:
    """The folder of a built-in name or local folder; FileNotFoundError naming anything else."""
    from rltr.backbones import resolve_model

    path = Path(resolve_model(model))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model {model!r} is neither a built-in model (rltr zoo list) nor a folder with a config.json")
    return path


def run_model_dir(path: str) -> str:
    """A GRPO run folder stands for its exported ``model/``; anything else is returned as given."""
    p = Path(path)
    return str(p / "model") if (p / "model" / "config.json").is_file() else path


def load_generative(model: str):
    """(HF causal LM, tokenizer, folder) of a built-in name or local folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = model_folder(model)
    tok = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if tok.eos_token_id is None and lm.config.eos_token_id is not None:  # generation must know where to stop
        tok.eos_token = tok.convert_ids_to_tokens(int(lm.config.eos_token_id))
    return lm, tok, path


def model_task_kwargs(model_dir: str | Path, name: str) -> dict:
    """The kwargs a model was trained with for task ``name`` (context length and task_kwargs from its
    ``rltr_zoo.json``); {} when the file does not name the task."""
    meta_file = Path(model_dir) / MODEL_META
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    if name not in meta.get("tasks", []):
        return {}
    return {"context_len": meta["context_len"], **meta.get("spec", {}).get("task_kwargs", {}).get(name, {})}


def model_task(model_dir: str | Path, name: str | None = None, **overrides) -> Task:
    """The generative task ``name`` (default: the model's first task) with the model's own kwargs, then ``overrides``."""
    if name is None:
        meta_file = Path(model_dir) / MODEL_META
        tasks = json.loads(meta_file.read_text()).get("tasks") if meta_file.is_file() else None
        if not tasks:
            raise ValueError(f"model folder {str(model_dir)!r} has no {MODEL_META} naming its task; pass the task")
        name = tasks[0]
    task = get_task(name, **{**model_task_kwargs(model_dir, name), **overrides})
    if not task.generative:
        raise ValueError(f"task {name!r} is not generative (scored on teacher-forced logits); use chain")
    return task


def prompt_dataset(task: Task, n: int, seed: int):
    """A ``datasets.Dataset`` of ``n`` train-split prompts (text, one word per token) and their answer ids."""
    from datasets import Dataset

    examples = task.examples(n, seed=seed, split="train")
    return Dataset.from_dict({
        "prompt": [" ".join(words_of(task.prompt(e))) for e in examples],
        "target": [task.target(e) for e in examples],
    })  # fmt: skip


def grpo_args(cfg: GRPOLengthConfig, out_dir: Path, max_new_tokens: int, progress: bool):
    """``trl.GRPOConfig`` from rltr's defaults < the config's ``trl`` block; a bad key names itself."""
    trl = require_trl()
    use_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    kwargs = renamed_trl_args(trl.GRPOConfig, {**TRL_DEFAULTS, "disable_tqdm": not progress, **cfg.trl})
    try:
        return trl.GRPOConfig(output_dir=str(out_dir), seed=cfg.seed, max_completion_length=max_new_tokens, use_cpu=use_cpu, **kwargs)
    except TypeError as e:
        raise ConfigError(f"trl block: {e} (keys go straight to trl.GRPOConfig)") from None
    except ValueError as e:
        raise ConfigError(f"trl block rejected by trl.GRPOConfig: {e}") from None


def run_dir_name(cfg: GRPOLengthConfig) -> Path:
    return Path(cfg.runs_dir) / f"{cfg.task}__{cfg.name}__{cfg.seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def train_grpo(cfg: GRPOLengthConfig, command: str = "", progress: bool = True) -> Path:
    """Fine-tune ``cfg.model`` with ``trl.GRPOTrainer`` on the length-penalised task score; returns the run folder."""
    trl = require_trl()
    model_dir = model_folder(cfg.model)
    task_kwargs = {**model_task_kwargs(model_dir, cfg.task), **cfg.task_kwargs}
    task = model_task(model_dir, cfg.task, **task_kwargs)
    max_new = cfg.max_new_tokens or task.max_completion_len
    reward = LengthPenalizedScore(task, cfg.length_weight)
    run_dir = run_dir_name(cfg)
    args = grpo_args(cfg, run_dir / "trl", max_new, progress)  # fails on a bad trl key before any work
    lm, tok, _ = load_generative(str(model_dir))
    run_dir.mkdir(parents=True, exist_ok=False)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    (run_dir / "command.txt").write_text(command + "\n")
    torch.manual_seed(cfg.seed)
    trainer = trl.GRPOTrainer(model=lm, reward_funcs=[reward], args=args, train_dataset=prompt_dataset(task, cfg.n_prompts, cfg.seed),
                              processing_class=tok)  # fmt: skip
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    out = run_dir / "model"  # model, generation config and tokenizer only (trainer.save_model adds a pickled training_args.bin)
    meta = {
        "name": f"{cfg.name} (GRPO from {cfg.model})",
        "tasks": [task.name],
        "context_len": task.context_len,
        "spec": {"task_kwargs": {task.name: {k: v for k, v in task_kwargs.items() if k != "context_len"}}},
        "base_model": cfg.model,
        "length_weight": cfg.length_weight,
        "max_new_tokens": max_new,
    }
    from rltr.zoo.build import save_built

    save_built(trainer.accelerator.unwrap_model(trainer.model), out, meta, tok)
    if (run_dir / "trl").is_dir() and not any((run_dir / "trl").iterdir()):
        (run_dir / "trl").rmdir()  # trl's output_dir: nothing is saved there (save_strategy "no" by default)
    log = {"train_seconds": round(seconds, 1), "steps": trainer.state.global_step, "log_history": trainer.state.log_history}
    (run_dir / "grpo.json").write_text(json.dumps(log, indent=2) + "\n")
    return run_dir
