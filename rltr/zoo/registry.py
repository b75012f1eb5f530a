"""Specs of the built-in frozen models: which tasks, which shape, how to train it. (Where built and packaged
models live: :mod:`rltr.backbones.builtin`.)"""

from __future__ import annotations

from pathlib import Path

from rltr.zoo.build import ZooSpec
from rltr.zoo.vit_digits import ViTDigitsSpec
from rltr.zoo.vlm_digits import VLMDigitsSpec

ZOO: dict = {
    spec.name: spec
    for spec in (
        ZooSpec(
            name="default",
            description="GPT-2 4L x 128 on retrieval, selective copy and majority (128-token contexts)",
            tasks=("retrieval", "selective_copy", "majority"),
            task_kwargs={"retrieval": {"n_keys": 8, "n_values": 8, "n_pairs": 6}},
        ),
        ZooSpec(
            name="verbose",
            description="GPT-2 4L x 128 that thinks out loud before it answers chain lookups (64-token contexts; generative)",
            tasks=("chain",),
            context_len=64,
            curriculum=(32,),
            n_positions=128,
            target_accuracy=0.99,
        ),
        ZooSpec(
            name="tiny",
            description="GPT-2 2L x 64 on selective copy with 32-token contexts (a fast test build)",
            tasks=("selective_copy",),
            context_len=32,
            curriculum=(),
            n_layer=2,
            n_embd=64,
            n_head=2,
            n_positions=64,
            max_steps=1500,
            eval_every=50,
            n_eval=500,
            min_accuracy=0.9,
        ),
        ViTDigitsSpec(
            name="vit-digits",
            description="ViT 4L x 64 classifying scikit-learn's digits upsampled to 32x32 (64 patches of 4x4 + CLS)",
        ),
        VLMDigitsSpec(
            name="vlm-digits",
            description="LLaVA-style VLM (CLIP 2L x 64 -> MLP -> Llama 4L x 64): questions about 4x4 grids of digits (64 image tokens)",
        ),
    )
}


def build_model(name: str, out_dir: str | Path, *, seed: int | None = None, progress: bool = True) -> dict:
    """Build the registered model ``name`` into ``out_dir``; returns its ``rltr_zoo.json`` metadata."""
    if name not in ZOO:
        raise ValueError(f"unknown zoo model {name!r}; known models: {', '.join(sorted(ZOO))}")
    return ZOO[name].build(out_dir, seed=seed, progress=progress)
