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
from generator.contract.settings import (
    AUTO_STOP_WINDOW,
    DEFAULT_ITERATIONS,
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
    expected = {
        "--iterations": f"1 to {MAX_ITERATIONS:,} ({DEFAULT_ITERATIONS})",
        "--size": f"multiples of {SIDE_MULTIPLE} from {MIN_SIDE} to {MAX_SIDE} ({DEFAULTS.width})",
        "--cutouts": f"crops per step ({DEFAULTS.cutouts}), Adam learning rate ({DEFAULTS.lr})",
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
