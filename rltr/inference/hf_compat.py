"""The names transformers gives the KV cache, across the versions rltr is tested on, and the tested range.

Up to 5.23 a causal LM's ``forward`` (and every decoder block's) takes the cache as ``past_key_values`` and
returns it in the output field of that name. From 5.24 both are called ``cache``; ``past_key_values`` still
works with a FutureWarning-style log line and is announced for removal in 5.40, and ``generate()`` passes
the new name. rltr reads either name and writes the one the callable it calls declares, so it runs on both
sides of the rename without deprecation warnings.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from functools import lru_cache
from importlib import metadata
from typing import Any

import transformers
from transformers.modeling_outputs import CausalLMOutputWithPast

CACHE_NAMES = ("cache", "past_key_values")  # newest first
UNKNOWN_RANGE = "(unknown: rltr's metadata is not installed)"  # a source tree on sys.path: pyproject is the truth


def tested_transformers_range() -> str:
    """The transformers range rltr's metadata declares (pyproject's dependency), e.g. ``>=5.13,<5.25``."""
    try:
        requires = metadata.requires("rltr") or []
    except metadata.PackageNotFoundError:
        return UNKNOWN_RANGE
    for req in requires:
        name = req.split(";")[0].strip()
        if name.lower().startswith("transformers") and not name[len("transformers") :].startswith(("-", "_")):
            spec = name[len("transformers") :].strip().strip("()")
            return spec or "any"
    return UNKNOWN_RANGE


def version_hint(version: str | None = None) -> str:
    """'transformers X.Y.Z (rltr is tested on >=A,<B)': for error messages about the patched internals."""
    version = transformers.__version__ if version is None else version
    return f"transformers {version} (rltr is tested on transformers{tested_transformers_range()})"


@lru_cache(maxsize=256)
def _parameters(fn: Callable) -> frozenset[str]:
    return frozenset(inspect.signature(fn).parameters)


def cache_argument(fn: Callable) -> str:
    """The name under which ``fn`` (a model's or a block's forward) takes the KV cache."""
    target = getattr(fn, "__func__", fn)
    try:
        params = _parameters(target)
    except (TypeError, ValueError):  # builtins, odd callables: assume the current name
        return CACHE_NAMES[0]
    return next((name for name in CACHE_NAMES if name in params), CACHE_NAMES[0])


def take_cache(named: dict[str, Any]) -> Any:
    """Remove the cache from ``named`` (given under either name) and return it; both names at once is an error."""
    given = [name for name in CACHE_NAMES if named.get(name) is not None]
    if len(given) > 1:
        raise ValueError(f"the KV cache was given as both {given[0]!r} and {given[1]!r}; give it once")
    values = [named.pop(name, None) for name in CACHE_NAMES]
    return next((v for v in values if v is not None), None)


def output_cache(out: Any) -> Any:
    """The cache a model output holds (``out.cache`` from 5.24, ``out.past_key_values`` before), else None."""
    if isinstance(out, dict):  # every transformers ModelOutput is an OrderedDict of its non-None fields
        return next((out[name] for name in CACHE_NAMES if out.get(name) is not None), None)
    return next((v for name in CACHE_NAMES if (v := getattr(out, name, None)) is not None), None)


_OUTPUT_FIELD = "cache" if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {}) else "past_key_values"


def causal_lm_output(logits, cache) -> CausalLMOutputWithPast:
    """A causal LM output holding ``logits`` and ``cache`` under this transformers' field name."""
    return CausalLMOutputWithPast(logits=logits, **{_OUTPUT_FIELD: cache})


def cache_kwargs(model, cache) -> dict[str, Any]:
    """``{name: cache}`` under the name ``model``'s forward takes it: ``model(ids, **cache_kwargs(model, c))``."""
    return {cache_argument(type(model).forward): cache}


_warned_outside = False


def warn_if_untested(version: str | None = None) -> bool:
    """Warn once (``RuntimeWarning``) when transformers ``version`` (default: the installed one) is outside the
    tested range; True if outside."""
    global _warned_outside
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    version = transformers.__version__ if version is None else version
    try:
        outside = version not in SpecifierSet(tested_transformers_range(), prereleases=True)
    except InvalidSpecifier:
        return False
    if outside and not _warned_outside:
        _warned_outside = True
        warnings.warn(
            f"token reduction patches model internals and runs on {version_hint(version)}: outside the tested range; "
            "if a forward fails, install a tested version",
            RuntimeWarning,
            stacklevel=3,
        )
    return outside
