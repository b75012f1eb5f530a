"""Evaluation outputs on disk: results.json, results.csv, report.md and pareto.png in one folder."""

from __future__ import annotations

from pathlib import Path

from rltr.evaluation.plots import pareto_plot
from rltr.evaluation.run import EvalResult, format_table, full_latency
from rltr.runs.outputs import write_atomically, write_text_atomically
from rltr.runs.results import write_results


def write_report(results: list[EvalResult], out: Path, header: dict | None = None) -> None:
    out = Path(out)
    settings = write_results([r.to_dict() for r in results], out, header)
    lines = ["# rltr evaluation", ""]
    lines += [f"- {k}: {v}" for k, v in settings.items()]
    lines += ["", format_table(results), ""]
    for task in dict.fromkeys(r.task for r in results):
        headline = next(r for r in results if r.task == task).score  # the task's first score
        lines += [f"**{task}**: {headline} · compute fraction · measured speedup over the full model", ""]
        lines += [pivot_table(results, task), ""]
        matched = matched_table(results, task)
        if matched:
            lines += [matched, ""]
    lines += ["![accuracy vs compute and vs measured latency](pareto.png)", ""]
    write_text_atomically(out / "report.md", "\n".join(lines))
    mode = "query-aware" if settings.get("query_aware", True) else "query-agnostic"
    write_atomically(out / "pareto.png", lambda tmp: pareto_plot(results, tmp, title=f"{settings.get('model', '')} ({mode})"))


def pivot_table(results: list[EvalResult], task: str) -> str:
    """A markdown table for one task: a row per method, a column per budget ("own" = the method's own
    choice, with the tokens it kept); cells "accuracy · compute fraction · speedup" (speedup: the full
    model's measured latency over the method's, when ``identity`` was evaluated)."""
    rows = [r for r in results if r.task == task and r.method != "identity" and r.matched_to is None]
    full = full_latency(results).get(task)
    budgets = sorted({r.budget for r in rows if r.budget is not None})
    own = any(r.budget is None for r in rows)
    head = (["own choice"] if own else []) + [f"{100 * b:.3g}%" for b in budgets]
    lines = ["| method | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    cell = _cell(full)
    for method in dict.fromkeys(r.method for r in rows):
        mine = {r.budget: r for r in rows if r.method == method}
        cells = ([cell(mine.get(None))] if own else []) + [cell(mine.get(b)) for b in budgets]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(full: float | None):
    """A function formatting one result as "accuracy · compute fraction · speedup[, tokens kept]"."""

    def cell(r: EvalResult | None, kept: bool | None = None) -> str:
        if r is None:
            return ""
        speed = f" · {full / r.latency_ms:.1f}×" if full and r.latency_ms > 0 else ""
        tokens = f", {r.kept_ratio:.1%} tokens" if (r.budget is None if kept is None else kept) else ""
        return f"{r.accuracy:.1%} · {r.compute_fraction:.2f}{speed}{tokens}"

    return cell


def matched_table(results: list[EvalResult], task: str) -> str | None:
    """A markdown table per router whose own choice the heuristics were matched to (``matched_to``): the router's
    own choice, then every heuristic at the same mean compute, as a fixed budget and in threshold mode, with
    the tokens each kept; None when there are no matched rows."""
    matched = [r for r in results if r.task == task and r.matched_to is not None]
    if not matched:
        return None
    cell, lines = _cell(full_latency(results).get(task)), []
    for router in dict.fromkeys(r.matched_to for r in matched):
        own = next(r for r in results if r.task == task and r.method == router and r.budget is None and r.matched_to is None)
        lines += [
            f"At {router}'s own-choice compute ({own.compute_fraction:.3f}): accuracy · compute fraction · speedup, tokens kept",
            "",
            "| method | fixed budget (calibrated) | threshold (calibrated) |",
            "|---|---:|---:|",
            f"| **{router}** (own choice) | {cell(own)} | |",
        ]
        mine = [r for r in matched if r.matched_to == router]
        for method in dict.fromkeys(r.method.removesuffix("@thr") for r in mine):
            fixed = next((r for r in mine if r.method == method), None)
            thr = next((r for r in mine if r.method == f"{method}@thr"), None)
            budget = f" (budget {fixed.budget:.3f})" if fixed is not None else ""
            lines.append(f"| {method}{budget} | {cell(fixed, True)} | {cell(thr, True)} |")
        lines.append("")
    return "\n".join(lines)
