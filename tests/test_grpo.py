"""``rltr train --algo grpo`` (trl's GRPOTrainer) and ``rltr evaluate --output-length`` through the CLI, on a
tiny random model over the built-in vocabulary: a few steps, seconds."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from rltr.cli.main import main
from rltr.tasks.vocab import BOS_ID, PAD_ID, SEP_ID, VOCAB_SIZE, build_tokenizer

pytest.importorskip("trl")  # the optional extra; `make install` installs it so these tests run in `make test`

TASK_META = {"tasks": ["chain"], "context_len": 16, "spec": {"task_kwargs": {"chain": {"n_edges": 3, "n_nodes": 4}}}}
QUICK = ["--set", "trl.max_steps=2", "--set", "trl.per_device_train_batch_size=8", "--set", "n_prompts=16", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A GPT-2 2L x 32 over rltr's vocabulary, briefly trained on a small chain task's verbose completions
    (so its samples differ in length and reward), saved as an HF folder naming that task."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from rltr.tasks import collate, get_task
    from rltr.zoo.build import answer_loss

    out = tmp_path_factory.mktemp("tiny_verbose")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB_SIZE, n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=BOS_ID,
                        eos_token_id=SEP_ID, pad_token_id=PAD_ID)  # fmt: skip
    model = GPT2LMHeadModel(config)
    task = get_task("chain", context_len=TASK_META["context_len"], **TASK_META["spec"]["task_kwargs"]["chain"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(60):
        batch = collate(task.examples(32, seed=step, split="train"), PAD_ID)
        loss = answer_loss(model(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()).logits, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(out)
    build_tokenizer().save_pretrained(out)
    (out / "rltr_zoo.json").write_text(json.dumps(TASK_META))
    return out


def _train(tiny_model, tmp_path, *extra):
    args = ["train", "--algo", "grpo", "--config", "configs/grpo_length.yaml", "--set", f"model={tiny_model}",
            "--set", f"runs_dir={tmp_path / 'runs'}", *QUICK, *extra]  # fmt: skip
    return main(args)


def test_grpo_steps_through_the_cli_export_a_loadable_model(tiny_model, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert _train(tiny_model, tmp_path, "--set", "length_weight=0.05") == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("chain__grpo_length__0__") and f"run folder: {run}" in capsys.readouterr().out
    log = json.loads((run / "grpo.json").read_text())
    assert log["steps"] == 2 and any("completions/mean_length" in row for row in log["log_history"])
    model_dir = run / "model"
    assert not list(model_dir.glob("*.bin")) and not list(model_dir.glob("*.pt"))  # safetensors only, no pickle
    meta = json.loads((model_dir / "rltr_zoo.json").read_text())
    assert meta["tasks"] == ["chain"] and meta["context_len"] == 16 and meta["length_weight"] == 0.05
    assert meta["spec"]["task_kwargs"]["chain"] == {"n_edges": 3, "n_nodes": 4}
    trained = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert tok.eos_token_id == SEP_ID and tok.pad_token_id == PAD_ID
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    changed = [n for (n, p), q in zip(trained.named_parameters(), base.parameters()) if not torch.equal(p, q)]
    assert changed, "GRPO steps left every weight unchanged"
    out = trained.generate(**tok("<bos> <chain> f1 n1n2 <sep> n1 h1", return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert out.shape[1] > 7


def test_evaluate_output_length_through_the_cli(tiny_model, tmp_path, capsys):
    assert _train(tiny_model, tmp_path) == 0
    (run,) = (tmp_path / "runs").iterdir()
    capsys.readouterr()
    rc = main(["evaluate", "--output-length", "--model", str(tiny_model), "--trained", str(run), "--caps", "2",
               "--prompt-reducer", "window", "--n-examples", "8", "--out", str(tmp_path / "report")])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0 and "cap:2" in out and "early_stop" in out and "greedy+window@0.25" in out
    assert "| grpo_length | greedy |" in out  # a run is labelled by its name
    results = json.loads((tmp_path / "report" / "results.json").read_text())["results"]
    assert len(results) == 2 + 1 + 1 + 2  # two models greedy, one cap, early stop, two models with the reducer
    assert (tmp_path / "report" / "output_length.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("length_weight=-0.1", "length_weight must be >= 0, got -0.1"),
        ("task=nope", "unknown task 'nope'; known tasks:"),
        ("task=retrieval", "task 'retrieval' is not generative"),
        ("trl.no_such_key=1", "no_such_key"),
        ("trl.seed=3", "trl.seed is set by rltr"),
        ("lenght_weight=0.1", "unknown config key(s) ['lenght_weight']"),
    ],
)
def test_bad_grpo_config_exits_2_with_one_line(tiny_model, tmp_path, capsys, override, message):
    assert _train(tiny_model, tmp_path, "--set", override) == 2
    err = capsys.readouterr().err
    assert err.startswith("rltr train: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing written


def test_missing_trl_is_one_clear_line(tiny_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "trl", None)  # import trl -> ImportError
    assert _train(tiny_model, tmp_path) == 2
    err = capsys.readouterr().err
    assert "needs trl, an optional extra: pip install -e '.[trl]'" in err and err.count("\n") == 1, err
