"""The two halves never mix: the engine never imports discord, the bot never imports torch.

import-linter checks the declared boundaries on the source (`make lint`, contracts in
pyproject.toml); these tests check what a fresh interpreter really loads."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _modules_after(code: str) -> set[str]:
    script = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


@pytest.mark.slow
def test_generator_never_imports_discord() -> None:
    loaded = _modules_after(
        "import generator.cli.commands, generator.method.engine, generator.models.loaders, "
        "generator.method.output, generator.worker.core, generator.worker.redis_streams"
    )
    assert "torch" in loaded
    assert not any(name == "discord" or name.startswith("discord.") for name in loaded)


def test_cli_module_does_not_import_torch() -> None:
    loaded = _modules_after("import generator.cli.commands")
    assert "torch" not in loaded


CONTRACT = ", ".join(
    f"generator.contract.{path.stem}"
    for path in sorted((ROOT / "generator/contract").glob("*.py"))
    if path.stem != "__init__"
)


def test_bot_process_never_imports_torch() -> None:
    loaded = _modules_after(
        "import bot.front.app, bot.ops.launcher, pseudo_dalle.cli, bot.jobs.desk, "
        "bot.jobs.scheduler, bot.workers.local, bot.workers.redis_streams, "
        f"generator.intake.images, generator.media.animation, {CONTRACT}\n"
        "from generator.contract.tokens import token_count\n"
        "token_count('an image of the music')"
    )
    assert "discord" in loaded
    assert "torch" not in loaded


def test_the_contract_imports_neither_half_nor_numpy_or_pil() -> None:
    assert "generator.contract.protocol" in CONTRACT
    loaded = _modules_after(f"import {CONTRACT}")
    assert "pydantic" in loaded
    assert not {"torch", "numpy", "PIL"} & loaded
    assert not any(name == "discord" or name.startswith("discord.") for name in loaded)


def _imports_of(package: str) -> dict[str, set[str]]:
    """Which of `package`'s modules each of its modules imports, also under TYPE_CHECKING."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
        graph[module] = found
    return {name: {m for m in found if m in graph and m != name} for name, found in graph.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import circles: every path that comes back to where it started (each found once)."""
    found: list[list[str]] = []

    def walk(path: list[str]) -> None:
        for following in sorted(graph[path[-1]]):
            if following == path[0]:
                found.append(path)
            elif following not in path and following > path[0]:
                walk([*path, following])

    for start in sorted(graph):
        walk([start])
    return found


def test_the_cycle_finder_finds_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _cycles(graph) == [["a", "b", "c"], ["e"]]
    assert _cycles({"x": {"y"}, "y": {"x"}}) == [["x", "y"]]


def test_bot_has_no_import_circles() -> None:
    graph = _imports_of("bot")
    parts = {"bot.front.app", "bot.jobs.scheduler", "bot.front.cogs.draw", "bot.ops.launcher"}
    assert parts <= set(graph)
    assert "bot.jobs.desk" in graph["bot.front.cogs.draw"]
    assert _cycles(graph) == []


def test_generator_has_no_import_circles() -> None:
    graph = _imports_of("generator")
    assert "generator.method.engine" in graph["generator.worker.core"]
    assert _cycles(graph) == []
