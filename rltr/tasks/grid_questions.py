"""Question tasks on the built-in VLM (``vlm-digits``): one task per question type of :mod:`rltr.tasks.digit_grid`
(``grid_cell``, ``grid_has``, ``grid_count``, ``grid_maxrow``), so every table reports each type on its own.

A batch is a token :class:`~rltr.tasks.base.Batch` (context = ``<bos>`` + image tokens, tail = question and
answer) plus the grids' pixel values; the backbone embeds both (:meth:`rltr.backbones.llava.LlavaBackbone.embed_multimodal`)
and protects every text token, so only image tokens are ever reduced.

Shapes: B questions, N = 70 tokens (1 + 64 image + 4 question + 1 answer), (B, 1, 32, 32) pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from rltr.tasks.base import SPLIT_IDS, Batch, Example, Task, _stable_hash, collate
from rltr.tasks.digit_grid import N_IMAGE_TOKENS, PAD_ID, QUESTION_TYPES, VOCAB_SIZE, GridExample, grid_pixels, render, sample_question


@dataclass
class VLMBatch(Batch):
    """A token batch with its images: ``pixel_values`` (B, 1, 32, 32)."""

    pixel_values: torch.Tensor | None = None

    def to(self, device) -> VLMBatch:
        moved: dict[str, Any] = {k: None if v is None else v.to(device) for k, v in self.__dict__.items()}
        return VLMBatch(**moved)

    def embed(self, backbone):
        return backbone.embed_multimodal(self.input_ids, self.attention_mask, self.pixel_values, protected=self.protected)

    def model_inputs(self, reduced: bool, query_aware: bool = True) -> dict:
        return {**super().model_inputs(reduced, query_aware), "pixel_values": self.pixel_values}


class GridQuestions(Task[GridExample, VLMBatch]):
    """Questions of ``question_types`` (cycled) about digit grids; held-out splits use unseen digit images."""

    name = "grid_questions"
    description = "questions about a 4x4 grid of digits (VLM, 64 image tokens): all question types"
    question_types: tuple[str, ...] = QUESTION_TYPES
    pad_id = PAD_ID
    vocab_size = VOCAB_SIZE
    with_images = True

    def __init__(self, question_types: list[str] | tuple[str, ...] | None = None):
        if question_types is not None:
            bad = [q for q in question_types if q not in QUESTION_TYPES]
            if bad or not question_types:
                raise ValueError(f"question_types {list(question_types)!r}: each must be one of {', '.join(QUESTION_TYPES)}")
            self.question_types = tuple(question_types)

    def sample(self, rng: np.random.Generator) -> GridExample:
        return sample_question(rng, self.question_types[int(rng.integers(len(self.question_types)))], "train")

    def examples(self, n: int, seed: int = 0, split: str = "test") -> list[GridExample]:
        if split not in SPLIT_IDS:
            raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_IDS)}")
        rng = np.random.default_rng([seed, SPLIT_IDS[split], _stable_hash(self.name)])
        return [sample_question(rng, self.question_types[i % len(self.question_types)], split) for i in range(n)]

    def collate(self, examples: list[GridExample]) -> VLMBatch:
        batch = collate(cast(list[Example], examples), self.pad_id)  # GridExample has the token fields collate reads
        pixels = grid_pixels(np.stack([render(e.image_idx) for e in examples]))
        return VLMBatch(**batch.__dict__, pixel_values=pixels)

    def prepare(self, backbone) -> None:
        """ValueError naming the model unless it is a LLaVA-family model with 64 image tokens over this vocabulary."""
        if backbone.family != "llava":
            raise ValueError(f"task {self.name!r} gives images and questions, but {backbone.family} model {backbone.name!r} is not a VLM")
        vocab = getattr(backbone.config, "vocab_size", None)
        if backbone.n_image_tokens != N_IMAGE_TOKENS or vocab != VOCAB_SIZE:
            raise ValueError(
                f"task {self.name!r} needs a VLM with {N_IMAGE_TOKENS} image tokens and vocab_size={VOCAB_SIZE} "
                f"(vlm-digits); model {backbone.name!r} has {backbone.n_image_tokens} and {vocab}"
            )

    def max_length(self) -> int:
        return len(self.examples(1, split="train")[0].input_ids)


class GridCell(GridQuestions):
    name, question_types = "grid_cell", ("cell",)
    description = "VLM: the digit in row r, column c of a 4x4 grid (needs 1 of 16 cells)"


class GridHas(GridQuestions):
    name, question_types = "grid_has", ("has",)
    description = "VLM: is digit d in the grid? (a cell holding d; none when absent)"


class GridCount(GridQuestions):
    name, question_types = "grid_count", ("count",)
    description = "VLM: how many cells hold digit d (0-3)"


class GridMaxRow(GridQuestions):
    name, question_types = "grid_maxrow", ("maxrow",)
    description = "VLM: the row holding the largest digit"


GRID_TASKS: tuple[type[GridQuestions], ...] = (GridQuestions, GridCell, GridHas, GridCount, GridMaxRow)
