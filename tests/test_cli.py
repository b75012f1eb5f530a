import subprocess
import sys

import pytest

from rltr.cli.main import main
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
    out = subprocess.run([sys.executable, "-m", "rltr.cli.main", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("evaluate", "zoo", "demo"):
        assert cmd in out.stdout


def test_evaluate_prints_table_and_writes_reports(model_dir, tmp_path, capsys):
    code, out, _ = _run(
        [
            "evaluate",
            "--model",
            model_dir,
            "--task",
            "retrieval",
            "--methods",
            "identity,random",
            "--budgets",
            "0.5",
            "--n-examples",
            "4",
            "--out",
            str(tmp_path / "rep"),
        ],
        capsys,
    )
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
        (["--task-kwargs", "{nope: 1}"], "'nope'"),
        (["--device", "bogus"], "'bogus'"),
        (["--device", "cuda:99"], "'cuda:99'"),
        (["--methods", "identity,random,random"], "'random'"),
        (["--methods", "random@0.5"], "random has no threshold mode"),
        (["--out", "{tmp}/a_file"], "is a file"),
        (["--out", "{tmp}/a_file/report"], "is a file"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(model_dir, tmp_path, capsys, extra, needle):
    (tmp_path / "a_file").write_text("not a folder")
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    out = [] if "--out" in extra else ["--out", str(tmp_path / "report")]
    argv = ["evaluate", "--model", model_dir, "--task", "retrieval", "--n-examples", "2", *out, *extra]
    code, _, err = _run(argv, capsys)
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("rltr evaluate: error: "), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # no report folder left behind


def test_unknown_hub_model_fails_at_once_when_the_hub_is_unreachable(monkeypatch, capsys):
    import socket
    import time

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)

    def unreachable(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    start = time.perf_counter()
    code, _, err = _run(["evaluate", "--model", "nobody/no-such-model-xyz", "--task", "retrieval"], capsys)
    assert code == 2 and "'nobody/no-such-model-xyz'" in err and "cannot be reached" in err, err
    assert time.perf_counter() - start < 5


def test_unknown_hub_model_offline_says_so(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = _run(["evaluate", "--model", "nobody/no-such-model-xyz", "--task", "retrieval"], capsys)
    assert code == 2 and "'nobody/no-such-model-xyz'" in err and "HF_HUB_OFFLINE" in err, err


@pytest.mark.parametrize("command", ["evaluate", "data export", "train", "export"])
def test_read_only_out_is_refused_before_any_work(model_dir, tmp_path, monkeypatch, capsys, command):
    """A folder without write permission (simulated: the tests may run as root, who may write anywhere)."""
    import os

    import rltr.backbones
    import rltr.runs.outputs

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(rltr.runs.outputs.os, "access", lambda p, mode: False if str(p) == str(locked) else real_access(p, mode))
    monkeypatch.setattr(rltr.backbones, "load_backbone", lambda *a, **k: pytest.fail("the model loaded before --out was checked"))
    if command == "evaluate":
        argv = ["evaluate", "--model", model_dir, "--task", "retrieval", "--out", str(locked / "report")]
    elif command == "data export":
        argv = ["data", "export", "retrieval", "--n", "3", "--out", str(locked / "x.jsonl")]
    elif command == "train":
        argv = ["train", "--set", f"env.model={model_dir}", "--set", f"runs_dir={locked / 'runs'}", "--no-progress"]
    else:
        argv = ["export", str(tmp_path / "run"), "--out", str(locked / "router")]
    code, _, err = _run(argv, capsys)
    assert code == 2 and "not writable" in err and str(locked) in err and "Traceback" not in err, err
    assert list(locked.iterdir()) == []


def test_evaluate_refuses_an_out_folder_in_use_and_takes_over_a_stale_one(model_dir, tmp_path, capsys):
    import os

    from rltr.runs.outputs import LOCK_NAME

    out = tmp_path / "report"
    out.mkdir()
    (out / LOCK_NAME).write_text(str(os.getppid()))  # a live process holds it
    argv = ["evaluate", "--model", model_dir, "--task", "retrieval", "--methods", "identity", "--n-examples", "2", "--out", str(out)]
    code, _, err = _run(argv, capsys)
    assert code == 2 and "in use by another rltr process" in err and str(out) in err, err
    (out / LOCK_NAME).write_text("999999999")  # its process is gone
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"results.json", "results.csv", "report.md", "pareto.png"}


def test_evaluate_says_when_a_task_has_fewer_examples_than_asked(capsys):
    from pathlib import Path

    data = Path(__file__).parents[1] / "examples" / "kv_questions.jsonl"  # 24 examples
    code, out, err = _run(["evaluate", "--task", f"jsonl:{data}", "--methods", "identity", "--n-examples", "50"], capsys)
    assert code == 0 and "50 held-out examples" not in out, out
    assert "kv_questions.jsonl 24 (of 50 asked)" in out and "only 24 held-out examples" in err, (out, err)


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
    out = subprocess.run(
        [sys.executable, "-m", "rltr.cli.main", "evaluate", "--model", str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr and "missing" in out.stderr


def test_encoder_bad_input_exits_2_with_one_clear_line(tmp_path, capsys):
    from tests.conftest import tiny_bert, tiny_vit

    bert_dir, vit_dir = tmp_path / "bert", tmp_path / "vit"
    tiny_bert().save_pretrained(bert_dir)
    tiny_vit(image_size=32).save_pretrained(vit_dir)
    code, _, err = _run(["evaluate", "--model", str(bert_dir), "--task", "digits", "--n-examples", "2"], capsys)
    assert code == 2 and "gives images" in err and "takes tokens" in err  # a text model given images
    code, _, err = _run(["evaluate", "--model", str(vit_dir), "--task", "retrieval", "--n-examples", "2"], capsys)
    assert code == 2 and "gives token ids" in err and "takes images" in err
    code, _, err = _run(["evaluate", "--model", str(vit_dir), "--task", "digits", "--methods", "window", "--n-examples", "2"], capsys)
    assert code == 2 and "not applicable to encoders" in err
    small = tmp_path / "vit16"
    tiny_vit(image_size=16).save_pretrained(small)  # images of the wrong shape for the task's 32 x 32 digits
    code, _, err = _run(["evaluate", "--model", str(small), "--task", "digits", "--n-examples", "2"], capsys)
    assert code == 2 and "(1, 32, 32) images" in err and "(1, 16, 16) images" in err and "Traceback" not in err


def test_evaluate_an_encoder_with_tome_r(tmp_path, capsys):
    from tests.conftest import tiny_vit

    tiny_vit(image_size=32).save_pretrained(tmp_path / "vit")
    code, out, _ = _run(
        [
            "evaluate",
            "--model",
            str(tmp_path / "vit"),
            "--task",
            "digits",
            "--methods",
            "identity,tome:r=4,attn_topk",
            "--budgets",
            "0.5",
            "--decision-layers",
            "0,1,2",
            "--n-examples",
            "8",
        ],
        capsys,
    )
    assert code == 0
    assert "| digits | tome:r=4 | own |" in out and "| digits | attn_topk | 0.50 |" in out and "| digits | tome:r=4 | 0.50 |" not in out


def test_apply_refuses_an_encoder(tmp_path, capsys):
    from tests.conftest import tiny_vit

    tiny_vit(image_size=32).save_pretrained(tmp_path / "vit")
    code, _, err = _run(["apply", "--method", "tome", "--model", str(tmp_path / "vit"), "--prompt", "hello"], capsys)
    assert code == 2 and "is an encoder" in err


@pytest.mark.parametrize(
    "argv, prog",
    [
        (["evaluate", "--budgets", "2"], "rltr evaluate"),
        (["evaluate", "--budgets", "none,,0.1"], "rltr evaluate"),
        (["evaluate", "--methods", "identity,"], "rltr evaluate"),
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


def test_evaluate_on_device_auto(model_dir, capsys):
    code, out, err = _run(
        ["evaluate", "--model", model_dir, "--task", "retrieval", "--methods", "identity", "--n-examples", "2", "--device", "auto"], capsys
    )
    assert code == 0 and "| retrieval | identity | full |" in out, err
