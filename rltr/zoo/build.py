"""Train a built-in model from its :class:`~rltr.zoo.registry.ZooSpec` and save an ordinary HF folder."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rltr.backbones.builtin import save_built
from rltr.tasks import Batch, Task, collate, exact_match, get_task
from rltr.tasks.generation import generative_accuracy
from rltr.tasks.vocab import BOS_ID, PAD_ID, SEP_ID, VOCAB_SIZE, build_tokenizer

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ZooSpec:
    """One built-in model. Training walks through ``curriculum`` context lengths: it moves on once every
    task reaches ``stage_accuracy`` on ``n_val`` validation examples at the current length (checked every
    ``eval_every`` steps), and stops at ``max_steps`` or once every task reaches ``target_accuracy`` at
    ``context_len``, the last length."""

    name: str
    description: str
    tasks: tuple[str, ...]  # registry names in rltr.tasks.TASKS
    task_kwargs: dict = field(default_factory=dict)  # {task name: kwargs}, on top of context_len
    context_len: int = 128  # full context length, every task
    curriculum: tuple[int, ...] = (32, 64)  # shorter context lengths trained first, in order
    stage_accuracy: float = 0.9
    stage_max_steps: int = 800  # move on after this many steps at one curriculum length regardless
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 256
    batch_size: int = 64  # split evenly over the tasks
    max_steps: int = 3000
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    eval_every: int = 100
    n_val: int = 256
    target_accuracy: float = 0.98
    n_eval: int = 1000  # held-out split="test" examples per task in rltr_zoo.json
    min_accuracy: float = 0.95  # the promise: every task at least this, with all tokens
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def build(self, out_dir, *, seed: int | None = None, progress: bool = True) -> dict:
        return build_spec(self, out_dir, seed=seed, progress=progress)


@torch.no_grad()
def evaluate_full(model, tokenizer_or_pad_id, task: Task, n: int = 1000, seed: int = 0,
                  split: str = "test", batch_size: int = 128) -> float:  # fmt: skip
    """Exact-match accuracy of ``model`` with all tokens on ``n`` examples of ``task`` (plain forward);
    for a generative task, the accuracy of greedy generation (the task scores the generated output)."""
    pad_id = getattr(tokenizer_or_pad_id, "pad_token_id", tokenizer_or_pad_id)
    if task.generative:  # scored on greedy generation, not on teacher-forced logits
        return generative_accuracy(model, task, n, seed, split, pad_id, batch_size)
    examples = task.examples(n, seed=seed, split=split)
    was_training, hits = model.training, 0.0
    model.eval()
    for i in range(0, n, batch_size):
        batch = collate(examples[i : i + batch_size], pad_id).to(model.device)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()).logits
        hits += exact_match(logits, batch).sum().item()
    model.train(was_training)
    return hits / n


def answer_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Cross-entropy on the answer tokens only; each example weighs the same. logits: (B, N, V)."""
    mask = batch.answer_mask[:, :-1]  # (B, N-1): logits at p predict token p + 1
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), batch.input_ids[:, 1:], reduction="none")
    return ((ce * mask).sum(1) / batch.n_answer).mean()


def _tasks(spec: ZooSpec, context_len: int) -> list[Task]:
    return [get_task(t, context_len=context_len, **spec.task_kwargs.get(t, {})) for t in spec.tasks]


def _new_model(spec: ZooSpec):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=VOCAB_SIZE, n_positions=spec.n_positions, n_embd=spec.n_embd, n_layer=spec.n_layer,
        n_head=spec.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=BOS_ID, eos_token_id=SEP_ID, pad_token_id=PAD_ID,
    )  # fmt: skip
    return GPT2LMHeadModel(config)


def build_spec(spec: ZooSpec, out_dir: str | Path, *, seed: int | None = None, progress: bool = True) -> dict:
    """Train ``spec`` (seeded), save the HF folder + ``rltr_zoo.json`` to ``out_dir``, return the metadata."""
    from tqdm.auto import tqdm

    seed = spec.seed if seed is None else seed
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = _new_model(spec)
    rngs = [np.random.default_rng([seed, 0, 1000 + i]) for i in range(len(spec.tasks))]
    per_task = spec.batch_size // len(spec.tasks)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, betas=(0.9, 0.98), weight_decay=spec.weight_decay)

    sched = warmup_cosine(opt, spec.warmup_steps, spec.max_steps, floor=0.1)
    lengths = [*spec.curriculum, spec.context_len]
    stage, tasks, val_acc, step, stage_steps = 0, _tasks(spec, lengths[0]), {}, 0, [0]
    bar = tqdm(range(spec.max_steps), desc=f"zoo {spec.name}", disable=not progress)
    model.train()
    for step in bar:
        batch = collate([t.sample(r) for t, r in zip(tasks, rngs) for _ in range(per_task)], PAD_ID)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()).logits
        loss = answer_loss(logits, batch)
        optimizer_step(model, opt, sched, loss)
        if (step + 1) % spec.eval_every == 0:
            val_acc = {t.name: evaluate_full(model, PAD_ID, t, spec.n_val, seed, "validation") for t in tasks}
            bar.set_postfix(loss=f"{loss.item():.3f}", len=lengths[stage], **{k: f"{v:.3f}" for k, v in val_acc.items()})
            if stage == len(lengths) - 1 and min(val_acc.values()) >= spec.target_accuracy:
                break
            done = min(val_acc.values()) >= spec.stage_accuracy or step + 1 - stage_steps[-1] >= spec.stage_max_steps
            if stage < len(lengths) - 1 and done:
                stage, tasks = stage + 1, _tasks(spec, lengths[stage + 1])
                stage_steps.append(step + 1)
        elif step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", len=lengths[stage])
    bar.close()
    model.eval()
    full_tasks = _tasks(spec, spec.context_len)
    accuracy = {t.name: evaluate_full(model, PAD_ID, t, spec.n_eval, seed, "test") for t in full_tasks}
    generative = any(t.generative for t in full_tasks)
    meta = {
        "format_version": FORMAT_VERSION,
        "name": spec.name,
        "description": spec.description,
        "tasks": list(spec.tasks),
        "context_len": spec.context_len,
        "accuracy": accuracy,
        "accuracy_label": "greedy generation, answer after the thinking" if generative else "full-token exact match",
        "n_eval": spec.n_eval,
        "eval_split": "test",
        "eval_seed": seed,
        "validation_accuracy": val_acc,
        "steps": step + 1,
        "stage_steps": stage_steps,  # steps at which each curriculum length started
        **build_facts(model, spec, seed, start),
    }
    return save_built(model, out_dir, meta, build_tokenizer())


def warmup_cosine(opt, warmup_steps: int, max_steps: int, floor: float):
    """The zoo builders' schedule: linear warm-up over ``warmup_steps``, then cosine decay from 1 to ``floor`` (a
    fraction of the base rate) at ``max_steps``, held there after it."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return floor + (1 - floor) / 2 * (1 + math.cos(math.pi * min(step, max_steps) / max_steps))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def optimizer_step(model, opt, sched, loss) -> None:
    """One optimiser step on ``loss`` with gradients clipped to norm 1, then one scheduler step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()


def build_facts(model, spec, seed: int, start: float) -> dict:
    """What every built model records besides its accuracy: seed, build time, size, library versions, spec."""
    import transformers

    return {
        "seed": seed,
        "build_seconds": round(time.perf_counter() - start, 1),
        "n_params": sum(p.numel() for p in model.parameters()),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "spec": spec.to_dict(),
    }
