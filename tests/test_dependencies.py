"""Every third-party module that bot/ and generator/ import is a declared dependency: arriving
as a dependency of another package is not enough, since that package may drop it."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OWN = {"bot", "generator"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {
        _normalise(re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0])
        for requirement in requirements
    }


def declared(pyproject: Path) -> set[str]:
    """The distributions `[project]` asks for, in its dependencies or an extra other than dev."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    wanted = [
        *project["dependencies"],
        *(r for name, rs in extras.items() if name != "dev" for r in rs),
    ]
    return _names(wanted) - {"pseudo-dalle"}


def imported(packages: set[str]) -> dict[str, str]:
    """Third-party top-level modules imported anywhere in `packages`, each with one file that
    imports it."""
    found: dict[str, str] = {}
    for package in sorted(packages):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if (
                        top not in sys.stdlib_module_names
                        and top not in OWN
                        and top != "__future__"
                    ):
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def undeclared(modules: dict[str, str], wanted: set[str]) -> list[str]:
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for module, where in sorted(modules.items()):
        owners = {_normalise(d) for d in distributions.get(module, [])}
        if not owners:
            problems.append(f"{module} (imported by {where}) is not installed")
        elif not owners & wanted:
            problems.append(
                f"{module} (imported by {where}) comes from {sorted(owners)}, "
                "which pyproject.toml does not declare"
            )
    return problems


def test_every_imported_module_is_declared() -> None:
    modules = imported(OWN)
    # The modules below are imported, so a missing one would show up here.
    assert {"torch", "discord", "PIL", "clip", "dall_e", "yarl"} <= set(modules)
    assert undeclared(modules, declared(ROOT / "pyproject.toml")) == []


def test_a_module_that_arrives_only_through_another_package_is_reported(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "pseudo-dalle"\ndependencies = ["aiohttp>=3.9", "Pillow>=13"]\n'
        '[project.optional-dependencies]\nmultilingual = ["sentence_transformers"]\n'
        'dev = ["yarl"]\n'
    )
    wanted = declared(pyproject)
    assert wanted == {"aiohttp", "pillow", "sentence-transformers"}
    modules = {
        "aiohttp": "bot/app.py",
        "yarl": "bot/launcher.py",
        "PIL": "generator/output.py",
        "sentence_transformers": "generator/text_encoders.py",
    }
    (problem,) = undeclared(modules, wanted)
    assert problem.startswith("yarl (imported by bot/launcher.py) comes from ['yarl']")
