"""Long prompts: memory and speed of rollouts at 1k and 4k tokens, and PPO on ``configs/long.yaml``.

A random-init GPT-2 (2 layers x 64, 4 heads, 4608 positions) over the built-in vocabulary, saved with the
built-in tokenizer; task retrieval with ``context_len`` = L - 3 (L tokens with the question and answer),
``env.max_tokens: auto`` (= L), the full feature set, B = ``n_envs`` episodes in lockstep. For each L, in a
fresh process (so its peak memory is its own):

- observation per step: (B, L, F) float32;
- rollout buffer: SB3's ``RolloutBuffer`` arrays for ``n_steps`` x B steps (observations dominate);
- similarity feature: the whole (B, L, L) float32 map it would take vs the largest row block actually held
  (:mod:`rltr.core.similarity`);
- peak RSS growth over the loaded model while running random-action episodes, then PPO updates;
- episodes/s with random actions, and PPO ``learn()`` steps/s (two updates).

``--train`` also runs ``rltr.training.train`` on ``configs/long.yaml`` (imitation + PPO) at the longest L.

    OMP_NUM_THREADS=1 python benchmarks/long_prompts.py [--quick] [--lengths 1024,4096] [--train]
    python benchmarks/long_prompts.py --save-model runs/long-random      # the model configs/long.yaml names
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "long.yaml"
N_POSITIONS = 4608


def save_random_model(folder: str | Path, seed: int = 0) -> Path:
    """A random-init GPT-2 with :data:`N_POSITIONS` positions and the built-in tokenizer, saved to ``folder``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from rltr.tasks.vocab import BOS_ID, PAD_ID, SEP_ID, VOCAB_SIZE, build_tokenizer

    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=4,
        vocab_size=VOCAB_SIZE,
        n_positions=N_POSITIONS,
        bos_token_id=BOS_ID,
        eos_token_id=SEP_ID,
        pad_token_id=PAD_ID,
        attn_implementation="sdpa",
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    build_tokenizer().save_pretrained(folder)
    return Path(folder)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(length: int, model: str, seconds: float, n_envs: int) -> dict:
    """One row of the table for prompts of ``length`` tokens (see the module docstring)."""
    from stable_baselines3 import PPO

    from rltr.config import load_config
    from rltr.core.similarity import BLOCK_ELEMENTS
    from rltr.training.ppo import engine_of, make_vec_env
    from rltr.training.sb3_policy import TokenPolicy

    cfg = load_config(
        CONFIG, [f"env.model={model}", f"env.task_kwargs={{context_len: {length - 3}}}", f"n_envs={n_envs}", "env.device=cpu"]
    )
    vec = make_vec_env(cfg)
    engine = engine_of(vec)
    base = _peak_mb()
    rng = np.random.default_rng(0)
    obs = vec.reset()
    vec.step(rng.integers(3, size=(n_envs, obs.shape[1])))  # warm-up episode
    episodes, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or episodes < 2 * n_envs:
        _, _, dones, _ = vec.step(rng.integers(3, size=(n_envs, obs.shape[1])))
        episodes += int(dones.sum())
    rate = episodes / (time.perf_counter() - t0)
    rollout_peak = _peak_mb() - base
    ppo = dict(cfg.ppo)
    model_ppo = PPO(TokenPolicy, vec, policy_kwargs={"hidden": cfg.policy.hidden}, seed=0, device="cpu", verbose=0, **ppo)
    buf = model_ppo.rollout_buffer
    buffer_mb = (
        sum(
            getattr(buf, k).nbytes
            for k in ("observations", "actions", "rewards", "returns", "episode_starts", "values", "log_probs", "advantages")
        )
        / 2**20
    )
    steps = 2 * ppo["n_steps"] * n_envs
    t0 = time.perf_counter()
    model_ppo.learn(steps)
    ppo_rate = steps / (time.perf_counter() - t0)
    rows = max(1, BLOCK_ELEMENTS // (n_envs * length))
    return {
        "tokens": length,
        "max_tokens": engine.settings.max_tokens,
        "n_envs": n_envs,
        "obs_mb": obs.nbytes / 2**20,
        "buffer_mb": buffer_mb,
        "buffer_steps": ppo["n_steps"] * n_envs,
        "sim_whole_mb": n_envs * length * length * 4 / 2**20,
        "sim_block_mb": n_envs * min(rows, length) * length * 4 / 2**20,
        "rollout_rss_mb": rollout_peak,
        "total_rss_mb": _peak_mb() - base,
        "episodes_per_s": rate,
        "ppo_steps_per_s": ppo_rate,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="256 and 512 tokens, in this process (a smoke test)")
    p.add_argument("--lengths", default="1024,4096", help="prompt lengths in tokens, comma-separated (<= 4608)")
    p.add_argument("--n-envs", type=int, default=4, help="episodes in lockstep (B)")
    p.add_argument("--seconds", type=float, default=10.0, help="random-action rollouts per length")
    p.add_argument("--train", action="store_true", help="also train configs/long.yaml at the longest length (rltr train's path)")
    p.add_argument("--save-model", default=None, help="only write the random-init model to this folder")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child process: measure one length, print JSON
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.save_model:
        print(f"random-init model ({N_POSITIONS} positions) written to {save_random_model(args.save_model)}")
        return 0
    if args.one is not None:
        print(json.dumps(measure(args.one, args.model, args.seconds, args.n_envs)))
        return 0
    lengths = [256, 512] if args.quick else [int(x) for x in args.lengths.split(",")]
    seconds = 1.0 if args.quick else args.seconds
    with tempfile.TemporaryDirectory() as tmp:
        model = str(save_random_model(Path(tmp) / "model"))
        rows = []
        for length in lengths:
            if args.quick:
                rows.append(measure(length, model, seconds, args.n_envs))
                continue
            cmd = [
                sys.executable,
                __file__,
                "--one",
                str(length),
                "--model",
                model,
                "--seconds",
                str(seconds),
                "--n-envs",
                str(args.n_envs),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"random-init GPT-2 2 x 64, retrieval, full features, B = {args.n_envs}, 1 thread ({'quick' if args.quick else 'full'})")
        print(
            "| tokens | obs/step MB | rollout buffer MB (steps) | similarity: whole map MB / largest block MB | "
            "peak RSS growth MB: rollouts / + PPO | episodes/s | PPO steps/s |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['tokens']} | {r['obs_mb']:.1f} | {r['buffer_mb']:.1f} ({r['buffer_steps']}) | {r['sim_whole_mb']:.0f} / "
                f"{r['sim_block_mb']:.0f} | {r['rollout_rss_mb']:.0f} / {r['total_rss_mb']:.0f} | {r['episodes_per_s']:.2f} | "
                f"{r['ppo_steps_per_s']:.2f} |"
            )
        if args.train:
            from rltr.config import load_config
            from rltr.training.ppo import train

            length = max(lengths)
            cfg = load_config(CONFIG, [f"env.model={model}", f"env.task_kwargs={{context_len: {length - 3}}}", f"runs_dir={tmp}/runs"])
            t0 = time.perf_counter()
            run = train(cfg, command="benchmarks/long_prompts.py --train", progress=False)
            print(
                f"train(configs/long.yaml) at {length} tokens: {cfg.total_timesteps} PPO steps after imitation in "
                f"{time.perf_counter() - t0:.0f} s; wrote {sorted(p.name for p in run.iterdir())}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
