"""Built-in frozen models: specs (:data:`ZOO`), their committed folders, and an accuracy helper.

A built model is an ordinary HF folder (``config.json``, ``model.safetensors``, tokenizer files) plus
``rltr_zoo.json`` (tasks, held-out accuracy, build facts); load it with
``AutoModelForCausalLM.from_pretrained(model_path(name))`` and ``AutoTokenizer.from_pretrained(...)``.
"""

from __future__ import annotations

import json
from pathlib import Path

from rltr.zoo.build import build_model, evaluate_full
from rltr.zoo.registry import PACKAGED, ZOO, PackagedModel, ZooSpec

MODELS_DIR = Path(__file__).resolve().parent / "models"


def model_path(name: str) -> Path:
    """The committed folder ``rltr/zoo/models/<name>/`` of a built-in model."""
    if name not in ZOO:
        raise ValueError(f"unknown zoo model {name!r}; known models: {', '.join(sorted(ZOO))}")
    path = MODELS_DIR / name
    if not (path / "rltr_zoo.json").is_file():
        raise FileNotFoundError(f"zoo model {name!r} is not built at {path}; run `rltr zoo build {name}`")
    return path


def packaged_path(name: str) -> Path:
    """The HF folder of a real pretrained model an installed package ships (:data:`PACKAGED`, e.g. ``minilm``)."""
    import importlib

    entry = PACKAGED[name]
    if entry.gguf_file:  # converted once into the user's cache (a progress message on first use)
        from rltr.zoo.gguf_cache import ensure_converted

        return ensure_converted(name, entry.module, entry.gguf_file, entry.package)
    try:
        module = importlib.import_module(entry.module)
    except ImportError:
        raise ValueError(f"model {name!r} comes from the {entry.package} package: pip install {entry.package}") from None
    return Path(module.get_model_path())


def list_models() -> list[dict]:
    """One dict per spec: name, description, tasks, built (bool), path, and the rltr_zoo.json metadata."""
    rows = []
    for name, spec in ZOO.items():
        meta_file = MODELS_DIR / name / "rltr_zoo.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        rows.append({
            "name": name, "description": spec.description, "tasks": list(spec.tasks),
            "built": bool(meta), "path": str(meta_file.parent), **{k: v for k, v in meta.items() if k != "spec"},
        })  # fmt: skip
    return rows


__all__ = ["MODELS_DIR", "PACKAGED", "ZOO", "PackagedModel", "ZooSpec", "build_model", "evaluate_full", "list_models", "model_path",
           "packaged_path"]
