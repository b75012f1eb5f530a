"""Every shipped config loads and validates; the demo's per-config evaluation settings name bad values."""

from pathlib import Path

import pytest

from rltr.config import ConfigError, load_config

CONFIGS = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    if path.name.startswith("grpo"):  # output-length training (rltr train --grpo) has its own schema
        from rltr.outlen.config import load_grpo_config

        assert load_grpo_config(str(path), []).name
        return
    cfg = load_config(str(path), [])
    assert cfg.name and cfg.env.decision_layers


def test_the_real_model_config_is_label_free_and_query_agnostic():
    cfg = load_config("configs/smollm2.yaml", [])
    assert cfg.env.model == "smollm2" and not cfg.env.query_aware
    assert cfg.imitation.teacher and cfg.imitation.reducer != "oracle"  # a teacher, no relevance labels


@pytest.mark.parametrize(
    "override, message",
    [
        ("demo.methods=[]", "demo.methods"),
        ("demo.tasks=5", "demo.tasks"),
        ("demo.n_examples=0", "demo.n_examples"),
        ("demo.batch_size=0", "demo.batch_size"),
        ("demo.task_kwargs=3", "demo.task_kwargs"),
    ],
)
def test_demo_evaluation_settings_name_the_bad_value(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("configs/default.yaml", [override])
