"""``rltr apply``: generate with and without token reduction on a plain HF model and show both.

    rltr apply --router routers/default --model default --task retrieval
    rltr apply --method tome --model PATH --prompt "..." --budget 0.5 --protect-last 4

Errors are ValueError / FileNotFoundError, which ``rltr.cli.main`` turns into one line and exit code 2.
"""

from __future__ import annotations

import time

import torch

import rltr.cli.args as cli_args


def add_apply(sub) -> None:
    p = sub.add_parser(
        "apply",
        help="generate with a router or heuristic applied to a plain HF model",
        description="Generate with and without token reduction in the prompt pass; print both outputs, prompt tokens kept and time taken.",
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--router", default=None, help="router folder (config.json + model.safetensors)")
    who.add_argument("--method", default=None, help="a heuristic instead: tome, attn_topk, h2o, norm, window, random")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt", default=None, help="prompt text (tokenized with the model's tokenizer)")
    what.add_argument("--task", default=None, help="take the prompt (context + question) from a built-in task or jsonl:PATH")
    p.add_argument("--model", default="default", help="built-in model name, local folder or hub name")
    p.add_argument("--budget", type=cli_args.budget, default=0.5, help="fraction of prompt tokens to keep, in (0, 1]")
    p.add_argument(
        "--protect-last",
        type=int,
        default=None,
        help="protected question tail (last K prompt tokens); default: the task's question, else 1",
    )
    p.add_argument(
        "--protect-first",
        type=int,
        default=None,
        help="protected first K prompt tokens (BOS / sinks); default: the task's protected prefix, else 0",
    )
    p.add_argument(
        "--decision-layers",
        type=cli_args.layers,
        default=None,
        help="layers before which the reducer acts; default: the router's own, else 1",
    )
    p.add_argument("--max-new-tokens", type=int, default=32, help="tokens to generate")
    p.add_argument("--seed", type=int, default=0, help="which task example, and the seed of random reducers")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_apply)


def _prompt(args, backbone) -> tuple[list[int], int, int, list[int] | None]:
    """(prompt ids, protect_last, protect_first, expected answer ids or None)."""
    if args.task is not None:
        from rltr.evaluation.run import check_task_fits
        from rltr.tasks import load_task

        task = load_task(args.task, backbone)
        check_task_fits(backbone, task)
        ex = task.examples(1, seed=args.seed, split="test")[0]
        prompt = ex.input_ids[: -ex.n_answer]
        first = max(ex.protected) + 1 if ex.protected else 0
        return prompt, len(prompt) - ex.context_len, first, ex.answer
    if not args.prompt.strip():
        raise ValueError("--prompt is empty")
    return _tokenizer(args.model).encode(args.prompt, add_special_tokens=False), 1, 0, None


def _tokenizer(model: str):
    from rltr.tasks.jsonl import load_tokenizer

    return load_tokenizer(model)


def _check_length(args, backbone, n_prompt: int) -> None:
    """Prompt + generated tokens must fit the model's positions (else the embedding raises IndexError)."""
    limit = backbone.max_positions
    if limit is not None and n_prompt + args.max_new_tokens > limit:
        raise ValueError(
            f"prompt of {n_prompt} tokens + {args.max_new_tokens} new tokens (--max-new-tokens) = "
            f"{n_prompt + args.max_new_tokens} tokens, more than the {limit} positions of model {args.model!r}"
        )


def _generate(model, ids: torch.Tensor, max_new_tokens: int) -> tuple[list[int], float]:
    t0 = time.perf_counter()
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, ids.shape[1] :].tolist(), time.perf_counter() - t0


def cmd_apply(args) -> int:
    from rltr.backbones import load_backbone
    from rltr.reducers import get_reducer

    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    reducer = get_reducer(f"router:{args.router}" if args.router is not None else args.method)
    backbone = load_backbone(args.model, device=args.device)
    if not backbone.causal:
        raise ValueError(
            f"rltr apply generates text with a causal LM; {backbone.family} model {args.model!r} is an encoder: "
            f"use rltr evaluate, or `with reducer(model): model(...)`"
        )
    model = backbone.model
    prompt, protect_last, protect_first, answer = _prompt(args, backbone)
    protect_last = protect_last if args.protect_last is None else args.protect_last
    protect_first = protect_first if args.protect_first is None else args.protect_first
    _check_length(args, backbone, len(prompt))
    ids = torch.tensor([prompt], device=backbone.device)
    reduction = reducer(
        model,
        budget=args.budget,
        protect_last=protect_last,
        protect_first=protect_first,
        decision_layers=args.decision_layers,
        seed=args.seed,
    )
    with reduction:  # fail on a mismatched router or bad decision layers before generating anything
        pass
    _generate(model, ids, 1)  # warm-up, so neither timing below pays first-call costs
    full, t_full = _generate(model, ids, args.max_new_tokens)
    with reduction:
        reduced, t_reduced = _generate(model, ids, args.max_new_tokens)
    info = reduction.last
    decode = _decoder(args.model)
    n, kept = len(prompt), int(info.n_kept[0])
    print(
        f"model {args.model} ({backbone.family}, {backbone.n_layers} layers), method {args.router or args.method}, "
        f"budget {args.budget}, decision layers {reduction.decision_layers}, protected: last {protect_last}, "
        f"first {protect_first}"
    )
    print(f"prompt: {n} tokens" + (f" ({args.task} example, seed {args.seed})" if args.task else ""))
    print(f"full:    {decode(full)!r}  [{n}/{n} prompt tokens, {1000 * t_full:.1f} ms]")
    print(f"reduced: {decode(reduced)!r}  [{kept}/{n} prompt tokens kept ({kept / n:.0%}), {1000 * t_reduced:.1f} ms]")
    if answer is not None:
        k = len(answer)
        print(
            f"expected answer: {decode(answer)!r}; full {'right' if full[:k] == answer else 'wrong'}, "
            f"reduced {'right' if reduced[:k] == answer else 'wrong'}"
        )
    return 0


def _decoder(model: str):
    """ids -> text with the model's tokenizer, or the ids themselves when it has none."""
    try:
        tok = _tokenizer(model)
    except ValueError:
        return lambda ids: " ".join(map(str, ids))
    return lambda ids: tok.decode(ids)
