"""``rltr zoo``: list the built-in and packaged models, rebuild one, measure its oracle-vs-random gaps."""

from __future__ import annotations

import json
from pathlib import Path


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
            from rltr.backbones.gguf_cache import converted_dir, gguf_source, is_converted

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
    from rltr.evaluation.gaps import record_gaps

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
