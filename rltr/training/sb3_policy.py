"""The per-token actor-critic plugged into stable-baselines3 PPO through ``policy=TokenPolicy``.

Observation: Box (N, F) per-token features; action: MultiDiscrete([3] * N). SB3's
MultiCategoricalDistribution builds N ``Categorical`` objects per call (~10x slower for N = 64); here
one ``Categorical`` over (B, N, 3) does the same maths in one go.
"""

from __future__ import annotations

import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs
from torch.distributions import Categorical

from rltr.core.ops import N_ACTIONS
from rltr.policies.network import TokenCritic, build_actor


class TokenCategorical(Distribution):
    """Independent categorical per token; log-prob and entropy are summed over tokens -> (B,)."""

    distribution: Categorical  # set by proba_distribution (SB3's CategoricalDistribution declares it the same way)

    def __init__(self, n_tokens: int):
        super().__init__()
        self.n_tokens = n_tokens

    def proba_distribution_net(self, *args, **kwargs):  # the network lives in TokenActor
        raise NotImplementedError

    def proba_distribution(self, action_logits: torch.Tensor) -> TokenCategorical:
        self.distribution = Categorical(logits=action_logits.view(-1, self.n_tokens, N_ACTIONS))
        return self

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self.distribution.log_prob(actions.view(-1, self.n_tokens).long()).sum(dim=1)

    def entropy(self) -> torch.Tensor:
        return self.distribution.entropy().sum(dim=1)

    def sample(self) -> torch.Tensor:
        return self.distribution.sample()

    def mode(self) -> torch.Tensor:
        return self.distribution.probs.argmax(dim=-1)

    def actions_from_params(self, action_logits: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        self.proba_distribution(action_logits)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(self, action_logits: torch.Tensor):
        actions = self.actions_from_params(action_logits)
        return actions, self.log_prob(actions)


class TokenPolicy(ActorCriticPolicy):
    """Actor: a per-token network (:func:`rltr.policies.network.build_actor`); critic: :class:`TokenCritic`
    on pooled tokens.

    ``policy_kwargs``: ``hidden`` (width of both networks) and ``network`` (the actor's
    :func:`~rltr.policies.network.network_spec`; default a TokenActor). Everything else is SB3's.
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.MultiDiscrete,
        lr_schedule,
        hidden: int = 64,
        network: dict | None = None,
        **kwargs,
    ):
        assert len(observation_space.shape) == 2, f"TokenPolicy needs (N, F) observations, got {observation_space.shape}"
        assert isinstance(action_space, spaces.MultiDiscrete), f"TokenPolicy needs MultiDiscrete actions, got {action_space}"
        self.hidden = hidden
        self.network = dict(network or {"type": "TokenActor", "hidden": hidden})
        kwargs.pop("net_arch", None)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _get_constructor_parameters(self) -> dict:
        return {**super()._get_constructor_parameters(), "hidden": self.hidden, "network": self.network}

    def _build(self, lr_schedule) -> None:
        shape = self.observation_space.shape
        assert shape is not None and len(shape) == 2, f"TokenPolicy needs (N, F) observations, got {shape}"
        n_tokens, n_features = shape
        self.actor = build_actor(n_features, self.network)
        self.critic = TokenCritic(n_features, self.hidden)
        self.action_dist = TokenCategorical(n_tokens)
        # SB3 types optimizer_class as type[Optimizer], whose __init__ has no lr (every concrete optimizer has); SB3 ignores it the same way
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _dist(self, obs: PyTorchObs) -> TokenCategorical:
        assert isinstance(obs, torch.Tensor), "TokenPolicy takes Box observations (one tensor), not dict ones"
        dist = self.action_dist
        assert isinstance(dist, TokenCategorical), "TokenPolicy._build sets a TokenCategorical"
        return dist.proba_distribution(self.actor(obs.float()))

    def forward(self, obs: torch.Tensor, deterministic: bool = False):
        dist = self._dist(obs)
        actions = dist.get_actions(deterministic=deterministic)
        return actions, self.critic(obs.float()), dist.log_prob(actions)

    def evaluate_actions(self, obs: PyTorchObs, actions: torch.Tensor):
        dist = self._dist(obs)
        assert isinstance(obs, torch.Tensor)  # checked in _dist
        return self.critic(obs.float()), dist.log_prob(actions), dist.entropy()

    def get_distribution(self, obs: PyTorchObs) -> TokenCategorical:
        return self._dist(obs)

    def predict_values(self, obs: PyTorchObs) -> torch.Tensor:
        assert isinstance(obs, torch.Tensor), "TokenPolicy takes Box observations (one tensor), not dict ones"
        return self.critic(obs.float())[:, None]

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> torch.Tensor:
        return self._dist(observation).get_actions(deterministic=deterministic)
