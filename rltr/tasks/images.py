"""Image classification on scikit-learn's bundled digits (1,797 8 x 8 images of 0-9; no download).

Images are upsampled to ``image_size`` (default 32: with 4 x 4 patches, 64 patch tokens + CLS) so there
are enough tokens for reduction to matter. The split is fixed (seeded once): 1,257 train, 180 validation,
360 test images; ``examples(n, seed, split)`` draws up to ``n`` distinct images of a split, ``sample``
draws training images (router training). A batch's head output is the classifier's logits; scores:
``accuracy`` (top class = label) and ``loglik`` (the label's probability).

Shapes: B images, C = 1 channel, S = image_size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from rltr.tasks.base import SPLIT_IDS, Task

N_CLASSES = 10
SPLIT_SIZES = {"train": 1257, "validation": 180, "test": 360}  # in this order over a fixed permutation


@dataclass
class ImageExample:
    """One digit: ``image`` (8, 8) float32 in [0, 16], ``label`` 0-9, ``index`` in scikit-learn's array."""

    image: np.ndarray
    label: int
    index: int


@functools.lru_cache(maxsize=1)
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) float32, labels (1797,) int64) from scikit-learn's bundled copy."""
    from sklearn.datasets import load_digits as sk_load

    data = sk_load()
    return data.images.astype(np.float32), data.target.astype(np.int64)


def split_indices(split: str) -> np.ndarray:
    """The fixed image indices of ``split`` (train / validation / test)."""
    if split not in SPLIT_IDS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_IDS)}")
    order = np.random.default_rng(20261201).permutation(len(load_digits()[1]))
    start = 0
    for name, size in SPLIT_SIZES.items():
        if name == split:
            return order[start : start + size]
        start += size
    raise AssertionError(split)  # pragma: no cover


def digit_pixels(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """(B, 8, 8) raw digits in [0, 16] -> (B, 1, S, S) pixel values in [-1, 1], bilinearly upsampled."""
    x = (images.float() / 16.0)[:, None]
    x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return (x - 0.5) / 0.5


@dataclass
class ImageBatch:
    """A batch of digits for a ViT classifier: pixel_values (B, 1, S, S), labels (B,) long."""

    pixel_values: torch.Tensor
    labels: torch.Tensor
    kind: ClassVar[str] = "classes"
    relevant: ClassVar[None] = None  # no token is known to matter (the oracle does not apply)
    context_len: ClassVar[None] = None  # no question tail
    answer_start: ClassVar[None] = None  # no teacher-forced answer

    def to(self, device) -> ImageBatch:
        return ImageBatch(self.pixel_values.to(device), self.labels.to(device))

    @property
    def n_head_tokens(self) -> torch.Tensor:
        """(B,) ones: the classifier reads the CLS token."""
        return torch.ones_like(self.labels)

    def embed(self, backbone):
        return backbone.embed_images(self.pixel_values)

    def head_output(self, backbone, state) -> torch.Tensor:
        """(B, 10) class logits of the final state."""
        return backbone.class_logits(state)

    def relevant_for(self, query_aware: bool) -> None:
        return None  # no token is known to matter

    def model_inputs(self, reduced: bool, query_aware: bool = True) -> dict:
        return {"pixel_values": self.pixel_values}

    def model_output(self, out) -> torch.Tensor:
        return out.logits


class Digits(Task[ImageExample, ImageBatch]):
    name = "digits"
    description = "scikit-learn's 8x8 digits upsampled (32x32: 64 patches + CLS); classify 0-9"
    kind = "classes"
    scores = ("accuracy",)

    def __init__(self, image_size: int = 32):
        if not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
        self.image_size = image_size

    def _example(self, i: int) -> ImageExample:
        images, labels = load_digits()
        return ImageExample(images[i], int(labels[i]), int(i))

    def sample(self, rng: np.random.Generator) -> ImageExample:
        """A random training image."""
        train = split_indices("train")
        return self._example(int(train[rng.integers(len(train))]))

    def examples(self, n: int, seed: int = 0, split: str = "test") -> list[ImageExample]:
        """Up to ``n`` distinct images of ``split``, in a seeded order (all of them when ``n`` exceeds the split)."""
        idx = split_indices(split)
        order = np.random.default_rng([seed, SPLIT_IDS[split], 7]).permutation(len(idx))[:n]
        return [self._example(int(idx[i])) for i in order]

    def collate(self, examples: list[ImageExample]) -> ImageBatch:
        if not examples:
            raise ValueError("cannot collate an empty list of examples")
        images = torch.from_numpy(np.stack([e.image for e in examples]))
        return ImageBatch(digit_pixels(images, self.image_size), torch.tensor([e.label for e in examples]))

    def prepare(self, backbone) -> None:
        if backbone.inputs != "images":
            raise ValueError(f"task {self.name!r} gives images, but {backbone.family} model {backbone.name!r} takes {backbone.inputs}")
        want = (1, self.image_size, self.image_size)
        if tuple(backbone.image_shape) != want or getattr(backbone.config, "num_labels", None) != N_CLASSES:
            raise ValueError(
                f"task {self.name!r} gives {want} images of {N_CLASSES} classes; model {backbone.name!r} takes "
                f"{tuple(backbone.image_shape)} images of {getattr(backbone.config, 'num_labels', None)} classes"
            )

    def reduction_options(self, query_aware: bool) -> dict:
        return {"query_aware": query_aware}  # the family protects CLS; there is no question tail
