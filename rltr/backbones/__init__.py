"""Family adapters and the loader that picks one for a model name or path."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from rltr.backbones.base import Backbone, attention_bias, config_hash
from rltr.backbones.bert import BertBackbone
from rltr.backbones.encoder import EncoderBackbone
from rltr.backbones.gpt2 import GPT2Backbone
from rltr.backbones.llama import LlamaBackbone
from rltr.backbones.llava import LlavaBackbone
from rltr.backbones.mistral import MistralBackbone
from rltr.backbones.qwen2 import Qwen2Backbone
from rltr.backbones.qwen3 import Qwen3Backbone
from rltr.backbones.vit import ViTBackbone

ADAPTERS: dict[str, type[Backbone]] = {
    t: cls
    for cls in (GPT2Backbone, LlamaBackbone, LlavaBackbone, MistralBackbone, Qwen2Backbone, Qwen3Backbone, ViTBackbone, BertBackbone)
    for t in cls.model_types
}


class ModelLoadError(ValueError):
    """A model name/path that cannot be loaded, or a family no adapter supports."""


def resolve_model(name_or_path: str) -> str:
    """A built-in zoo name (``default``) or packaged model (``minilm``) -> its folder; an existing path -> itself;
    else a hub name."""
    if not name_or_path or not str(name_or_path).strip():
        raise ModelLoadError("model name is empty")
    if os.path.isdir(name_or_path):
        return str(Path(name_or_path))
    from rltr import zoo

    if name_or_path in zoo.ZOO:
        return str(zoo.model_path(name_or_path))
    if name_or_path in zoo.PACKAGED:  # a real model an installed package ships (minilm)
        return str(zoo.packaged_path(name_or_path))
    return name_or_path


def adapter_for(model) -> type[Backbone]:
    model_type = getattr(model.config, "model_type", None)
    if model_type not in ADAPTERS:
        raise ModelLoadError(
            f"model family {model_type!r} ({type(model).__name__}) has no adapter; supported: {sorted(ADAPTERS)}"
        )
    return ADAPTERS[model_type]


def wrap(model, name: str = "") -> Backbone:
    """Wrap an already-loaded HF model in its family adapter (frozen, eval mode)."""
    return adapter_for(model)(model, name=name)


def load_backbone(
    name_or_path: str,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    attn_implementation: str = "sdpa",
) -> Backbone:
    """Load a frozen backbone by built-in name, local path or hub name (``from_pretrained``).

    Raises :class:`ModelLoadError` naming the value when it cannot be found or has no adapter.
    """
    from transformers import AutoConfig

    target = resolve_model(name_or_path)
    try:
        config = AutoConfig.from_pretrained(target)
    except (OSError, ValueError) as e:
        raise ModelLoadError(
            f"cannot load model {name_or_path!r}: not a built-in model, not a local folder with a config.json, "
            f"and not loadable from the Hugging Face hub or its cache ({type(e).__name__})"
        ) from None
    if config.model_type not in ADAPTERS:
        raise ModelLoadError(f"model family {config.model_type!r} of {name_or_path!r} has no adapter; supported: {sorted(ADAPTERS)}")
    auto = ADAPTERS[config.model_type].auto_class(config)
    try:
        model = auto.from_pretrained(target, dtype=dtype or torch.float32, attn_implementation=attn_implementation)
    except OSError as e:  # a config without weights, or weights that are not there
        raise ModelLoadError(f"cannot load the weights of model {name_or_path!r}: {e}") from None
    if device is not None:
        model = model.to(device)
    return wrap(model, name=name_or_path)


__all__ = [
    "ADAPTERS",
    "Backbone",
    "BertBackbone",
    "EncoderBackbone",
    "GPT2Backbone",
    "LlamaBackbone",
    "LlavaBackbone",
    "MistralBackbone",
    "ModelLoadError",
    "Qwen2Backbone",
    "Qwen3Backbone",
    "ViTBackbone",
    "attention_bias",
    "config_hash",
    "load_backbone",
    "resolve_model",
    "wrap",
]
