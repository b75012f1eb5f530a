"""Why the policy network computes tanh as 2*sigmoid(2x)-1: torch's CPU tanh kernel against the network's
``Tanh`` on a router-sized activation (64 examples x 131 tokens x 64 units), measured side by side.

    OMP_NUM_THREADS=1 python benchmarks/activations.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main(argv=None) -> int:
    from rltr.policies.network import Tanh

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=50)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = torch.randn(64 * 131, 64)
    fast = Tanh()
    with torch.no_grad():
        ref, ours = median_ms(lambda: torch.tanh(x), args.repeats), median_ms(lambda: fast(x), args.repeats)
    print(f"{x.numel():,} floats, {torch.get_num_threads()} thread(s), CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"torch.tanh {ref:.3f} ms, rltr Tanh (2*sigmoid(2x)-1) {ours:.3f} ms: {ref / ours:.1f}x faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
