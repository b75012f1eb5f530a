"""The benchmark scripts run end to end (on tiny models, one repeat: a smoke test, no timing asserted)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_latency_benchmark_runs_and_ends_with_the_router_speedup(family, capsys):
    latency = _load("latency")
    argv = [
        "--quick",
        "--family",
        family,
        "--n-layer",
        "2",
        "--width",
        "64",
        "--repeats",
        "1",
        "--gen-repeats",
        "1",
        "--new-tokens",
        "2",
        "--no-warm-up",
    ]
    assert latency.main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("router prefill speedup @1024 tokens, budget 0.5: ") and out[-1].endswith("x")
    assert any(line.startswith("| router_light | ") for line in out)


def test_activations_benchmark_runs(capsys):
    assert _load("activations").main(["--repeats", "2"]) == 0
    assert "x faster" in capsys.readouterr().out


def test_long_prompts_benchmark_runs(capsys):
    assert _load("long_prompts").main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "| 512 | " in out and "episodes/s" in out


def test_output_length_benchmark_runs(capsys):
    argv = ["--trained", "verbose", "--n-examples", "2", "--batch-sizes", "1,2", "--repeats", "1"]
    assert _load("output_length").main(argv) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 4 and all(row.endswith(" |") for row in rows), rows


def test_encoders_benchmark_runs_and_scores_the_same_calls(capsys):
    encoders = _load("encoders")
    assert encoders.main(["--quick", "--text", "none", "--n", "32", "--batch", "16"]) == 0
    out = capsys.readouterr().out
    full = [line for line in out.splitlines() if line.startswith("| full (plain HF forward) |")]
    assert len(full) == 2 and float(full[0].split("|")[2]) >= 0.9  # the built-in model's accuracy, from the timed calls
    assert "| tome:r=8 |" in out and "| tome @0.5, decision before layer 1 |" in out
