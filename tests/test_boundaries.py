"""The two halves never mix: the engine never imports discord, the bot never imports torch."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    script = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def test_generator_never_imports_discord() -> None:
    loaded = _modules_after(
        "import generator.cli, generator.engine, generator.loaders, generator.output, "
        "generator.synthetic"
    )
    assert "torch" in loaded
    assert not any(name == "discord" or name.startswith("discord.") for name in loaded)


def test_cli_module_does_not_import_torch() -> None:
    loaded = _modules_after("import generator.cli")
    assert "torch" not in loaded


def test_bot_process_never_imports_torch() -> None:
    loaded = _modules_after(
        "import bot.app, bot.launcher, bot.cli, bot.drawing, bot.runner\n"
        "from generator.tokens import token_count\n"
        "token_count('an image of the music')"
    )
    assert "discord" in loaded
    assert "torch" not in loaded


def test_protocol_imports_neither_half() -> None:
    loaded = _modules_after("import generator.protocol")
    assert "pydantic" in loaded
    assert "torch" not in loaded
    assert not any(name == "discord" or name.startswith("discord.") for name in loaded)
