"""Sentence embeddings with a BERT-family encoder (e.g. all-MiniLM-L6-v2): how much of the full model's
embedding a reduced forward keeps.

The corpus ships with rltr (``data/sentence_pairs.tsv``, written for it): 194 pairs of everyday English
sentences, each with a paraphrase (388 sentences, 20-40 tokens each). Pairs are split once (seeded) into
116 train, 20 validation and 58 test pairs; an example is one sentence of a split. The head output is the
mean-pooled final hidden states (sentence-transformers' pooling; size-weighted over merged tokens), and
the task compares it with the FULL model's embeddings of the whole corpus, computed once per model when
the task is prepared for it:

* ``fidelity``: cosine with the full embedding of the same sentence;
* ``retrieval``: the nearest full embedding among all 388 is the sentence's own;
* ``pair_retrieval``: the nearest full embedding among the 387 others is its paraphrase (the full model's
  own rate is the ceiling).

Shapes: B sentences, L tokens (padded), M = 388 corpus sentences, D hidden.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from rltr.backbones import EncoderBackbone
from rltr.tasks.base import SPLIT_IDS, Task
from rltr.tasks.jsonl import load_tokenizer

CORPUS = Path(__file__).resolve().parent / "data" / "sentence_pairs.tsv"
PAIR_SPLITS = {"train": 116, "validation": 20, "test": 58}  # pairs, in this order over a fixed permutation


@functools.lru_cache(maxsize=1)
def corpus() -> list[str]:
    """Every sentence: pair p is sentences 2p and 2p + 1."""
    out = []
    for n, line in enumerate(CORPUS.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split("\t")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise ValueError(f"{CORPUS}:{n} is not two tab-separated sentences")
        out += [p.strip() for p in parts]
    return out


def split_sentences(split: str) -> np.ndarray:
    """Sentence indices of ``split``: both sentences of each of its pairs."""
    if split not in SPLIT_IDS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_IDS)}")
    pairs = np.random.default_rng(20261202).permutation(len(corpus()) // 2)
    start = 0
    for name, size in PAIR_SPLITS.items():
        if name == split:
            chosen = np.sort(pairs[start : start + size])
            return np.stack([2 * chosen, 2 * chosen + 1], axis=1).reshape(-1)
        start += size
    raise AssertionError(split)  # pragma: no cover


@dataclass
class SentenceExample:
    """One corpus sentence by index (its pair is ``index ^ 1``)."""

    index: int


@dataclass
class SentenceBatch:
    """input_ids / attention_mask (B, L) right-padded; index, pair (B,) long corpus indices; reference (M, D):
    the full model's embedding of every corpus sentence."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    index: torch.Tensor
    pair: torch.Tensor
    reference: torch.Tensor
    kind: ClassVar[str] = "embedding"
    relevant: ClassVar[None] = None  # no token is known to matter (the oracle does not apply)
    context_len: ClassVar[None] = None  # no question tail
    answer_start: ClassVar[None] = None  # no teacher-forced answer

    def to(self, device) -> SentenceBatch:
        return SentenceBatch(*(getattr(self, f).to(device) for f in ("input_ids", "attention_mask", "index", "pair", "reference")))

    @property
    def n_head_tokens(self) -> torch.Tensor:
        """(B,) zeros: mean pooling computes no head."""
        return torch.zeros_like(self.index)

    def embed(self, backbone):
        return backbone.embed(self.input_ids, self.attention_mask)

    def head_output(self, backbone, state) -> torch.Tensor:
        """(B, D) size-weighted mean of the final states."""
        return backbone.mean_pooled(state)

    def relevant_for(self, query_aware: bool) -> None:
        return None  # no token is known to matter

    def model_inputs(self, reduced: bool, query_aware: bool = True) -> dict:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}

    def model_output(self, out) -> torch.Tensor:
        """(B, D) mean pool of ``last_hidden_state`` over the attention mask (under reduction dropped columns are
        0: the mean's direction, all that cosines read, is that of the size-weighted mean over kept slots)."""
        mask = self.attention_mask[..., None].to(out.last_hidden_state.dtype)
        return (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class Sentences(Task[SentenceExample, SentenceBatch]):
    name = "sentences"
    description = "everyday English sentences with paraphrases: embedding fidelity and retrieval under reduction"
    kind = "embedding"
    scores = ("fidelity", "retrieval", "pair_retrieval")

    def __init__(self, max_length: int = 128):
        if not isinstance(max_length, int) or max_length < 8:
            raise ValueError(f"max_length must be an int >= 8, got {max_length!r}")
        self.max_tokens = max_length  # not self.max_length: that is Task's method
        self._tokenizer: Callable[..., Any] | None = None
        self._reference: torch.Tensor | None = None
        self._prepared_for: tuple | None = None

    def sample(self, rng: np.random.Generator) -> SentenceExample:
        """A random training sentence."""
        train = split_sentences("train")
        return SentenceExample(int(train[rng.integers(len(train))]))

    def examples(self, n: int, seed: int = 0, split: str = "test") -> list[SentenceExample]:
        """Up to ``n`` distinct sentences of ``split`` in a seeded order (all of them when ``n`` exceeds the split)."""
        idx = split_sentences(split)
        order = np.random.default_rng([seed, SPLIT_IDS[split], 11]).permutation(len(idx))[:n]
        return [SentenceExample(int(idx[i])) for i in order]

    def prepare(self, backbone) -> None:
        """Check that ``backbone`` is a text encoder with a tokenizer in its folder, load the tokenizer and embed
        the whole corpus with all tokens (once per model)."""
        key = (backbone.config_hash, backbone.name, id(backbone.model))
        if self._prepared_for == key:
            return
        if not isinstance(backbone, EncoderBackbone) or backbone.inputs != "tokens":
            raise ValueError(
                f"task {self.name!r} gives sentences for a text encoder (bert), but {backbone.family} model "
                f"{backbone.name!r} is {'an image model' if backbone.inputs == 'images' else 'not an encoder'}"
            )
        self._tokenizer = _tokenizer(backbone)
        self._reference = None
        texts = corpus()
        chunks = []
        for start in range(0, len(texts), 64):
            batch = self._tokenize(texts[start : start + 64], backbone.device)
            chunks.append(backbone.mean_pooled(backbone.run(backbone.embed(batch["input_ids"], batch["attention_mask"]))))
        self._reference = torch.cat(chunks).float()
        self._prepared_for = key

    def collate(self, examples: list[SentenceExample]) -> SentenceBatch:
        if self._reference is None:
            raise ValueError(f"task {self.name!r} embeds its corpus with a model first: call prepare(backbone)")
        if not examples:
            raise ValueError("cannot collate an empty list of examples")
        index = torch.tensor([e.index for e in examples])
        tok = self._tokenize([corpus()[i] for i in index.tolist()], "cpu")
        return SentenceBatch(tok["input_ids"], tok["attention_mask"], index, index ^ 1, self._reference.cpu())

    def reduction_options(self, query_aware: bool) -> dict:
        return {"query_aware": query_aware}  # the family protects [CLS] and [SEP]; there is no question tail

    def _tokenize(self, texts: list[str], device) -> dict:
        if self._tokenizer is None:
            raise ValueError(f"task {self.name!r} tokenizes with its model's tokenizer: call prepare(backbone) first")
        tok = self._tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        return {"input_ids": tok["input_ids"].to(device), "attention_mask": tok["attention_mask"].to(device)}


def _tokenizer(backbone):
    """The tokenizer saved with ``backbone``'s model (its folder, found by name)."""
    return load_tokenizer(backbone.name or backbone.config._name_or_path)
