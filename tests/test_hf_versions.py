"""rltr across transformers versions: the KV cache under either name (``cache`` from 5.24, ``past_key_values``
before), no deprecation message from rltr's own calls, and a clear error for an argument rltr does not know."""

import logging
import warnings

import pytest
import torch
import transformers
from packaging.specifiers import SpecifierSet

from rltr.inference import hf_compat
from rltr.inference.generation import greedy_generate
from rltr.inference.hf_compat import CACHE_NAMES, cache_argument, output_cache, take_cache
from rltr.reducers import get_reducer
from tests.conftest import FAMILIES, requires_transformers

LOWEST_TESTED = next(s.version for s in SpecifierSet(hf_compat.tested_transformers_range()) if s.operator == ">=")


@pytest.fixture
def transformers_log(caplog):
    """Records of the ``transformers`` logger with its warn-once memory cleared, so a message shown earlier in
    the session is shown again here."""
    logging.Logger.warning_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="transformers"):
        yield caplog


def _deprecations(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "deprecat" in r.getMessage().lower()]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_reduced_generate_and_greedy_decode_log_no_deprecation(family, transformers_log):
    model = FAMILIES[family]()
    ids = torch.randint(1, 100, (2, 24), generator=torch.Generator().manual_seed(0))
    with get_reducer("attn_topk")(model, budget=0.5, protect_last=2):
        model.generate(ids, do_sample=False, max_new_tokens=4, pad_token_id=0)
        greedy_generate(model, [[5, 6, 7, 8], [9, 10, 11]], 3, pad_id=0)
    greedy_generate(model, [[5, 6, 7, 8]], 3, pad_id=0)
    assert _deprecations(transformers_log) == []


def test_the_model_takes_the_cache_under_the_name_rltr_passes():
    model = FAMILIES["llama"]()
    name = cache_argument(type(model).forward)
    assert name in CACHE_NAMES
    major_minor = tuple(int(p) for p in transformers.__version__.split(".")[:2])
    assert name == ("cache" if major_minor >= (5, 24) else "past_key_values"), (transformers.__version__, name)
    block = model.model.layers[0]
    assert cache_argument(type(block).forward) == name


def test_take_cache_reads_either_name_and_refuses_both():
    for name in CACHE_NAMES:
        named = {name: "C", "input_ids": 1}
        assert take_cache(named) == "C" and named == {"input_ids": 1}
    with pytest.raises(ValueError, match="both 'cache' and 'past_key_values'"):
        take_cache({"cache": 1, "past_key_values": 2})
    assert output_cache({"past_key_values": 3}) == 3 and output_cache({"cache": 4}) == 4


def test_an_unknown_prompt_argument_names_the_transformers_version():
    model = FAMILIES["gpt2"]()
    ids = torch.randint(1, 100, (1, 12))
    with get_reducer("identity")(model), pytest.raises(ValueError) as err:
        model(ids, some_future_argument=torch.ones(1))
    message = str(err.value)
    assert "some_future_argument" in message and transformers.__version__ in message
    assert hf_compat.tested_transformers_range() in message


def test_tested_range_is_the_installed_metadata():
    spec = hf_compat.tested_transformers_range()
    assert ">=" in spec and "<" in spec, spec


def test_an_untested_transformers_version_warns_once(monkeypatch):
    monkeypatch.setattr(hf_compat, "_warned_outside", False)
    with pytest.warns(RuntimeWarning, match="transformers 99.0.0"):
        assert hf_compat.warn_if_untested("99.0.0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would raise here
        assert hf_compat.warn_if_untested("99.0.0")
        assert not hf_compat.warn_if_untested(LOWEST_TESTED)


@requires_transformers(LOWEST_TESTED, why="rltr's tested range; the kvpress set pins transformers<5.3 on purpose and warns")
def test_the_suite_runs_on_a_tested_transformers():
    assert not hf_compat.warn_if_untested(transformers.__version__)
