"""``rltr train`` (PPO, or GRPO for output length) and ``rltr export`` (a run's policy as a router folder)."""

from __future__ import annotations

import sys
from pathlib import Path

from rltr.cli.outlen import cmd_train_grpo
from rltr.core import distributed
from rltr.runs.outputs import check_writable_folder


def add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a token-reduction policy with PPO",
        description="YAML config < --set overrides; writes a run folder under runs/.",
    )
    p.add_argument("--config", type=Path, default=None, help="YAML experiment (e.g. configs/default.yaml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set env.compute_weight=0.3 (repeatable; YAML values)",
    )
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default=None,
        help="where the backbone, envs and PPO run (same as --set env.device=...)",
    )
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
    from rltr.training.ppo import train

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
    from rltr.training.export import export_router

    check_writable_folder(args.out, "--out")
    path = export_router(args.run_dir, args.out)
    print(f"router written to {path}")
    return 0
