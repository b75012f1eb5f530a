"""Prefill latency of a VLM with 25% / 50% of its image tokens kept vs all of them, measured side by side in one run.

Two models: the built-in ``vlm-digits`` (64 image tokens, Llama 4L x 64) and a random-init LLaVA-shaped model
(576 image tokens as LLaVA-1.5, a wider decoder; latency only, its outputs mean nothing). Each prompt is
``<bos> <image> x I`` + a 5-token question; one row per call (batch 1, as a chat request). Methods: FastV at
K=2 (the last token's attention before decoder layer 2) and at K=0, and random at K=0 (the cheapest decision).
Full = the unpatched HF forward. Calls are interleaved (full, then each method, repeated) and the median is
reported; "decision" is the share of the reduced forward spent inside the reducer's ``decide``.

    OMP_NUM_THREADS=1 python benchmarks/vlm_latency.py [--reps 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from rltr.inference.vlm import image_budget
from rltr.reducers import get_reducer
from rltr.zoo.registry import ZOO
from rltr.zoo.vlm_digits import VLMDigitsSpec, new_vlm

N_QUESTION = 5
METHODS = (("fastv", [2]), ("fastv", [0]), ("random", [0]))


def llava_shaped(quick: bool = False) -> torch.nn.Module:
    """Random-init LLaVA-shaped VLM: CLIP 1L x 64 on 48 x 48 images with 2 x 2 patches (576 image tokens) -> Llama 4L x 512
    (``quick``: 144 image tokens, Llama 4L x 64, a smoke test)."""
    width, px = (64, 24) if quick else (512, 48)
    spec = VLMDigitsSpec(
        name="llava-shaped",
        description="latency only",
        vision_layers=1,
        n_layer=4,
        hidden=width,
        n_head=8,
        intermediate=1376 if width == 512 else 4 * width,
    )
    torch.manual_seed(0)
    model = new_vlm(spec, image_px=px, patch=2).eval()
    model.set_attn_implementation("sdpa")  # as served; FastV's attention rows come from the backbone, not the kernel
    return model


def digits_model() -> torch.nn.Module:
    from transformers import AutoModelForImageTextToText

    from rltr.zoo import MODELS_DIR

    path = MODELS_DIR / "vlm-digits"
    if (path / "rltr_zoo.json").is_file():
        return AutoModelForImageTextToText.from_pretrained(path, attn_implementation="sdpa").eval()
    torch.manual_seed(0)
    model = new_vlm(ZOO["vlm-digits"]).eval()  # not built: same shape, random weights (latency is the same)
    model.set_attn_implementation("sdpa")
    return model


class TimedDecide:
    """Wraps a reducer's ``decide`` to add up the seconds spent in it."""

    def __init__(self, reducer):
        self.reducer, self.seconds, self._decide = reducer, 0.0, reducer.decide
        reducer.decide = self

    def __call__(self, ctx):
        t0 = time.perf_counter()
        out = self._decide(ctx)
        self.seconds += time.perf_counter() - t0
        return out


def prompt(model) -> dict:
    cfg = model.config
    n_image, px = cfg.image_seq_length, cfg.vision_config.image_size
    ids = torch.tensor([[1] + [cfg.image_token_id] * n_image + [4 + i for i in range(N_QUESTION)]])
    return {"input_ids": ids, "pixel_values": torch.randn(1, 1, px, px), "use_cache": False, "logits_to_keep": 1}


@torch.no_grad()
def measure(model, reps: int) -> list[dict]:
    inputs = prompt(model)
    n_tokens, n_image = inputs["input_ids"].shape[1], model.config.image_seq_length
    runs = {"full": ("full", None, None, None)}
    for ratio in (0.5, 0.25):
        for name, layers in METHODS:
            reducer = get_reducer(name)
            budget = image_budget(n_tokens, n_image, ratio)
            runs[f"{name} K={layers[0]} @{ratio:.0%}"] = (name, reducer, TimedDecide(reducer), (layers, budget))
    times: dict[str, list[float]] = {k: [] for k in runs}
    share: dict[str, list[float]] = {k: [] for k in runs}
    for rep in range(reps + 1):  # the first round warms up, untimed
        for key, (_, reducer, timer, setting) in runs.items():
            t0 = time.perf_counter()
            if reducer is None:
                model(**inputs)
            else:
                layers, budget = setting
                timer.seconds = 0.0
                with reducer(model, budget=budget, decision_layers=layers, protect_last=N_QUESTION):
                    model(**inputs)
            dt = time.perf_counter() - t0
            if rep:
                times[key].append(dt)
                if timer is not None:
                    share[key].append(timer.seconds / dt)
    full = statistics.median(times["full"])
    return [
        {
            "method": k,
            "ms": 1000 * statistics.median(v),
            "speedup": full / statistics.median(v),
            "decision_share": statistics.median(share[k]) if share[k] else 0.0,
        }
        for k, v in times.items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15, help="timed calls per method (after one warm-up round)")
    parser.add_argument("--json", default="", help="also write the rows to this file")
    parser.add_argument("--quick", action="store_true", help="a small LLaVA-shaped model (smoke test; ratios mean little)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = {}
    for label, build in (("vlm-digits", digits_model), ("llava-shaped", lambda: llava_shaped(args.quick))):
        model = build()
        rows = measure(model, args.reps)
        out[label] = rows
        print(
            f"\n{label}: {model.config.image_seq_length} image tokens, decoder {model.config.text_config.num_hidden_layers}L x "
            f"{model.config.text_config.hidden_size}, batch 1, median of {args.reps}"
        )
        print("| method | image tokens kept | prefill ms | speedup | decision share |\n|---|---|---|---|---|")
        for r in rows:
            kept = "100%" if r["method"] == "full" else r["method"].split("@")[1]
            print(f"| {r['method'].split(' @')[0]} | {kept} | {r['ms']:.1f} | {r['speedup']:.2f}x | {r['decision_share']:.1%} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
