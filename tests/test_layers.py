"""The package's import graph (imports inside functions counted): no cycle, the core layer
imports nothing from the layers above it, the world sits below the trainers (building a world
sits above both), and no production module imports the tests' `testing` helpers; no module over
400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "tokenreward"
CORE = (
    "types",
    "align",
    "encoding",
    "gguf",
    "models",
    "rewards",
    "rewarders",
    "losses",
    "generation",
    "logprobs",
    "io",
    "options",
    "jsonl",
    "progress",
    "registry",
    "config",
    "runnable",
    "bpe",
    "errors",
)
UPPER = ("trainers", "world", "worldbuild", "bench", "viz", "commands", "cli", "serve", "integrations")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every tokenreward module `path` imports, at any depth of the file."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tokenreward")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            if base.startswith("tokenreward"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    return {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}


def layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_the_core_imports_nothing_from_the_layers_above():
    bad = sorted((m, d) for m, deps in graph().items() if layer(m) in CORE for d in deps if layer(d) in UPPER)
    assert not bad, bad


def test_the_world_sits_below_the_trainers():
    """The world (families, oracle, `World`) imports no upper layer: the trainers grade with it,
    and `worldbuild` trains the world's models with the trainers."""
    upper = set(UPPER) - {"world"}
    bad = sorted((m, d) for m, deps in graph().items() if layer(m) == "world" for d in deps if layer(d) in upper)
    assert not bad, bad


def test_production_code_does_not_import_the_testing_helpers():
    bad = sorted((m, d) for m, deps in graph().items() if layer(m) != "testing" for d in deps if layer(d) == "testing")
    assert not bad, bad


def test_no_import_cycle():
    edges = graph()
    # package __init__ files that only re-export their own submodules form no cycle of meaning
    edges = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in edges.items()}
    seen, stack, cycles = set(), [], []

    def visit(node: str) -> None:
        if node in stack:
            cycles.append(stack[stack.index(node) :] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            visit(nxt)
        stack.pop()

    for module in sorted(edges):
        visit(module)
    assert not cycles, cycles[:5]


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_modules_stay_under_400_lines(path):
    assert len(path.read_text().splitlines()) <= 400
