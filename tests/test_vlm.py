"""The built-in VLM and image-token reduction: loads offline, identity is exact, every heuristic runs through the HF
forward, text tokens are never reduced. A random-init model of the same shape stands in where weights do not matter."""

from __future__ import annotations

import json

import pytest
import torch

from rltr.backbones import LlavaBackbone, load_backbone
from rltr.inference.vlm import image_budget
from rltr.reducers import REDUCERS, get_reducer
from rltr.tasks import get_task
from rltr.tasks.digit_grid import IMAGE_ID, N_IMAGE_TOKENS, SEQ_LEN
from rltr.zoo import MODELS_DIR
from rltr.zoo.registry import ZOO
from rltr.zoo.vlm_digits import VLMDigitsSpec, new_vlm

torch.set_num_threads(1)
HEURISTICS = ["random", "oracle", "attn_topk", "fastv", "question_attn", "spatial_pool", "tome", "h2o", "norm", "window"]
BUILT = (MODELS_DIR / "vlm-digits" / "rltr_zoo.json").is_file()


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> LlavaBackbone:
    torch.manual_seed(0)
    spec = VLMDigitsSpec(name="tiny-vlm", description="test", vision_layers=1, n_layer=2)
    path = tmp_path_factory.mktemp("vlm")
    new_vlm(spec).save_pretrained(path)
    return load_backbone(str(path))


@pytest.fixture(scope="module")
def batch(tiny_vlm):
    task = get_task("grid_questions")
    task.prepare(tiny_vlm)
    return task, task.collate(task.examples(8, seed=1))


def test_grid_examples_layout():
    task = get_task("grid_cell")
    e = task.examples(1)[0]
    assert len(e.input_ids) == SEQ_LEN and e.input_ids.count(IMAGE_ID) == N_IMAGE_TOKENS
    assert len(e.relevant) == N_IMAGE_TOKENS // 16 and all(0 < p <= N_IMAGE_TOKENS for p in e.relevant)


def test_identity_exact_engine_and_patched(tiny_vlm, batch):
    task, b = batch
    model = tiny_vlm.model
    ref = model(**b.model_inputs(reduced=False)).logits  # the unpatched HF forward
    out = tiny_vlm.answer_logits(tiny_vlm.run(b.embed(tiny_vlm)), b.answer_mask)[:, b._scored_columns()]
    assert torch.equal(out, ref), f"engine differs by {(out - ref).abs().max().item()}"
    with get_reducer("identity")(model, budget=None, **task.reduction_options(True)):
        patched = model(**b.model_inputs(reduced=True)).logits
    assert torch.allclose(patched, ref, atol=1e-6, rtol=0), f"patched identity differs by {(patched - ref).abs().max().item()}"


@pytest.mark.parametrize("name", HEURISTICS)
@pytest.mark.parametrize("layer", [0, 1])
def test_heuristics_keep_text(tiny_vlm, batch, name, layer):
    task, b = batch
    assert name in REDUCERS
    budget = image_budget(SEQ_LEN - 1, N_IMAGE_TOKENS, 0.25)
    with get_reducer(name)(tiny_vlm.model, budget=budget, decision_layers=[layer], **task.reduction_options(True)) as red:
        logits = tiny_vlm.model(**b.model_inputs(reduced=True)).logits
    assert torch.isfinite(logits).all()
    info = red.last
    text = (b.input_ids != IMAGE_ID) & b.attention_mask
    text[:, -1] = False  # the teacher-forced answer column is not part of the prompt pass's question
    for row in range(len(b.input_ids)):
        kept = set(info.positions[row][info.alive[row]].tolist())
        missing = set(text[row].nonzero().flatten().tolist()) - kept
        assert not missing, f"{name} dropped text positions {sorted(missing)} in row {row}"
        n_image = sum(1 for p in kept if b.input_ids[row, p] == IMAGE_ID)
        assert n_image <= N_IMAGE_TOKENS // 4 or name == "tome", f"{name} kept {n_image} image tokens at 25%"


def test_image_without_pixels_names_the_problem(tiny_vlm, batch):
    _, b = batch
    with pytest.raises(ValueError, match="no pixel values"):
        tiny_vlm.embed(b.input_ids, b.attention_mask)


def test_spatial_pool_windows():
    from rltr.reducers.spatial_pool import pool_targets

    two_by_two = pool_targets(64, 16)
    assert two_by_two.unique().numel() == 16 and two_by_two[0] == 9 and two_by_two[9] == 9  # (0,0) -> (1,1) of an 8 x 8 raster
    assert pool_targets(64, 32)[0] == 1 and pool_targets(64, 64).equal(torch.arange(64))
    runs = pool_targets(10, 3)
    assert runs.unique().numel() == 3 and bool((runs >= torch.arange(10)).all())  # merges only into later tokens


def test_image_budget_rejects_bad_ratio():
    assert image_budget(70, 64, 0.25) == pytest.approx(22 / 70)
    with pytest.raises(ValueError, match="1.5"):
        image_budget(70, 64, 1.5)


@pytest.mark.skipif(not BUILT, reason="vlm-digits not built")
def test_built_vlm_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backbone = load_backbone("vlm-digits")
    assert isinstance(backbone, LlavaBackbone) and backbone.n_image_tokens == N_IMAGE_TOKENS
    meta = json.loads((MODELS_DIR / "vlm-digits" / "rltr_zoo.json").read_text())
    assert meta["tasks"] and all(meta["accuracy"][q] >= ZOO["vlm-digits"].min_accuracy for q in meta["question_types"])
    task = get_task(meta["tasks"][0])
    task.prepare(backbone)


def test_latency_benchmark_runs(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "vlm_latency.py"
    spec = importlib.util.spec_from_file_location("vlm_latency", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--reps", "1", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "| fastv K=2 | 25% |" in out and "llava-shaped: 144 image tokens" in out


@pytest.mark.parametrize("name", ["identity", "fastv"])
def test_generate_through_the_plain_hf_generate(tiny_vlm, batch, name):
    _, b = batch
    ids = b.input_ids[:, :-1]
    kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=b.pixel_values, max_new_tokens=2, do_sample=False)
    ref = tiny_vlm.model.generate(**kw)
    budget = None if name == "identity" else image_budget(ids.shape[1], N_IMAGE_TOKENS, 0.25)
    with get_reducer(name)(tiny_vlm.model, budget=budget, decision_layers=[1], protect_last=5) as red:
        out = tiny_vlm.model.generate(**kw)
    assert out.shape == ref.shape
    if name == "identity":
        assert torch.equal(out, ref), "identity through generate() differs from the unpatched model"
    else:
        assert int(red.last.alive.sum(1).max()) == ids.shape[1] - N_IMAGE_TOKENS + N_IMAGE_TOKENS // 4


@pytest.mark.parametrize("network", ["mlp", "attention"])
def test_a_router_runs_and_keeps_text(tiny_vlm, batch, tmp_path, network):
    from tests.routers import random_router

    task, b = batch
    path = random_router(tiny_vlm, tmp_path, decision_layers=(0,), network=network)
    budget = image_budget(SEQ_LEN - 1, N_IMAGE_TOKENS, 0.25)
    with get_reducer(f"router:{path}")(tiny_vlm.model, budget=budget, **task.reduction_options(True)) as red:
        logits = tiny_vlm.model(**b.model_inputs(reduced=True)).logits
    assert torch.isfinite(logits).all()
    text = (b.input_ids != IMAGE_ID) & b.attention_mask
    text[:, -1] = False
    for row in range(len(b.input_ids)):
        kept = set(red.last.positions[row][red.last.alive[row]].tolist())
        assert set(text[row].nonzero().flatten().tolist()) <= kept, f"router dropped text in row {row}"
