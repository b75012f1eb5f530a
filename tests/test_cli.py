import subprocess
import sys

import pytest

from rltr.cli import main
from tests.conftest import tiny_task_gpt2


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_vocab_model")
    model = tiny_task_gpt2(n_layer=2)
    model.save_pretrained(path)
    return str(path)


def _run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "rltr.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("evaluate", "zoo", "demo"):
        assert cmd in out.stdout


def test_evaluate_prints_table_and_writes_reports(model_dir, tmp_path, capsys):
    code, out, _ = _run(["evaluate", "--model", model_dir, "--task", "retrieval", "--methods", "identity,random",
                         "--budgets", "0.5", "--n-examples", "4", "--out", str(tmp_path / "rep")], capsys)
    assert code == 0
    assert "| retrieval | identity | full |" in out and "| retrieval | random | 0.50 |" in out
    assert {p.name for p in (tmp_path / "rep").iterdir()} == {"results.json", "results.csv", "report.md", "pareto.png"}


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--model", "no-such-model-xyz"], "no-such-model-xyz"),
        (["--methods", "identity,bogus"], "'bogus'"),
        (["--task", "nonsense"], "'nonsense'"),
        (["--n-examples", "0"], "--n-examples"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(model_dir, capsys, extra, needle):
    argv = ["evaluate", "--model", model_dir, "--task", "retrieval", "--n-examples", "2", *extra]
    code, _, err = _run(argv, capsys)
    assert code == 2 and needle in err and "Traceback" not in err


@pytest.mark.parametrize("budget", ["0", "1.5", "-0.2", "abc"])
def test_budget_outside_unit_interval_is_rejected(capsys, budget):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--budgets", budget])
    assert exc.value.code == 2 and budget in capsys.readouterr().err


def test_unsupported_family_exits_2(tmp_path, capsys):
    from transformers import T5Config

    T5Config(num_layers=1, d_model=32, num_heads=2, d_ff=64).save_pretrained(tmp_path)
    code, _, err = _run(["evaluate", "--model", str(tmp_path), "--task", "retrieval"], capsys)
    assert code == 2 and "'t5'" in err


def test_no_traceback_from_the_console_script(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rltr.cli", "evaluate", "--model", str(tmp_path / "missing")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "missing" in out.stderr
