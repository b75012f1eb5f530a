"""The README's commands and code run as written: every ``rltr`` command line parses (flags exist, values
are valid), the quick ones run on the built-in model, and every Python block executes (a block that uses
``routers/default`` gets a freshly initialised router for the built-in model there: its weights do not
change what the code does)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
QUICK = ("apply", "data check", "zoo list")  # commands cheap enough to run here, on the built-in model


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def rltr_lines() -> list[list[str]]:
    """Every ``rltr ...`` command of the README's bash blocks (continuations joined, comments cut), as argv."""
    out = []
    for block in blocks("bash"):
        for line in re.split(r"\n| && ", block.replace("\\\n", " ")):
            line = line.split(" #")[0].strip()
            words = shlex.split(line) if line else []
            if "-m" in words and words[words.index("-m") + 1 : words.index("-m") + 2] == ["rltr"]:
                words = ["rltr", *words[words.index("-m") + 2 :]]  # accelerate launch / torchrun ... -m rltr ...
            if words[:1] == ["rltr"] and "..." not in words:
                out.append(words[1:])
    return out


def test_the_readme_shows_many_commands():
    commands = {argv[0] for argv in rltr_lines()}
    assert {"train", "export", "evaluate", "apply", "demo", "zoo", "data", "ablate"} <= commands, commands


@pytest.mark.parametrize("argv", rltr_lines(), ids=lambda a: " ".join(a)[:60])
def test_every_rltr_command_parses(argv):
    from rltr.cli.main import build_parser

    build_parser().parse_args(argv)  # argparse exits (SystemExit) on an unknown flag or a bad value


@pytest.mark.parametrize("argv", [a for a in rltr_lines() if any(" ".join(a).startswith(q) for q in QUICK)],
                         ids=lambda a: " ".join(a)[:60])
def test_quick_commands_run(argv, tmp_path, monkeypatch, capsys):
    from rltr.cli.main import main

    work = _workdir(tmp_path, " ".join(argv))
    monkeypatch.chdir(work)
    assert main(argv) == 0, capsys.readouterr().err


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_blocks_run(index, tmp_path, monkeypatch):
    code = blocks("python")[index]
    monkeypatch.chdir(_workdir(tmp_path, code))
    exec(compile(code, f"README python block {index}", "exec"), {})


def _workdir(tmp_path: Path, text: str) -> Path:
    """A folder to run README code in: the repo's examples/ and configs/, and ``routers/default`` (a freshly
    initialised router for the built-in model, decision layer 0) when the code uses it."""
    for name in ("examples", "configs"):
        (tmp_path / name).symlink_to(ROOT / name)
    if "routers/default" in text:
        from rltr.backbones import load_backbone
        from tests.routers import random_router

        path = random_router(load_backbone("default"), tmp_path / "routers", decision_layers=[0])
        path.rename(tmp_path / "routers" / "default")
    return tmp_path
