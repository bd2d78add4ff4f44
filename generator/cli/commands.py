"""The ``pseudo-dalle`` command line. The only part of the engine that talks to a terminal.

Exit codes: 0 done, 1 failed (a model could not be loaded, the GPU ran out of memory, the
picture could not be written), 2 bad arguments, 130 stopped with Ctrl-C (the picture so far is
still saved).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import secrets
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from generator import __version__
from generator.cli.pictures import (
    PictureArg,
    add_encoder_option,
    add_picture_options,
    read_picture,
)
from generator.contract.encoders import (
    DEFAULT_MULTILINGUAL,
    MULTILINGUAL_MODELS,
    TEXT_ENCODER_CHOICES,
    choose_encoder,
)
from generator.contract.errors import GeneratorError, ModelLoadError, PromptError, SettingsError
from generator.contract.images import MAX_IMAGE_PROMPTS
from generator.contract.settings import (
    DEFAULT_ITERATIONS,
    DEFAULTS,
    MAX_ITERATIONS,
    MAX_SEED,
    MAX_SIDE,
    MIN_SIDE,
    PRECISION_CHOICES,
    RELAXATIONS,
    DrawSettings,
    Job,
)
from generator.contract.threads import choose_threads
from generator.contract.tokens import check_lengths
from generator.worker.options import (
    add_cuda_graphs_option,
    add_model_options,
    add_redis_worker_options,
    add_threads_option,
    models_from_args,
)

if TYPE_CHECKING:
    import torch

    from generator.method.engine import DrawResult, StepInfo
    from generator.models.loaders import Models
    from generator.models.text_encoders import MultilingualEncoder

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
TIMELAPSE_FRAMES = 60


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as a single line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _fail(message: str, code: int) -> NoReturn:
    print(f"pseudo-dalle: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"expected SIDE or WIDTHxHEIGHT, got {text!r}")
    width = int(match.group(1))
    height = int(match.group(2) or width)
    for side in (width, height):
        if side % 8 or not MIN_SIDE <= side <= MAX_SIDE:
            raise argparse.ArgumentTypeError(
                f"sides must be multiples of 8 from {MIN_SIDE} to {MAX_SIDE}, got {text!r}"
            )
    return width, height


CommandAdder = Callable[["argparse._SubParsersAction[Any]"], None]


def build_parser(add_commands: CommandAdder | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand; `add_commands` adds more (the bot adds ``bot``)."""
    parser = _Parser(
        prog="pseudo-dalle",
        description="Draw pictures from text by steering DALL-E's dVAE decoder with CLIP.",
    )
    parser.add_argument("--version", action="version", version=f"pseudo-dalle {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    draw = commands.add_parser(
        "draw",
        help="draw a picture from a prompt",
        description="Optimise a picture until CLIP agrees it matches the prompt. "
        "Ctrl-C stops early and still saves the picture so far.",
    )
    draw.add_argument(
        "prompt",
        nargs="?",
        default="",
        help="what to draw; weight parts with 'text:weight' and separate them with '|', "
        "e.g. 'a red sky:1 | blurry, watermark:-0.5'; may be left out with --image-prompt",
    )
    draw.add_argument(
        "--iterations",
        type=_positive,
        default=DEFAULT_ITERATIONS,
        help=f"optimisation steps, 1 to {MAX_ITERATIONS} (default {DEFAULT_ITERATIONS}; "
        "the reference used 7000)",
    )
    draw.add_argument(
        "--size",
        type=_size,
        default=(DEFAULTS.width, DEFAULTS.height),
        metavar="SIDE|WxH",
        help=f"picture size in pixels, multiples of 8 from {MIN_SIDE} to {MAX_SIDE} "
        f"(default {DEFAULTS.width})",
    )
    draw.add_argument(
        "--seed",
        type=int,
        default=None,
        help=f"random seed, 0 to {MAX_SEED}; the same seed and settings redraw the same picture "
        "(default: a random one, printed at the end)",
    )
    draw.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE.png",
        help="where to save the picture (default: named after the prompt and seed)",
    )
    draw.add_argument(
        "--cutouts",
        type=_positive,
        default=DEFAULTS.cutouts,
        help=f"random crops CLIP looks at per step (default {DEFAULTS.cutouts})",
    )
    draw.add_argument(
        "--lr", type=float, default=DEFAULTS.lr, help=f"Adam learning rate (default {DEFAULTS.lr})"
    )
    draw.add_argument(
        "--temperature", type=float, default=DEFAULTS.temperature,
        help=f"Gumbel-softmax temperature (default {DEFAULTS.temperature})",
    )  # fmt: skip
    draw.add_argument(
        "--temperature-end",
        type=float,
        default=None,
        help="anneal the temperature geometrically to this value by the last step",
    )
    draw.add_argument(
        "--relaxation",
        choices=RELAXATIONS,
        default=DEFAULTS.relaxation,
        help="what the Gumbel-softmax normalises over: codebook (the default; each position a soft "
        "mix of codebook entries) or positions (each entry spread over the grid, as the "
        "notebooks that introduced the method did)",
    )
    _add_text_encoder_options(draw)
    add_picture_options(draw)
    draw.add_argument(
        "--rotation",
        type=float,
        default=DEFAULTS.rotation_degrees,
        metavar="DEGREES",
        help="rotate cutouts randomly by up to this many degrees (default 0)",
    )
    draw.add_argument("--flip", action="store_true", help="mirror half of the cutouts at random")
    draw.add_argument(
        "--noise",
        type=float,
        default=DEFAULTS.noise_std,
        metavar="STD",
        help="add Gaussian noise of this strength to the cutouts (default 0)",
    )
    add_model_options(draw)
    add_threads_option(draw, reserve=0)
    add_cuda_graphs_option(draw)
    draw.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default="auto",
        help="auto (default): bf16 on GPUs and on CPUs with AVX512-BF16 or AMX, fp16 on GPUs "
        "without bf16, else fp32; fp32 is the plain path, with near-identical results",
    )
    draw.add_argument(
        "--checkpointing",
        action="store_true",
        help="recompute activations in the backward pass: much less memory, about a third "
        "more compute (for big pictures on small GPUs)",
    )
    draw.add_argument(
        "--compile",
        action="store_true",
        help="compile the networks with torch.compile: the first steps take tens of seconds "
        "longer; see bench/RESULTS.md for where it pays",
    )
    draw.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to run: cuda if available with auto (default auto)",
    )
    draw.add_argument(
        "--save-every",
        type=_positive,
        default=None,
        metavar="N",
        help="save a progress frame every N iterations (into --progress-dir)",
    )
    draw.add_argument(
        "--progress-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder for progress frames (needs --save-every)",
    )
    draw.add_argument(
        "--timelapse",
        type=Path,
        default=None,
        metavar="FILE.gif",
        help="also write an animated GIF of the progress frames",
    )
    draw.set_defaults(handler=_draw)

    fetch = commands.add_parser(
        "fetch-weights",
        help="download the model weights into the cache",
        description="Download CLIP and the dVAE decoder (with --text-encoder multilingual or "
        "auto, the multilingual text encoder too) into the cache so later runs work offline. "
        "Prints where each is.",
    )
    add_model_options(fetch)
    _add_text_encoder_options(fetch)
    fetch.add_argument(
        "--with-encoder", action="store_true",
        help="also fetch the dVAE encoder, which drawings that start from a picture need",
    )  # fmt: skip
    add_encoder_option(fetch)
    fetch.set_defaults(handler=_fetch_weights)

    worker = commands.add_parser(
        "worker",
        help="draw the bot's jobs, taken from Redis (one per GPU, on any host)",
        description="Connect to the bot's Redis, load the models the bot names and draw its "
        "jobs until SIGTERM. Waits (and says why) while Redis or the bot is not there yet.",
    )
    add_redis_worker_options(worker)
    worker.set_defaults(handler=_redis_worker)
    if add_commands is not None:
        add_commands(commands)
    return parser


def _default_out(prompt: str, seed: int) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:60].rstrip("-")
    return Path(f"{slug or 'picture'}-{seed}.png")


class _Interrupt:
    """First Ctrl-C asks the loop to stop after the current step; a second one quits at once."""

    def __init__(self) -> None:
        self.requested = threading.Event()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            raise KeyboardInterrupt
        self.requested.set()
        print("\nstopping after this step; press Ctrl-C again to quit now", file=sys.stderr)


def _job_from_args(args: argparse.Namespace) -> tuple[DrawSettings, Job]:
    width, height = args.size
    settings = DrawSettings(
        width=width,
        height=height,
        cutouts=args.cutouts,
        lr=args.lr,
        temperature=args.temperature,
        temperature_end=args.temperature_end,
        rotation_degrees=args.rotation,
        flip=args.flip,
        noise_std=args.noise,
        checkpointing=args.checkpointing,
        compile=args.compile,
        relaxation=args.relaxation,
    )
    seed = secrets.randbelow(MAX_SEED + 1) if args.seed is None else args.seed
    if not args.prompt and not args.image_prompt:
        raise PromptError("give a PROMPT, an --image-prompt, or both")
    if len(args.image_prompt) > MAX_IMAGE_PROMPTS:
        raise SettingsError(f"at most {MAX_IMAGE_PROMPTS} --image-prompt pictures")
    init = read_picture(PictureArg(args.init_image)) if args.init_image else None
    job = Job(
        args.prompt, seed=seed, iterations=args.iterations, init_image=init,
        init_strength=args.init_strength,
        image_prompts=tuple(read_picture(arg) for arg in args.image_prompt),
    )  # fmt: skip
    encoder = choose_encoder(args.text_encoder, job.prompts)
    return settings, dataclasses.replace(job, text_encoder=encoder)


def _draw(args: argparse.Namespace) -> int:
    if args.progress_dir is not None and args.save_every is None:
        _fail("--progress-dir needs --save-every N", EXIT_USAGE)
    from generator.method.runtime import configure_torch

    configure_torch(choose_threads(args.threads, reserve=0))
    try:
        settings, job = _job_from_args(args)
        if job.text_encoder == "clip":
            check_lengths(job.prompts)
        from generator.method.output import save_result, save_timelapse

        models = models_from_args(args)
        multilingual = _multilingual(args, models) if job.text_encoder != "clip" else None
        encoder = _picture_encoder(args, models) if job.init_image is not None else None
    except ModelLoadError as error:
        _fail(str(error), EXIT_FAILED)
    except GeneratorError as error:
        _fail(str(error), EXIT_USAGE)
    from generator.method.fast import resolve_precision

    precision = resolve_precision(args.precision, models.device)
    settings = dataclasses.replace(settings, precision=precision)
    out = args.out or _default_out(job.prompt, job.seed)
    with tempfile.TemporaryDirectory(prefix="pseudo-dalle-frames-") as scratch:
        frames_dir = args.progress_dir or Path(scratch)
        save_every = args.save_every
        if save_every is None and args.timelapse is not None:
            save_every = max(1, job.iterations // TIMELAPSE_FRAMES)
        engine_graphs = None if args.cuda_graphs else False
        result, frames = _run_with_progress(
            models, settings, job, frames_dir, save_every, cuda_graphs=engine_graphs,
            multilingual=multilingual, picture_encoder=encoder,
        )  # fmt: skip
        try:
            save_result(result, out)
            if args.timelapse is not None:
                save_timelapse([*frames, out], args.timelapse)
        except OSError as error:
            _fail(f"cannot write {error.filename or out}: {error.strerror}", EXIT_FAILED)
    _print_summary(result, out)
    return EXIT_INTERRUPTED if result.cancelled else 0


def _multilingual(args: argparse.Namespace, models: Models) -> MultilingualEncoder:
    from generator.contract.weights import CLIP_WEIGHTS, default_cache_dir
    from generator.models.text_encoders import load_multilingual

    return load_multilingual(
        args.multilingual_model, clip_dim=int(models.clip.text_projection.shape[1]),
        clip_name=args.clip_model if args.clip_model in CLIP_WEIGHTS else None,
        device=models.device, cache_dir=args.cache_dir or default_cache_dir(),
        offline=args.offline,
    )  # fmt: skip


def _picture_encoder(args: argparse.Namespace, models: Models) -> torch.nn.Module:
    from generator.models.loaders import load_encoder

    return load_encoder(
        args.encoder, device=models.device, cache_dir=args.cache_dir, offline=args.offline
    )


def _run_with_progress(
    models: Models,
    settings: DrawSettings,
    job: Job,
    frames_dir: Path,
    save_every: int | None,
    *,
    cuda_graphs: bool | None,
    multilingual: MultilingualEncoder | None,
    picture_encoder: torch.nn.Module | None,
) -> tuple[DrawResult, list[Path]]:
    import torch
    from tqdm import tqdm

    from generator.method.engine import Engine, to_pil

    engine = Engine(
        models, settings, cuda_graphs=cuda_graphs, multilingual=multilingual,
        picture_encoder=None if picture_encoder is None else lambda: picture_encoder,
    )  # fmt: skip
    frames: list[Path] = []
    report_every = max(1, min(10, job.iterations // 100))
    bar = tqdm(total=job.iterations, unit="it", file=sys.stderr, dynamic_ncols=True)

    def on_step(info: StepInfo) -> None:
        bar.update(1)
        if info.step % report_every == 0 or info.step == info.total:
            bar.set_postfix(loss=f"{info.loss.item():.4f}", refresh=False)
        if save_every is not None and info.step % save_every == 0:
            frames_dir.mkdir(parents=True, exist_ok=True)
            frame = frames_dir / f"step-{info.step:06d}.png"
            to_pil(info.image).save(frame)
            frames.append(frame)

    interrupt = _Interrupt()
    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        result = engine.draw(job, on_step, lambda _: interrupt.requested.is_set())
    except PromptError as error:
        _fail(str(error), EXIT_USAGE)
    except torch.OutOfMemoryError:
        _fail(
            f"out of GPU memory at {settings.width}x{settings.height} with {settings.cutouts} "
            "cutouts: try a smaller --size or fewer --cutouts",
            EXIT_FAILED,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    return result, frames


def _print_summary(result: DrawResult, out: Path) -> None:
    status = "stopped" if result.cancelled else "done"
    losses = result.losses
    loss = f"loss {losses[0]:.4f} -> {losses[-1]:.4f}" if losses else "no steps run"
    timings = result.timings
    print(
        f"{status}: {result.steps}/{result.job.iterations} iterations in {timings.loop_s:.1f} s "
        f"({timings.iterations_per_second:.2f} it/s, {result.settings.precision}, "
        f"{result.job.text_encoder} text encoder), {loss}, seed {result.seed}, saved {out}"
    )


def _redis_worker(args: argparse.Namespace) -> int:
    from generator.worker.process import leave
    from generator.worker.redis_streams import run as serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    leave(serve(args))
    return 0  # not reached: `leave` ends the process


def _add_text_encoder_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--text-encoder",
        choices=TEXT_ENCODER_CHOICES,
        default="clip",
        help="what reads the prompt: clip (default; OpenAI's, English), multilingual (50+ "
        "languages, an approximation of CLIP's text space; needs the multilingual extra) or "
        "auto (clip for plain ASCII prompts, multilingual otherwise)",
    )
    parser.add_argument(
        "--multilingual-model",
        default=DEFAULT_MULTILINGUAL,
        metavar="NAME_OR_DIR",
        help=f"the multilingual encoder: {', '.join(MULTILINGUAL_MODELS)} (the first is the "
        "default) or a folder saved by sentence-transformers or M-CLIP",
    )


def _fetch_weights(args: argparse.Namespace) -> int:
    from generator.contract.encoders import encoder_folder
    from generator.contract.weights import default_cache_dir
    from generator.models.loaders import clip_path, decoder_path, encoder_path

    try:
        print(f"CLIP: {clip_path(args.clip_model, args.cache_dir, offline=args.offline)}")
        print(f"decoder: {decoder_path(args.decoder, args.cache_dir, offline=args.offline)}")
        if args.with_encoder:
            print(f"encoder: {encoder_path(args.encoder, args.cache_dir, offline=args.offline)}")
        if args.text_encoder != "clip":
            folder = encoder_folder(
                args.multilingual_model, args.cache_dir or default_cache_dir(),
                offline=args.offline,
            )  # fmt: skip
            print(f"multilingual text encoder: {folder}")
    except GeneratorError as error:
        _fail(str(error), EXIT_FAILED)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the subcommand `args` names; Ctrl-C outside a drawing exits 130 quietly."""
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        print("pseudo-dalle: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
