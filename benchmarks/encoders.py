"""Throughput of ``with reducer(model): model(...)`` on the encoder families, against the plain HF forward:
vit-digits (images/s) and all-MiniLM-L6-v2 (texts/s: the sentences task's corpus, and 128-token passages
made of it). Reducers keep 50% of the tokens from layer 1 on (one decision before layer 1); ToMe's own
mode (``tome:r=N``) merges N tokens before every layer. Ratios are measured side by side in one run:
median of interleaved repeats (methods round-robin within each repeat, so load drift hits all alike).

    OMP_NUM_THREADS=1 python benchmarks/encoders.py [--quick] [--vit-router routers/vit_digits] [--text-router routers/minilm]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

HEURISTICS = ["tome", "attn_topk", "norm", "random"]


def interleaved(cases: dict, repeats: int) -> dict:
    """{name: fn} -> {name: median seconds} over ``repeats`` round-robin passes (after one warm-up pass)."""
    for fn in cases.values():
        fn()
    times = {k: [] for k in cases}
    for _ in range(repeats):
        for k, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def cases_for(model, inputs: dict, methods: list[str], budget: float, layers: list[int], tome_r: int, router: str | None) -> dict:
    """{label: fn} running the plain forward and each method's reduced forward on ``inputs``."""
    from rltr.reducers import get_reducer

    def plain():
        with torch.no_grad():
            model(**inputs)

    def reduced(reduction):
        def run():
            with reduction, torch.no_grad():
                model(**inputs)
        return run

    cases = {"full (plain HF forward)": plain}
    for spec in methods:
        cases[f"{spec} @{budget} from layer {layers[0]}"] = reduced(get_reducer(spec)(model, budget=budget, decision_layers=layers))
    if tome_r:
        cases[f"tome:r={tome_r} (every layer)"] = reduced(get_reducer(f"tome:r={tome_r}")(model))
    if router:
        reducer = get_reducer(f"router:{router}")
        cases[f"router @{budget} (its layers {reducer.router.decision_layers})"] = reduced(reducer(model, budget=budget))
    return cases


def report(title: str, n_items: int, seconds: dict) -> list[str]:
    full = seconds["full (plain HF forward)"]
    lines = [f"{title}", "| method | items/s | speedup over full |", "|---|---:|---:|"]
    lines += [f"| {k} | {n_items / s:.0f} | {full / s:.2f}x |" for k, s in seconds.items()]
    return lines


def vit_inputs(model_name: str, batch: int):
    from rltr.backbones import load_backbone
    from rltr.tasks import get_task

    bb = load_backbone(model_name)
    task = get_task("digits", image_size=bb.image_shape[-1])
    return bb.model, task.collate(task.examples(batch, split="test")).model_inputs(reduced=False)


def text_inputs(model_name: str, batch: int, passage_tokens: int | None):
    """MiniLM and a batch of corpus sentences, or of passages of about ``passage_tokens`` tokens (sentences joined)."""
    from transformers import AutoTokenizer

    from rltr.backbones import load_backbone, resolve_model
    from rltr.tasks.sentences import corpus

    bb = load_backbone(model_name)
    tok = AutoTokenizer.from_pretrained(resolve_model(model_name))
    texts = corpus()
    if passage_tokens:
        per = max(passage_tokens // 22, 1)  # the corpus averages ~22 tokens a sentence
        texts = [" ".join(texts[(i * per + j) % len(texts)] for j in range(per)) for i in range(batch)]
    enc = tok(texts[:batch], padding=True, truncation=True, max_length=passage_tokens or 128, return_tensors="pt")
    return bb.model, {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vit", default="vit-digits", help="ViT model (built-in name or folder); 'none' to skip")
    p.add_argument("--text", default="minilm", help="BERT-family model (built-in/packaged name or folder); 'none' to skip")
    p.add_argument("--vit-router", default=None, help="router folder for the ViT (its decision layers)")
    p.add_argument("--text-router", default=None, help="router folder for the text model")
    p.add_argument("--batch", type=int, default=64, help="items per forward call")
    p.add_argument("--repeats", type=int, default=9, help="interleaved repeats (median reported)")
    p.add_argument("--budget", type=float, default=0.5, help="fraction of tokens kept")
    p.add_argument("--layer", type=int, default=1, help="the decision layer of the heuristics")
    p.add_argument("--tome-r", type=int, default=8, help="r of ToMe's own mode on the ViT (0: skip)")
    p.add_argument("--quick", action="store_true", help="3 repeats, no 128-token passages")
    args = p.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    torch.manual_seed(0)
    out = [f"torch threads: {torch.get_num_threads()}, batch {args.batch}, median of {repeats} interleaved repeats"]
    if args.vit != "none":
        model, inputs = vit_inputs(args.vit, args.batch)
        cases = cases_for(model, inputs, HEURISTICS, args.budget, [args.layer], args.tome_r, args.vit_router)
        out += ["", *report(f"{args.vit}: {args.batch} images of {tuple(inputs['pixel_values'].shape[1:])}", args.batch,
                            interleaved(cases, repeats))]
    if args.text != "none":
        for passage in (None,) if args.quick else (None, 128):
            model, inputs = text_inputs(args.text, args.batch, passage)
            cases = cases_for(model, inputs, HEURISTICS, args.budget, [args.layer], 0, args.text_router)
            real = inputs["attention_mask"].sum(1).float().mean()
            what = f"128-token passages" if passage else "corpus sentences"
            out += ["", *report(f"{args.text}: {args.batch} {what} ({real:.0f} tokens on average)", args.batch,
                                interleaved(cases, repeats))]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
