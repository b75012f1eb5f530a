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
    from transformers import BertConfig

    BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64).save_pretrained(tmp_path)
    code, _, err = _run(["evaluate", "--model", str(tmp_path), "--task", "retrieval"], capsys)
    assert code == 2 and "'bert'" in err


def test_no_traceback_from_the_console_script(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rltr.cli", "evaluate", "--model", str(tmp_path / "missing")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "missing" in out.stderr


@pytest.mark.parametrize(
    "argv, prog",
    [
        (["evaluate", "--budgets", "2"], "rltr evaluate"),
        (["evaluate", "--no-such-flag"], "rltr evaluate"),
        (["apply", "--method", "tome"], "rltr apply"),
        (["apply", "--method", "tome", "--task", "retrieval", "--budget", "none"], "rltr apply"),
        (["train", "--device", "tpu"], "rltr train"),
        (["export", "runs/x"], "rltr export"),
        (["zoo", "build"], "rltr zoo build"),
        (["demo", "--n-examples", "many"], "rltr demo"),
        ([], "rltr"),
    ],
)
def test_argparse_errors_are_one_line_naming_the_subcommand(capsys, argv, prog):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1 and err.startswith(f"{prog}: error: ") and "usage:" not in err, err


def test_apply_over_long_prompt_is_one_line_naming_the_limit(capsys):
    filler = " ".join(f"f{i % 16}" for i in range(400))
    code, out, err = _run(["apply", "--method", "tome", "--prompt", f"<bos> <retrieval> {filler} <sep> k3"], capsys)
    last = err.rstrip().splitlines()[-1]  # (stderr may also carry transformers' weight-loading bar)
    assert code == 2 and last.startswith("rltr apply: error: ") and "Traceback" not in err, err
    assert "404 tokens" in last and "32 new tokens" in last and "256 positions" in last, last
    assert out == ""  # nothing generated


def test_apply_prompt_plus_new_tokens_past_the_positions_is_rejected(capsys):
    code, _, err = _run(["apply", "--method", "tome", "--task", "retrieval", "--max-new-tokens", "200"], capsys)
    last = err.rstrip().splitlines()[-1]
    assert code == 2 and last.startswith("rltr apply: error: ") and "Traceback" not in err, err
    assert "200 new tokens" in last and "256 positions" in last, last
