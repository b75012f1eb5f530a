"""Questions about a grid of scikit-learn digits, for the built-in VLM (``vlm-digits``; no download).

An image is a ``GRID`` x ``GRID`` grid of 8 x 8 digits (32 x 32 pixels); with 2 x 2 patches the vision
tower gives ``N_IMAGE_TOKENS`` = 256 image tokens, ``CELL_TOKENS`` = 16 per cell. A prompt is

    <bos> <image> x 256 | <question word> arg arg ? | answer

the context is ``<bos>`` + the image tokens (``<bos>`` protected), the tail is the question and the
teacher-forced one-token answer. Question types (``QUESTION_TYPES``):

- ``cell r c``:   the digit in row r, column c                   (needs 1 cell)
- ``has d``:      is digit d anywhere? yes / no                  (a cell holding d; none when absent)
- ``count d``:    how many cells hold d (0-3)                     (the cells holding d)
- ``maxrow``:     the row holding the largest digit (unique max)  (the cell holding it)

``relevant`` marks the image tokens of the cells the answer needs (what the oracle keeps); a query-agnostic
method could need any cell (``relevant_any``: every image token). Grids draw digit images of one split
(train / validation / test images never mix), so held-out accuracy is on unseen handwriting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from rltr.tasks.images import load_digits, split_indices

GRID, CELL_PX, PATCH = 4, 8, 4
IMAGE_PX = GRID * CELL_PX  # 32
SIDE_TOKENS = IMAGE_PX // PATCH  # 16 patches per image side
CELL_SIDE = CELL_PX // PATCH  # 4 patches per cell side
CELL_TOKENS = CELL_SIDE * CELL_SIDE  # 16
N_IMAGE_TOKENS = SIDE_TOKENS * SIDE_TOKENS  # 256
N_COUNT = 4  # count answers 0..3

WORDS = ["<pad>", "<bos>", "<image>", "<eos>", *(str(d) for d in range(10)), "cell", "has", "count", "maxrow", "yes", "no", "_", "?"]
WORD_ID = {w: i for i, w in enumerate(WORDS)}
PAD_ID, BOS_ID, IMAGE_ID, EOS_ID = 0, 1, 2, 3
VOCAB_SIZE = 32  # room for later words
QUESTION_TYPES = ("cell", "has", "count", "maxrow")
N_QUESTION = 4  # question tokens before the answer
SEQ_LEN = 1 + N_IMAGE_TOKENS + N_QUESTION + 1  # 262


def digit_id(d: int) -> int:
    return WORD_ID[str(int(d))]


def cell_tokens(r: int, c: int) -> list[int]:
    """Image-token indices (0..255, raster order over 16 x 16 patches) of grid cell (r, c)."""
    rows = range(r * CELL_SIDE, (r + 1) * CELL_SIDE)
    return [y * SIDE_TOKENS + x for y in rows for x in range(c * CELL_SIDE, (c + 1) * CELL_SIDE)]


def cell_of_tokens() -> np.ndarray:
    """(256,) the cell index r * GRID + c of every image token."""
    y, x = np.divmod(np.arange(N_IMAGE_TOKENS), SIDE_TOKENS)
    return (y // CELL_SIDE) * GRID + x // CELL_SIDE


@dataclass
class GridExample:
    """One question: ``image_idx`` (GRID, GRID) indices into scikit-learn's digits, ``labels`` their digits,
    ``input_ids`` the prompt + answer, ``qtype``, ``cells`` the cells the answer needs (r * GRID + c)."""

    image_idx: np.ndarray
    labels: np.ndarray
    input_ids: list[int]
    qtype: str
    cells: list[int]
    n_answer: int = 1
    protected: list[int] = field(default_factory=lambda: [0])  # <bos>

    @property
    def context_len(self) -> int:
        return 1 + N_IMAGE_TOKENS

    @property
    def relevant_any(self) -> list[int]:
        """Every image token: a question asked later may need any cell."""
        return list(range(1, 1 + N_IMAGE_TOKENS))

    @property
    def relevant(self) -> list[int]:
        """Prompt positions of the needed cells' image tokens (1 + token index: after ``<bos>``)."""
        return sorted(1 + t for cell in self.cells for t in cell_tokens(*divmod(cell, GRID)))

    @property
    def answer(self) -> list[int]:
        return self.input_ids[-1:]


def render(image_idx: np.ndarray, shifts: np.ndarray | None = None) -> np.ndarray:
    """(GRID, GRID) digit indices -> (32, 32) float32 in [0, 16]; ``shifts`` (GRID, GRID, 2) in {-1, 0, 1}
    moves each digit inside its cell (training augmentation; zeros shifted in)."""
    images, _ = load_digits()
    out = np.zeros((IMAGE_PX, IMAGE_PX), dtype=np.float32)
    for r in range(GRID):
        for c in range(GRID):
            img = images[image_idx[r, c]]
            if shifts is not None:
                img = np.roll(np.pad(img, 1), tuple(shifts[r, c]), axis=(0, 1))[1:-1, 1:-1]
            out[r * CELL_PX : (r + 1) * CELL_PX, c * CELL_PX : (c + 1) * CELL_PX] = img
    return out


def grid_pixels(images: np.ndarray) -> torch.Tensor:
    """(B, 32, 32) grids in [0, 16] -> (B, 1, 32, 32) pixel values in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).float()[:, None] / 8.0 - 1.0


def _pick(rng: np.random.Generator, by_digit: list[np.ndarray], digits: np.ndarray) -> np.ndarray:
    """(GRID, GRID) digit-image indices showing ``digits``, one random image of each digit's pool per cell."""
    return np.array([by_digit[d][rng.integers(len(by_digit[d]))] for d in digits.reshape(-1)]).reshape(digits.shape)


def sample_question(rng: np.random.Generator, qtype: str, split: str) -> GridExample:
    """One seeded question of ``qtype`` over a fresh grid of ``split``'s digit images."""
    if qtype not in QUESTION_TYPES:
        raise ValueError(f"unknown question type {qtype!r}; known: {', '.join(QUESTION_TYPES)}")
    pool = split_indices(split)
    labels_all = load_digits()[1]
    by_digit = [pool[labels_all[pool] == d] for d in range(10)]
    digits = rng.integers(10, size=(GRID, GRID))
    flat = digits.reshape(-1)
    if qtype == "cell":
        cell = int(rng.integers(GRID * GRID))
        q, answer, cells = ["cell", str(cell // GRID), str(cell % GRID)], str(flat[cell]), [cell]
    elif qtype in ("has", "count"):
        d = int(rng.integers(10))
        k = int(rng.integers(2)) if qtype == "has" else int(rng.integers(N_COUNT))
        others = rng.integers(9, size=GRID * GRID)
        flat[:] = others + (others >= d)  # every cell a digit other than d
        cells = sorted(rng.choice(GRID * GRID, size=k, replace=False).tolist())
        flat[cells] = d
        if qtype == "has":
            q, answer, cells = ["has", str(d), "_"], "yes" if k else "no", cells[:1]
        else:
            q, answer = ["count", str(d), "_"], str(k)
    else:  # maxrow: one largest digit
        cell, top = int(rng.integers(GRID * GRID)), int(rng.integers(3, 10))
        flat[:] = rng.integers(top, size=GRID * GRID)
        flat[cell] = top
        q, answer, cells = ["maxrow", "_", "_"], str(cell // GRID), [cell]
    image_idx = _pick(rng, by_digit, digits)
    ids = [BOS_ID] + [IMAGE_ID] * N_IMAGE_TOKENS + [WORD_ID[w] for w in q] + [WORD_ID["?"], WORD_ID[answer]]
    return GridExample(image_idx, digits.copy(), ids, qtype, cells)
