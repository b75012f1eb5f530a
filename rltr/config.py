"""Training configuration: dataclasses with a help string per field; YAML < ``--set key=value``.

Unknown keys and wrong types are errors that name the key and value. The ``ppo`` block is passed
straight to ``stable_baselines3.PPO`` (SB3 validates it).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DTYPES = ("float32", "bfloat16", "float16")
FEATURE_SETS = ("full", "light")  # rltr.features.FeatureSpec.named: light = no attention rows, no all-pairs similarity


class ConfigError(ValueError):
    """A config key that does not exist or a value of the wrong type."""


def _f(default, help: str, **kw):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class EnvConfig:
    model: str = _f("default", "frozen backbone: built-in name (rltr zoo list), local folder or hub name")
    task: str = _f("retrieval", "task name (rltr.tasks.TASKS)")
    task_kwargs: dict = _f({}, "keyword arguments of the task")
    decision_layers: list = _f([1], "layers before which the policy acts")
    compute_weight: float = _f(0.5, "reward = score - compute_weight * compute_fraction")
    score: str = _f("accuracy", "accuracy (exact match) or loglik (exp mean log-prob of the answer: denser)")
    query_aware: bool = _f(True, "decide with the question in view (True) or on the context alone (False)")
    budget: float | None = _f(None, "token keep fraction enforced on the policy, in (0, 1]; null: policy decides")
    max_tokens: int = _f(192, "observation slots (>= the longest example)")
    n_hidden_proj: int = _f(16, "dims of a fixed random projection of hidden states added to token features")
    features: str = _f("full", "feature set: full, or light (no attention rows, no all-pairs similarity: a cheaper decision)")
    device: str = _f("auto", "device of the frozen backbone and of PPO: auto (cuda if available), cpu, cuda or cuda:N")
    batched: bool = _f(True, "run the n_envs episodes in lockstep with batched forwards (False: a DummyVecEnv of single envs)")
    dtype: str = _f("float32", "backbone autocast precision: float32, or bfloat16/float16 (CUDA and batched only)")


@dataclass
class PolicyConfig:
    hidden: int = _f(64, "width of the per-token actor and of the critic")


@dataclass
class ImitationConfig:
    enabled: bool = _f(True, "behaviour-clone a heuristic before PPO")
    reducer: str = _f("attn_topk", "the heuristic to imitate (a reducer name)")
    budget: float | None = _f(0.25, "budget the heuristic runs at while demonstrating")
    n_episodes: int = _f(512, "demonstration episodes")
    epochs: int = _f(10, "passes over the demonstrations")
    lr: float = _f(3e-3, "Adam learning rate for cloning")
    batch_size: int = _f(64, "demonstrations per gradient step")


@dataclass
class TrainConfig:
    name: str = _f("default", "run name (part of the run folder's name)")
    seed: int = _f(0, "seed of PPO, the envs and the examples")
    total_timesteps: int = _f(20000, "PPO environment steps (decisions), after imitation")
    n_envs: int = _f(4, "parallel environments")
    checkpoint_every: int = _f(5000, "save a checkpoint every this many steps")
    runs_dir: str = _f("runs", "parent folder of run folders")
    env: EnvConfig = field(default_factory=EnvConfig, metadata={"help": "the environment"})
    policy: PolicyConfig = field(default_factory=PolicyConfig, metadata={"help": "the per-token network"})
    imitation: ImitationConfig = field(default_factory=ImitationConfig, metadata={"help": "imitation warm start"})
    ppo: dict = _f({}, "keyword arguments passed straight to stable_baselines3.PPO")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_type(path: str, value, tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool, list, dict) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{path} must be {tp.__name__}, got {value!r} ({type(value).__name__})")
    return value


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass ``cls`` from a nested dict; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s) {[prefix + k for k in unknown]}; known: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(tp, value, prefix=f"{prefix}{key}.")
        else:
            kwargs[key] = _check_type(prefix + key, value, tp)
    return cls(**kwargs)


def apply_override(data: dict, assignment: str) -> None:
    """Apply one ``a.b.c=value`` (value parsed with yaml.safe_load) to a nested dict in place."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    value = yaml.safe_load(raw)
    parts = key.strip().split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {assignment!r}: {p!r} is not a mapping")
    node[parts[-1]] = value


def read_config_data(path: str | Path | None = None, overrides: list[str] = ()) -> dict:
    """The nested dict of a YAML file (optional) with ``--set`` overrides applied, before validation."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
    for o in overrides:
        apply_override(data, o)
    return data


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """YAML file (optional) < ``--set`` overrides -> validated :class:`TrainConfig`."""
    cfg = from_dict(TrainConfig, read_config_data(path, overrides))
    if cfg.env.budget is not None and not 0 < cfg.env.budget <= 1:
        raise ConfigError(f"env.budget must be in (0, 1], got {cfg.env.budget}")
    if cfg.env.score not in ("accuracy", "loglik"):
        raise ConfigError(f"env.score must be accuracy or loglik, got {cfg.env.score!r}")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", cfg.env.device):
        raise ConfigError(f"env.device must be auto, cpu, mps, cuda or cuda:N, got {cfg.env.device!r}")
    if cfg.env.features not in FEATURE_SETS:
        raise ConfigError(f"env.features must be one of {list(FEATURE_SETS)}, got {cfg.env.features!r}")
    if cfg.env.dtype not in DTYPES:
        raise ConfigError(f"env.dtype must be one of {list(DTYPES)}, got {cfg.env.dtype!r}")
    if cfg.env.dtype != "float32" and not cfg.env.batched:
        raise ConfigError(f"env.dtype={cfg.env.dtype} needs env.batched=true (single envs run in float32)")
    return cfg
