"""The documentation's commands and code run as written, in README.md, docs/*.md and CONTRIBUTING.md: every
``rltr ...`` command line parses (flags exist, values are valid), the quick ones run on the built-in model,
every Python block executes (a block that uses ``routers/default`` gets a freshly initialised router for the
built-in model there: its weights do not change what the code does), relative links and images resolve, and
docs/cli.md lists every flag of the parser.

A block preceded by the line ``<!-- not run -->`` is illustrative only: its commands are still parsed, its
Python is not executed. Use it sparingly (a GPU, a download, minutes of work)."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "CONTRIBUTING.md"]
QUICK = ("apply", "data check", "zoo list")  # commands cheap enough to run here, on the built-in model
NOT_RUN = "<!-- not run -->"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)\n(?P<body>.*?)^(?P=indent)```", flags=re.S | re.M)


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def blocks(language: str) -> list[tuple[str, int, str, bool]]:
    """(file, index within the file, code, runnable) for every fenced block of ``language`` in the docs."""
    out = []
    for path in DOCS:
        text = path.read_text()
        found = [m for m in FENCE.finditer(text) if m.group("lang") == language]
        for i, m in enumerate(found):
            before = text[: m.start()].rstrip().splitlines()
            code = "\n".join(line[len(m.group("indent")) :] for line in m.group("body").splitlines()) + "\n"
            out.append((_name(path), i, code, not (before and before[-1].strip() == NOT_RUN)))
    return out


def rltr_lines() -> list[tuple[str, list[str]]]:
    """Every ``rltr ...`` / ``python -m rltr ...`` command of the bash blocks (continuations joined, comments
    cut), as (file, argv)."""
    out = []
    for name, _, block, _ in blocks("bash"):
        for line in re.split(r"\n| && ", block.replace("\\\n", " ")):
            line = line.split(" #")[0].strip()
            words = shlex.split(line, comments=True) if line else []  # a whole-line comment may hold an apostrophe
            if not words:
                continue
            if "-m" in words and words[words.index("-m") + 1 : words.index("-m") + 2] == ["rltr"]:
                words = ["rltr", *words[words.index("-m") + 2 :]]  # python / accelerate launch / torchrun ... -m rltr ...
            if words[:1] == ["rltr"] and "..." not in words:
                out.append((name, words[1:]))
    return out


def _id(item) -> str:
    return f"{item[0]}: {' '.join(item[1])[:60]}"


def test_the_docs_show_many_commands():
    commands = {argv[0] for _, argv in rltr_lines()}
    assert {"train", "export", "evaluate", "apply", "demo", "zoo", "data", "ablate"} <= commands, commands


def test_the_readme_is_a_front_door():
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= 200, f"README.md has {n} lines; move details to docs/ (at most 200)"


@pytest.mark.parametrize("item", rltr_lines(), ids=_id)
def test_every_rltr_command_parses(item):
    from rltr.cli.main import build_parser

    build_parser().parse_args(item[1])  # argparse exits (SystemExit) on an unknown flag or a bad value


@pytest.mark.parametrize("item", [it for it in rltr_lines() if any(" ".join(it[1]).startswith(q) for q in QUICK)], ids=_id)
def test_quick_commands_run(item, tmp_path, monkeypatch, capsys):
    from rltr.cli.main import main

    argv = item[1]
    monkeypatch.chdir(_workdir(tmp_path, " ".join(argv)))
    assert main(argv) == 0, capsys.readouterr().err


PYTHON = blocks("python")


@pytest.mark.parametrize("block", [b for b in PYTHON if b[3]], ids=lambda b: f"{b[0]} python block {b[1]}")
def test_python_blocks_run(block, tmp_path, monkeypatch):
    name, index, code, _ = block
    monkeypatch.chdir(_workdir(tmp_path, code))
    exec(compile(code, f"{name} python block {index}", "exec"), {"__name__": "__docs__"})


def test_few_blocks_are_illustrative_only():
    skipped = [f"{b[0]} python block {b[1]}" for b in PYTHON if not b[3]]
    assert len(skipped) <= max(2, len(PYTHON) // 5), f"too many {NOT_RUN} blocks: {skipped}"


@pytest.mark.parametrize("path", DOCS, ids=_name)
def test_relative_links_and_images_resolve(path):
    text = FENCE.sub("", path.read_text())
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    missing = [t for t in targets if "://" not in t and not t.startswith("#") and not (path.parent / t.split("#")[0]).exists()]
    assert not missing, f"{_name(path)} links to missing files: {missing}"


def test_cli_page_lists_every_command_and_flag():
    from rltr.cli.main import build_parser

    page = (ROOT / "docs" / "cli.md").read_text()
    missing = []

    def walk(parser: argparse.ArgumentParser, prefix: str):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    if f"`rltr {prefix}{name}`" not in page and not isinstance(_subparsers(sub), argparse._SubParsersAction):
                        missing.append(f"rltr {prefix}{name}")
                    walk(sub, f"{prefix}{name} ")
            elif prefix:
                missing.extend(
                    f"rltr {prefix}{flag}" for flag in action.option_strings if flag not in ("-h", "--help") and f"`{flag}" not in page
                )

    walk(build_parser(), "")
    assert not missing, f"docs/cli.md does not list: {missing}"


def _subparsers(parser: argparse.ArgumentParser):
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _workdir(tmp_path: Path, text: str) -> Path:
    """A folder to run doc code in: the repo's examples/ and configs/, and ``routers/default`` (a freshly
    initialised router for the built-in model, decision layer 0) when the code uses it."""
    for name in ("examples", "configs"):
        (tmp_path / name).symlink_to(ROOT / name)
    if "routers/default" in text:
        from rltr.backbones import load_backbone
        from tests.routers import random_router

        path = random_router(load_backbone("default"), tmp_path / "routers", decision_layers=[0])
        path.rename(tmp_path / "routers" / "default")
    return tmp_path
