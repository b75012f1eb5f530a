"""``rltr demo`` (train, export and compare a router per config) and ``rltr ablate`` (what RL adds: the same
config trained four ways). Both evaluate through ``rltr evaluate``'s one code path.

    rltr demo                                   # the README's tables (make demo)
    rltr ablate --configs configs/instructed.yaml  # imitation only / PPO only / imitation + PPO / label-free / teacher x3
"""

from __future__ import annotations

import time
from pathlib import Path

from rltr.cli.args import budgets as _budgets
from rltr.cli.args import csv_list as _csv
from rltr.cli.evaluate import run_and_report
from rltr.evaluation.request import EvalRequest

# configs/light.yaml (the features ablation) runs with --configs; the default list keeps make demo near 12 minutes.
DEMO_CONFIGS = [
    "configs/default.yaml",
    "configs/agnostic.yaml",
    "configs/majority.yaml",
    "configs/instructed.yaml",
    "configs/instructed_var.yaml",
]
DEMO_METHODS = ["identity", "oracle", "tome", "attn_topk", "attn_topk:merge", "h2o", "norm", "norm:hidden", "window", "random"]
DEMO_BUDGETS = [None, 0.05, 0.1, 0.25]


def add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job: train, export, evaluate routers on the built-in model",
        description="For each config: train a router, export it, and compare it with every heuristic on the "
        "same held-out examples (at the config's demo budgets, and at matched compute where it asks).",
    )
    p.add_argument("--configs", type=_csv, default=DEMO_CONFIGS, help="training configs, comma-separated")
    p.add_argument("--n-examples", type=int, default=300, help="held-out examples per task")
    p.add_argument(
        "--budgets", type=_budgets, default=DEMO_BUDGETS, help="budgets for the comparison, for configs without their own demo.budgets"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of every config (e.g. total_timesteps=2000 for a quick run)",
    )
    p.set_defaults(func=cmd_demo)


def add_ablate(sub) -> None:
    p = sub.add_parser(
        "ablate",
        help="what RL adds: each config trained seven ways, compared on the same examples",
        description="Imitation only (no PPO), PPO only (no imitation), imitation + PPO (the config), "
        "label-free (imitation of a heuristic, demo.label_free, instead of oracle labels, then PPO), "
        "and label-free with a teacher (demo.teacher): teacher only, teacher + PPO, teacher + PPO "
        "with the teacher's credit in the reward (demo.teacher_credit_weight).",
    )
    p.add_argument(
        "--configs",
        type=_csv,
        default=["configs/agnostic.yaml", "configs/instructed.yaml", "configs/instructed_var.yaml"],
        help="training configs, comma-separated",
    )
    p.add_argument("--n-examples", type=int, default=300, help="held-out examples per task")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a key of every config")
    p.add_argument("--out", type=Path, default=Path("reports/ablations"), help="folder for one report per config")
    p.set_defaults(func=cmd_ablate)


def _evaluate(cfg, routers: list[Path], methods: list[str], budgets, n_examples: int, out: Path | None, matched):
    """The config's routers against ``methods`` on its model and task (or the config's ``demo.tasks``, options,
    example count and batch size), as ``rltr evaluate`` would run them."""
    demo = cfg.demo
    req = EvalRequest(
        model=cfg.env.model,
        tasks=demo.tasks or [cfg.env.task],
        task_kwargs=cfg.env.task_kwargs if demo.task_kwargs is None else demo.task_kwargs,
        methods=[f"router:{r}" for r in routers] + methods,
        budgets=budgets,
        decision_layers=cfg.env.decision_layers,
        n_examples=n_examples if demo.n_examples is None else demo.n_examples,
        batch_size=demo.batch_size,
        seed=0,
        device="cpu",
        query_aware=cfg.env.query_aware,
        matched=matched,
    )
    return run_and_report(req, out)


def _train_export(cfg, name: str, command: str) -> Path:
    from rltr.training.export import export_router
    from rltr.training.ppo import train

    return export_router(train(cfg, command=command), Path("routers") / name)


def cmd_demo(args) -> int:
    from rltr.config import load_config

    t_start = time.perf_counter()
    for config in args.configs:
        t0 = time.perf_counter()
        cfg = load_config(config, args.overrides)
        source = (
            f"teacher {cfg.imitation.teacher} (label-free)"
            if cfg.imitation.teacher
            else f"imitating {cfg.imitation.reducer}"
            if cfg.imitation.enabled
            else "no imitation"
        )
        print(
            f"== {config}: training on {cfg.env.model}/{cfg.env.task}, "
            f"{'query-aware' if cfg.env.query_aware else 'query-agnostic'}, {source}, {cfg.total_timesteps} steps"
        )
        router = _train_export(cfg, cfg.name, f"rltr demo ({config})")
        t_train = time.perf_counter() - t0
        budgets = args.budgets if cfg.demo.budgets is None else cfg.demo.budgets
        methods = cfg.demo.methods or DEMO_METHODS
        _evaluate(cfg, [router], methods, budgets, args.n_examples, Path("reports") / cfg.name, cfg.demo.matched)
        print(f"{config}: trained + exported in {t_train:.0f} s, total {time.perf_counter() - t0:.0f} s\n")
    print(f"demo finished in {time.perf_counter() - t_start:.0f} s")
    return 0


def ablation_variants(cfg) -> dict[str, list[str]]:
    """{variant: --set overrides} of the seven ways to train ``cfg``: imitation of the oracle's hand-made labels
    (alone, then PPO), PPO alone, imitation of a heuristic then PPO, and a teacher (alone, + PPO, + PPO with
    teacher credit). Every variant states its imitation source, whatever the config itself imitates."""
    labels = ["imitation.enabled=true", "imitation.teacher=null", "imitation.reducer=oracle"]
    label_free = [
        f"imitation.reducer={cfg.demo.label_free}",
        f"imitation.budget={cfg.demo.label_free_budget}",
        "imitation.balanced=false",
        "imitation.enabled=true",
        "imitation.teacher=null",
    ]
    teacher = ["imitation.enabled=true", f"imitation.teacher={cfg.demo.teacher}"]  # label-free: a teacher (docs/teachers.md)
    return {
        "imitation_only": [*labels, "total_timesteps=0"],
        "ppo_only": ["imitation.enabled=false"],
        "imitation_ppo": labels,
        "label_free": label_free,
        "teacher_only": [*teacher, "total_timesteps=0"],
        "teacher_ppo": teacher,
        "teacher_ppo_credit": [*teacher, f"imitation.teacher_credit_weight={cfg.demo.teacher_credit_weight}"],
    }


def cmd_ablate(args) -> int:
    from rltr.config import load_config

    for config in args.configs:
        cfg = load_config(config, args.overrides)
        routers, t0 = [], time.perf_counter()
        for variant, sets in ablation_variants(cfg).items():
            name = f"{cfg.name}-{variant}"
            print(f"== {config}: {variant} ({', '.join(sets) or 'as configured'})")
            routers.append(
                _train_export(load_config(config, [*args.overrides, *sets, f"name={name}"]), name, f"rltr ablate ({config}, {variant})")
            )
        budgets = cfg.demo.budgets or DEMO_BUDGETS
        _evaluate(cfg, routers, ["oracle", cfg.demo.label_free.partition("@")[0]], budgets, args.n_examples, args.out / cfg.name, None)
        print(f"{config}: ablations in {time.perf_counter() - t0:.0f} s\n")
    return 0
