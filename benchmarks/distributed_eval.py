"""Wall time of ``rltr evaluate`` in one process vs two (``accelerate launch --multi_gpu --num_processes 2``),
and whether the merged results equal the single-process ones (accuracy, compute fraction, tokens kept).

Both runs are whole command lines (start-up, model load, every method), one after the other, on the
built-in default model; the two-process run shards batches across processes (one CPU thread each; on
a GPU machine, one process per GPU with ``--device cuda``).

    OMP_NUM_THREADS=1 python benchmarks/distributed_eval.py [--quick] [--n-examples 1000] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's rltr, also when another one is installed

from rltr.core import distributed  # noqa: E402  (after the path set-up above)

KEYS = ("task", "method", "budget", "accuracy", "compute_fraction", "kept_ratio", "n_examples")


def timed(cmd: list[str], timeout: float) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100 examples, three methods")
    p.add_argument("--n-examples", type=int, default=1000)
    p.add_argument("--device", default="cpu", help="cpu, or cuda (one process per GPU)")
    args = p.parse_args(argv)
    n = 100 if args.quick else args.n_examples
    methods = "identity,oracle,random" if args.quick else "identity,oracle,tome,attn_topk,h2o,norm,window,random"
    rltr_args = [
        "evaluate",
        "--task",
        "retrieval",
        "--methods",
        methods,
        "--budgets",
        "0.1,0.25",
        "--decision-layers",
        "0",
        "--n-examples",
        str(n),
        "--batch-size",
        "64",
        "--device",
        args.device,
    ]
    with tempfile.TemporaryDirectory() as tmp:
        one = [sys.executable, "-m", "rltr", *rltr_args, "--out", f"{tmp}/one"]
        two = distributed.launch_command([*rltr_args, "--out", f"{tmp}/two"])
        t_one = timed(one, 3600)
        t_two = timed(two, 3600)
        rows = [
            [tuple(r[k] for k in KEYS) for r in json.loads(Path(f"{tmp}/{d}/results.json").read_text())["results"]] for d in ("one", "two")
        ]
    print(f"rltr evaluate, default model, retrieval, {n} examples, methods {methods}, budgets 0.1,0.25, device {args.device}")
    print(
        f"1 process: {t_one:.1f} s; 2 processes: {t_two:.1f} s ({t_one / t_two:.2f}x); "
        f"merged results equal to 1 process: {'yes' if rows[0] == rows[1] else 'NO'} ({len(rows[0])} rows)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
