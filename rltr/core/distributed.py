"""Many processes (``accelerate launch`` or ``torchrun``): sharded evaluation and data-parallel PPO.

    accelerate launch --multi_gpu --num_processes 2 -m rltr evaluate ...   # CPU: gloo; GPUs: one process each
    accelerate launch --multi_gpu --num_processes 2 -m rltr train --config ...
    torchrun --nproc_per_node 2 -m rltr evaluate ...

(``accelerate launch --cpu`` alone starts ONE process.) Launched alone, every function here is a no-op
and the single-process results are unchanged.

- **Evaluation**: batches are dealt round-robin to processes; each batch is exactly the batch a single
  process would run (same rows, same padding, the same per-call seed), and per-example results are
  gathered back into example order, so every mean equals the single-process one bit for bit.
- **Training**: one batched env per process (its own episode stream: seed + rank), PPO's initial weights
  from rank 0, and every gradient averaged across processes as backward accumulates it (DDP's rule,
  before clipping), so every process takes the same optimizer step; SB3 itself is left unwrapped.
  :class:`CheckSync` verifies after each update that the policies are still identical.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist

RANK_SEED_STRIDE = 1_000_003  # process r's env stream: seed + r * stride (rank 0 keeps the single-process seed)


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def check_device(device: str) -> str:
    """``device`` if it names one this machine has (auto, cpu, mps, cuda, cuda:N); else ValueError naming it."""
    import re

    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        raise ValueError(f"device {device!r} is not one of auto, cpu, mps, cuda, cuda:N")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: no CUDA GPU is available here (torch {torch.__version__}); use --device cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} is not available here; use --device cpu")
    return device


def setup(device: str = "cpu") -> str:
    """Join the process group when launched with several processes (gloo on CPU, NCCL on GPUs) and return
    this process's device: ``cuda`` / ``auto`` on GPUs become ``cuda:LOCAL_RANK``. Alone: ``device``.
    A device this machine lacks is a ValueError naming it."""
    check_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    from accelerate import PartialState

    gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    PartialState(cpu=not gpu)  # initializes torch.distributed from the launcher's environment
    return local_device(device)


def finish(ok: bool = True) -> None:
    """Leave the process group (after every process got here, when ``ok``): an orderly exit, so no process
    tears down connections another still uses. No-op alone."""
    if dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()


def local_device(device: str) -> str:
    """``device`` for this process: with several processes on GPUs, each takes ``cuda:LOCAL_RANK``."""
    if world_size() > 1 and (device == "cuda" or (device == "auto" and torch.cuda.is_available())):
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def rank_seed(seed: int) -> int:
    """This process's seed for its own episodes (rank 0: ``seed`` itself)."""
    return seed + rank() * RANK_SEED_STRIDE


# ---- evaluation -------------------------------------------------------------------------------------
def my_batches(n_items: int, batch_size: int) -> list[int]:
    """Start indices of the batches this process runs: batch k goes to process k mod world size."""
    return list(range(0, n_items, batch_size))[rank() :: world_size()]


def in_order(starts: list[int], per_batch: list[torch.Tensor]) -> torch.Tensor:
    """Per-batch CPU tensors (rows first) of this process's batches ``starts`` -> every process's rows
    concatenated in example order (alone: ``torch.cat(per_batch)``)."""
    if world_size() == 1:
        return torch.cat(per_batch)
    gathered: list = [None] * world_size()
    dist.all_gather_object(gathered, list(zip(starts, per_batch)))
    pairs = sorted((p for part in gathered for p in part), key=lambda p: p[0])
    return torch.cat([t for _, t in pairs])


def total(value: float) -> float:
    """``value`` summed over processes (e.g. seconds spent)."""
    if world_size() == 1:
        return value
    gathered: list = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return float(sum(gathered))


def broadcast(obj):
    """Rank 0's ``obj`` on every process (e.g. the run folder's name, which holds the start time)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ---- training ---------------------------------------------------------------------------------------
def average_gradients(module: torch.nn.Module) -> list:
    """Make every backward through ``module`` leave the mean gradient over processes in each ``.grad``
    (a hook per parameter, fired as its gradient is accumulated; the same order on every process). First
    copies rank 0's parameters to all. Returns the hook handles (none alone)."""
    if world_size() == 1:
        return []
    with torch.no_grad():
        for p in module.parameters():
            dist.broadcast(p.data, src=0)
    n = world_size()

    def hook(p: torch.Tensor) -> None:
        assert p.grad is not None, "post-accumulate-grad hooks run once the gradient exists"
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(n)

    return [p.register_post_accumulate_grad_hook(hook) for p in module.parameters() if p.requires_grad]


def max_parameter_gap(module: torch.nn.Module) -> float:
    """The largest |difference| between this process's parameters of ``module`` and rank 0's (0.0 alone)."""
    if world_size() == 1:
        return 0.0
    flat = torch.cat([p.detach().flatten() for p in module.parameters()]).float()
    first = flat.clone()
    dist.broadcast(first, src=0)
    gap = (flat - first).abs().max()
    dist.all_reduce(gap, op=dist.ReduceOp.MAX)
    return float(gap)


def check_sync_callback():
    """An SB3 callback that checks, before training and after every PPO update, that the policy's
    parameters are identical on every process (RuntimeError naming the update otherwise); its ``report``
    says how many states were checked and the largest gap seen."""
    from stable_baselines3.common.callbacks import BaseCallback

    class CheckSync(BaseCallback):
        def __init__(self):
            super().__init__()
            self.report = {"world_size": world_size(), "states_checked": 0, "max_parameter_gap": 0.0}
            self._rollouts = 0

        def _check(self, when: str) -> None:
            gap = max_parameter_gap(self.model.policy)
            self.report["states_checked"] += 1
            self.report["max_parameter_gap"] = max(self.report["max_parameter_gap"], gap)
            if gap != 0.0:
                raise RuntimeError(f"policy parameters differ across processes {when}: max |difference| = {gap:.3g}")

        def _on_training_start(self) -> None:
            self._check("before PPO")

        def _on_rollout_start(self) -> None:
            self._rollouts += 1
            if self._rollouts > 1:
                self._check(f"after PPO update {self._rollouts - 1}")

        def _on_step(self) -> bool:
            return True

        def _on_training_end(self) -> None:
            self._check(f"after PPO update {self._rollouts}")

    return CheckSync()


def launch_command(rltr_args: list[str], num_processes: int = 2) -> list[str]:
    """The ``accelerate launch`` command line running ``python -m rltr RLTR_ARGS`` as ``num_processes`` processes on
    this machine (gloo on CPU; a free local port), from this interpreter's environment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    accelerate = str(Path(sys.executable).parent / "accelerate")
    return [
        accelerate, "launch", "--multi_gpu", "--num_processes", str(num_processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port), "-m", "rltr", *rltr_args,
    ]  # fmt: skip
