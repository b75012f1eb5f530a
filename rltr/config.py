"""Training configuration: dataclasses with a help string per field; YAML < ``--set key=value``.

Unknown keys, wrong types and out-of-range values are errors that name the key and value (checked when
a config is built, before any run folder exists). The ``ppo`` block is passed straight to
``stable_baselines3.PPO``; its keys are checked against PPO's signature, its values by SB3.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from rltr.core.decisions import check_budget
from rltr.core.features import FEATURE_SETS, PROJECTIONS  # full, light; gaussian, orthogonal
from rltr.policies.network import NETWORKS, network_spec  # mlp, attention
from rltr.tasks.scoring import SCORES  # accuracy, loglik
from rltr.teachers import TEACHERS

TEACHER_NAMES = (*TEACHERS, "auto")

# dtype names -> the autocast dtype the backbone runs under during rollouts (None: no autocast)
AUTOCAST_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}

# PPO keyword arguments that rltr.training.ppo passes itself, and the config key each comes from.
PPO_SET_BY_RLTR = {
    "policy": "TokenPolicy",
    "env": "env.*",
    "policy_kwargs": "policy.*",
    "seed": "seed",
    "device": "env.device",
    "tensorboard_log": "the run folder's tb/",
    "verbose": "0",
    "_init_setup_model": "True",
}


class ConfigError(ValueError):
    """A config key that does not exist or a value of the wrong type."""


def _f(default, help: str, **kw):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class EnvConfig:
    model: str = _f("default", "frozen backbone: built-in name (rltr zoo list), local folder or hub name")
    task: str = _f("retrieval", "task name (rltr.tasks.TASKS), or jsonl:PATH (a JSONL dataset, tokenized with the model's tokenizer)")
    task_kwargs: dict = _f({}, "keyword arguments of the task (jsonl: chat_template, split, split_seed, validation, test, model_answers)")
    decision_layers: list = _f([1], "layers before which the policy acts")
    compute_weight: float = _f(0.5, "reward = score - compute_weight * compute_fraction")
    score: str = _f(
        "accuracy",
        "accuracy (exact match), loglik (exp mean log-prob of the answer: denser), or with no labels "
        "fidelity (the full model's own answer reproduced) / fidelity_kl (exp(-KL) to its answer distributions)",
    )
    query_aware: bool = _f(True, "decide with the question in view (True) or on the context alone (False)")
    budget: float | None = _f(None, "token keep fraction enforced on the policy, in (0, 1]; null: policy decides")
    max_tokens: int | str = _f(192, "observation slots (>= the longest example), or auto: the task's longest example")
    n_hidden_proj: int = _f(16, "dims of a fixed random projection of hidden states added to token features")
    projection: str = _f(
        "gaussian",
        "that projection: gaussian (the original routers'), orthogonal (orthonormal columns), "
        "or identity (none: the whole hidden state; n_hidden_proj = the model's width)",
    )
    features: str = _f("full", "feature set: full, or light (no attention rows, no all-pairs similarity: a cheaper decision)")
    device: str = _f("auto", "device of the frozen backbone and of PPO: auto (cuda if available), cpu, cuda or cuda:N")
    batched: bool = _f(True, "run the n_envs episodes in lockstep with batched forwards (False: a DummyVecEnv of single envs)")
    dtype: str = _f("float32", "backbone autocast precision: float32, or bfloat16/float16 (CUDA and batched only)")
    group_size: int = _f(
        1,
        "batched env: rows in groups of this size share an example and get rewards relative to the "
        "group's mean (a per-input baseline, as TR-BERT's 8 samples and GRPO; 1: plain rewards)",
    )

    def __post_init__(self) -> None:
        """Every env setting is checked here, once: the env, the batched env and the config loader use it."""

        def bad(key, value, want):
            raise ConfigError(f"env.{key} must be {want}, got {value!r}")

        if self.budget is not None and not 0 < self.budget <= 1:
            bad("budget", self.budget, "in (0, 1] or null")
        if self.score not in SCORES:
            bad("score", self.score, f"one of {sorted(SCORES)}")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            bad("device", self.device, "auto, cpu, mps, cuda or cuda:N")
        if self.features not in FEATURE_SETS:
            bad("features", self.features, f"one of {list(FEATURE_SETS)}")
        if self.projection not in PROJECTIONS:
            bad("projection", self.projection, f"one of {list(PROJECTIONS)}")
        if self.dtype not in AUTOCAST_DTYPES:
            bad("dtype", self.dtype, f"one of {list(AUTOCAST_DTYPES)}")
        if self.dtype != "float32" and not self.batched:
            bad("dtype", self.dtype, "float32 when env.batched is false (single envs run in float32)")
        if self.group_size < 1 or (self.group_size > 1 and not self.batched):
            bad("group_size", self.group_size, ">= 1, and 1 unless env.batched is true")
        layers = list(self.decision_layers)
        if not layers or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in layers):
            bad("decision_layers", self.decision_layers, "a non-empty list of layer indices >= 0")
        self.decision_layers = sorted(set(layers))
        if self.compute_weight < 0:
            bad("compute_weight", self.compute_weight, ">= 0")
        if self.max_tokens != "auto" and (not isinstance(self.max_tokens, int) or self.max_tokens < 1):
            bad("max_tokens", self.max_tokens, "an int >= 1 or auto")
        if self.n_hidden_proj < 0:
            bad("n_hidden_proj", self.n_hidden_proj, ">= 0")


@dataclass
class PolicyConfig:
    hidden: int = _f(64, "width of the per-token actor and of the critic")
    network: str = _f(
        "mlp",
        "actor: mlp (each token from its own features + a pooled summary) or attention (plus one "
        "softmax-attention step across tokens: decisions can depend on other tokens)",
    )
    attn_dim: int = _f(32, "width of the attention step (network: attention)")

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise ConfigError(f"policy.network must be one of {sorted(NETWORKS)}, got {self.network!r}")
        if self.hidden < 1 or self.attn_dim < 1:
            raise ConfigError(f"policy.hidden and policy.attn_dim must be >= 1, got {self.hidden}, {self.attn_dim}")

    def spec(self) -> dict:
        """The actor's description, as stored in a router's config.json."""
        return network_spec(self.network, self.hidden, self.attn_dim)


@dataclass
class ImitationConfig:
    enabled: bool = _f(True, "behaviour-clone a heuristic before PPO")
    reducer: str = _f("attn_topk", "the heuristic to imitate (a reducer name)")
    budget: float | None = _f(0.25, "budget the heuristic runs at while demonstrating")
    n_episodes: int = _f(512, "demonstration episodes")
    epochs: int = _f(10, "passes over the demonstrations")
    lr: float = _f(3e-3, "Adam learning rate for cloning")
    batch_size: int = _f(64, "demonstrations per gradient step")
    balanced: bool = _f(
        False, "weigh each expert action inversely to its frequency (rare KEEPs among many DROPs count as much as the DROPs)"
    )
    teacher: str | None = _f(
        None,
        "distil a teacher from the frozen model instead of imitating `reducer` (docs/teachers.md): "
        "attention, gradient, occlusion, or auto (the cheap one that agrees best with occlusion); "
        "null: `reducer`, except that an oracle on data with no relevance spans becomes auto",
    )
    teacher_layers: list | None = _f(None, "layers the attention teacher reads (null: [0])")
    teacher_top_k: int = _f(0, "teacher tokens per example the distillation keeps (0: one per answer token)")
    teacher_answers: str = _f("gold", "answers the teacher reads: gold (the data's), or model (the full model's greedy ones)")
    teacher_check: int = _f(24, "training examples the teacher is checked against occlusion on (agreement in teacher.json; 0: no check)")
    teacher_credit_weight: float = _f(0.0, "PPO reward += this x the teacher's score mass of the tokens kept (dense credit; 0: off)")

    def __post_init__(self):
        for key in ("n_episodes", "epochs", "batch_size"):
            _at_least(f"imitation.{key}", getattr(self, key), 1)
        for key in ("teacher_top_k", "teacher_check"):
            _at_least(f"imitation.{key}", getattr(self, key), 0)
        if self.teacher is not None and self.teacher not in TEACHER_NAMES:
            raise ConfigError(f"imitation.teacher must be one of {list(TEACHER_NAMES)} or null, got {self.teacher!r}")
        if self.teacher_answers not in ("gold", "model"):
            raise ConfigError(f"imitation.teacher_answers must be gold or model, got {self.teacher_answers!r}")
        layers = self.teacher_layers
        if layers is not None and not (layers and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in layers)):
            raise ConfigError(f"imitation.teacher_layers must be a non-empty list of layer indices >= 0 or null, got {layers!r}")
        if self.teacher_credit_weight < 0:
            raise ConfigError(f"imitation.teacher_credit_weight must be >= 0, got {self.teacher_credit_weight}")
        if not self.lr > 0:
            raise ConfigError(f"imitation.lr must be > 0, got {self.lr}")
        _check_budget("imitation.budget", self.budget)


@dataclass
class DemoConfig:
    budgets: list | None = _f(
        None, "budgets rltr demo compares this router with the heuristics at (null: the demo's --budgets; 'none' in the list = own choice)"
    )
    matched: str | None = _f(
        None,
        "also every heuristic at the router's own-choice mean compute_fraction (or kept_ratio), "
        "as a fixed budget and in threshold mode (null: no matched rows)",
    )
    label_free: str = _f("attn_topk", "the heuristic the label-free ablation (rltr ablate) imitates before PPO")
    label_free_budget: float | None = _f(0.25, "the budget it imitates it at")
    teacher: str = _f("auto", "the teacher the ablation's teacher rows distil (imitation.teacher)")
    teacher_credit_weight: float = _f(0.5, "imitation.teacher_credit_weight of the ablation's teacher + PPO + credit row")
    methods: list | None = _f(None, "methods rltr demo compares the router with (null: the demo's heuristics; a real model may need fewer)")
    tasks: list | None = _f(None, "tasks rltr demo evaluates on (null: env.task; others test the router beyond its training task)")
    task_kwargs: dict | None = _f(None, "task options for the demo's evaluation (null: env.task_kwargs), e.g. a longer context")
    n_examples: int | None = _f(None, "held-out examples per task (null: the demo's --n-examples)")
    batch_size: int = _f(64, "evaluation batch size (smaller for long contexts on a real model)")

    def __post_init__(self):
        for key in ("methods", "tasks"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value)):
                raise ConfigError(f"demo.{key} must be a non-empty list of names or null, got {value!r}")
        if self.task_kwargs is not None and not isinstance(self.task_kwargs, dict):
            raise ConfigError(f"demo.task_kwargs must be a mapping or null, got {self.task_kwargs!r}")
        if self.n_examples is not None:
            _at_least("demo.n_examples", self.n_examples, 1)
        _at_least("demo.batch_size", self.batch_size, 1)
        if self.matched not in (None, "compute_fraction", "kept_ratio"):
            raise ConfigError(f"demo.matched must be compute_fraction, kept_ratio or null, got {self.matched!r}")
        for b in self.budgets or []:
            if b is not None and not (isinstance(b, (int, float)) and 0 < b <= 1):
                raise ConfigError(f"demo.budgets entries must be in (0, 1] or null, got {b!r}")
        _check_budget("demo.label_free_budget", self.label_free_budget)
        if self.teacher not in TEACHER_NAMES:
            raise ConfigError(f"demo.teacher must be one of {list(TEACHER_NAMES)}, got {self.teacher!r}")


@dataclass
class TrainConfig:
    name: str = _f("default", "run name (part of the run folder's name)")
    seed: int = _f(0, "seed of PPO, the envs and the examples")
    total_timesteps: int = _f(20000, "PPO environment steps (decisions), after imitation (0: imitation only)")
    n_envs: int = _f(4, "parallel environments")
    checkpoint_every: int = _f(5000, "save a checkpoint every this many steps")
    runs_dir: str = _f("runs", "parent folder of run folders")
    env: EnvConfig = field(default_factory=EnvConfig, metadata={"help": "the environment"})
    policy: PolicyConfig = field(default_factory=PolicyConfig, metadata={"help": "the per-token network"})
    imitation: ImitationConfig = field(default_factory=ImitationConfig, metadata={"help": "imitation warm start"})
    ppo: dict = _f({}, "keyword arguments passed straight to stable_baselines3.PPO")
    demo: DemoConfig = field(default_factory=DemoConfig, metadata={"help": "how rltr demo / rltr ablate evaluate this router"})

    def __post_init__(self):
        check_run_name(self.name)
        if not 0 <= self.seed < 2**31:
            raise ConfigError(f"seed must be in [0, 2**31), got {self.seed}")
        for key in ("n_envs", "checkpoint_every"):
            _at_least(key, getattr(self, key), 1)
        _at_least("total_timesteps", self.total_timesteps, 0 if self.imitation.enabled else 1)  # 0: imitation only
        _check_ppo_keys(self.ppo)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_run_name(name: str) -> str:
    """A run name is one folder-name part (no ``/``, no ``..``): a run stays inside ``runs_dir``."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or set(name) == {"."}:
        raise ConfigError(f"name names the run folder: letters, digits, '_', '.', '-' only, got {name!r}")
    return name


def _at_least(key: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"{key} must be >= {low}, got {value}")


def _check_budget(key: str, value: float | None) -> None:
    try:
        check_budget(value)  # the one budget check (rltr.core.decisions)
    except ValueError:
        raise ConfigError(f"{key} must be in (0, 1] or null, got {value}") from None


def _check_ppo_keys(ppo: dict) -> None:
    """Every key of the ``ppo`` block must be a keyword of ``stable_baselines3.PPO`` that rltr leaves to the user."""
    import inspect

    from stable_baselines3 import PPO

    ours = sorted(set(ppo) & set(PPO_SET_BY_RLTR))
    if ours:
        raise ConfigError(f"ppo.{ours[0]}: rltr sets this itself (from {PPO_SET_BY_RLTR[ours[0]]}); remove it from the ppo block")
    known = sorted(set(inspect.signature(PPO.__init__).parameters) - {"self"} - set(PPO_SET_BY_RLTR))
    unknown = sorted(set(ppo) - set(known))
    if unknown:
        raise ConfigError(f"unknown ppo key(s) {['ppo.' + k for k in unknown]}; known: {known}")
    for key, value in ppo.items():
        _check_ppo_value(key, value)


# ppo values checked up front (SB3 would fail later with an assertion, or accept them silently):
# key -> (what the value must be, test)
def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


PPO_VALUE_CHECKS = {
    "learning_rate": ("a number > 0", lambda v: _number(v) and v > 0),
    "n_steps": ("an int >= 1", lambda v: _int(v) and v >= 1),
    "batch_size": ("an int >= 2", lambda v: _int(v) and v >= 2),
    "n_epochs": ("an int >= 1", lambda v: _int(v) and v >= 1),
    "gamma": ("a number in [0, 1]", lambda v: _number(v) and 0 <= v <= 1),
    "gae_lambda": ("a number in [0, 1]", lambda v: _number(v) and 0 <= v <= 1),
    "clip_range": ("a number > 0", lambda v: _number(v) and v > 0),
    "clip_range_vf": ("a number > 0 or null", lambda v: v is None or (_number(v) and v > 0)),
    "ent_coef": ("a number >= 0", lambda v: _number(v) and v >= 0),
    "vf_coef": ("a number >= 0", lambda v: _number(v) and v >= 0),
    "max_grad_norm": ("a number > 0", lambda v: _number(v) and v > 0),
    "target_kl": ("a number > 0 or null", lambda v: v is None or (_number(v) and v > 0)),
    "normalize_advantage": ("true or false", lambda v: isinstance(v, bool)),
}


def _check_ppo_value(key: str, value) -> None:
    if key in PPO_VALUE_CHECKS:
        want, ok = PPO_VALUE_CHECKS[key]
        if not ok(value):
            raise ConfigError(f"ppo.{key} must be {want}, got {value!r}")


def _check_type(path: str, value, tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options[:-1]:  # the first type the value fits (int | str: 192 or "auto")
            try:
                return _check_type(path, value, option)
            except ConfigError:
                pass
        tp = options[-1] if len(options) > 1 else options[0]
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


def read_yaml_mapping(path: Path, what: str) -> dict:
    """The mapping in YAML file ``path``; a missing or empty file, a syntax error (tabs included) or a
    non-mapping is a ConfigError naming the file (and the line)."""
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"{what} {str(path)!r} is not valid YAML{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"{what} {str(path)!r} is empty; leave out --config for the defaults")
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {str(path)!r} must hold a mapping of keys, got {type(data).__name__} {data!r}")
    return data


def read_config_data(path: str | Path | None = None, overrides: Sequence[str] = ()) -> dict:
    """The nested dict of a YAML file (optional) with ``--set`` overrides applied, before validation."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        data = read_yaml_mapping(path, "config file")
    for o in overrides:
        apply_override(data, o)
    return data


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """YAML file (optional) < ``--set`` overrides -> validated :class:`TrainConfig` (each block checks itself)."""
    return from_dict(TrainConfig, read_config_data(path, overrides))
