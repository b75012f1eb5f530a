import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from rltr.backbones import wrap
from rltr.compute import ArchSpec, compute_fraction, forward_flops
from rltr.ops import Action, apply_actions


@pytest.mark.parametrize("n", [16, 64])
def test_analytic_flops_match_measured_full_forward(family_model, n):
    _, model = family_model
    model.set_attn_implementation("eager")  # CPU SDPA kernels are invisible to FlopCounterMode; matmuls are not
    ids = torch.randint(0, 101, (2, n))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=ids)
    measured = counter.get_total_flops()
    spec = ArchSpec.from_config(model.config)
    predicted = 2 * forward_flops(spec, [n] * spec.n_layers, n_head_tokens=n)
    assert abs(predicted - measured) / measured < 0.05, (predicted, measured)


def test_analytic_flops_match_measured_reduced_forward(family_model):
    _, model = family_model
    model.set_attn_implementation("eager")
    bb = wrap(model)
    ids = torch.randint(0, 101, (1, 48))

    def drop_half(i, state):
        actions = torch.full_like(state.positions, Action.KEEP)
        actions[:, 1::2] = Action.DROP
        return apply_actions(state, actions, causal=True)

    counts = []
    state = bb.embed(ids)
    with FlopCounterMode(display=False) as fc:
        out = bb.run(state, drop_half, [1], on_layer=lambda i, s: counts.append(int(s.n_alive[0])))
        bb.logits(out)
    spec = ArchSpec.from_config(model.config)
    assert counts == [48, 24, 24]
    predicted = forward_flops(spec, counts, n_head_tokens=24)
    measured = fc.get_total_flops()
    # the decision layer's on-demand work is not part of the forward model; none is requested here
    assert abs(predicted - measured) / measured < 0.05, (predicted, measured)


def test_compute_fraction_is_one_for_full_and_monotone(family_model):
    _, model = family_model
    spec = ArchSpec.from_config(model.config)
    L = spec.n_layers
    assert compute_fraction(spec, [100] * L, 100) == pytest.approx(1.0)
    fracs = [compute_fraction(spec, [100] + [k] * (L - 1), 100) for k in (10, 50, 90)]
    assert fracs == sorted(fracs) and all(0 < f < 1 for f in fracs)
    per_example = compute_fraction(spec, [torch.tensor([100, 50])] * L, 100)  # (B,) token counts per layer
    assert per_example.shape == (2,) and per_example[0] == pytest.approx(1.0) and per_example[1] < 1


def test_unknown_architecture_is_an_error():
    from transformers import BertConfig

    with pytest.raises(ValueError, match="'bert'"):
        ArchSpec.from_config(BertConfig())


@pytest.mark.parametrize("n_rows", [3, 40])
def test_attention_rows_flops_match_measured_decision_work(family_model, n_rows):
    """What a reducer reading R attention rows is charged equals what those rows cost (FlopCounterMode),
    in the R x N regime (3 of 64 rows) and where the whole map is built instead (40 of 64)."""
    from rltr.compute import attention_map_flops, attention_rows_flops
    from rltr.reducers.base import decision_context

    _, model = family_model
    bb = wrap(model)
    n = 64
    state = bb.embed(torch.randint(0, 101, (1, n)))
    ctx = decision_context(bb, state, [1], 0, state.n_alive, 0.5, context_len=torch.tensor([n - n_rows]))
    with FlopCounterMode(display=False) as fc:
        ctx.attention_from_query()
    spec = ArchSpec.from_config(model.config)
    predicted = attention_rows_flops(spec, n, n_rows)
    assert abs(predicted - fc.get_total_flops()) / fc.get_total_flops() < 0.05, (predicted, fc.get_total_flops())
    assert (predicted == attention_map_flops(spec, n)) == (4 * n_rows > n)
    assert torch.equal(attention_rows_flops(spec, torch.tensor([n, n]), torch.tensor([3, 40])),
                       torch.tensor([attention_rows_flops(spec, n, 3), attention_map_flops(spec, n)]))
