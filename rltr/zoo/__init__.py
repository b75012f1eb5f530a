"""Built-in frozen models: their specs (:data:`ZOO`) and the builders that train them from scratch.

A built model is an ordinary HF folder (``config.json``, ``model.safetensors``, tokenizer files) plus
``rltr_zoo.json`` (tasks, held-out accuracy, build facts); load it with
``AutoModelForCausalLM.from_pretrained(model_path(name))`` and ``AutoTokenizer.from_pretrained(...)``.
Paths and metadata live in :mod:`rltr.backbones.builtin` (the loader needs them without the builders).
"""

from __future__ import annotations

from pathlib import Path

from rltr.backbones import builtin
from rltr.backbones.builtin import MODELS_DIR, PACKAGED, PackagedModel, packaged_path, read_meta, save_built
from rltr.zoo.build import ZooSpec, evaluate_full
from rltr.zoo.registry import ZOO, build_model


def model_path(name: str) -> Path:
    """The committed folder ``rltr/zoo/models/<name>/`` of the registered model ``name``."""
    if name not in ZOO:
        raise ValueError(f"unknown zoo model {name!r}; known models: {', '.join(sorted(ZOO))}")
    if not (MODELS_DIR / name / builtin.META_FILE).is_file():
        raise FileNotFoundError(f"zoo model {name!r} is not built at {MODELS_DIR / name}; run `rltr zoo build {name}`")
    return builtin.model_path(name)


def list_models() -> list[dict]:
    """One dict per spec: name, description, tasks, built (bool), path, and the rltr_zoo.json metadata."""
    rows = []
    for name, spec in ZOO.items():
        meta = read_meta(MODELS_DIR / name)
        rows.append({
            "name": name, "description": spec.description, "tasks": list(spec.tasks),
            "built": bool(meta), "path": str(MODELS_DIR / name), **{k: v for k, v in meta.items() if k != "spec"},
        })  # fmt: skip
    return rows


__all__ = [
    "MODELS_DIR",
    "PACKAGED",
    "ZOO",
    "PackagedModel",
    "ZooSpec",
    "build_model",
    "evaluate_full",
    "list_models",
    "model_path",
    "packaged_path",
    "save_built",
]
