"""The built-in VLM: LLaVA-style (CLIP vision tower -> MLP projector -> Llama decoder), trained from scratch
on questions about grids of scikit-learn's digits (:mod:`rltr.tasks.digit_grid`; no download).

``rltr zoo build vlm-digits`` trains it (seeded) and saves an ordinary HF folder that loads with the standard
``LlavaForConditionalGeneration`` (``AutoModelForImageTextToText``) plus ``rltr_zoo.json``. Training adds
an auxiliary loss (linear probes on every projected image token predicting its cell's digit, row and column;
the probes are not saved) so the small tower learns to read digits and places within the time budget, and
each training image carries ``n_extra`` more questions after the first (cell / has / count questions about the
same grid, answers from its labels): 1 + ``n_extra`` answers per image instead of one. Held-out accuracy is
measured on the plain one-question prompt.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rltr.backbones.builtin import save_built
from rltr.tasks.digit_grid import (
    BOS_ID,
    EOS_ID,
    GRID,
    IMAGE_ID,
    IMAGE_PX,
    N_COUNT,
    N_IMAGE_TOKENS,
    PAD_ID,
    PATCH,
    QUESTION_TYPES,
    SEQ_LEN,
    VOCAB_SIZE,
    WORD_ID,
    cell_of_tokens,
    grid_pixels,
    render,
    sample_question,
)
from rltr.zoo.build import build_facts, optimizer_step, warmup_cosine

FORMAT_VERSION = 1


@dataclass(frozen=True)
class VLMDigitsSpec:
    """A LLaVA-shaped VLM on digit grids: shape, and how to train it (AdamW, warm-up then cosine; digits moved by
    up to one pixel in their cells). Stops at ``max_steps``, after ``max_seconds`` of CPU time (this process's,
    so a loaded machine does not shorten training), or once every question type
    reaches ``target_accuracy`` on ``n_val`` validation questions each (checked every ``eval_every`` steps)."""

    name: str
    description: str
    tasks: tuple[str, ...] = tuple(f"grid_{q}" for q in QUESTION_TYPES)
    question_types: tuple[str, ...] = QUESTION_TYPES
    vision_layers: int = 2
    vision_hidden: int = 64
    vision_heads: int = 4
    n_layer: int = 4
    hidden: int = 64
    n_head: int = 4
    intermediate: int = 192
    batch_size: int = 32
    max_steps: int = 4000
    max_seconds: float = 1200.0  # CPU seconds
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    aux_weight: float = 1.0
    n_extra: int = 20  # extra questions per training image
    eval_every: int = 125
    n_val: int = 128
    target_accuracy: float = 0.99
    n_eval: int = 500  # held-out questions per type in rltr_zoo.json
    min_accuracy: float = 0.95  # the promise, per shipped question type
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def build(self, out_dir, *, seed: int | None = None, progress: bool = True) -> dict:
        return build_vlm(self, out_dir, seed=seed, progress=progress)


def new_vlm(spec: VLMDigitsSpec, *, image_px: int = IMAGE_PX, patch: int = PATCH):
    """A random-init ``LlavaForConditionalGeneration`` of ``spec``'s shape (eager attention: attention weights readable)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    vision = CLIPVisionConfig(
        hidden_size=spec.vision_hidden,
        intermediate_size=4 * spec.vision_hidden,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads,
        num_channels=1,
        image_size=image_px,
        patch_size=patch,
        projection_dim=spec.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.n_layer,
        num_attention_heads=spec.n_head,
        num_key_value_heads=spec.n_head,
        max_position_embeddings=1024,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        tie_word_embeddings=False,
    )
    # image_token_id: LlavaConfig takes it at run time (its signature lists only the older image_token_index)
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=IMAGE_ID,
        vision_feature_layer=-1,  # type: ignore[call-arg]
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        image_seq_length=(image_px // patch) ** 2,
        tie_word_embeddings=False,
    )
    config._attn_implementation = "eager"
    return LlavaForConditionalGeneration(config)


def questions(rng: np.random.Generator, n: int, types: tuple[str, ...], split: str):
    """``n`` questions cycling over ``types``; returns (examples, input_ids (n, L), pixel_values (n, 1, 32, 32))."""
    examples = [sample_question(rng, types[i % len(types)], split) for i in range(n)]
    shifts = rng.integers(-1, 2, size=(n, GRID, GRID, 2)) if split == "train" else [None] * n
    pixels = grid_pixels(np.stack([render(e.image_idx, s) for e, s in zip(examples, shifts)]))
    return examples, torch.tensor([e.input_ids for e in examples]), pixels


def extra_questions(rng: np.random.Generator, labels: np.ndarray, n: int) -> list[int]:
    """``n`` more question + answer segments (5 ids each) about a grid with digits ``labels`` (GRID, GRID)."""
    flat, ids = labels.reshape(-1), list[int]()
    while len(ids) < 5 * n:
        kind, d = int(rng.integers(3)), int(rng.integers(10))
        if kind == 0:
            cell = int(rng.integers(GRID * GRID))
            words = ["cell", str(cell // GRID), str(cell % GRID), "?", str(flat[cell])]
        elif kind == 1:
            words = ["has", str(d), "_", "?", "yes" if (flat == d).any() else "no"]
        elif (flat == d).sum() < N_COUNT:
            words = ["count", str(d), "_", "?", str(int((flat == d).sum()))]
        else:
            continue
        ids += [WORD_ID[w] for w in words]
    return ids


def _forward(model, input_ids: torch.Tensor, pixels: torch.Tensor, answers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, A, V) predicting the tokens at columns ``answers`` (A,), projected image features (B, I, D))."""
    feats = model.model.get_image_features(pixel_values=pixels, vision_feature_layer=-1, vision_feature_select_strategy="default")
    feats = torch.stack(list(feats.pooler_output))  # (B, 256, D)
    embeds = model.model.get_input_embeddings()(input_ids)
    embeds = embeds.masked_scatter((input_ids == IMAGE_ID)[..., None].expand_as(embeds), feats.to(embeds.dtype))
    hidden = model.model.language_model(inputs_embeds=embeds).last_hidden_state  # (B, L, D)
    return model.lm_head(hidden[:, answers - 1]), feats


@torch.no_grad()
def accuracy_by_type(model, types: tuple[str, ...], n: int, split: str, seed: int, batch_size: int = 64) -> dict[str, float]:
    """Full-token accuracy per question type on ``n`` questions each of ``split`` (the plain HF forward)."""
    was_training = model.training
    model.eval()
    out = {}
    for qtype in types:
        rng, hits = np.random.default_rng([seed, 991, QUESTION_TYPES.index(qtype)]), 0
        for i in range(0, n, batch_size):
            _, ids, pixels = questions(rng, min(batch_size, n - i), (qtype,), split)
            logits = model(input_ids=ids[:, :-1], pixel_values=pixels, logits_to_keep=1).logits[:, -1]
            hits += int((logits.argmax(-1) == ids[:, -1]).sum())
        out[qtype] = hits / n
    model.train(was_training)
    return out


def build_vlm(spec: VLMDigitsSpec, out_dir, *, seed: int | None = None, progress: bool = True, resume_from: str | None = None) -> dict:
    """Train ``spec`` (seeded), save the HF folder + ``rltr_zoo.json`` (only the question types reaching
    ``min_accuracy`` ship), return the metadata. ``resume_from``: a folder this builder saved; training goes on
    from its weights and step count (same schedule; fresh optimiser state and probe) within the CPU seconds left."""
    import json
    from pathlib import Path

    from tqdm.auto import tqdm

    seed = spec.seed if seed is None else seed
    start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 31])
    model, first, cpu_before, history = new_vlm(spec), 0, 0.0, []
    if resume_from is not None:
        from transformers import LlavaForConditionalGeneration

        previous = json.loads((Path(resume_from) / "rltr_zoo.json").read_text())
        model = LlavaForConditionalGeneration.from_pretrained(resume_from, attn_implementation="eager")
        first, cpu_before, history = previous["steps"], previous.get("cpu_seconds", 0.0), previous["history"]
        rng = np.random.default_rng([seed, 31, first])  # fresh examples, not a replay of the first phase's
    cpu_start = time.process_time() - cpu_before
    probe = torch.nn.Linear(spec.hidden, 10 + 2 * GRID)  # digit, row, column of each image token's cell
    params = list(model.parameters()) + list(probe.parameters())
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    cell_of = torch.from_numpy(cell_of_tokens())

    sched = warmup_cosine(opt, spec.warmup_steps, spec.max_steps, floor=0.05)
    for _ in range(first):
        sched.step()  # resume: the schedule where it was
    val, step = {}, first
    bar = tqdm(range(first, spec.max_steps), desc=f"zoo {spec.name}", disable=not progress)
    model.train()
    for step in bar:
        examples, ids, pixels = questions(rng, spec.batch_size, spec.question_types, "train")
        extra = torch.tensor([extra_questions(rng, e.labels, spec.n_extra) for e in examples], dtype=torch.long).reshape(len(examples), -1)
        ids = torch.cat([ids, extra], 1)
        answers = torch.tensor([SEQ_LEN - 1 + 5 * j for j in range(spec.n_extra + 1)])
        logits, feats = _forward(model, ids, pixels, answers)
        digits = torch.from_numpy(np.stack([e.labels.reshape(-1) for e in examples]))[:, cell_of]  # (B, I)
        guess = probe(feats)  # (B, I, 10 + 2 * GRID)
        aux = (
            F.cross_entropy(guess[..., :10].flatten(0, 1), digits.flatten())
            + F.cross_entropy(guess[..., 10 : 10 + GRID].flatten(0, 1), (cell_of // GRID).repeat(len(examples)))
            + F.cross_entropy(guess[..., 10 + GRID :].flatten(0, 1), (cell_of % GRID).repeat(len(examples)))
        )
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, answers].flatten()) + spec.aux_weight * aux
        optimizer_step(model, opt, sched, loss)
        if (step + 1) % spec.eval_every == 0:
            val = accuracy_by_type(model, spec.question_types, spec.n_val, "validation", seed)
            history.append(
                {
                    "step": step + 1,
                    "seconds": round(time.perf_counter() - start, 1),
                    "cpu_seconds": round(time.process_time() - cpu_start, 1),
                    **val,
                }
            )
            bar.set_postfix(loss=f"{loss.item():.3f}", aux=f"{aux.item():.3f}", **{k: f"{v:.2f}" for k, v in val.items()})
            if progress:
                print(history[-1], flush=True)
            model.save_pretrained(Path(out_dir) / "last")  # the latest weights, should the run be stopped from outside
            stop = (Path(out_dir) / "STOP").exists()  # touch it to end training at the next check
            if stop or min(val.values()) >= spec.target_accuracy or time.process_time() - cpu_start > spec.max_seconds:
                break
    bar.close()
    model.eval()
    test = accuracy_by_type(model, spec.question_types, spec.n_eval, "test", seed)
    shipped = [q for q in spec.question_types if test[q] >= spec.min_accuracy]
    meta = {
        "format_version": FORMAT_VERSION,
        "name": spec.name,
        "description": spec.description,
        "tasks": [f"grid_{q}" for q in shipped],  # one task per shipped question type (rltr.tasks.grid_questions)
        "question_types": shipped,
        "dropped_question_types": {q: test[q] for q in spec.question_types if q not in shipped},
        "accuracy": test,
        "n_eval": spec.n_eval,
        "eval_split": "test",
        "validation_accuracy": val,
        "history": history,
        "steps": step + 1,
        "cpu_seconds": round(time.process_time() - cpu_start, 1),
        "resumed_from_step": first or None,
        "n_image_tokens": N_IMAGE_TOKENS,
        **build_facts(model, spec, seed, start),
    }
    return save_built(model, out_dir, meta)
