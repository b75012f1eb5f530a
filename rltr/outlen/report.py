"""Output-length results on disk and on screen: a markdown table, results.json/csv, report.md and
``output_length.png`` (accuracy vs mean generated tokens)."""

from __future__ import annotations

from pathlib import Path

from rltr.outlen.evaluate import OutputResult
from rltr.runs.results import write_results


def format_output_table(results: list[OutputResult]) -> str:
    """One row per (model, method): accuracy, mean generated tokens (per question kind when the task has
    kinds), ms per example, prompt / output / total MFLOPs, and total compute relative to the first row."""
    ref = results[0].total_mflops if results else 0.0
    kinds = list(dict.fromkeys(k for r in results for k in r.groups))
    head = ["model", "method", "accuracy", "mean tokens"] + [f"{k}: acc · tokens" for k in kinds]
    head += ["ms / example", "prompt MFLOPs", "output MFLOPs", "total MFLOPs", "total vs first row"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for r in results:
        cells = [r.model, r.method, f"{r.accuracy:.1%}", f"{r.mean_tokens:.2f}"]
        cells += [f"{r.groups[k]['accuracy']:.1%} · {r.groups[k]['mean_tokens']:.2f}" if k in r.groups else "" for k in kinds]
        cells += [f"{r.ms_per_example:.2f}", f"{r.prompt_mflops:.2f}", f"{r.output_mflops:.2f}", f"{r.total_mflops:.2f}",
                  f"{r.total_mflops / ref:.2f}" if ref else ""]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def output_plot(results: list[OutputResult], path: str | Path, title: str = "") -> Path:
    """Accuracy vs mean generated tokens with full prompts: the base (a star), the base under each cap (a
    dashed line) and early stopping (a square), the other models in the order given (a line: e.g. a
    length_weight sweep). Points at the same place share one label. Prompt-reduced runs are in the table only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plain = [r for r in results if "+" not in r.method]
    base = plain[0].model if plain else ""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    caps = sorted((r.mean_tokens, r.accuracy) for r in plain if r.method.startswith("cap:"))
    if caps:
        ax.plot([c[0] for c in caps], [c[1] for c in caps], "o--", color="grey", label=f"{base} + max_new_tokens cap")
    for r in plain:
        if r.method.startswith("cap:"):
            ax.annotate(r.method.replace(":", " "), (r.mean_tokens, r.accuracy), textcoords="offset points", xytext=(4, -10), fontsize=7)
    marks = [(r, "*", "black", f"{base} (greedy)") for r in plain if r.model == base and r.method == "greedy"]
    marks += [(r, "s", "tab:red", f"{base} + early stop at the first answer-shaped token") for r in plain if r.method == "early_stop"]
    for r, marker, color, label in marks:
        ax.plot(r.mean_tokens, r.accuracy, marker, color=color, markersize=12, label=label)
    others = [r for r in plain if r.model != base and r.method == "greedy"]
    if others:
        ax.plot([r.mean_tokens for r in others], [r.accuracy for r in others], "o-", color="tab:blue", label="trained models")
        spots: dict = {}
        for r in others:
            spots.setdefault((round(r.mean_tokens, 2), round(r.accuracy, 3)), []).append(r.model)
        for (x, y), names in spots.items():
            ax.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8, color="tab:blue")
    ax.set_xlabel("mean generated tokens per example")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.04, 1.06)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_output_report(results: list[OutputResult], out: str | Path, header: dict | None = None) -> Path:
    out = Path(out)
    settings = write_results([r.to_dict() for r in results], out, header)
    lines = ["# rltr output-length evaluation", ""] + [f"- {k}: {v}" for k, v in settings.items()]
    lines += ["", format_output_table(results), "", "![accuracy vs mean generated tokens](output_length.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    output_plot(results, out / "output_length.png", title=f"{settings.get('task', '')}: accuracy vs generated tokens")
    return out
