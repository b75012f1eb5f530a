"""Accuracy vs compute plots: one line per method, one panel per task."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


def pareto_plot(results, path: str | Path, title: str = "") -> Path:
    """Write ``path`` (PNG): accuracy vs compute fraction, one line per method, one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r.task for r in results})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        lines = defaultdict(list)
        for r in results:
            if r.task == task:
                lines[r.method].append((r.compute_fraction, r.accuracy))
        for method, pts in sorted(lines.items()):
            pts.sort()
            style = "*" if len(pts) == 1 else "o-"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=method, markersize=9 if len(pts) == 1 else 5)
        ax.set_title(task)
        ax.set_xlabel("compute fraction (FLOPs vs full)")
        ax.set_ylabel("exact-match accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
