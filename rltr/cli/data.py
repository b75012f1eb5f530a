"""``rltr data``: datasets as JSONL files.

    rltr data export retrieval --n 500 --split test --out data/retrieval_test.jsonl
    rltr data check data/qa.jsonl --model default [--task-kwargs '{chat_template: true}']

Errors are ValueError / FileNotFoundError, which ``rltr.cli.main`` turns into one line and exit code 2.
"""

from __future__ import annotations

from pathlib import Path

import rltr.cli.args as cli_args


def add_data(sub) -> None:
    p = sub.add_parser("data", help="datasets as JSONL files: export a built-in task, check a file against a model")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    e = dsub.add_parser(
        "export",
        help="write a built-in task's examples as JSONL (context, question, answer, spans)",
        description="Write N examples of a built-in task, one JSON object per line; `--task jsonl:FILE` "
        "then reads the same tokens back with the built-in model's tokenizer.",
    )
    e.add_argument("task", help="built-in task name (rltr.tasks.TASKS)")
    e.add_argument("--n", type=int, required=True, help="examples to write")
    e.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    e.add_argument("--split", choices=["train", "validation", "test"], default="test", help="which split's examples")
    e.add_argument("--seed", type=int, default=0, help="seed of the examples (as rltr evaluate --seed)")
    e.add_argument("--task-kwargs", type=cli_args.mapping, default={}, help="keyword arguments of the task, a YAML mapping")
    e.set_defaults(func=cmd_data_export)
    c = dsub.add_parser(
        "check",
        help="read a JSONL file with a model's tokenizer and report what training would see",
        description="Tokenize every line with the model's tokenizer (and options) and print examples per "
        "split and token counts; a bad line is one error naming the file and line.",
    )
    c.add_argument("file", type=Path, help="JSONL file (one object per line with context, question, answer)")
    c.add_argument("--model", default="default", help="built-in model name, local folder or hub name")
    c.add_argument(
        "--task-kwargs",
        type=cli_args.mapping,
        default={},
        help="jsonl options, a YAML mapping: chat_template, split, split_seed, validation, test, model_answers",
    )
    c.add_argument("--quiet", action="store_true", help="no progress bars (lines tokenized, model answers, with an ETA)")
    c.set_defaults(func=cmd_data_check)


def cmd_data_export(args) -> int:
    from rltr.runs.outputs import check_writable_file
    from rltr.tasks import get_task
    from rltr.tasks.export import export_task

    check_writable_file(args.out, "--out")  # before the examples are made
    path = export_task(get_task(args.task, **args.task_kwargs), args.n, args.out, seed=args.seed, split=args.split)
    print(f"wrote {args.n} {args.task} examples ({args.split} split, seed {args.seed}) to {path}")
    return 0


def cmd_data_check(args) -> int:
    from rltr.backbones import load_backbone
    from rltr.tasks.jsonl import load_jsonl

    backbone = load_backbone(args.model)
    task = load_jsonl(args.file, backbone, progress=not args.quiet, **args.task_kwargs)
    task.check_fits(backbone)
    print(f"{args.file}: model {args.model} ({backbone.family}), positions {backbone.max_positions}")
    for split, examples in task.splits.items():
        lengths = [len(e.input_ids) for e in examples]
        contexts = [e.context_len for e in examples]
        answers = [e.n_answer for e in examples]
        print(
            f"  {split}: {len(examples)} examples; tokens {min(lengths)}..{max(lengths)} (context {min(contexts)}..{max(contexts)}, "
            f"answer {min(answers)}..{max(answers)}); with relevant spans: {sum(bool(e.relevant) for e in examples)}"
        )
    print(f"  longest example: {task.max_length()} tokens (env.max_tokens: auto)")
    return 0
