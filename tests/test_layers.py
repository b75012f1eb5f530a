"""The package's layers import one way: each module imports only its own layer or lower ones, the applications
do not import each other, nothing imports a module inside a function except the CLI (start-up time), and the
import graph has no cycle even counting those. CONTRIBUTING.md describes the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rltr"

# lowest first; a module may import its own layer and the ones before it
LAYERS: list[tuple[str, ...]] = [
    ("rltr.core",),  # token-state mechanics: ops, FLOPs model, decisions, the budget rule, decider, features
    ("rltr.backbones",),  # one adapter per model family; where built-in models live
    ("rltr.inference",),  # the patched HF forward / generate, KV caches, greedy generation
    ("rltr.tasks",),  # examples, batches, scoring
    ("rltr.policies",),  # inference-time networks, router files
    ("rltr.reducers",),  # heuristics and routers behind one interface
    ("rltr.peers",),  # other libraries' methods (kvpress presses) beside the reducers
    ("rltr.teachers",),  # label-free imitation targets read from the frozen model
    ("rltr.config",),  # training/eval settings, YAML
    ("rltr.envs",),  # the Gymnasium env and its batched engine
    ("rltr.runs",),  # what applications write: run folders, results files
    ("rltr.training", "rltr.evaluation", "rltr.outlen", "rltr.zoo"),  # applications: siblings
    ("rltr.cli", "rltr.__main__"),  # the command line
    ("rltr",),  # the package root: the public API
]
APPLICATIONS = set(LAYERS[-3])
DEFERRED_OK = ("rltr.cli", "rltr.__main__")  # imports inside functions only here (start-up time)


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        rel = f.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def group_of(module: str) -> str:
    """The layer group a module belongs to: the longest prefix listed in LAYERS."""
    names = [g for layer in LAYERS for g in layer if module == g or module.startswith(g + ".")]
    if not names:
        raise AssertionError(f"module {module} belongs to no layer in tests/test_layers.py: add its folder to LAYERS")
    return max(names, key=len)


def level_of(module: str) -> int:
    group = group_of(module)
    return next(i for i, layer in enumerate(LAYERS) if group in layer)


def _imports(module: str, tree: ast.AST):
    """(imported rltr module, line, inside a function?) for every import in ``tree``."""

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # annotations only
            if isinstance(child, ast.Import):
                for a in child.names:
                    yield a.name, child.lineno, in_function
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                for a in child.names:
                    full = f"{child.module}.{a.name}"
                    yield (full if full in MODULES else child.module), child.lineno, in_function
            yield from visit(child, inner)

    for name, line, deferred in visit(tree, False):
        if name == "rltr" or name.startswith("rltr."):
            yield name, line, deferred


def edges() -> list[tuple[str, str, int, bool]]:
    out = []
    for module, path in MODULES.items():
        for target, line, deferred in _imports(module, ast.parse(path.read_text())):
            out.append((module, target, line, deferred))
    return out


def violations(all_edges) -> list[str]:
    bad = []
    for module, target, line, deferred in all_edges:
        if target == "rltr" and module != "rltr":
            bad.append(f"{module}:{line} imports the package root (the public API); import the module that defines it")
            continue
        if target == "rltr":
            continue
        src, dst = group_of(module), group_of(target)
        if level_of(target) > level_of(module):
            bad.append(f"{module}:{line} imports {target}: upward ({src} is below {dst})")
        elif src != dst and src in APPLICATIONS and dst in APPLICATIONS:
            bad.append(f"{module}:{line} imports {target}: applications {src} and {dst} are siblings")
        if deferred and not module.startswith(DEFERRED_OK):
            bad.append(f"{module}:{line} imports {target} inside a function (deferred imports are for the CLI only)")
    return bad


def cycles(all_edges) -> list[list[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, target, _, _ in all_edges:
        if target in graph and target != module:
            graph[module].add(target)
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def strong(v):  # Tarjan
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    return found


def test_every_module_belongs_to_a_layer():
    for module in MODULES:
        group_of(module)


def test_imports_flow_one_way():
    assert violations(edges()) == []


def test_no_import_cycle_even_counting_imports_inside_functions():
    assert cycles(edges()) == []


@pytest.mark.parametrize(
    ("module", "target", "deferred", "expected"),
    [
        ("rltr.core.ops", "rltr.reducers.base", False, "upward"),
        ("rltr.training.ppo", "rltr.evaluation.run", False, "siblings"),
        ("rltr.tasks.base", "rltr.inference.causal", True, "inside a function"),
        ("rltr.envs.engine", "rltr", False, "package root"),
    ],
)
def test_the_check_catches_what_it_forbids(module, target, deferred, expected):
    assert any(expected in v for v in violations([(module, target, 1, deferred)]))
    assert cycles([("rltr.core.ops", "rltr.core.compute", 1, False), ("rltr.core.compute", "rltr.core.ops", 1, False)])
