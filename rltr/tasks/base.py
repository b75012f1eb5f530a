"""The task contract: seeded example generators with exact-match scoring.

An example is one token sequence laid out as ``context | tail``. The context (positions
``[0, context_len)``) is what reducers may shrink; the tail (question and teacher-forced answer) is
protected. The answer is the last ``n_answer`` tokens; the logits at position ``p`` predict token
``p + 1``, so the answer is scored from the logits at ``[len - n_answer - 1, len - 1)``. Greedy
generation reproduces the answer exactly iff every teacher-forced prediction is right, so exact match
on teacher-forced logits equals exact match of ``generate()``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic

import numpy as np
import torch
from typing_extensions import TypeVar  # with default= (PEP 696) on Python 3.10

from rltr.inference import PromptHints
from rltr.tasks.vocab import BASE_VOCAB_SIZE, PAD_ID, VOCAB_SIZE

SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}


@dataclass
class Example:
    """One tokenized example (python lists; see the module docstring for the layout)."""

    input_ids: list[int]
    context_len: int
    n_answer: int
    relevant: list[int] = field(default_factory=list)  # context positions the answer depends on
    protected: list[int] = field(default_factory=list)  # context positions never reduced (BOS, task tag)
    # context positions ANY question this context could be asked may depend on (what a query-agnostic
    # method could at best keep); None: the same as ``relevant``
    relevant_any: list[int] | None = None

    def __post_init__(self) -> None:
        n = len(self.input_ids)
        if not 0 < self.context_len <= n - self.n_answer:
            raise ValueError(f"context_len={self.context_len} must lie in (0, {n - self.n_answer}]")
        if self.n_answer < 1:
            raise ValueError(f"n_answer={self.n_answer} must be >= 1")
        if self.relevant_any is None:
            self.relevant_any = list(self.relevant)
        bad = [p for p in self.relevant + self.protected + self.relevant_any if not 0 <= p < self.context_len]
        if bad:
            raise ValueError(f"relevant/protected positions {bad} fall outside the context [0, {self.context_len})")

    @property
    def answer(self) -> list[int]:
        return self.input_ids[-self.n_answer :]


@dataclass
class Batch:
    """Right-padded tensors for a list of examples. Shapes: B examples, N = longest sequence."""

    input_ids: torch.Tensor  # (B, N) long, pad_id past each sequence's end
    attention_mask: torch.Tensor  # (B, N) bool, True on real tokens
    context_len: torch.Tensor  # (B,) long
    lengths: torch.Tensor  # (B,) long, real tokens per row
    n_answer: torch.Tensor  # (B,) long
    relevant: torch.Tensor  # (B, N) bool, context tokens the answer depends on
    protected: torch.Tensor  # (B, N) bool: explicit protected positions, plus the whole tail
    relevant_any: torch.Tensor  # (B, N) bool, context tokens any question about the context may depend on
    reference: torch.Tensor | None = None  # (B, N, V) the full model's answer logits, when a fidelity score needs them

    def relevant_for(self, query_aware: bool) -> torch.Tensor:
        """(B, N) bool what an oracle may know: the question's own tokens when it sees the question, else
        the tokens any question about this context could need (the honest query-agnostic limit)."""
        return self.relevant if query_aware else self.relevant_any

    @property
    def answer_mask(self) -> torch.Tensor:
        """(B, N) bool: positions whose logits predict an answer token."""
        idx = torch.arange(self.input_ids.shape[1], device=self.input_ids.device)
        start = (self.lengths - self.n_answer - 1)[:, None]
        return (idx >= start) & (idx < (self.lengths - 1)[:, None])

    @property
    def answer_start(self) -> torch.Tensor:
        """(B,) long position where each row's teacher-forced answer starts (no decision may read it)."""
        return self.lengths - self.n_answer

    def to(self, device: torch.device | str) -> Batch:
        moved: dict[str, Any] = {k: None if v is None else v.to(device) for k, v in self.__dict__.items()}  # tensors, or None
        return Batch(**moved)

    # ---- what the env and evaluation ask of any task's batch (encoder tasks: rltr.tasks.images / sentences) ----
    kind: ClassVar[str] = "tokens"  # the head's output scores read: token logits (rltr.tasks.scoring.SCORES)

    @property
    def n_head_tokens(self) -> torch.Tensor:
        """(B,) positions whose logits the head computes (the compute model counts them)."""
        return self.n_answer

    def embed(self, backbone):
        """The state entering layer 0 (tail and explicit positions protected)."""
        return backbone.embed(self.input_ids, self.attention_mask, protected=self.protected)

    def head_output(self, backbone, state) -> torch.Tensor:
        """(B, N, V) logits at the answer positions of the final ``state`` (0 elsewhere)."""
        return backbone.answer_logits(state, self.answer_mask)

    def model_inputs(self, reduced: bool, query_aware: bool = True) -> dict:
        """Keyword arguments of the HF model's forward for this batch: logits at the scored columns only;
        under token reduction (``reduced``) also the tail, protected and relevant tokens (:meth:`relevant_for`)."""
        inputs = dict(
            input_ids=self.input_ids, attention_mask=self.attention_mask.long(), use_cache=False, logits_to_keep=self._scored_columns()
        )
        if reduced:
            inputs["reduction_hints"] = PromptHints(self.context_len, self.protected, self.relevant_for(query_aware), self.n_answer)
        return inputs

    def model_output(self, out) -> torch.Tensor:
        """(B, N, V) logits from the HF forward's output for :meth:`model_inputs` (0 at unscored columns)."""
        columns = self._scored_columns()
        logits = out.logits.new_zeros((*self.input_ids.shape, out.logits.shape[-1]))
        logits[:, columns] = out.logits
        return logits

    def _scored_columns(self) -> torch.Tensor:
        """(K,) long columns whose logits predict an answer token in some row."""
        return self.answer_mask.any(0).nonzero().flatten()


def collate(examples: list[Example], pad_id: int) -> Batch:
    """Pad a list of examples on the right into a :class:`Batch`."""
    if not examples:
        raise ValueError("cannot collate an empty list of examples")
    b, n = len(examples), max(len(e.input_ids) for e in examples)
    ids = torch.full((b, n), pad_id, dtype=torch.long)
    relevant = torch.zeros(b, n, dtype=torch.bool)
    relevant_any = torch.zeros(b, n, dtype=torch.bool)
    protected = torch.zeros(b, n, dtype=torch.bool)
    for i, e in enumerate(examples):
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        relevant[i, e.relevant] = True
        relevant_any[i, e.relevant_any] = True
        protected[i, e.protected] = True
        protected[i, e.context_len : len(e.input_ids)] = True
    lengths = torch.tensor([len(e.input_ids) for e in examples])
    return Batch(
        input_ids=ids,
        attention_mask=torch.arange(n)[None, :] < lengths[:, None],
        context_len=torch.tensor([e.context_len for e in examples]),
        lengths=lengths,
        n_answer=torch.tensor([e.n_answer for e in examples]),
        relevant=relevant,
        protected=protected,
        relevant_any=relevant_any,
    )


def exact_match(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """(B,) float: 1.0 where the argmax at every answer position equals the answer token.

    ``logits`` is (B, N, V) aligned with ``batch.input_ids`` (full length, original positions).
    """
    pred = logits[:, :-1].argmax(-1)  # (B, N-1): prediction for token p+1
    target = batch.input_ids[:, 1:]
    mask = batch.answer_mask[:, :-1]
    wrong = (pred != target) & mask
    return (~wrong.any(dim=1)).float()


# What a task's examples and batches are: token tasks (the default) use Example and Batch; image and sentence
# tasks their own kinds (rltr.tasks.images, rltr.tasks.sentences), which carry the same batch interface.
ExampleT = TypeVar("ExampleT", default=Example)
BatchT = TypeVar("BatchT", default=Batch)


class Task(Generic[ExampleT, BatchT]):
    """A seeded source of examples. Subclasses implement :meth:`sample` and set ``name``.

    Built-in token tasks speak rltr's own vocabulary (:mod:`rltr.tasks.vocab`); a task tokenized with a
    model's own tokenizer (:class:`rltr.tasks.jsonl.JsonlTask`) overrides ``pad_id`` and :meth:`check_fits`;
    tasks with other inputs (images, sentences for an encoder) override :meth:`prepare`, :meth:`collate`
    and :meth:`reduction_options` and set ``kind`` and ``scores``.
    """

    name: str = ""
    description: str = ""
    pad_id: int = PAD_ID  # what collate() pads with (padding is masked; any id the model embeds will do)
    kind: str = "tokens"  # what its batches' head outputs are (rltr.tasks.scoring.SCORES reads them by kind)
    with_images: bool = False  # True: its prompts also carry images (a VLM's pixel values), not token ids alone
    scores: tuple[str, ...] = ("accuracy",)  # what evaluation reports; the first is the headline

    def prepare(self, backbone) -> None:
        """Check that ``backbone`` can run this task (ValueError naming both otherwise) and set up what the
        task needs from it. Token tasks: a token model that reads the task's ids (:meth:`check_fits`)."""
        if backbone.inputs != "tokens":
            raise ValueError(f"task {self.name!r} gives token ids, but {backbone.family} model {backbone.name!r} takes {backbone.inputs}")
        self.check_fits(backbone)

    def collate(self, examples: list) -> Batch | BatchT:  # this default: a token Batch; other kinds override it
        """A right-padded batch of ``examples``."""
        return collate(examples, self.pad_id)

    def reduction_options(self, query_aware: bool) -> dict:
        """Keyword arguments of ``reducer(model, ...)`` for this task's inputs: the question is the protected tail."""
        return {"protect_last": 1, "query_aware": query_aware}

    @property
    def tag(self) -> str:
        """The task word after ``<bos>`` (variants of a task the model knows reuse that task's tag)."""
        return f"<{self.name}>"

    # False: scored by exact match of teacher-forced logits. True: scored on generated output
    # (the task also defines prompt, target, final_answer, score_completion, eos_id, answer_ids; see chain.py).
    generative: bool = False
    vocab_size: int = BASE_VOCAB_SIZE  # the smallest model vocabulary the task's ids fit in

    def sample(self, rng: np.random.Generator) -> ExampleT:  # pragma: no cover - interface
        raise NotImplementedError

    def examples(self, n: int, seed: int = 0, split: str = "test") -> list[ExampleT]:
        """``n`` examples, identical for the same (seed, split); splits never share a stream."""
        if split not in SPLIT_IDS:
            raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_IDS)}")
        rng = np.random.default_rng([seed, SPLIT_IDS[split], _stable_hash(self.name)])
        return [self.sample(rng) for _ in range(n)]

    def check_fits(self, backbone) -> None:
        """ValueError naming the mismatch unless ``backbone`` reads this task's token ids (built-in tasks:
        a model over rltr's built-in vocabulary)."""
        vocab = getattr(backbone.config, "vocab_size", None)
        if vocab is None or not self.vocab_size <= vocab <= VOCAB_SIZE:  # models built before later words were appended fit older tasks
            raise ValueError(
                f"task {self.name!r} uses rltr's built-in vocabulary ({self.vocab_size} words) but model "
                f"{backbone.name!r} has vocab_size={vocab}; use a built-in model (rltr zoo list)"
            )

    def max_length(self: Task[Example, Batch]) -> int:
        """Tokens in the longest example (what ``env.max_tokens: auto`` sizes observations by). Built-in
        generators: the longest of 256 training examples (their length is fixed by ``context_len``)."""
        return max(len(e.input_ids) for e in self.examples(256, seed=0, split="train"))


class GenerativeTask(Task[Example, Batch]):
    """A task scored on generated output (``generative = True``): what generation and output-length
    training read. Subclasses (e.g. :class:`rltr.tasks.chain.Chain`) set these and implement the methods."""

    generative = True
    context_len: int  # tokens before the question
    eos_id: int  # the end token of a completion
    answer_ids: Collection[int]  # the answer-shaped tokens
    max_completion_len: int  # the generation cap

    def prompt(self, example: Example) -> list[int]:  # pragma: no cover - interface
        """The ids a model is given: context and question (the completion removed)."""
        raise NotImplementedError

    def target(self, example: Example) -> int:  # pragma: no cover - interface
        """What :meth:`score_completion` compares a completion's answer with."""
        raise NotImplementedError

    def score_completion(self, completion: list[int], target: int) -> float:  # pragma: no cover - interface
        raise NotImplementedError


def _stable_hash(text: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(text)) % (2**31)
