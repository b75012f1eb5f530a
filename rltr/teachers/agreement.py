"""How far a cheap teacher can be trusted: its agreement with occlusion on a few training examples.

Occlusion measures what a router's decision does (a token removed, the answer's log-probability lost),
but costs one forward per token. The cheap teachers (attention at a layer, gradient) are checked against
it on ``n`` examples: top-1 agreement = the fraction of examples whose best token is occlusion's best.
:func:`pick_teacher` returns the cheap teacher that agrees best (cheapest among ties) and a warning when
even that one agrees on fewer than ``warn_below`` of the examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from rltr.tasks.base import Example
from rltr.teachers.base import Teacher, run_teacher

WARN_BELOW = 0.9  # a 94%-right teacher distilled to 98%; a 72%-right one gave unstable routers (docs/teachers.md)


def top1_agreement(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """Fraction of examples whose highest-scored token is the same under both score lists."""
    same = [int(x.argmax()) == int(y.argmax()) for x, y in zip(a, b, strict=True)]
    return sum(same) / max(len(same), 1)


def topk_overlap(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], k: int) -> float:
    """Mean fraction of ``b``'s top-k tokens that are in ``a``'s top-k."""
    out = []
    for x, y in zip(a, b, strict=True):
        kk = min(k, int(torch.isfinite(y).sum()))
        if kk:
            out.append(len(set(x.topk(kk).indices.tolist()) & set(y.topk(kk).indices.tolist())) / kk)
    return sum(out) / max(len(out), 1)


@dataclass
class Agreement:
    """The check's outcome: per cheap teacher its top-1 agreement with the reference and its cost."""

    reference: str
    n_examples: int
    top1: dict[str, float] = field(default_factory=dict)
    top4_overlap: dict[str, float] = field(default_factory=dict)
    seconds_per_1k: dict[str, float] = field(default_factory=dict)
    chosen: str = ""
    warning: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def check_teachers(
    cheap: Sequence[Teacher],
    reference: Teacher,
    backbone,
    task,
    examples: Sequence[Example],
    model_answers: bool = False,
    warn_below: float = WARN_BELOW,
    progress: bool = True,
) -> Agreement:
    """Run ``reference`` and every ``cheap`` teacher on ``examples``; choose the cheap one that agrees best
    with the reference (the first listed among ties: list them cheapest first)."""
    ref, ref_cost = run_teacher(reference, backbone, task, examples, model_answers=model_answers, progress=progress)
    report = Agreement(reference.describe(), len(examples), seconds_per_1k={reference.describe(): ref_cost})
    for teacher in cheap:
        got, cost = run_teacher(teacher, backbone, task, examples, model_answers=model_answers, progress=progress)
        report.top1[teacher.describe()] = top1_agreement(got, ref)
        report.top4_overlap[teacher.describe()] = topk_overlap(got, ref, 4)
        report.seconds_per_1k[teacher.describe()] = cost
    report.chosen = max(report.top1, key=lambda name: report.top1[name])  # max keeps the first of ties
    best = report.top1[report.chosen]
    if best < warn_below:
        report.warning = (
            f"the best cheap teacher ({report.chosen}) agrees with {report.reference} on only {best:.0%} of "
            f"{len(examples)} examples (< {warn_below:.0%}): a router distilled from it may be unstable"
        )
    return report
