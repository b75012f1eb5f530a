"""``rltr`` command line: one parser per subcommand.

Every user error (bad model, task, method, budget, input) prints one line naming the value and exits
with code 2, no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rltr import distributed
from rltr.apply_cli import add_apply
from rltr.cli_args import Parser
from rltr.cli_args import budgets as _budgets
from rltr.cli_args import csv_list as _csv
from rltr.cli_args import layers as _layers
from rltr.cli_args import mapping as _mapping
from rltr.data_cli import add_data
from rltr.demo_cli import add_ablate, add_demo
from rltr.output.cli import add_output_length_args, cmd_evaluate_output, cmd_train_grpo

EXIT_USAGE = 2


def _model_tasks(model: str) -> list[str]:
    """The tasks a built-in model (or a folder with rltr_zoo.json) was trained on."""
    from rltr import zoo
    from rltr.backbones import resolve_model

    if model in zoo.PACKAGED:
        return list(zoo.PACKAGED[model].tasks)
    meta = Path(resolve_model(model)) / "rltr_zoo.json"
    if not meta.is_file():
        raise ValueError(f"model {model!r} has no rltr_zoo.json naming its tasks; pass --task")
    return list(json.loads(meta.read_text())["tasks"])


# ---- evaluate ---------------------------------------------------------------------------------
def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="compare reducers on the same held-out examples",
                       description="Run every method at every budget through one code path (the HF model's own forward "
                                   "under `with reducer(model, ...)`; identity = the unpatched forward) and print accuracy, "
                                   "compute fraction, tokens kept, measured latency and speedup over identity.")
    p.add_argument("--model", default="default", help="built-in model name (rltr zoo list), local folder or hub name")
    p.add_argument("--task", type=_csv, default=None,
                   help="task name(s) or jsonl:PATH (a JSONL dataset), comma-separated; default: the model's tasks")
    p.add_argument("--task-kwargs", type=_mapping, default={},
                   help="keyword arguments of the task(s), a YAML mapping, e.g. '{n_pairs: [1, 6]}'")
    p.add_argument("--methods", type=_csv, default=["identity", "random"], help="reducers, comma-separated")
    p.add_argument("--budgets", type=_budgets, default=[0.5],
                   help="fractions of tokens to keep, each in (0, 1]; 'none' = the method's own choice")
    p.add_argument("--decision-layers", type=_layers, default=[1], help="layers before which reducers act")
    p.add_argument("--n-examples", type=int, default=500, help="held-out examples per task")
    p.add_argument("--batch-size", type=int, default=64, help="examples per forward pass")
    p.add_argument("--seed", type=int, default=0, help="seed of the examples and of random reducers")
    p.add_argument("--query-agnostic", action="store_true",
                   help="decide on the context alone (the question is appended afterwards), not query-aware")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bars (runs x batches, with an ETA, on stderr)")
    from rltr.scores import SCORES

    p.add_argument("--score", default=None, choices=sorted(SCORES),
                   help="what the accuracy column holds (default: the task's own scores, e.g. exact match): answer "
                        "probability, or (no labels needed) agreement with the full model's own answer / exp(-KL) of its "
                        "answer distributions")
    p.add_argument("--matched", default=None, choices=["compute_fraction", "kept_ratio"],
                   help="also every heuristic at each router's own-choice mean compute (or kept-token fraction), as a fixed "
                        "budget and in threshold mode, each calibrated on training examples")
    p.add_argument("--generate", action="store_true",
                   help="also generate each answer greedily on the same path and score it (exact match, token F1)")
    p.add_argument("--out", type=Path, default=None, help="folder for results.json, results.csv, report.md, pareto.png")
    add_output_length_args(p)
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from rltr.backbones import load_backbone
    from rltr.evaluation import evaluate, format_table
    from rltr.reports import write_report
    from rltr.tasks import load_task

    if getattr(args, "output_length", False):
        return cmd_evaluate_output(args)
    if args.n_examples < 1:
        raise ValueError(f"--n-examples must be >= 1, got {args.n_examples}")
    device = distributed.setup(args.device)  # launched as several processes: shard the examples (no-op alone)
    backbone = load_backbone(args.model, device=device)
    tasks = [load_task(t, backbone, **args.task_kwargs) for t in (args.task or _model_tasks(args.model))]
    results = evaluate(
        backbone, tasks, args.methods, args.budgets, n_examples=args.n_examples, seed=args.seed,
        decision_layers=args.decision_layers, batch_size=args.batch_size, query_aware=not args.query_agnostic,
        progress=not getattr(args, "quiet", False) and distributed.is_main(), score=getattr(args, "score", None),
        generate=getattr(args, "generate", False), matched=getattr(args, "matched", None),
    )
    if not distributed.is_main():
        return 0  # every process holds the merged results; the main one reports them
    table = format_table(results)
    mode = "query-agnostic" if args.query_agnostic else "query-aware"
    print(f"model {args.model} ({backbone.family}, {backbone.n_layers} layers), {mode}, decision layers "
          f"{args.decision_layers}, {args.n_examples} held-out examples per task, seed {args.seed}")
    print(table)
    if getattr(args, "generate", False):
        from rltr.eval_scores import format_generation

        print(format_generation(results))
    if args.out is not None:
        write_report(results, args.out, header=vars(args))
        print(f"wrote {args.out}/results.json, results.csv, report.md, pareto.png")
    return 0


# ---- train / export -----------------------------------------------------------------------------
def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a token-reduction policy with PPO",
                       description="YAML config < --set overrides; writes a run folder under runs/.")
    p.add_argument("--config", type=Path, default=None, help="YAML experiment (e.g. configs/default.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set env.compute_weight=0.3 (repeatable; YAML values)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                   help="where the backbone, envs and PPO run (same as --set env.device=...)")
    p.add_argument("--resume", type=Path, default=None, help="continue RUN_DIR from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--algo", choices=["ppo", "grpo"], default="ppo",
                   help="ppo: a token-reduction router (SB3); grpo: output-length fine-tuning of a generative model "
                        "with trl's GRPOTrainer (configs/grpo_length.yaml)")  # fmt: skip
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    if getattr(args, "algo", "ppo") == "grpo":
        return cmd_train_grpo(args)
    from rltr.config import load_config
    from rltr.training import train

    overrides = args.overrides + ([f"env.device={args.device}"] if args.device else [])
    cfg = None if args.resume else load_config(args.config, overrides)
    if args.resume and (args.config or args.overrides):
        raise ValueError("--resume continues a run with its own config.yaml; drop --config/--set")
    command = "rltr " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("rltr") else " ".join(sys.argv)
    run_dir = train(cfg, command=command, resume=args.resume, progress=not args.no_progress)
    if distributed.is_main():
        print(f"run folder: {run_dir}")
    return 0


def add_export(sub) -> None:
    p = sub.add_parser("export", help="export a run's policy as a router (config.json + model.safetensors)")
    p.add_argument("run_dir", type=Path, help="a run folder written by rltr train")
    p.add_argument("--out", type=Path, required=True, help="router folder to write, e.g. routers/default")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from rltr.export import export_router

    path = export_router(args.run_dir, args.out)
    print(f"router written to {path}")
    return 0


# ---- zoo --------------------------------------------------------------------------------------
def add_zoo(sub) -> None:
    p = sub.add_parser("zoo", help="built-in frozen models: list them or rebuild one")
    zsub = p.add_subparsers(dest="zoo_cmd", required=True)
    ls = zsub.add_parser("list", help="built-in models with their measured full-token accuracy")
    ls.set_defaults(func=cmd_zoo_list)
    b = zsub.add_parser("build", help="train a built-in model from scratch (seeded, reproducible)")
    b.add_argument("name", help="built-in model name")
    b.add_argument("--out", type=Path, default=None, help="output folder (default: the package's own models folder)")
    b.add_argument("--seed", type=int, default=None, help="override the spec's seed")
    b.set_defaults(func=cmd_zoo_build)
    g = zsub.add_parser("gaps", help="measure oracle vs random accuracy per task and decision layer; store it")
    g.add_argument("name", help="built-in model name")
    g.add_argument("--n-examples", type=int, default=300, help="held-out examples per task and layer")
    g.set_defaults(func=cmd_zoo_gaps)


def cmd_zoo_list(args) -> int:
    from rltr import zoo

    for m in zoo.list_models():
        print(f"{m['name']}: {m.get('description', '')}")
        if not m.get("built", True):
            print(f"  not built: run `rltr zoo build {m['name']}`")
            continue
        acc = m.get("accuracy", {})
        print("  path: " + str(m.get("path", "")))
        print(f"  {m.get('accuracy_label', 'full-token exact match')}: " + ", ".join(f"{t} {a:.1%}" for t, a in acc.items()))
        if "build_seconds" in m:
            print(f"  build time: {m['build_seconds']:.0f} s ({m.get('steps', '?')} steps)")
        if m.get("gaps"):
            print(f"  token choice matters ({m.get('gaps_note', '')}):")
        for t, g in m.get("gaps", {}).items():
            cells = "; ".join(f"{k}: oracle {v['oracle']:.1%} vs random {v['random']:.1%}" for k, v in g.items())
            print(f"    {t}: {cells}")
    for name, entry in zoo.PACKAGED.items():
        print(f"{name}: {entry.description}; tasks: {', '.join(entry.tasks)}")
        if entry.gguf_file:
            from rltr.zoo.gguf_cache import converted_dir, gguf_source, is_converted

            try:
                gguf_source(entry.module, entry.gguf_file, entry.package)
            except ValueError as e:
                print(f"  not installed: {e}")
                continue
            state = "converted" if is_converted(name) else "not converted yet: the first use converts it (~2 min)"
            print(f"  path: {converted_dir(name)} ({state})")
            continue
        try:
            print(f"  path: {zoo.packaged_path(name)}")
        except ValueError as e:
            print(f"  not installed: {e}")
    return 0


def cmd_zoo_gaps(args) -> int:
    from rltr.zoo.gaps import record_gaps

    gaps = record_gaps(args.name, args.n_examples)
    print(json.dumps(gaps, indent=2))
    return 0


def cmd_zoo_build(args) -> int:
    from rltr import zoo

    if args.name not in zoo.ZOO:
        raise ValueError(f"unknown built-in model {args.name!r}; known: {', '.join(sorted(zoo.ZOO))}")
    out = args.out or Path(zoo.__file__).parent / "models" / args.name
    meta = zoo.build_model(args.name, out, seed=args.seed)
    print(json.dumps(meta, indent=2))
    return 0


# ---- entry point ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rltr", description="RL-guided token reduction for frozen transformers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train(sub)
    add_export(sub)
    add_evaluate(sub)
    add_apply(sub)
    add_zoo(sub)
    add_demo(sub)
    add_ablate(sub)
    add_data(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ok = False
    try:
        code = args.func(args)
        ok = True
        return code
    except (ValueError, FileNotFoundError) as e:
        print(f"rltr {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        distributed.finish(ok)  # launched as several processes: leave together


if __name__ == "__main__":
    sys.exit(main())
