"""The README's tables state the defaults and limits the code declares (generator.contract)."""

from __future__ import annotations

from pathlib import Path

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
    SIDE_MULTIPLE,
)
from generator.contract.weights import DEFAULT_ENCODER_URL

README = Path(__file__).resolve().parent.parent / "README.md"


def _row(option: str) -> str:
    """The row of the command-line table that documents `option`."""
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
        "--lr-drop": f"divide the learning rate by {LR_DROP_FACTOR:g} from this fraction of the "
        f"run on ({DEFAULTS.lr_drop})",
        "--auto-stop": f"averaged over windows of {AUTO_STOP_WINDOW} steps",
        "--cut-schedule": f"({DEFAULTS.cut_schedule})",
    }
    for option, text in expected.items():
        assert text in _row(option), f"README's {option} row should say {text!r}"


def test_the_pictures_section_states_the_declared_limits() -> None:
    text = README.read_text()
    section = text[text.index("## Pictures in") : text.index("## Speed")]
    limits = (
        f"at most {MAX_INPUT_BYTES // 2**20} MiB, PNG, JPEG, WebP or GIF (the first frame of an\n"
        f"animation), at most {MAX_INPUT_PIXELS / 1e6:g} million pixels"
    )
    assert limits in section


def test_the_quality_table_states_the_declared_presets() -> None:
    """Size, cutouts, iterations and models of each preset, in order, as declared."""
    text = README.read_text()
    section = text[text.index("## Quality") : text.index("## Pictures in")]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
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
