"""Evaluation outputs on disk: results.json, results.csv, report.md and pareto.png in one folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from rltr.evaluation import EvalResult, format_table
from rltr.plots import pareto_plot


def write_report(results: list[EvalResult], out: Path, header: dict | None = None) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [r.to_dict() for r in results]
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in (header or {}).items() if k != "func"}
    (out / "results.json").write_text(json.dumps({"settings": settings, "results": rows}, indent=2))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# rltr evaluation", ""]
    lines += [f"- {k}: {v}" for k, v in settings.items()]
    lines += ["", format_table(results), ""]
    lines += ["![accuracy vs compute and vs measured latency](pareto.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    mode = "query-agnostic" if settings.get("query_agnostic") else "query-aware"
    pareto_plot(results, out / "pareto.png", title=f"{settings.get('model', '')} ({mode})")
