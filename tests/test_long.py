"""Long prompts: observations sized by the task (max_tokens: auto) and the similarity feature in row blocks."""

import pytest
import torch

from rltr.backbones import wrap
from rltr.config import ConfigError, EnvConfig, load_config
from rltr.core.similarity import nearest_similarity
from rltr.envs.engine import EpisodeEngine
from rltr.tasks import ExamplePool, get_task
from tests.conftest import tiny_task_gpt2


def _plain(unit, visible):
    sim = unit @ unit.transpose(1, 2)
    sim.diagonal(dim1=1, dim2=2).fill_(-1.0)
    return sim.masked_fill(~visible[:, None, :], -1.0).max(-1).values


def test_nearest_similarity_in_blocks_equals_the_whole_map():
    g = torch.Generator().manual_seed(0)
    unit = torch.nn.functional.normalize(torch.randn(3, 70, 16, generator=g), dim=-1)
    visible = torch.rand(3, 70, generator=g) > 0.3
    assert torch.equal(nearest_similarity(unit, visible), _plain(unit, visible))  # one block: the same computation
    for rows in (1, 7, 69):
        blocks = nearest_similarity(unit, visible, block_elements=3 * 70 * rows)
        torch.testing.assert_close(blocks, _plain(unit, visible), rtol=0, atol=1e-6)
    alone = nearest_similarity(unit[:, :1], visible[:, :1])
    assert torch.equal(alone, torch.full((3, 1), -1.0))  # no other token


def test_max_tokens_auto_is_the_longest_example():
    backbone = wrap(tiny_task_gpt2(n_layer=2))
    short, long = get_task("retrieval", context_len=20), get_task("retrieval", context_len=50)
    pool = ExamplePool({"train": short.examples(3) + long.examples(2)})
    engine = EpisodeEngine(backbone, pool, EnvConfig(max_tokens="auto"))
    assert engine.settings.max_tokens == 53
    engine.start(pool.split("train"))
    assert engine.observation().shape[:2] == (5, 53)
    assert EpisodeEngine(backbone, short, EnvConfig(max_tokens="auto")).settings.max_tokens == 23


@pytest.mark.parametrize("value", ["big", 0, True, 1.5])
def test_max_tokens_must_be_a_count_or_auto(value):
    with pytest.raises(ConfigError, match="max_tokens"):
        load_config(None, [f"env.max_tokens={value}"])
    assert load_config(None, ["env.max_tokens=auto"]).env.max_tokens == "auto"
    assert load_config(None, ["env.max_tokens=4096"]).env.max_tokens == 4096


def test_long_config_loads():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "long.yaml")
    assert cfg.env.max_tokens == "auto" and cfg.env.task_kwargs == {"context_len": 4093}
