"""Imitation warm start: behaviour cloning of a heuristic reducer's actions before PPO.

The demonstrations come from the episode engine itself (the same features the policy sees, the same
budget rule), so cloning needs no second code path. Cross-entropy over valid token slots only.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from rltr.core.ops import N_ACTIONS
from rltr.envs.engine import EpisodeEngine
from rltr.reducers import get_reducer


def collect_demonstrations(
    engine: EpisodeEngine,
    reducer_name: str,
    budget: float | None,
    n_episodes: int,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, max_tokens, F) observations and (M, max_tokens) expert actions from ``n_episodes`` episodes,
    run ``batch_size`` at a time through ``engine`` with the reducer's actions (examples seeded by ``seed``)."""
    reducer = get_reducer(reducer_name)
    rng = np.random.default_rng([seed, 10_000])
    obs_list, act_list = [], []
    with tqdm(total=n_episodes, desc=f"demonstrations ({reducer_name})", disable=not progress, leave=False) as bar:
        for start in range(0, n_episodes, batch_size):
            n = min(batch_size, n_episodes - start)
            engine.start([engine.task.sample(rng) for _ in range(n)])
            while not engine.done:
                obs_list.append(engine.observation().cpu())
                act_list.append(engine.expert_actions(reducer, budget).cpu())
                engine.step(act_list[-1])
            bar.update(n)
    return torch.cat(obs_list), torch.cat(act_list)


def action_weights(actions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(A,) weight per action, inversely proportional to its frequency on valid slots, normalised so the
    average weight of a valid slot is 1 (actions the expert never takes get weight 0)."""
    freq = torch.bincount(actions[valid], minlength=N_ACTIONS).double() / valid.sum().clamp_min(1)
    w = torch.where(freq > 0, 1 / freq.clamp_min(1e-12), 0.0)
    return (w / (w * freq).sum()).float()


def behaviour_clone(
    actor: nn.Module,
    obs: torch.Tensor,
    actions: torch.Tensor,
    epochs: int = 10,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    balanced: bool = False,
) -> dict:
    """Fit ``actor`` to the expert actions (cross-entropy on valid slots; ``balanced``: each action weighed
    by :func:`action_weights`); returns the final loss and token accuracy on valid slots."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(actor.parameters(), lr=lr)
    device = next(actor.parameters()).device
    obs, actions = obs.to(device), actions.to(device)
    valid = obs[..., 0] > 0.5
    weight = action_weights(actions, valid).to(device) if balanced else torch.ones(N_ACTIONS, device=device)
    loss = torch.tensor(0.0)
    for _ in tqdm(range(epochs), desc="behaviour cloning", disable=not progress, leave=False):
        for idx in torch.randperm(len(obs), generator=g).split(batch_size):
            logits = actor(obs[idx])
            ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), actions[idx].flatten(), reduction="none")
            w = valid[idx].flatten() * weight[actions[idx].flatten()]
            loss = (ce * w).sum() / w.sum().clamp_min(1e-9)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = actor(obs).argmax(-1)
        acc = ((pred == actions) & valid).sum() / valid.sum().clamp_min(1)
    return {"loss": float(loss.detach()), "token_accuracy": float(acc), "n_samples": len(obs)}
