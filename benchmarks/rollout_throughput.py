"""Rollout throughput of the single env vs the batched env, and what it changes for a short PPO run.

Table 1: episodes/s and token decisions/s (live tokens deciding, summed over decision layers) with
random actions (uniform KEEP/MERGE/DROP, the same for both) on the built-in default model, task
retrieval: SB3 ``DummyVecEnv`` of one ``TokenReductionEnv`` vs ``BatchedTokenReductionEnv`` at each B,
each after a warm-up, all in this one run (interleaved repeats, the best of each kept). Table 2: PPO
``learn()`` steps/s with ``DummyVecEnv`` of 4 single envs vs the batched env (B=64), the same rollout
size (512 steps) and updates, with the share of wall time spent inside the env. Table 3: the engine's
own overhead: whole batched episodes (every token kept, so the model does the full work) against the
bare batched forward of the same examples (embed, every layer, the answer logits: no env), interleaved
in one run. The last line prints the B=64 episodes/s ratio.

    OMP_NUM_THREADS=1 python benchmarks/rollout_throughput.py [--quick] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

from rltr.core.ops import N_ACTIONS
from rltr.envs import make_batched_env, make_env, resolve_device

ROLLOUT_STEPS = 512  # PPO steps per rollout (n_steps * n_envs) in table 2, for both envs


class Rollouts:
    """Random-action episodes on ``vec`` (uniform KEEP/MERGE/DROP); warmed up on creation."""

    def __init__(self, vec: VecEnv, n_decisions: int, seed: int = 0):
        self.vec, self.n_decisions = vec, n_decisions
        self.rng = np.random.default_rng(seed)
        self.shape = (vec.num_envs, *vec.action_space.shape)
        vec.seed(seed)
        self.obs = vec.reset()
        self.episodes(max(1, 4 // vec.num_envs))  # warm-up: at least four episodes

    def episodes(self, n_rounds: int) -> int:
        """Run ``n_rounds`` episodes per row; returns the token decisions made (live tokens at each decision)."""
        decisions = 0
        for _ in range(n_rounds * self.n_decisions):
            decisions += int(self.obs[:, :, 0].sum())  # column 0 = valid flag
            self.obs, _, dones, _ = self.vec.step(self.rng.integers(N_ACTIONS, size=self.shape))
        assert dones.all(), "every row ends after the last decision layer"
        return decisions

    def rate(self, seconds: float) -> tuple[float, float]:
        """(episodes/s, token decisions/s) over at least ``seconds`` (and at least two rounds)."""
        episodes, decisions, t0 = 0, 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or episodes < 2 * self.vec.num_envs:
            decisions += self.episodes(1)
            episodes += self.vec.num_envs
        elapsed = time.perf_counter() - t0
        return episodes / elapsed, decisions / elapsed


class EnvTimer(VecEnvWrapper):
    """Accumulates the wall time spent in the wrapped env's reset/step."""

    def __init__(self, venv: VecEnv):
        super().__init__(venv)
        self.seconds = 0.0

    def reset(self):
        t0 = time.perf_counter()
        out = self.venv.reset()
        self.seconds += time.perf_counter() - t0
        return out

    def step_wait(self):
        t0 = time.perf_counter()
        out = self.venv.step_wait()
        self.seconds += time.perf_counter() - t0
        return out


@torch.no_grad()
def engine_overhead(kw: dict, n_envs: int, repeats: int) -> tuple[float, float]:
    """(ms per batch of ``n_envs`` episodes with every token kept, ms of the bare forward of the same
    examples): medians over ``repeats`` interleaved pairs. One env step is a whole episode here (one
    decision layer) plus the auto-reset that samples, embeds and runs the next batch to its decision."""
    from rltr.tasks.scoring import episode_score

    env = make_batched_env(n_envs=n_envs, **kw)
    engine, bb = env.engine, env.engine.backbone
    keep_all = np.zeros((n_envs, engine.settings.max_tokens), dtype=np.int64)  # Action.KEEP everywhere
    env.seed(0)
    env.reset()
    batch = engine.batch

    def bare():
        state = bb.embed(batch.input_ids, batch.attention_mask, protected=batch.protected)
        episode_score(bb, batch, bb.run(state), engine.settings.score)

    episode, forward = [], []
    for _ in range(repeats + 1):  # the first pair warms up
        t0 = time.perf_counter()
        env.step(keep_all)
        episode.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bare()
        forward.append(time.perf_counter() - t0)
    return 1000 * float(np.median(episode[1:])), 1000 * float(np.median(forward[1:]))


def ppo_rate(vec: VecEnv, total_steps: int, device: str) -> tuple[float, float]:
    """(steps/s, env share of wall time) of PPO ``learn(total_steps)`` on ``vec``."""
    from stable_baselines3 import PPO

    from rltr.training.sb3_policy import TokenPolicy

    timed = EnvTimer(vec)
    model = PPO(
        TokenPolicy,
        timed,
        n_steps=ROLLOUT_STEPS // vec.num_envs,
        batch_size=128,
        n_epochs=4,
        gamma=1.0,
        policy_kwargs={"hidden": 64},
        seed=0,
        device=device,
        verbose=0,
    )
    t0 = time.perf_counter()
    model.learn(total_steps)
    elapsed = time.perf_counter() - t0
    return model.num_timesteps / elapsed, timed.seconds / elapsed


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short measurements (under a minute)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--model", default="default", help="backbone (built-in name or folder)")
    p.add_argument("--batch-sizes", default="1,16,64,256", help="B values for the batched env, comma-separated")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 keeps timings stable on shared machines)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    seconds, repeats, ppo_steps = (1.5, 1, 512) if args.quick else (9.0, 3, 2048)
    kw = dict(model=args.model, task="retrieval", device=device)
    hw = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"{platform.processor() or 'cpu'}, {os.cpu_count()} cores"
    print(
        f"model {args.model}, task retrieval, device {device} ({hw}), torch threads {torch.get_num_threads()}, "
        f"{'quick' if args.quick else 'full'} run, {seconds:.1f} s per row in {repeats} interleaved repeat(s) (best kept), "
        "random actions"
    )

    n_decisions = len(make_env(**kw).engine.decision_layers)
    runs = {0: Rollouts(DummyVecEnv([lambda: make_env(**kw)]), n_decisions)}  # B=0: the single env
    runs.update({b: Rollouts(make_batched_env(n_envs=b, **kw), n_decisions) for b in sizes})
    best: dict[int, tuple[float, float]] = {}
    for _ in range(repeats):  # interleaved repeats, best of each: robust to other work on a shared machine
        for b, run in runs.items():
            eps, dec = run.rate(seconds / repeats)
            best[b] = max(best.get(b, (0.0, 0.0)), (eps, dec))
    single = best[0][0]
    print("\n| env | B | episodes/s | token decisions/s | batched/single |")
    print("|---|---:|---:|---:|---:|")
    for b, (eps, dec) in best.items():
        name = "single (DummyVecEnv, 1 env)" if b == 0 else "batched"
        print(f"| {name} | {max(b, 1)} | {eps:,.1f} | {dec:,.0f} | {eps / single:.2f}x |")

    ppo_single, share_single = ppo_rate(DummyVecEnv([lambda: make_env(**kw) for _ in range(4)]), ppo_steps, device)
    ppo_batched, share_batched = ppo_rate(make_batched_env(n_envs=64, **kw), ppo_steps, device)
    print(f"\nPPO learn({ppo_steps}), {ROLLOUT_STEPS} steps per rollout, batch 128, 4 epochs, TokenPolicy(hidden=64)")
    print("| env | steps/s | env share of wall time | batched/single |")
    print("|---|---:|---:|---:|")
    print(f"| single (DummyVecEnv, 4 envs) | {ppo_single:,.1f} | {share_single:.0%} | 1.00x |")
    print(f"| batched (B=64) | {ppo_batched:,.1f} | {share_batched:.0%} | {ppo_batched / ppo_single:.2f}x |")

    print("\nEngine overhead: whole batched episodes, every token kept, vs the bare batched forward of the same examples")
    print("| B | episodes (ms per batch) | bare forward (ms) | overhead |")
    print("|---:|---:|---:|---:|")
    for b in sizes:
        if b >= 16:
            ep_ms, fw_ms = engine_overhead(kw, b, 5 if args.quick else 15)
            print(f"| {b} | {ep_ms:,.1f} | {fw_ms:,.1f} | {ep_ms / fw_ms - 1:+.0%} |")

    ratio = f"{best[64][0] / single:.1f}x" if 64 in best else "not measured (add 64 to --batch-sizes)"
    print(f"\nB=64 batched/single episodes/s ratio: {ratio}")


if __name__ == "__main__":
    main()
