"""End-to-end generation time of a verbose base model against its output-length-trained version
(``rltr train --algo grpo``), side by side: the same held-out prompts, greedy ``generate()``, the models
interleaved within each repeat, median over repeats; at batch 1 and at a larger batch.

    OMP_NUM_THREADS=1 python benchmarks/output_length.py --trained runs/chain__grpo_length__0__<time>
"""

from __future__ import annotations

import argparse
import statistics

import torch


def main(argv=None) -> int:
    from rltr.outlen.grpo import load_generative, model_task, run_model_dir
    from rltr.tasks.generation import generate

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="verbose", help="the verbose model: built-in name or folder")
    p.add_argument("--trained", required=True, help="the trained model: a GRPO run folder or a model folder")
    p.add_argument("--n-examples", type=int, default=64, help="held-out prompts per timing")
    p.add_argument("--batch-sizes", default="1,64", help="comma-separated")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = {"base": load_generative(args.base), "trained": load_generative(run_model_dir(args.trained))}
    task = model_task(models["base"][2])
    prompts = [task.prompt(e) for e in task.examples(args.n_examples, seed=0, split="test")]
    pad = models["base"][1].pad_token_id or 0
    print(f"task {task.name} (context {task.context_len}), {args.n_examples} prompts, {torch.get_num_threads()} thread(s), "
          f"median of {args.repeats} interleaved repeats")  # fmt: skip
    print("| batch | model | mean generated tokens | ms / example | time vs base |")
    print("|---:|---|---:|---:|---:|")
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        times, tokens = {k: [] for k in models}, {}
        for lm, _, _ in models.values():  # warm-up, untimed
            generate(lm, prompts[:batch], max_new_tokens=task.max_completion_len, stop_ids=[task.eos_id], pad_id=pad, batch_size=batch)
        for _ in range(args.repeats):
            for name, (lm, _, _) in models.items():
                out, seconds = generate(lm, prompts, max_new_tokens=task.max_completion_len, stop_ids=[task.eos_id], pad_id=pad,
                                        batch_size=batch)  # fmt: skip
                times[name].append(1000 * seconds / len(prompts))
                tokens[name] = sum(len(c) for c in out) / len(out)
        base_ms = statistics.median(times["base"])
        for name in models:
            ms = statistics.median(times[name])
            print(f"| {batch} | {name} | {tokens[name]:.2f} | {ms:.2f} | {ms / base_ms:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
