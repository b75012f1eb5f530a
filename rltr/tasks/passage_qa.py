"""Questions about a real passage (no needle): the answer is a word of the prose itself.

Kinds (``prose:KIND`` task specs, made like the needle kinds in :mod:`rltr.tasks.needles`):

- ``cloze``: one line of the passage is quoted without its last word; the answer is that word. Question:
  ``"\\nFinish this line from the text above: <the line up to its last word>"``, answer ``" <word>"`` (with
  its leading space: SmolLM2's tokenizer starts a word after a space with a token holding the space, as inside the
  passage, so the answer has its natural tokenization).

A line can be asked when it is spoken text (no ``[`` stage direction), its last word is at least 3 letters
(trailing punctuation aside) after at least 4 words, and those first words occur once in the passage (the
quote points at one place). ``relevant`` = the asked line; ``relevant_any`` = every line that could have
been asked (most of the passage: a query-agnostic method cannot know which line will be quoted, so the
query-agnostic oracle keeps its budget's worth of candidate lines, best attended first, and is no upper
bound a real method could reach by reading the text).
"""

from __future__ import annotations

import re

import numpy as np

from rltr.tasks.jsonl_read import Record
from rltr.tasks.prose_source import CHARS_PER_TOKEN, filler, fit_lines

QA_KINDS = ("cloze",)
_LAST_WORD = re.compile(r"^(?P<head>\S+(?:\s+\S+){3,})\s+(?P<word>[A-Za-z]{3,})[^A-Za-z]*$")
_N_DRAWS = 8  # passages tried before giving up on finding a line to ask about


def cloze_lines(context: str) -> list[tuple[int, int, str, str]]:
    """(start, end, head, word) of every line of ``context`` a cloze may ask: character span of the
    line, its words before the last, and its last word."""
    out, start = [], 0
    for line in context.split("\n"):
        m = _LAST_WORD.match(line)
        if m and "[" not in line and "]" not in line and context.count(m["head"]) == 1:
            out.append((start, start + len(line), m["head"], m["word"]))
        start += len(line) + 1
    return out


def qa_record(kind: str, rng: np.random.Generator, tokenizer, length: int, split: str, where: tuple[str, int]) -> Record:
    """One example of ``kind``: whole lines of one play of ``split`` (at most ``length`` tokens) and a
    question about one of them."""
    if kind not in QA_KINDS:
        raise ValueError(f"unknown passage question kind {kind!r}; known: {', '.join(QA_KINDS)}")
    for _ in range(_N_DRAWS):
        lines = fit_lines(filler(int(length * CHARS_PER_TOKEN), rng, split), tokenizer, length)
        context = "\n".join(lines) + "\n"
        candidates = cloze_lines(context)
        if candidates:
            break
    else:
        raise ValueError(f"no line of {_N_DRAWS} passages of length={length} tokens can be asked (too short?)")
    start, end, head, word = candidates[int(rng.integers(len(candidates)))]
    return Record(
        where[0],
        where[1],
        context,
        f"\nFinish this line from the text above: {head}",
        f" {word}",
        relevant=[(start, end)],
        relevant_any=[(s, e) for s, e, _, _ in candidates],
    )
