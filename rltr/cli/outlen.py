"""The output-length parts of the command line: ``rltr train --algo grpo`` and ``rltr evaluate --output-length``."""

from __future__ import annotations

import sys
from pathlib import Path

from rltr.cli.args import budget as _budget
from rltr.cli.args import csv_list as _csv


def add_output_length_args(p) -> None:
    """``rltr evaluate --output-length`` and its options (the other evaluate options that apply:
    --model, the base; --task; --n-examples; --batch-size; --seed; --device; --out)."""
    g = p.add_argument_group("output length (with --output-length; --methods/--budgets/--decision-layers do not apply)")
    g.add_argument("--output-length", action="store_true",
                   help="evaluate generated output: accuracy, mean generated tokens, generation time and prompt + output "
                        "compute of --model (the base) and --trained models, plus the base under --caps and early stopping")  # fmt: skip
    g.add_argument(
        "--trained",
        type=_csv,
        default=[],
        help="fine-tuned models to compare with the base: model folders or GRPO run folders, comma-separated",
    )
    g.add_argument(
        "--caps",
        type=lambda s: [int(c) for c in _csv(s)],
        default=[2, 3, 4, 6],
        help="max_new_tokens caps applied to the base, comma-separated",
    )
    g.add_argument(
        "--prompt-reducer", default=None, help="also run every model with this reducer on the prompt (e.g. attn_topk), at --prompt-budget"
    )
    g.add_argument("--prompt-budget", type=_budget, default=0.25, help="fraction of prompt tokens the reducer keeps")


def _label(name: str) -> str:
    """A GRPO run's ``<task>__<name>__<seed>__<time>/model`` -> its name; anything else as given."""
    path = Path(name)
    parts = path.parent.name.split("__") if path.name == "model" else []
    return parts[1] if len(parts) == 4 else name


def cmd_evaluate_output(args) -> int:
    from rltr.outlen.evaluate import evaluate_output
    from rltr.outlen.grpo import load_generative, model_task, run_model_dir
    from rltr.outlen.report import format_output_table, write_output_report

    if args.n_examples < 1:
        raise ValueError(f"--n-examples must be >= 1, got {args.n_examples}")
    bad = [c for c in args.caps if c < 1]
    if bad:
        raise ValueError(f"--caps must be >= 1, got {bad}")
    names = [args.model] + [run_model_dir(t) for t in args.trained]
    loaded = [load_generative(n) for n in names]
    labels = [_label(n) for n in names]
    if len(set(labels)) < len(labels):
        labels = names
    models = {label: lm.to(args.device) for label, (lm, _, _) in zip(labels, loaded)}
    task = model_task(loaded[0][2], (args.task or [None])[0])
    results = evaluate_output(models, task, n_examples=args.n_examples, seed=args.seed, caps=args.caps,
                              reducer_spec=args.prompt_reducer, budget=args.prompt_budget,
                              pad_id=loaded[0][1].pad_token_id or 0, batch_size=args.batch_size)  # fmt: skip
    print(f"task {task.name} (context {task.context_len}), {args.n_examples} held-out examples, seed {args.seed}, greedy decoding")
    print(format_output_table(results))
    if args.out is not None:
        header = {**{k: v for k, v in vars(args).items() if k not in ("methods", "budgets", "decision_layers")}, "task": task.name}
        write_output_report(results, args.out, header=header)
        print(f"wrote {args.out}/results.json, results.csv, report.md, output_length.png")
    return 0


def cmd_train_grpo(args) -> int:
    from rltr.outlen.config import load_grpo_config
    from rltr.outlen.grpo import train_grpo

    if args.resume is not None:
        raise ValueError("--resume is for PPO runs; a GRPO run restarts from its config")
    overrides = args.overrides + ([f"device={args.device}"] if args.device else [])
    cfg = load_grpo_config(args.config, overrides)
    command = "rltr " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("rltr") else " ".join(sys.argv)
    run_dir = train_grpo(cfg, command=command, progress=not args.no_progress)
    print(f"run folder: {run_dir}")
    print(f"model: {run_dir / 'model'} (AutoModelForCausalLM.from_pretrained)")
    return 0
