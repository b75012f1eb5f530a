"""Throughput of ``with reducer(model): model(...)`` on the encoder families against the plain HF forward, with
the task score of the same calls: vit-digits (images/s, accuracy on the 360 held-out digits) and
all-MiniLM-L6-v2 (texts/s, embedding fidelity on the 116 held-out sentences; throughput also on 128-token
passages made of the corpus). Ratios are measured side by side in one run: median of interleaved repeats
(every setting runs once per repeat, round-robin, so load drift hits all alike).

Two tables per model: "at 50% of tokens" (one decision before layer 1 keeping half the tokens) for the
heuristics and the router, and, for the ViT, the accuracy/throughput curve with decisions before every
layer (ToMe's r per layer, ToMe and attention top-k at budgets, the router at budgets and its own choice).

    OMP_NUM_THREADS=1 python benchmarks/encoders.py --vit-router routers/vit_digits --text-router routers/minilm
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

HEURISTICS = ["tome", "attn_topk", "attn_topk:merge", "norm", "norm:hidden", "random"]


def timed_cases(model, cases: dict, batches: list, repeats: int) -> dict:
    """{label: reduction of ``model`` or None (its plain forward)} -> {label: (median seconds of one pass over
    ``batches``, the outputs of the first pass)}."""

    def run(reduction):
        outs = []
        with reduction if reduction is not None else torch.no_grad(), torch.no_grad():
            for batch, inputs in batches:
                outs.append(batch.model_output(model(**inputs)))
        return outs

    outputs = {k: run(r) for k, r in cases.items()}  # warm-up pass, scored
    times = {k: [] for k in cases}
    for _ in range(repeats):
        for k, r in cases.items():
            t0 = time.perf_counter()
            run(r)
            times[k].append(time.perf_counter() - t0)
    return {k: (statistics.median(times[k]), outputs[k]) for k in cases}


def score(task, batches, outputs) -> float:
    from rltr.tasks.scoring import score_function

    fn = score_function(task.scores[0], task.kind)
    return float(torch.cat([fn(out, batch) for (batch, _), out in zip(batches, outputs)]).mean())


def table(title: str, task, batches, results: dict, n_items: int, scored: bool = True) -> list[str]:
    full = results["full (plain HF forward)"][0]
    head = f"| setting | {task.scores[0]} | items/s | speedup over full |" if scored else "| setting | items/s | speedup over full |"
    lines = [title, head, "|---|" + "---:|" * (3 if scored else 2)]
    for k, (sec, outs) in results.items():
        cell = f" {score(task, batches, outs):.3f} |" if scored else ""
        lines.append(f"| {k} |{cell} {n_items / sec:.0f} | {full / sec:.2f}x |")
    return lines


def half_tokens_cases(model, budget: float, layer: int, router: str | None) -> dict:
    from rltr.reducers import get_reducer

    cases = {"full (plain HF forward)": None}
    for spec in HEURISTICS + ([f"router:{router}"] if router else []):
        cases[f"{spec.split('/')[-1]} @{budget}, decision before layer {layer}"] = get_reducer(spec)(
            model, budget=budget, decision_layers=[layer]
        )
    return cases


def curve_cases(model, router: str | None, budgets: list[float], rs: list[int]) -> dict:
    """Decisions before every layer: ToMe's r mode, ToMe / attention top-k / the router at budgets, the router's own choice."""
    from rltr.reducers import get_reducer

    every = list(range(model.config.num_hidden_layers))
    cases = {"full (plain HF forward)": None}
    cases.update({f"tome:r={r}": get_reducer(f"tome:r={r}")(model) for r in rs})
    for spec in ["tome", "attn_topk"] + ([f"router:{router}"] if router else []):
        for b in budgets:
            cases[f"{spec.split('/')[-1]} @{b}"] = get_reducer(spec)(model, budget=b, decision_layers=every)
    if router:
        cases[f"router:{router.split('/')[-1]} own choice"] = get_reducer(f"router:{router}")(model, budget=None, decision_layers=every)
    return cases


def task_batches(model_name: str, task_name: str, batch: int, n: int):
    from rltr.backbones import load_backbone
    from rltr.tasks import get_task

    bb = load_backbone(model_name)
    task = get_task(task_name)
    task.prepare(bb)
    examples = task.examples(n, split="test")
    batches = [task.collate(examples[i : i + batch]) for i in range(0, len(examples), batch)]
    return bb, task, [(b, b.model_inputs(reduced=False)) for b in batches], len(examples)


def passages(model_name: str, batch: int, tokens: int = 128):
    """A batch of ~``tokens``-token passages (corpus sentences joined), as a sentences-task batch (unscored)."""
    from transformers import AutoTokenizer

    from rltr.backbones import resolve_model
    from rltr.tasks.sentences import corpus

    tok = AutoTokenizer.from_pretrained(resolve_model(model_name))
    per = max(tokens // 22, 1)  # the corpus averages ~22 tokens a sentence
    texts = [" ".join(corpus()[(i * per + j) % len(corpus())] for j in range(per)) for i in range(batch)]
    enc = tok(texts, padding=True, truncation=True, max_length=tokens, return_tensors="pt")
    return enc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vit", default="vit-digits", help="ViT model (built-in name or folder); 'none' to skip")
    p.add_argument("--text", default="minilm", help="BERT-family model (packaged name or folder); 'none' to skip")
    p.add_argument("--vit-router", default=None, help="router folder for the ViT")
    p.add_argument("--text-router", default=None, help="router folder for the text model")
    p.add_argument("--batch", type=int, default=64, help="items per forward call")
    p.add_argument("--n", type=int, default=360, help="held-out items per pass (capped by the split)")
    p.add_argument("--repeats", type=int, default=7, help="interleaved repeats (median reported)")
    p.add_argument("--budget", type=float, default=0.5, help="fraction of tokens kept in the 50%% tables")
    p.add_argument("--layer", type=int, default=1, help="the decision layer of the 50%% tables")
    p.add_argument("--quick", action="store_true", help="2 repeats, a short curve, no passages")
    args = p.parse_args(argv)
    repeats = 2 if args.quick else args.repeats
    torch.manual_seed(0)
    out = [f"torch threads: {torch.get_num_threads()}, batch {args.batch}, median of {repeats} interleaved repeats"]
    if args.vit != "none":
        bb, task, batches, n = task_batches(args.vit, "digits", args.batch, args.n)
        res = timed_cases(bb.model, half_tokens_cases(bb.model, args.budget, args.layer, args.vit_router), batches, repeats)
        out += ["", *table(f"{args.vit}: {n} held-out images, 50% of tokens", task, batches, res, n)]
        budgets, rs = ([0.1], [8]) if args.quick else ([0.05, 0.1, 0.25, 0.5], [4, 8, 12, 16])
        res = timed_cases(bb.model, curve_cases(bb.model, args.vit_router, budgets, rs), batches, repeats)
        out += ["", *table(f"{args.vit}: {n} held-out images, decisions before every layer", task, batches, res, n)]
    if args.text != "none":
        bb, task, batches, n = task_batches(args.text, "sentences", args.batch, args.n)
        res = timed_cases(bb.model, half_tokens_cases(bb.model, args.budget, args.layer, args.text_router), batches, repeats)
        mean = float(torch.cat([b.attention_mask.sum(1) for b, _ in batches]).float().mean())
        out += ["", *table(f"{args.text}: {n} held-out sentences ({mean:.0f} tokens on average), 50% of tokens", task, batches, res, n)]
        if not args.quick:
            enc = passages(args.text, args.batch)
            long = [(_Unscored(), {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})]
            res = timed_cases(bb.model, half_tokens_cases(bb.model, args.budget, args.layer, args.text_router), long, repeats)
            out += [
                "",
                *table(f"{args.text}: {args.batch} passages of 128 tokens, 50% of tokens", task, long, res, args.batch, scored=False),
            ]
    print("\n".join(out))
    return 0


class _Unscored:
    """A stand-in batch for throughput-only inputs: keeps the forward's output as it is."""

    @staticmethod
    def model_output(out):
        return out.last_hidden_state


if __name__ == "__main__":
    raise SystemExit(main())
