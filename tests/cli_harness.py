"""`pseudo-dalle` run in the test process through `main(argv)`, as the shell would see it."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
import torch

from generator.cli.commands import main

if TYPE_CHECKING:  # conftest makes the `cli` fixture from this module
    from .conftest import ModelFiles


@dataclass(frozen=True)
class Run:
    """What one `main` call ended with and wrote."""

    code: int
    stdout: str
    stderr: str


class Cli:
    """Runs `main` in this process, as the shell would see it: the code it returns or exits
    with (argparse and the CLI's one-line errors raise SystemExit), and what it printed."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> Run:
        # `draw` sets torch's thread count for the whole process (every core without
        # --threads); the test process keeps its one thread for the cases after this one.
        threads = torch.get_num_threads()
        ctrl_c = signal.getsignal(signal.SIGINT)
        self.capsys.readouterr()
        code: int | str | None
        try:
            code = main(list(args))
        except SystemExit as stop:
            code = stop.code
        finally:
            torch.set_num_threads(threads)
        captured = self.capsys.readouterr()
        assert isinstance(code, int), f"exit code {code!r}: {captured.err}"
        # A drawing takes Ctrl-C over; it must give it back, or the next Ctrl-C is lost.
        assert signal.getsignal(signal.SIGINT) is ctrl_c, "main kept its Ctrl-C handler"
        return Run(code, captured.out, captured.err)


def tiny_args(files: ModelFiles, *extra: str) -> list[str]:
    """`extra`, then the tiny models on the CPU in fp32 with one thread and 4 cutouts."""
    return [
        *extra,
        "--clip-model",
        str(files.clip_torchscript),
        "--decoder",
        str(files.decoder_pickle),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--cutouts",
        "4",
        "--precision",
        "fp32",
    ]
