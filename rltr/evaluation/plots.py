"""Accuracy vs compute and vs measured latency: one line per method, one column of panels per task."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


def pareto_plot(results, path: str | Path, title: str = "") -> Path:
    """Write ``path`` (PNG): accuracy vs compute fraction (top) and vs measured latency (bottom), one line
    per method, one column per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r.task for r in results})
    methods = sorted({r.method for r in results})
    palette = plt.get_cmap("tab20" if len(methods) > 10 else "tab10")
    color = {m: palette(i % palette.N) for i, m in enumerate(methods)}  # one colour per method, every panel
    axes_x = (("compute_fraction", "compute fraction (FLOPs vs full)"), ("latency_ms", "measured latency (ms / example)"))
    fig, axes = plt.subplots(len(axes_x), len(tasks), figsize=(5 * len(tasks), 4 * len(axes_x)), squeeze=False)
    for row, (field, label) in enumerate(axes_x):
        for ax, task in zip(axes[row], tasks):
            lines = defaultdict(list)
            for r in results:
                if r.task == task:
                    lines[r.method].append((getattr(r, field), r.accuracy))
            for method, pts in sorted(lines.items()):
                pts.sort()
                style = "*" if len(pts) == 1 else "o-"
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    style,
                    label=method,
                    color=color[method],
                    markersize=9 if len(pts) == 1 else 5,
                    linewidth=2.5 if method.startswith("router") else 1.2,
                )
            ax.set_title(task)
            ax.set_xlabel(label)
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
