import pytest
import torch

from rltr.backbones import wrap
from rltr.core.decider import Decider
from rltr.evaluation.run import format_table, run_method
from rltr.evaluation.sweep import evaluate
from rltr.reducers import get_reducer, target_counts
from rltr.tasks import collate, exact_match, get_task
from rltr.tasks.vocab import PAD_ID
from tests.conftest import tiny_gpt2, tiny_task_gpt2


@pytest.fixture(scope="module")
def backbone():
    model = tiny_task_gpt2(n_layer=2)
    return wrap(model)


def test_identity_keeps_everything_at_full_compute(backbone):
    r = run_method(backbone, get_task("retrieval"), get_reducer("identity"), None, n_examples=8, batch_size=4)
    assert r.compute_fraction == pytest.approx(1.0) and r.kept_ratio == pytest.approx(1.0)


def test_random_meets_budget_and_protects_the_tail(backbone):
    task = get_task("retrieval")
    examples = task.examples(6, seed=1)
    batch = collate(examples, PAD_ID)
    decide = Decider(get_reducer("random"), backbone, [1], 0.5, batch.relevant, torch.Generator().manual_seed(0))
    state = backbone.run(backbone.embed(batch.input_ids, batch.attention_mask, protected=batch.protected), decide, [1])
    expected = target_counts(batch.lengths, 0.5, 0, 1)
    assert torch.equal(state.n_alive, torch.maximum(expected, batch.protected.sum(1)))
    for i, e in enumerate(examples):
        kept = set(state.positions[i][state.alive[i]].tolist())
        assert set(range(e.context_len, len(e.input_ids))) <= kept and set(e.protected) <= kept


def test_random_costs_less_and_is_seeded(backbone):
    task = get_task("retrieval")
    a = run_method(backbone, task, get_reducer("random"), 0.5, n_examples=8, batch_size=4, seed=3)
    b = run_method(backbone, task, get_reducer("random"), 0.5, n_examples=8, batch_size=4, seed=3)
    assert a.compute_fraction < 0.75 and a.kept_ratio == pytest.approx(b.kept_ratio)
    assert a.accuracy == b.accuracy and a.compute_fraction == b.compute_fraction


def test_two_decision_layers_reach_the_budget_geometrically():
    n = torch.tensor([100])
    assert target_counts(n, 0.25, 0, 2).item() == 50 and target_counts(n, 0.25, 1, 2).item() == 25
    assert target_counts(n, None, 0, 2).item() == 100


def test_evaluate_table_and_bad_inputs(backbone):
    res = evaluate(backbone, [get_task("retrieval")], ["identity", "random"], [0.5, 1.0], progress=False, n_examples=4, batch_size=4)
    assert [(r.method, r.budget) for r in res] == [("identity", None), ("random", 0.5), ("random", 1.0)]
    assert "| retrieval | random | 0.50 |" in format_table(res)
    with pytest.raises(ValueError, match="'nope'"):
        evaluate(backbone, [get_task("retrieval")], ["nope"], [0.5], n_examples=4)
    with pytest.raises(ValueError, match="1.5"):
        evaluate(backbone, [get_task("retrieval")], ["random"], [1.5], n_examples=4)


def test_task_with_foreign_vocabulary_is_rejected():
    with pytest.raises(ValueError, match="vocab_size=101"):
        evaluate(wrap(tiny_gpt2()), [get_task("retrieval")], ["identity"], [0.5], n_examples=4)


def test_overlong_and_empty_inputs_are_clear_errors(backbone):
    with pytest.raises(ValueError, match="300 tokens"):
        backbone.embed(torch.zeros(1, 300, dtype=torch.long))
    with pytest.raises(ValueError, match="non-empty"):
        backbone.embed(torch.zeros(1, 0, dtype=torch.long))


def test_evaluation_runs_the_patched_hf_forward(backbone, monkeypatch):
    """Accuracy and latency come from the model's own forward under ``with reducer(model, ...)``: every
    batch is one call of the patched forward (or the plain one for identity), and the accuracy equals
    exact match computed from that call by hand."""
    from rltr.inference import PromptHints, TokenReduction

    task, reducer = get_task("retrieval"), get_reducer("attn_topk")
    calls = []
    original = TokenReduction._prefill

    def spy(self, named, cache, hints=None, original_forward=None):
        calls.append(hints)
        return original(self, named, cache, hints, original_forward)

    monkeypatch.setattr(TokenReduction, "_prefill", spy)
    r = run_method(backbone, task, reducer, 0.1, n_examples=12, batch_size=4)
    assert len(calls) == 4 and all(isinstance(h, PromptHints) for h in calls)  # 3 batches + 1 warm-up
    batch = collate(task.examples(12, seed=0, split="test"), PAD_ID)
    with reducer(backbone.model, budget=0.1, protect_last=1, decision_layers=[1]):
        logits = backbone.model(
            batch.input_ids, attention_mask=batch.attention_mask.long(), reduction_hints=PromptHints(batch.context_len, batch.protected)
        ).logits
    assert r.accuracy == pytest.approx(float(exact_match(logits, batch).mean()))
    assert "forward" not in vars(backbone.model)  # unpatched again
    calls.clear()
    full = run_method(backbone, task, get_reducer("identity"), None, n_examples=12, batch_size=4)
    assert calls == [] and full.accuracy == pytest.approx(float(exact_match(backbone.model(batch.input_ids).logits, batch).mean()))
    assert full.latency_ms > 0 and r.latency_ms > 0


def test_pivot_table_cells_carry_accuracy_compute_and_measured_speedup():
    from rltr.evaluation.reports import pivot_table
    from rltr.evaluation.run import EvalResult

    def res(method, budget, acc, latency):
        return EvalResult("t", method, budget, acc, 0.5 if budget else 1.0, budget or 0.2, latency, 10)

    table = pivot_table([res("identity", None, 1.0, 4.0), res("r", None, 0.9, 2.0), res("r", 0.1, 0.8, 1.0), res("w", 0.1, 0.5, 0.5)], "t")
    lines = table.splitlines()
    assert lines[0] == "| method | own choice | 10% |"
    assert lines[2] == "| r | 90.0% · 1.00 · 2.0×, 20.0% tokens | 80.0% · 0.50 · 4.0× |"
    assert lines[3] == "| w |  | 50.0% · 0.50 · 8.0× |"
