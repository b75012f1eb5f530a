"""Datasets from JSONL files: round trip with the built-in tasks (same tokens, same numbers), spans, splits,
chat templates, answers from the model, and one clear error per bad input."""

import json
import re

import pytest
import torch

from rltr.backbones import load_backbone, wrap
from rltr.cli.main import main
from rltr.evaluation.sweep import evaluate
from rltr.tasks import TASKS, ExamplePool, get_task, load_task, task_slug
from rltr.tasks.export import export_task
from rltr.tasks.jsonl import load_jsonl, load_tokenizer
from tests.conftest import tiny_gpt2, tiny_task_gpt2


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("default")


@pytest.fixture(scope="module")
def default():
    return load_backbone("default")


def _write(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


@pytest.mark.parametrize(
    "name", sorted(n for n, cls in TASKS.items() if not cls.generative and cls.kind == "tokens" and not cls.with_images)
)
def test_export_round_trip_gives_the_same_examples(name, tmp_path, tokenizer):
    task = get_task(name)
    path = export_task(task, 12, tmp_path / f"{name}.jsonl", seed=5, split="validation")
    read = load_jsonl(path, tokenizer=tokenizer).examples(12, split="test")
    assert read == task.examples(12, seed=5, split="validation")


def test_generative_tasks_are_not_exported(tmp_path):
    with pytest.raises(ValueError, match="generated output"):
        export_task(get_task("chain"), 3, tmp_path / "c.jsonl")
    with pytest.raises(ValueError, match="classes inputs"):
        export_task(get_task("digits"), 3, tmp_path / "c.jsonl")
    assert not (tmp_path / "c.jsonl").exists()


def test_evaluating_the_exported_file_equals_the_builtin_task(default, tmp_path):
    """Same tokens, same seed: every method's accuracy, compute and tokens kept are identical (query-aware and
    query-agnostic; the oracle reads the exported spans)."""
    path = tmp_path / "r.jsonl"
    assert main(["data", "export", "retrieval", "--n", "24", "--seed", "3", "--out", str(path)]) == 0
    builtin, from_file = get_task("retrieval"), load_task(f"jsonl:{path}", default)
    methods = ["identity", "oracle", "attn_topk", "random"]
    for query_aware in (True, False):
        kw = dict(n_examples=24, batch_size=8, seed=3, decision_layers=[0], query_aware=query_aware, progress=False)
        a = evaluate(default, [builtin], methods, [0.1], **kw)
        b = evaluate(default, [from_file], methods, [0.1], **kw)
        numbers = [[(r.method, r.accuracy, r.compute_fraction, r.kept_ratio, r.n_examples) for r in res] for res in (a, b)]
        assert numbers[0] == numbers[1]
    assert {r.method: r.accuracy for r in a}["oracle"] > {r.method: r.accuracy for r in a}["random"]


def test_training_on_the_exported_file_equals_training_on_the_same_examples(tmp_path, tokenizer):
    """PPO on the JSONL task and on the built-in task's same examples (frozen in a pool): identical weights."""
    from stable_baselines3 import PPO

    from rltr.envs import BatchedTokenReductionEnv
    from rltr.training.sb3_policy import TokenPolicy

    backbone = wrap(tiny_task_gpt2(n_layer=2))
    retrieval = get_task("retrieval", context_len=48)
    path = export_task(retrieval, 16, tmp_path / "train.jsonl", seed=0, split="train")
    tasks = [ExamplePool.from_task(retrieval, 16, seed=0, splits=("train",)), load_jsonl(path, tokenizer=tokenizer)]
    weights = []
    for task in tasks:
        env = BatchedTokenReductionEnv(backbone, task, n_envs=4, max_tokens=64, decision_layers=[1])
        env.seed(7)
        model = PPO(TokenPolicy, env, n_steps=8, batch_size=16, n_epochs=2, seed=7, device="cpu", policy_kwargs={"hidden": 16})
        model.learn(64)
        weights.append(torch.cat([p.detach().flatten() for p in model.policy.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_train_from_a_jsonl_file_through_the_cli(tmp_path):
    model = tiny_task_gpt2(n_layer=2)
    model.save_pretrained(tmp_path / "model")
    load_tokenizer("default").save_pretrained(tmp_path / "model")
    data = export_task(get_task("retrieval", context_len=40), 8, tmp_path / "my data.jsonl", split="train")
    sets = [
        "total_timesteps=32",
        "n_envs=2",
        "imitation.n_episodes=4",
        "ppo={n_steps: 16, batch_size: 16, n_epochs: 1}",
        f"env.model={tmp_path / 'model'}",
        f"env.task=jsonl:{data}",
        "env.max_tokens=auto",
        f"runs_dir={tmp_path / 'runs'}",
    ]
    assert main(["train", *(a for s in sets for a in ("--set", s)), "--no-progress"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("jsonl-my_data__default__0__") and (run / "final_model.zip").is_file()
    assert task_slug("retrieval") == "retrieval"


def test_spans_map_to_tokens_and_relevant_any_unites_questions(tmp_path, tokenizer):
    ctx = "<bos> <retrieval> f1 k2v3 f4 k5v6 f7"
    lines = [
        {"context": ctx, "question": " <sep> k2", "answer": " v3", "relevant": [[21, 25]], "protected": [[0, 5]]},
        {"context": ctx, "question": " <sep> k5", "answer": " v6", "relevant": [[28, 33]]},  # a span inside a word
        {"context": "<bos> f1", "question": " <sep>", "answer": " f1"},
    ]
    task = load_jsonl(_write(tmp_path / "s.jsonl", lines), tokenizer=tokenizer)
    a, b, c = task.examples(3)
    assert a.relevant == [3] and b.relevant == [5] and a.protected == [0] and a.relevant_any == b.relevant_any == [3, 5]
    assert a.context_len == 7 and a.n_answer == 1 and len(a.input_ids) == 10
    assert c.relevant == [] and c.relevant_any == []


def test_seeded_split_keeps_contexts_apart_and_files_give_splits(tmp_path, tokenizer):
    lines = [{"context": f"<bos> f{i % 10}", "question": " <sep>", "answer": f" f{i % 10}"} for i in range(40)]
    path = _write(tmp_path / "all.jsonl", lines)
    task = load_jsonl(path, tokenizer=tokenizer, split=[0.6, 0.2, 0.2], split_seed=1)
    contexts = {s: {tuple(e.input_ids[:2]) for e in task.splits[s]} for s in task.splits}
    assert [len(contexts[s]) for s in ("train", "validation", "test")] == [6, 2, 2]
    assert not (contexts["train"] & contexts["test"]) and not (contexts["train"] & contexts["validation"])
    assert sum(len(v) for v in task.splits.values()) == 40
    other = load_jsonl(path, tokenizer=tokenizer, split=[0.6, 0.2, 0.2], split_seed=2)
    assert other.splits["test"] != task.splits["test"]
    test_file = _write(tmp_path / "test.jsonl", lines[:3])
    files = load_jsonl(path, tokenizer=tokenizer, test=str(test_file))
    assert len(files.examples(100, split="test")) == 3 and len(files.splits["train"]) == 40
    with pytest.raises(ValueError, match="no 'validation' examples"):
        files.examples(5, split="validation")


def test_chat_template_wraps_context_and_question(tmp_path, tokenizer):
    tok = load_tokenizer("default")
    tok.chat_template = (
        "{% for m in messages %}<bos> <majority> {{ m['content'] }}{% endfor %}{% if add_generation_prompt %} <sep>{% endif %}"
    )
    path = _write(tmp_path / "c.jsonl", [{"context": "f1 f2", "question": " k3", "answer": " v3"}])
    (e,) = load_jsonl(path, tokenizer=tok, chat_template=True).examples(1)
    words = tok.convert_ids_to_tokens(e.input_ids)
    assert words == ["<bos>", "<majority>", "f1", "f2", "k3", "<sep>", "v3"]
    assert e.context_len == 4 and e.protected == [0, 1] and e.n_answer == 1
    with pytest.raises(ValueError, match="no chat template"):
        load_jsonl(path, tokenizer=tokenizer, chat_template=True)


def test_raw_prompts_are_answered_by_the_model(tmp_path, default, tokenizer):
    """Lines without an answer get the full model's greedy answer; the full model then scores 1.0 on them."""
    from rltr.evaluation.run import run_method
    from rltr.reducers import get_reducer
    from rltr.tasks.export import example_record

    examples = get_task("selective_copy").examples(6, seed=2)
    lines = [{k: v for k, v in example_record(e).items() if k != "answer"} for e in examples]
    path = _write(tmp_path / "raw.jsonl", lines)
    with pytest.raises(ValueError, match=r"raw.jsonl:1: missing field 'answer'"):
        load_jsonl(path, default)
    task = load_jsonl(path, default, model_answers=4)
    assert [x.answer for x in task.examples(6)] == [x.answer for x in examples]  # the built-in model answers right
    r = run_method(default, task, get_reducer("identity"), None, n_examples=6, batch_size=6, score="fidelity")
    assert r.accuracy == 1.0


BAD_LINES = [
    ("missing.jsonl", ['{"context": "<bos> f1", "answer": " f1"}'], "missing.jsonl:1: missing field 'question'"),
    ("empty.jsonl", [""], "empty.jsonl: no examples"),
    ("notjson.jsonl", ['{"context": "<bos> f1", "question": " <sep>", "answer": " f1"}', "{oops"], "notjson.jsonl:2: not a JSON object"),
    ("type.jsonl", ['{"context": 3, "question": " <sep>", "answer": " f1"}'], "type.jsonl:1: field 'context' must be a string, got '3'"),
    (
        "span.jsonl",
        ['{"context": "<bos> f1", "question": " <sep>", "answer": " f1", "relevant": [[2, 99]]}'],
        r"span.jsonl:1: relevant span \[2, 99\]",
    ),
    (
        "longctx.jsonl",
        [json.dumps({"context": " ".join(["f1"] * 300), "question": " <sep>", "answer": " f1"})],
        "longctx.jsonl:1: context of 300 tokens is longer than the 256 positions of model 'default'",
    ),
    (
        "longans.jsonl",
        [json.dumps({"context": " ".join(["f1"] * 200), "question": " <sep>", "answer": " f1" * 60})],
        r"longans.jsonl:1: answer of 60 tokens does not fit the 256 positions of model 'default' \(context 200 \+ question 1",
    ),
]


@pytest.mark.parametrize("name,lines,needle", BAD_LINES, ids=[b[0] for b in BAD_LINES])
def test_bad_files_exit_2_naming_file_line_and_value(name, lines, needle, tmp_path, capsys):
    path = tmp_path / name
    path.write_text("\n".join(lines))
    assert main(["data", "check", str(path)]) == 2
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.strip() and not x.startswith("Loading weights")]  # transformers' own progress bar
    assert line.startswith("rltr data: error:") and re.search(needle, line), err


def test_non_utf8_line_is_named(tmp_path, capsys):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"context": "<bos> f1", "question": " <sep>", "answer": " f1"}\n{"context": "caf\xe9"}\n')
    assert main(["evaluate", "--task", f"jsonl:{path}", "--n-examples", "2"]) == 2
    assert "latin1.jsonl:2: not UTF-8 text (byte 0xe9 at column 17)" in capsys.readouterr().err


def test_bad_train_leaves_no_run_folder(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"context": "<bos> f1", "question": " <sep>"}\n')
    runs = tmp_path / "runs"
    assert main(["train", "--set", f"env.task=jsonl:{path}", "--set", f"runs_dir={runs}", "--no-progress"]) == 2
    assert "bad.jsonl:1: missing field 'answer'" in capsys.readouterr().err
    assert not runs.exists() or not any(runs.iterdir())
    assert main(["train", "--set", f"env.task=jsonl:{tmp_path / 'nope.jsonl'}", "--set", f"runs_dir={runs}"]) == 2
    assert "nope.jsonl' does not exist" in capsys.readouterr().err


def test_model_without_tokenizer_or_adapter(tmp_path, capsys):
    path = _write(tmp_path / "ok.jsonl", [{"context": "<bos> f1", "question": " <sep>", "answer": " f1"}])
    tiny_gpt2().save_pretrained(tmp_path / "bare")
    assert main(["data", "check", str(path), "--model", str(tmp_path / "bare")]) == 2
    assert f"model '{tmp_path / 'bare'}' has no tokenizer files" in capsys.readouterr().err
    from transformers import OPTConfig, OPTForCausalLM

    OPTForCausalLM(
        OPTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, ffn_dim=32, vocab_size=101, word_embed_proj_dim=32)
    ).save_pretrained(tmp_path / "opt")
    assert main(["data", "check", str(path), "--model", str(tmp_path / "opt")]) == 2
    err = capsys.readouterr().err
    assert "model family 'opt'" in err and "supported: [" in err


def test_unknown_option_and_foreign_vocabulary(tmp_path, tokenizer):
    path = _write(tmp_path / "ok.jsonl", [{"context": "<bos> k7v7", "question": " <sep> k7", "answer": " v7"}])
    with pytest.raises(ValueError, match=r"unknown jsonl task option\(s\) \['chat'\]"):
        load_jsonl(path, tokenizer=tokenizer, chat=True)
    task = load_jsonl(path, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="ok.jsonl:1: token id .* outside the 101 embeddings"):
        task.check_fits(wrap(tiny_gpt2(vocab=101)))


def test_the_shipped_example_file(default, capsys):
    """examples/kv_questions.jsonl: 8 contexts x 3 questions; the query-agnostic oracle keeps the 3 asked pairs."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "kv_questions.jsonl"
    task = load_task(f"jsonl:{path}", default)
    examples = task.examples(100)
    assert len(examples) == 24 and all(len(e.relevant) == 1 and len(e.relevant_any) == 3 for e in examples)
    assert main(["evaluate", "--task", f"jsonl:{path}", "--methods", "identity", "--generate", "--decision-layers", "0"]) == 0
    out = capsys.readouterr().out
    assert "| jsonl:kv_questions.jsonl | identity | full | 0.958 |" in out and "generated exact match" in out
