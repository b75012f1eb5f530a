"""The built-in vision model: a small ViT trained from scratch on scikit-learn's digits (no download).

``rltr zoo build vit-digits`` trains it (seeded) and saves an ordinary HF folder
(``ViTForImageClassification``: ``config.json`` + ``model.safetensors``) plus ``rltr_zoo.json``; load it
with ``AutoModelForImageClassification.from_pretrained(model_path("vit-digits"))`` and feed it
:func:`rltr.tasks.images.digit_pixels` images.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from rltr.backbones.builtin import save_built
from rltr.tasks.images import N_CLASSES, digit_pixels, load_digits, split_indices
from rltr.zoo.build import build_facts, optimizer_step, warmup_cosine

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ViTDigitsSpec:
    """A ViT on digits: shape, and how to train it (AdamW, warm-up then cosine decay, random shifts of the
    8 x 8 originals by up to ``max_shift`` pixels); training stops at ``max_steps`` or once the validation
    accuracy (checked every ``eval_every`` steps) reaches ``target_accuracy``."""

    name: str
    description: str
    tasks: tuple[str, ...] = ("digits",)
    image_size: int = 32
    patch_size: int = 4
    n_layer: int = 4
    hidden: int = 64
    n_head: int = 4
    intermediate: int = 256
    batch_size: int = 64
    max_steps: int = 4000
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.05
    max_shift: int = 1
    eval_every: int = 200
    target_accuracy: float = 0.99
    min_accuracy: float = 0.95  # the promise: test accuracy with all tokens
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def build(self, out_dir: str | Path, *, seed: int | None = None, progress: bool = True) -> dict:
        return build_vit(self, out_dir, seed=seed, progress=progress)


def new_vit(spec: ViTDigitsSpec):
    from transformers import ViTConfig, ViTForImageClassification

    # num_labels is a PreTrainedConfig kwarg taken by __post_init__(**kwargs): transformers' strict-dataclass signature omits it
    config = ViTConfig(  # type: ignore[call-arg]
        hidden_size=spec.hidden, num_hidden_layers=spec.n_layer, num_attention_heads=spec.n_head, intermediate_size=spec.intermediate,
        image_size=spec.image_size, patch_size=spec.patch_size, num_channels=1, num_labels=N_CLASSES,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, id2label={i: str(i) for i in range(N_CLASSES)},
        label2id={str(i): i for i in range(N_CLASSES)},
    )  # fmt: skip
    return ViTForImageClassification(config)


def shifted(images: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """(B, 8, 8) images each moved by a random offset in [-max_shift, max_shift]^2, zeros shifted in."""
    if max_shift == 0:
        return images
    b, h, w = images.shape
    padded = torch.nn.functional.pad(images, (max_shift,) * 4)
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (2, b), generator=g)).unbind(0)
    rows = (dy[:, None] + torch.arange(h))[:, :, None].expand(b, h, w)  # (B, 8, 8)
    cols = (dx[:, None] + torch.arange(w))[:, None, :].expand(b, h, w)
    return padded[torch.arange(b)[:, None, None], rows, cols]


@torch.no_grad()
def accuracy(model, split: str, image_size: int, batch_size: int = 256) -> float:
    """Accuracy of ``model`` (all tokens, its own forward) on every image of ``split``."""
    images, labels = load_digits()
    idx = split_indices(split)
    was_training, hits = model.training, 0
    model.eval()
    for i in range(0, len(idx), batch_size):
        part = idx[i : i + batch_size]
        logits = model(pixel_values=digit_pixels(torch.from_numpy(images[part]), image_size)).logits
        hits += int((logits.argmax(-1) == torch.from_numpy(labels[part])).sum())
    model.train(was_training)
    return hits / len(idx)


def build_vit(spec: ViTDigitsSpec, out_dir: str | Path, *, seed: int | None = None, progress: bool = True) -> dict:
    """Train ``spec`` (seeded), save the HF folder + ``rltr_zoo.json`` to ``out_dir``, return the metadata."""
    from tqdm.auto import tqdm

    seed = spec.seed if seed is None else seed
    start = time.perf_counter()
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = new_vit(spec)
    images, labels = load_digits()
    train = split_indices("train")
    rng = np.random.default_rng([seed, 77])
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)

    sched = warmup_cosine(opt, spec.warmup_steps, spec.max_steps, floor=0.05)
    val_acc, step = 0.0, 0
    bar = tqdm(range(spec.max_steps), desc=f"zoo {spec.name}", disable=not progress)
    model.train()
    for step in bar:
        part = train[rng.integers(len(train), size=spec.batch_size)]
        x = digit_pixels(shifted(torch.from_numpy(images[part]), spec.max_shift, g), spec.image_size)
        loss = torch.nn.functional.cross_entropy(model(pixel_values=x).logits, torch.from_numpy(labels[part]))
        optimizer_step(model, opt, sched, loss)
        if (step + 1) % spec.eval_every == 0:
            val_acc = accuracy(model, "validation", spec.image_size)
            bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{val_acc:.3f}")
            if val_acc >= spec.target_accuracy:
                break
    bar.close()
    model.eval()
    test_acc = accuracy(model, "test", spec.image_size)
    meta = {
        "format_version": FORMAT_VERSION,
        "name": spec.name,
        "description": spec.description,
        "tasks": list(spec.tasks),
        "accuracy": {"digits": test_acc},
        "n_eval": len(split_indices("test")),
        "eval_split": "test",
        "validation_accuracy": {"digits": val_acc},
        "steps": step + 1,
        **build_facts(model, spec, seed, start),
    }
    return save_built(model, out_dir, meta)
