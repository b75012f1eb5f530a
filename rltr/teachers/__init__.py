"""Teachers: per-token importance from the frozen model with the question and the answer in view, the
training signal that lets a router learn without hand-made relevance labels (docs/teachers.md).

    teacher = get_teacher("attention", layers=[0])
    scores, seconds_per_1k = run_teacher(teacher, backbone, task, examples)   # one (N,) tensor per example

Registry: ``attention`` (one forward), ``gradient`` (one forward + backward), ``occlusion`` (one forward
per token: the reference the cheap ones are checked against, :mod:`rltr.teachers.agreement`).
"""

from __future__ import annotations

from rltr.teachers.agreement import Agreement, check_teachers, top1_agreement, topk_overlap
from rltr.teachers.attention import AttentionTeacher
from rltr.teachers.base import Teacher, answer_rows, candidates, run_teacher, with_model_answers
from rltr.teachers.gradient import GradientTeacher
from rltr.teachers.occlusion import OcclusionTeacher

TEACHERS: dict[str, type[Teacher]] = {t.name: t for t in (AttentionTeacher, GradientTeacher, OcclusionTeacher)}


def get_teacher(name: str, **options) -> Teacher:
    """The teacher registered as ``name`` with its ``options`` (ValueError naming the known ones)."""
    if name not in TEACHERS:
        raise ValueError(f"unknown teacher {name!r}; known: {sorted(TEACHERS)} (or auto)")
    return TEACHERS[name](**options)


def parse_teacher(text: str, layers: list[int] | None = None) -> Teacher:
    """A teacher from its name or its :meth:`Teacher.describe` (``attention@0,1``, ``occlusion@top8``)."""
    name, _, arg = text.partition("@")
    if name == "attention" and arg:
        layers = [int(i) for i in arg.split(",")]
    if name == "attention":
        return AttentionTeacher(layers)
    if name == "occlusion" and arg.startswith("top"):
        return OcclusionTeacher(max_candidates=int(arg[3:]), prefilter=AttentionTeacher([0]))
    return get_teacher(name)


def cheap_teachers(n_layers: int) -> list[Teacher]:
    """The candidates ``teacher: auto`` checks, cheapest first: attention at each layer, over all layers,
    then the gradient."""
    return [AttentionTeacher([i]) for i in range(n_layers)] + [AttentionTeacher(list(range(n_layers))), GradientTeacher()]


__all__ = ["TEACHERS", "Agreement", "AttentionTeacher", "GradientTeacher", "OcclusionTeacher", "Teacher", "answer_rows",
           "candidates", "check_teachers", "cheap_teachers", "get_teacher", "parse_teacher", "run_teacher", "top1_agreement",
           "topk_overlap", "with_model_answers"]
