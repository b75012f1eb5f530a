"""RULER-style long-context tasks in real prose (:mod:`rltr.tasks.prose_source`), made at run time.

Kinds (``prose:KIND`` task specs; every answer is teacher-forced and scored by exact match):

- ``passkey``: one needle sentence with a number hidden in the prose; the question asks for it;
- ``multikey``: ``n_needles`` needles, each a number for a different word; one word is asked;
- ``multivalue``: ``n_needles`` needles giving numbers for the same word; all are asked, in order;
- ``passkey_recall``: like ``passkey``, but the question repeats the needle's opening words (a cue a
  135M model can follow at 2k tokens);
- ``cloze``: no needle; a line of the passage is quoted without its last word, which is the answer
  (:mod:`rltr.tasks.passage_qa`).

The context is prose (whole lines of one play) with the needles between lines at seeded depths,
cut to at most ``length`` tokens of the model's tokenizer. Questions end with a space and answers are bare
digits: SmolLM2's tokenizer writes " 123" as a space token then one token per digit, so this is the text's
natural tokenization and the score is the number itself. Needle spans are ``relevant`` (the asked one)
and ``relevant_any`` (all of them: what a query-agnostic oracle may keep).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rltr.tasks.jsonl_read import Record
from rltr.tasks.passage_qa import QA_KINDS, qa_record
from rltr.tasks.prose_source import CHARS_PER_TOKEN, filler, fit_lines

KINDS = ("passkey", "passkey_recall", "multikey", "multivalue", *QA_KINDS)  # appended: seeds follow the index
WORDS = (
    "apple",
    "river",
    "candle",
    "falcon",
    "garden",
    "marble",
    "violin",
    "harbor",
    "lantern",
    "meadow",
    "copper",
    "saddle",
    "orchid",
    "glacier",
    "thimble",
    "compass",
)


@dataclass(frozen=True)
class Needle:
    text: str  # the sentence put between two lines of prose
    word: str
    number: str


def _number(rng: np.random.Generator, n_digits: int) -> str:
    return str(int(rng.integers(10 ** (n_digits - 1), 10**n_digits)))


def needles_for(kind: str, rng: np.random.Generator, n_needles: int, n_digits: int) -> tuple[list[Needle], str, str, list[int]]:
    """(needles, question, answer, indices of the asked needles) for one example of ``kind``."""
    if kind in ("passkey", "passkey_recall"):
        num = _number(rng, n_digits)
        text = f"The pass key is {num}. Remember it. {num} is the pass key."
        question = "\nWhat is the pass key? The pass key is " if kind == "passkey" else "\nRemember the pass key? The pass key is "
        return [Needle(text, "pass key", num)], question, num, [0]
    if kind == "multikey":
        words = rng.choice(len(WORDS), size=n_needles, replace=False)
        needles = []
        for w in words:
            num = _number(rng, n_digits)
            needles.append(Needle(f"The special magic number for {WORDS[w]} is {num}.", WORDS[w], num))
        ask = int(rng.integers(n_needles))
        word = needles[ask].word
        return (
            needles,
            f"\nWhat is the special magic number for {word}? The special magic number for {word} is ",
            needles[ask].number,
            [ask],
        )
    if kind == "multivalue":
        word = WORDS[int(rng.integers(len(WORDS)))]
        nums = [_number(rng, n_digits) for _ in range(n_needles)]
        needles = [Needle(f"One of the special magic numbers for {word} is {num}.", word, num) for num in nums]
        return needles, f"\nWhat are all the special magic numbers for {word}? They are ", ", ".join(nums), list(range(n_needles))
    raise ValueError(f"unknown prose task kind {kind!r}; known kinds: {', '.join(KINDS)}")


def make_record(
    kind: str, rng: np.random.Generator, tokenizer, length: int, split: str, where: tuple[str, int], n_needles: int = 4, n_digits: int = 5
) -> Record:
    """One example as a JSONL :class:`Record`: prose of at most ``length`` tokens with the needles inside
    (a question about the passage itself for :data:`~rltr.tasks.passage_qa.QA_KINDS`)."""
    if kind in QA_KINDS:
        return qa_record(kind, rng, tokenizer, length, split, where)
    needles, question, answer, asked = needles_for(kind, rng, n_needles, n_digits)
    needle_chars = sum(len(n.text) + 1 for n in needles)
    lines = filler(int(length * CHARS_PER_TOKEN), rng, split)
    lines = fit_lines(lines, tokenizer, length, needle_chars)
    slots = sorted(rng.choice(len(lines) + 1, size=len(needles), replace=len(needles) > len(lines) + 1).tolist())
    order = rng.permutation(len(needles)) if kind != "multivalue" else np.arange(len(needles))
    pieces: list[str] = []
    spans: dict[int, tuple[int, str]] = {}
    for i, line in enumerate([*lines, None]):
        for j, slot in enumerate(slots):
            if slot == i:
                k = int(order[j])
                spans[k] = (sum(len(p) + 1 for p in pieces), needles[k].text)
                pieces.append(needles[k].text)
        if line is not None:
            pieces.append(line)
    context = "\n".join(pieces) + "\n"
    span = {k: (start, start + len(text)) for k, (start, text) in spans.items()}
    return Record(
        where[0], where[1], context, question, answer, relevant=[span[k] for k in asked], relevant_any=[span[k] for k in sorted(span)]
    )
