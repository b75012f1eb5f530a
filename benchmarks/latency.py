"""Wall-clock latency of token reduction inside a plain HF model: full vs reduced prefill, time to first
token and 32 generated tokens, and the router's own decision overhead. Ratios are full / reduced,
measured in one run, median of repeats (methods interleaved within each repeat, so drift hits all alike).

The model is a built-in-family GPT-2 (rltr's task vocabulary) scaled up and randomly initialised
(``--family llama``: a Llama-like model of the same size): latency does not depend on the weights. A
random model has no trained router, so the routers are freshly initialised ``Router``s (same config
format as ``rltr export``, untrained weights; full and light features) loaded from folders through the
ordinary ``router:PATH`` reducer: they make the same computations trained ones would.

    OMP_NUM_THREADS=1 python benchmarks/latency.py --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rltr.reducers import ScoreReducer

HEURISTICS = ["tome", "attn_topk", "h2o", "norm", "window", "random"]


def build_model(family: str, n_layer: int, width: int, n_positions: int):
    """A random-init causal LM of rltr's task vocabulary: GPT-2 (the built-in family) or Llama-like
    (rotary, RMSNorm, SwiGLU, grouped KV heads: 4 query heads per KV head)."""
    from rltr.tasks.vocab import VOCAB_SIZE

    torch.manual_seed(0)
    if family == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(
            num_hidden_layers=n_layer,
            hidden_size=width,
            intermediate_size=(8 * width // 3 + 63) // 64 * 64,
            num_attention_heads=width // 64,
            num_key_value_heads=max(width // 256, 1),
            vocab_size=VOCAB_SIZE,
            max_position_embeddings=n_positions,
            bos_token_id=1,
            eos_token_id=None,
            pad_token_id=0,
        )
        return LlamaForCausalLM(cfg).eval()
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        n_layer=n_layer,
        n_embd=width,
        n_head=width // 64,
        vocab_size=VOCAB_SIZE,
        n_positions=n_positions,
        bos_token_id=1,
        eos_token_id=None,
        pad_token_id=0,
    )
    return GPT2LMHeadModel(cfg).eval()


def fresh_router(
    backbone, decision_layers: list[int], folder: Path, hidden: int = 64, feature_set: str = "full", context: bool = False
) -> Path:
    """An untrained router for ``backbone`` written as an ordinary router folder (format of rltr export);
    ``context``: the attention actor on the light features and the whole hidden state (configs/instructed.yaml's
    router, at this model's width)."""
    from rltr.core.features import FeatureSpec
    from rltr.core.ops import Action
    from rltr.policies.network import network_spec
    from rltr.policies.router import FORMAT, FORMAT_VERSION, Router

    features = FeatureSpec.named(feature_set)
    network = {"type": "TokenActor", "hidden": hidden}
    if context:
        d = backbone.config.n_embd if hasattr(backbone.config, "n_embd") else backbone.config.hidden_size
        features, network = FeatureSpec.named("light", n_hidden_proj=d, projection="identity"), network_spec("attention", 16, 8)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "features": features.to_dict(),
        "network": network,
        "decision_layers": decision_layers,
        "query_aware": True,
        "backbone": {"family": backbone.family, "name": "random-gpt2", "config_hash": backbone.config_hash},
        "actions": {a.name: int(a) for a in Action},
        "training": {"note": "untrained: latency benchmark only"},
    }
    torch.manual_seed(0)
    return Router(config).save_pretrained(folder)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(cases: dict, repeats: int, warm_up: bool = True) -> dict:
    """{name: fn} -> {name: median seconds} over ``repeats`` round-robin passes (after one warm-up pass)."""
    for fn in cases.values() if warm_up else ():
        fn()
    times = {k: [] for k in cases}
    for _ in range(repeats):
        for k, fn in cases.items():
            times[k].append(timed(fn))
    return {k: statistics.median(v) for k, v in times.items()}


@torch.no_grad()
def router_overhead(backbone, reducer, ids, layer: int, budget: float, protect_last: int, repeats: int) -> dict:
    """Median seconds of the router's decision parts on the state entering ``layer`` (no cached maps)."""
    from rltr.core.decisions import decision_context
    from rltr.core.features import token_features

    n = ids.shape[1]
    pos = torch.arange(n)[None]
    state = backbone.run_layers(backbone.embed(ids, protected=pos >= n - protect_last), 0, layer)
    n_orig = state.n_alive

    def ctx():
        return decision_context(backbone, state, [layer], 0, n_orig, budget, context_len=torch.tensor([n - protect_last]))

    obs = token_features(ctx(), reducer.router.features)
    parts = {
        "features": lambda: token_features(ctx(), reducer.router.features),
        "attention rows": lambda: ctx().attention_from_recent(),  # the attention slice the features read
        "network": lambda: reducer.router.logits(obs),
        "decision": lambda: reducer.decide(ctx()),
    }
    return interleaved(parts, repeats)


@torch.no_grad()
def decision_times(backbone, reducers: dict, ids, layer: int, budget: float, protect_last: int, repeats: int) -> dict:
    """Median seconds of each method's whole decision (decide + apply the actions: drop, merge, compact) on
    the state entering ``layer``. At the same budget the layers after it run on the same number of tokens
    for every method, so this is where methods differ in cost; it is timed alone, free of the run-to-run
    noise of whole prefills."""
    from rltr.core.decider import Decider

    n = ids.shape[1]
    pos = torch.arange(n)[None]
    state = backbone.run_layers(backbone.embed(ids, protected=(pos >= n - protect_last) | (pos < 1)), 0, layer)
    cases = {}
    for name, reducer in reducers.items():
        decide = Decider(
            reducer, backbone, [layer], budget, context_len=torch.tensor([n - protect_last]), generator=torch.Generator().manual_seed(0)
        )
        cases[name] = lambda decide=decide: decide(layer, state)
    return interleaved(cases, repeats)


@torch.no_grad()
def bench_length(model, reducers: dict, n: int, budgets: list[float], args) -> dict:
    """Prefill for every method x budget; TTFT and 32 tokens at budget 0.5. Returns {(method, budget): ms...}."""
    g = torch.Generator().manual_seed(n)
    ids = torch.randint(4, model.config.vocab_size, (1, n), generator=g)
    ids[0, 0] = 1
    kw = dict(protect_last=args.protect_last, protect_first=1, decision_layers=[args.decision_layer])
    gen = dict(do_sample=False, pad_token_id=0, attention_mask=torch.ones_like(ids))

    def run(method, budget, fn):
        if method == "full":
            return fn
        return lambda: _under(reducers[method](model, budget=budget, **kw), fn)

    prefill = lambda: model(ids, use_cache=True, logits_to_keep=1)  # noqa: E731
    ttft = lambda: model.generate(ids, max_new_tokens=1, **gen)  # noqa: E731
    new = lambda: model.generate(ids, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, **gen)  # noqa: E731
    cases = {("full", None): run("full", None, prefill)}
    cases.update({(m, b): run(m, b, prefill) for b in budgets for m in reducers})
    out = {"prefill": interleaved(cases, args.repeats, warm_up=not args.no_warm_up)}
    gen_methods = ["full", *reducers] if not args.quick else ["full", "router"]
    cases = {(m, "ttft"): run(m, 0.5, ttft) for m in gen_methods}
    cases.update({(m, "new"): run(m, 0.5, new) for m in gen_methods})
    out["generate"] = interleaved(cases, args.gen_repeats, warm_up=False)
    with reducers["router"](model, budget=0.5, **kw) as red:
        model(ids, use_cache=True, logits_to_keep=1)
        out["kept"] = int(red.last.n_kept[0])
        out["merged"] = int((red.last.sizes - 1).clamp_min(0).sum())  # originals folded into kept tokens
    return out


class PerRowKeep(ScoreReducer):
    """Keeps its own fraction of each row (``fractions[i]`` of row i, the latest tokens: only the count matters),
    as a router's own choice or a threshold does."""

    name = "per_row"
    chooses_own_budget = True

    def __init__(self, fractions: list[float]):
        self.fractions = fractions

    def score(self, ctx):
        return ctx.state.positions.float()

    def decide(self, ctx):
        n_keep = (torch.tensor(self.fractions, device=ctx.state.alive.device) * ctx.state.n_alive).ceil().long()
        return super().decide(dataclasses.replace(ctx, n_keep=n_keep))


@torch.no_grad()
def per_input_budgets(model, args) -> None:
    """A batch whose rows keep 5% to 60% of their tokens (mean 25%): prefill with the rows in one padded batch
    vs in buckets of similar length (:mod:`rltr.inference.buckets`), against every row at 25%."""
    n, fractions = (512 if args.quick else 1024), [0.05, 0.05, 0.1, 0.1, 0.15, 0.25, 0.5, 0.6]
    ids = torch.randint(4, model.config.vocab_size, (len(fractions), n), generator=torch.Generator().manual_seed(1))
    per_row = PerRowKeep(fractions)
    kw = dict(protect_last=args.protect_last, protect_first=1, decision_layers=[args.decision_layer])
    prefill = lambda: model(ids, use_cache=True, logits_to_keep=1)  # noqa: E731
    mean = sum(fractions) / len(fractions)
    cases = {
        "full": prefill,
        f"every row at {mean:.0%}": lambda: _under(PerRowKeep([mean] * len(fractions))(model, budget=None, **kw), prefill),
        "per-row, one padded batch": lambda: _under(per_row(model, budget=None, bucket=False, **kw), prefill),
        "per-row, in buckets": lambda: _under(per_row(model, budget=None, bucket=True, **kw), prefill),
    }
    t = interleaved(cases, args.repeats, warm_up=not args.no_warm_up)
    print(
        f"\nper-input budgets: {len(fractions)} prompts x {n} tokens keeping {', '.join(f'{f:.0%}' for f in fractions)} "
        f"(mean {mean:.0%}), decision layer {args.decision_layer}:\n"
    )
    print("| batch | prefill ms | speedup (full/reduced) |\n|---|---:|---:|")
    for name, sec in t.items():
        print(f"| {name} | {1000 * sec:.1f} | {t['full'] / sec:.2f}x |")


def _under(reduction, fn):
    with reduction:
        return fn()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1024 tokens, budget 0.5, fewer repeats (< 1 minute)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on a shared machine)")
    p.add_argument("--repeats", type=int, default=5, help="timed prefill repeats per case (median reported)")
    p.add_argument("--gen-repeats", type=int, default=2, help="timed generate() repeats per case")
    p.add_argument("--no-warm-up", action="store_true", help="skip the warm-up pass of every prefill case")
    p.add_argument("--family", choices=["gpt2", "llama"], default="gpt2", help="model family (same width and depth)")
    p.add_argument("--n-layer", type=int, default=8)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--decision-layer", type=int, default=1, help="an early layer, so the reduction pays off")
    p.add_argument("--protect-last", type=int, default=16, help="the protected question tail")
    p.add_argument("--new-tokens", type=int, default=32)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    lengths = [1024] if args.quick else [512, 1024, 2048]
    budgets = [0.5] if args.quick else [0.25, 0.5, 0.75]

    from rltr.backbones import wrap
    from rltr.reducers import get_reducer

    model = build_model(args.family, args.n_layer, args.width, max(lengths) + args.new_tokens)
    backbone = wrap(model)
    tmp = tempfile.TemporaryDirectory()
    router_dir = fresh_router(backbone, [args.decision_layer], Path(tmp.name) / "router")
    light_dir = fresh_router(backbone, [args.decision_layer], Path(tmp.name) / "router_light", feature_set="light")
    ctx_dir = fresh_router(backbone, [args.decision_layer], Path(tmp.name) / "router_ctx", context=True)
    reducers = {
        "router": get_reducer(f"router:{router_dir}"),
        "router_light": get_reducer(f"router:{light_dir}"),
        "router_ctx": get_reducer(f"router:{ctx_dir}"),
        **{h: get_reducer(h) for h in HEURISTICS},
    }
    name = "Llama-like" if args.family == "llama" else "GPT-2"
    print(
        f"{name} {args.n_layer}L x {args.width}, random init (latency only), {torch.get_num_threads()} thread(s), "
        f"decision layer {args.decision_layer}, protect last {args.protect_last} + first 1, "
        f"median of {args.repeats} (prefill) / {args.gen_repeats} (generate) interleaved repeats"
    )
    print(
        "router: freshly initialised Router (untrained weights; a random model has no trained router), loaded from a folder as router:PATH"
    )
    results = {}
    for n in lengths:
        t0 = time.perf_counter()
        results[n] = r = bench_length(model, reducers, n, budgets, args)
        full = r["prefill"][("full", None)]
        print(f"\n## {n} prompt tokens ({time.perf_counter() - t0:.0f} s)\n")
        print("| method | budget | prefill ms | speedup (full/reduced) |\n|---|---:|---:|---:|")
        print(f"| full | 1.00 | {1000 * full:.1f} | 1.00x |")
        for (m, b), t in r["prefill"].items():
            if m != "full":
                print(f"| {m} | {b:.2f} | {1000 * t:.1f} | {full / t:.2f}x |")
        g = r["generate"]
        print(
            f"\nbudget 0.5 generation (router keeps {r['kept']}/{n} prompt tokens; {r['merged']} of the removed ones "
            f"merged, the rest dropped):\n"
        )
        print(f"| method | TTFT ms | TTFT speedup | {args.new_tokens} tokens ms | speedup |\n|---|---:|---:|---:|---:|")
        for m in dict.fromkeys(k[0] for k in g):
            tt, nt = g[(m, "ttft")], g[(m, "new")]
            print(f"| {m} | {1000 * tt:.1f} | {g[('full', 'ttft')] / tt:.2f}x | {1000 * nt:.1f} | {g[('full', 'new')] / nt:.2f}x |")
    n = 1024
    ids = torch.randint(4, model.config.vocab_size, (1, n), generator=torch.Generator().manual_seed(n))
    over = router_overhead(backbone, reducers["router"], ids, args.decision_layer, 0.5, args.protect_last, args.repeats)
    full = results[n]["prefill"][("full", None)]
    share = {k: f"{v / full:.1%}" for k, v in over.items()}
    print(
        f"\nrouter overhead @{n} tokens (fraction of the full prefill, {1000 * full:.1f} ms): features {share['features']} "
        f"(of which the attention rows {share['attention rows']}), network {share['network']}, whole decision "
        f"(features + network + ranking) {share['decision']}"
    )
    dec = decision_times(backbone, reducers, ids, args.decision_layer, 0.5, args.protect_last, max(args.repeats, 5))
    print(
        f"\ndecision alone @{n} tokens, budget 0.5 (decide + drop/merge/compact; the layers after it run on the same "
        f"token count for every method):\n"
    )
    print("| method | decision ms | share of the full prefill |\n|---|---:|---:|")
    for m, t in sorted(dec.items(), key=lambda kv: kv[1]):
        print(f"| {m} | {1000 * t:.1f} | {t / full:.1%} |")
    pre = results[n]["prefill"]
    fastest = min(HEURISTICS, key=lambda h: pre[(h, 0.5)])
    print(f"\nfastest heuristic @{n} tokens, budget 0.5: {fastest} {full / pre[(fastest, 0.5)]:.2f}x")
    for r in ("router", "router_light", "router_ctx"):
        extra = dec[r] - dec[fastest]
        print(
            f"{r} / fastest heuristic time: {pre[(r, 0.5)] / pre[(fastest, 0.5)]:.2f} (decision time vs {fastest}'s: "
            f"{1000 * extra:+.1f} ms, {extra / full:+.1%} of the full prefill)"
        )
    per_input_budgets(model, args)
    print(f"router prefill speedup @{n} tokens, budget 0.5: {full / results[n]['prefill'][('router', 0.5)]:.2f}x")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
