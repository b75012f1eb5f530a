import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from rltr.backbones import wrap
from rltr.core.compute import ArchSpec, compute_fraction, forward_flops
from rltr.core.ops import Action, apply_actions


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
    from transformers import T5Config

    with pytest.raises(ValueError, match="'t5'"):
        ArchSpec.from_config(T5Config())
