"""The documentation states what the code declares and does.

The README's and docs/' tables are checked against the declarations they copy
(`generator.contract`, `bot.limits`, the metrics the code registers), the README's sample output
against what the real command line prints, and every module, file, setting and link the pages
name against the checkout.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel

from bot.config import Config
from bot.limits import GuildLimits, HardLimits
from generator.cli.commands import main
from generator.contract.encoders import DEFAULT_MULTILINGUAL
from generator.contract.images import (
    DEFAULT_IMAGE_WEIGHT,
    DEFAULT_INIT_STRENGTH,
    MAX_IMAGE_PROMPTS,
    MAX_INPUT_BYTES,
    MAX_INPUT_PIXELS,
)
from generator.contract.quality import DEFAULT_QUALITY, PRESETS, QUALITIES
from generator.contract.settings import (
    AUTO_STOP_WINDOW,
    DEFAULTS,
    LR_DROP_FACTOR,
    MAX_ITERATIONS,
    MAX_SIDE,
    MIN_SIDE,
    PRECISIONS,
    SIDE_MULTIPLE,
)
from generator.contract.weights import CLIP_WEIGHTS, DEFAULT_DECODER_URL, DEFAULT_ENCODER_URL

from .conftest import ModelFiles

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CHANGELOG = ROOT / "CHANGELOG.md"
# The pages that describe the code as it is (the changelog also names what is gone).
PAGES = (README, *sorted(DOCS.glob("*.md")))


def _outside_code(text: str) -> list[tuple[str, bool]]:
    """Each line of `text`, and whether it is inside a fenced code block (fences included)."""
    lines, fenced = [], False
    for line in text.splitlines():
        fence = line.lstrip().startswith("```")  # also a block indented in a list
        lines.append((line, fenced or fence))
        fenced ^= fence
    return lines


def _section(path: Path, heading: str) -> str:
    """The text under `heading` (a whole heading line, e.g. "## Quality") up to the next
    heading, of any level, outside code blocks."""
    lines = _outside_code(path.read_text())
    start = lines.index((heading, False)) + 1
    end = next(
        (i for i in range(start, len(lines)) if not lines[i][1] and lines[i][0].startswith("#")),
        len(lines),
    )
    return "\n".join(line for line, _ in lines[start:end])


def _code_blocks(text: str) -> list[str]:
    """The contents of the fenced code blocks in `text`."""
    blocks: list[list[str]] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            if fenced:
                blocks.append([])
        elif fenced:
            blocks[-1].append(line)
    return ["\n".join(block) for block in blocks]


def _row(option: str) -> str:
    """The row of the README's command-line table that documents `option`."""
    rows = [line for line in README.read_text().splitlines() if line.startswith(f"| `{option}")]
    assert len(rows) == 1, f"{option}: {rows}"
    return rows[0]


def test_the_command_line_table_states_the_declared_defaults() -> None:
    normal, bar = PRESETS[DEFAULT_QUALITY], "\\|"  # a | inside a Markdown table cell
    expected = {
        "--quality": f"`--quality {bar.join(QUALITIES)}` | a preset of size, cutouts, "
        f"iterations and CLIP models; the options below win over it ({DEFAULT_QUALITY};",
        "--iterations": f"1 to {MAX_ITERATIONS:,} (the quality's: {normal.iterations} at "
        f"{DEFAULT_QUALITY})",
        "--size": f"multiples of {SIDE_MULTIPLE} from {MIN_SIDE} to {MAX_SIDE} (the quality's: "
        f"{normal.size} at {DEFAULT_QUALITY})",
        "--cutouts": f"crops per step (the quality's: {normal.cutouts} at {DEFAULT_QUALITY}), "
        f"Adam learning rate ({DEFAULTS.lr})",
        "--temperature": f"temperature ({DEFAULTS.temperature})",
        "--relaxation": f"({DEFAULTS.relaxation}; see",
        "--init-strength": f"0 to 1 ({DEFAULT_INIT_STRENGTH})",
        "--image-prompt": f"weight {DEFAULT_IMAGE_WEIGHT:g} unless given; repeat for up to "
        f"{MAX_IMAGE_PROMPTS}",
        "--encoder": f"(`{DEFAULT_ENCODER_URL}`)",
        "--decoder": f"(`{DEFAULT_DECODER_URL}`)",
        "--clip-model": f"replaces the quality's models (`{' + '.join(normal.clip_models)}` at "
        f"{DEFAULT_QUALITY})",
        "--multilingual-model": f"(`{DEFAULT_MULTILINGUAL}`)",
        "--lr-drop": f"divide the learning rate by {LR_DROP_FACTOR:g} from this fraction of the "
        f"run on ({DEFAULTS.lr_drop})",
        "--auto-stop": f"averaged over windows of {AUTO_STOP_WINDOW} steps",
        "--cut-schedule": f"({DEFAULTS.cut_schedule})",
    }
    for option, text in expected.items():
        assert text in _row(option), f"README's {option} row should say {text!r}"


def test_the_pictures_sections_state_the_declared_limits() -> None:
    limits = (
        f"at most {MAX_INPUT_BYTES // 2**20} MiB, PNG, JPEG, WebP or GIF (the first frame of an "
        f"animation), at most {MAX_INPUT_PIXELS / 1e6:g} million pixels"
    )
    for path, heading in (
        (README, "## Pictures in"),
        (DOCS / "pictures.md", "## Limits and safe reading"),
    ):
        section = " ".join(_section(path, heading).split())
        assert limits in section, f"{path.name}, {heading}"


def test_the_quality_table_states_the_declared_presets() -> None:
    """Size, cutouts, iterations and models of each preset, in order, as declared; the speed
    page's table names the same qualities in the same order."""
    rows = [line for line in _section(README, "## Quality").splitlines() if line.startswith("| `")]
    assert [row.split("|")[1].strip(" `") for row in rows] == list(QUALITIES)
    for row, quality in zip(rows, QUALITIES, strict=True):
        preset = PRESETS[quality]
        cells = [cell.strip() for cell in row.split("|")[2:6]]
        assert cells == [
            str(preset.size),
            str(preset.cutouts),
            str(preset.iterations),
            " + ".join(preset.clip_models),
        ], quality
    costs = _section(DOCS / "speed.md", "## What each quality costs")
    named = [
        line.split("|")[1].strip(" `") for line in costs.splitlines() if line.startswith("| `")
    ]
    assert named == list(QUALITIES)


def test_the_limits_table_states_the_declared_limits() -> None:
    """Each `name = value` in the operator's column is a `[limits]` default, each in the
    servers' column a `[defaults]` one, and every limit of both is in the table once."""
    section = _section(DOCS / "configuration.md", "## Limits: the operator's and each server's")
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    columns: dict[str, type[BaseModel]] = {"limits": HardLimits, "defaults": GuildLimits}
    seen: dict[str, list[str]] = {column: [] for column in columns}
    for row in rows[1:]:  # the first is the header
        for (column, model), cell in zip(columns.items(), row.split("|")[2:4], strict=True):
            for name, value in re.findall(r"`(\w+) = ([^`]+)`", cell):
                declared = model.model_fields[name].default
                assert tomllib.loads(f"v = {value}")["v"] == declared, f"[{column}] {name}"
                seen[column].append(name)
    for column, model in columns.items():
        assert sorted(seen[column]) == sorted(model.model_fields), column


def test_the_metrics_table_names_every_metric_the_code_declares() -> None:
    declared = {
        name
        for source in ("bot/ops/metrics.py", "generator/worker/metrics.py")
        for name in re.findall(r'"((?:pseudo_dalle|discord)_\w+)"', (ROOT / source).read_text())
    }
    section = _section(DOCS / "metrics.md", "## What is published")
    table = [line for line in section.splitlines() if line.startswith("| `")]
    listed = {
        name.removesuffix("_total")  # prometheus-client adds it to a counter's name
        for row in table
        for name in re.findall(r"`((?:pseudo_dalle|discord)_\w+)`", row.split("|")[1])
    }
    assert listed == declared


# -- the README's sample output is what the command line prints ------------------------------

NUMBER = r"-?\d+(?:\.\d+)?"
# What may differ between the README's run and this one: numbers (times, speeds, losses) and the
# precision `auto` picks on this machine; CLIP models are named literally.
_PARTS = re.compile(
    "|".join(
        [
            *(re.escape(name) for name in sorted(CLIP_WEIGHTS, key=len, reverse=True)),
            rf"\b(?:{'|'.join(PRECISIONS)})\b",
            NUMBER,
        ]
    )
)


def _shape(sample: str) -> re.Pattern[str]:
    """`sample` as a pattern: any number where it has a number, any precision where it names
    one, and every other character as it is."""
    pattern, at = [], 0
    for match in _PARTS.finditer(sample):
        pattern.append(re.escape(sample[at : match.start()]))
        part = match.group()
        if part in CLIP_WEIGHTS:
            pattern.append(re.escape(part))
        elif part in PRECISIONS:
            pattern.append(f"(?:{'|'.join(PRECISIONS)})")
        else:
            pattern.append(NUMBER)
        at = match.end()
    pattern.append(re.escape(sample[at:]))
    return re.compile("".join(pattern))


def _sample(heading: str) -> str:
    """The one summary line shown in a code block of the README's section `heading`."""
    blocks = _code_blocks(_section(README, heading))
    lines = [line for block in blocks for line in block.splitlines() if line.startswith("done: ")]
    assert len(lines) == 1, f"{heading}: {lines}"
    return lines[0]


def _draw(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """What `pseudo-dalle draw ...` prints on stdout, run in this process."""
    threads = torch.get_num_threads()  # draw sets the process's; the other tests keep theirs
    capsys.readouterr()
    try:
        code = main(["draw", "an image of the music", *args])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert code == 0, out
    return out


# The README's runs: the tiny test models, three steps at 64x64 on a CPU, saved as music.png.
TINY_RUN = (
    *("--size", "64", "--cutouts", "2", "--iterations", "3", "--device", "cpu"),
    *("--threads", "1", "--seed", "42", "--out", "music.png"),
)


def _check_sample(sample: str, printed: str) -> None:
    assert printed.count("\n") == 1, printed
    assert _shape(sample).fullmatch(printed.rstrip("\n")), (
        f"the README shows\n  {sample}\nbut the command line prints\n  {printed}"
    )
    # The check is strict: one word changed in the sample fails it.
    drifted = sample.replace("iterations", "steps", 1)
    assert not _shape(drifted).fullmatch(printed.rstrip("\n"))


def test_the_readme_shows_what_draw_prints(
    capsys: pytest.CaptureFixture[str],
    model_files: ModelFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    printed = _draw(
        capsys,
        "--clip-model",
        str(model_files.clip_torchscript),
        "--decoder",
        str(model_files.decoder_pickle),
        *TINY_RUN,
    )
    _check_sample(_sample("## The command line"), printed)


def test_the_readme_shows_what_draw_prints_with_several_clip_models(
    capsys: pytest.CaptureFixture[str],
    model_files: ModelFiles,
    named_clips: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    printed = _draw(
        capsys,
        "--cache-dir",
        str(named_clips),
        "--offline",
        "--clip-model",
        "ViT-B/32",
        "--clip-model",
        "RN50",
        "--decoder",
        str(model_files.decoder_pickle),
        *TINY_RUN,
    )
    _check_sample(_sample("### Several CLIP models"), printed)


# -- what the pages name exists ---------------------------------------------------------------


def _prose(path: Path) -> str:
    """`path` without its fenced code blocks."""
    return "\n".join(line for line, fenced in _outside_code(path.read_text()) if not fenced)


def _spans(path: Path) -> list[str]:
    """The inline code spans of `path`, outside fenced blocks."""
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", _prose(path))]


ROOTS = ("bot", "generator", "pseudo_dalle", "tests", "bench", "docker")
PATH = re.compile(rf"(?:{'|'.join(ROOTS)})/[\w./-]*")
DOTTED = re.compile(rf"(?:{'|'.join(ROOTS[:-1])})(?:\.\w+)+")


def _defines(source: Path, name: str) -> bool:
    pattern = rf"^\s*(?:(?:async )?def|class) {re.escape(name)}\b|^\s*{re.escape(name)}\s*[:=]"
    return re.search(pattern, source.read_text(), re.MULTILINE) is not None


def _resolves(dotted: str) -> bool:
    """A module of the checkout, or one followed by names it defines (`bot.jobs.store.MOVES`,
    `bot.jobs.desk.FrontDesk.submit`)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:cut])
        module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if module.is_file():
            return all(_defines(module, name) for name in parts[cut:])
    return False


def _runnable(module: str) -> bool:
    """`python -m module` runs a file of the checkout."""
    base = ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()


def _setting(section: str, key: str | None) -> bool:
    """`[section] key` (or `[section]` alone) is in the bot's configuration."""
    field = Config.model_fields.get(section)
    model = field.annotation if field is not None else None
    return isinstance(model, type) and (key is None or key in getattr(model, "model_fields", {}))


def _names_what_exists(span: str) -> bool:
    """Whatever the code span `span` names (a file, a module, a `python -m` module, a setting)
    is in the checkout; True for a span that names none of these."""
    if not all(_runnable(module) for module in re.findall(r"python -m ([\w.]+)", span)):
        return False
    if PATH.fullmatch(span):
        return (ROOT / span).exists()
    if DOTTED.fullmatch(span):
        return _resolves(span)
    if setting := re.fullmatch(r"\[(\w+)\](?: (\w+))?(?: = .*)?", span):
        return _setting(*setting.groups())
    return True


def test_every_module_file_and_setting_the_pages_name_exists() -> None:
    wrong = [
        f"{page.name}: `{span}`"
        for page in PAGES
        for span in _spans(page)
        if not _names_what_exists(span)
    ]
    assert not wrong, "named but not in the checkout:\n" + "\n".join(wrong)


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_anchor(title) for title in re.findall(r"^#+ (.+)$", _prose(path), re.MULTILINE)}


def test_every_link_between_the_pages_leads_somewhere() -> None:
    wrong = []
    for page in (*PAGES, CHANGELOG):
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            file, _, anchor = target.partition("#")
            linked = (page.parent / file).resolve() if file else page
            if not linked.exists() or (anchor and anchor not in _anchors(linked)):
                wrong.append(f"{page.name}: {target}")
    assert not wrong, "links that lead nowhere:\n" + "\n".join(wrong)


def test_the_readme_links_every_docs_page_and_each_says_who_it_is_for() -> None:
    listed = set(re.findall(r"\]\(docs/([\w-]+\.md)\)", _section(README, "## Documentation")))
    assert listed == {page.name for page in DOCS.glob("*.md")}
    for page in (*DOCS.glob("*.md"), CHANGELOG):
        first = page.read_text().split("\n\n")[1]
        assert first.startswith("For "), f"{page.name} should start by saying who it is for"
