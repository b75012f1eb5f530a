"""Family adapters and the loader that picks one for a model name or path."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from rltr.backbones import builtin
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
    if name_or_path in builtin.builtin_names():
        return str(builtin.model_path(name_or_path))
    if name_or_path in builtin.PACKAGED:  # a real model an installed package ships (minilm)
        return str(builtin.packaged_path(name_or_path))
    return name_or_path


HUB_PROBE_SECONDS = 3.0


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_reachable() -> bool:
    """Whether the hub's host answers a TCP connection within a few seconds (assumed so behind a proxy,
    which a direct probe cannot tell)."""
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=HUB_PROBE_SECONDS).close()
        return True
    except OSError:
        return False


def check_hub_name(name: str) -> None:
    """A hub name that is not in the local cache fails at once when the hub cannot be used (HF_HUB_OFFLINE set,
    or its host unreachable), instead of after the hub client's retries."""
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a valid repo id: transformers' own error names it
        return
    if cached:
        return
    if _offline():
        raise ModelLoadError(
            f"cannot load model {name!r}: not a built-in model or local folder, and not in the hub cache "
            "(HF_HUB_OFFLINE is set, so the hub is not asked)"
        )
    if not _hub_reachable():
        raise ModelLoadError(
            f"cannot load model {name!r}: not a built-in model or local folder, not in the hub cache, and "
            "the Hugging Face hub cannot be reached (offline?)"
        )


def adapter_for(model) -> type[Backbone]:
    model_type = getattr(model.config, "model_type", None)
    if model_type not in ADAPTERS:
        raise ModelLoadError(f"model family {model_type!r} ({type(model).__name__}) has no adapter; supported: {sorted(ADAPTERS)}")
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
    if not os.path.isdir(target):
        check_hub_name(target)
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
