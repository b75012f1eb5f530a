"""``rltr evaluate``: every method at every budget on the same held-out examples (one evaluation loop)."""

from __future__ import annotations

from pathlib import Path

from rltr.cli.args import budgets as _budgets
from rltr.cli.args import csv_list as _csv
from rltr.cli.args import layers as _layers
from rltr.cli.args import mapping as _mapping
from rltr.cli.outlen import add_output_length_args, cmd_evaluate_output
from rltr.core import distributed
from rltr.evaluation.request import EvalRequest, describe, evaluate_request, settings_of
from rltr.runs.outputs import claimed_folder
from rltr.tasks.scoring import SCORES


def add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="compare reducers on the same held-out examples",
        description="Run every method at every budget through one code path (the HF model's own forward "
        "under `with reducer(model, ...)`; identity = the unpatched forward) and print accuracy, "
        "compute fraction, tokens kept, measured latency and speedup over identity.",
    )
    p.add_argument("--model", default="default", help="built-in model name (rltr zoo list), local folder or hub name")
    p.add_argument(
        "--task", type=_csv, default=None, help="task name(s) or jsonl:PATH (a JSONL dataset), comma-separated; default: the model's tasks"
    )
    p.add_argument(
        "--task-kwargs", type=_mapping, default={}, help="keyword arguments of the task(s), a YAML mapping, e.g. '{n_pairs: [1, 6]}'"
    )
    p.add_argument("--methods", type=_csv, default=["identity", "random"], help="reducers, comma-separated")
    p.add_argument(
        "--budgets", type=_budgets, default=[0.5], help="fractions of tokens to keep, each in (0, 1]; 'none' = the method's own choice"
    )
    p.add_argument(
        "--decision-layers",
        type=_layers,
        default=None,
        help="layers before which reducers act (default: a router's own, else 1; a router refuses others)",
    )
    p.add_argument("--n-examples", type=int, default=500, help="held-out examples per task")
    p.add_argument("--batch-size", type=int, default=64, help="examples per forward pass")
    p.add_argument("--seed", type=int, default=0, help="seed of the examples and of random reducers")
    p.add_argument(
        "--query-agnostic", action="store_true", help="decide on the context alone (the question is appended afterwards), not query-aware"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bars (runs x batches, with an ETA, on stderr)")
    p.add_argument(
        "--score",
        default=None,
        choices=sorted(SCORES),
        help="what the accuracy column holds (default: the task's own scores, e.g. exact match): answer "
        "probability, or (no labels needed) agreement with the full model's own answer / exp(-KL) of its "
        "answer distributions",
    )
    p.add_argument(
        "--matched",
        default=None,
        choices=["compute_fraction", "kept_ratio"],
        help="also every heuristic at each router's own-choice mean compute (or kept-token fraction), as a fixed "
        "budget and in threshold mode, each calibrated on training examples",
    )
    p.add_argument(
        "--generate", action="store_true", help="also generate each answer greedily on the same path and score it (exact match, token F1)"
    )
    p.add_argument("--out", type=Path, default=None, help="folder for results.json, results.csv, report.md, pareto.png")
    add_output_length_args(p)
    p.set_defaults(func=cmd_evaluate)


def request_of(args) -> EvalRequest:
    """The evaluation the flags ask for."""
    return EvalRequest(
        model=args.model,
        tasks=args.task,
        task_kwargs=args.task_kwargs,
        methods=args.methods,
        budgets=args.budgets,
        decision_layers=args.decision_layers,
        n_examples=args.n_examples,
        batch_size=args.batch_size,
        seed=args.seed,
        query_aware=not args.query_agnostic,
        device=args.device,
        score=args.score,
        matched=args.matched,
        generate=args.generate,
    )


def cmd_evaluate(args) -> int:
    if args.output_length:
        if args.decision_layers is None:
            args.decision_layers = [1]
        return cmd_evaluate_output(args)
    if args.n_examples < 1:
        raise ValueError(f"--n-examples must be >= 1, got {args.n_examples}")
    from rltr.envs import resolve_device

    args.device = resolve_device(distributed.setup(args.device))  # several processes: shard the examples; auto: cuda if any
    if args.out is None or not distributed.is_main():
        return run_and_report(request_of(args), args.out, progress=not args.quiet)
    with claimed_folder(args.out):  # checked writable and held before the run: nothing lost, nothing mixed
        return run_and_report(request_of(args), args.out, progress=not args.quiet)


def run_and_report(req: EvalRequest, out: Path | None, progress: bool = True) -> int:
    """Run ``req``, print its table (and generations), write the report to ``out`` when given."""
    from rltr.evaluation.answer_scores import format_generation
    from rltr.evaluation.reports import write_report

    outcome = evaluate_request(req, progress=progress and distributed.is_main())
    if not distributed.is_main():
        return 0  # every process holds the merged results; the main one reports them
    print(describe(req, outcome))
    if req.generate:
        print(format_generation(outcome.results))
    if out is not None:
        write_report(outcome.results, out, header=settings_of(req, outcome, out))
        print(f"wrote {out}/results.json, results.csv, report.md, pareto.png")
    return 0
