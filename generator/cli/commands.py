"""The ``pseudo-dalle`` command line. The only part of the engine that talks to a terminal.

Exit codes: 0 done, 1 failed (a model could not be loaded, the GPU ran out of memory, the
picture could not be written), 2 bad arguments, 130 stopped with Ctrl-C (the picture so far is
still saved).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
from generator.cli.edits import check_decoder, edit_base, edit_plan, read_source
from generator.cli.parser import add_draw_options, add_text_encoder_options
from generator.cli.pictures import PictureArg, add_encoder_option, read_picture
from generator.contract.edits import EDIT_KEY, ENCODED
from generator.contract.encoders import (
    choose_encoder,
)
from generator.contract.errors import (
    GeneratorError,
    ModelLoadError,
    PromptError,
    SettingsError,
)
from generator.contract.images import MAX_IMAGE_PROMPTS
from generator.contract.quality import preset
from generator.contract.reasons import NOTHING_TO_DRAW
from generator.contract.settings import (
    AUTO_STOP_WINDOW,
    MAX_SEED,
    DrawSettings,
    Job,
)
from generator.contract.threads import choose_threads
from generator.contract.timelapse import frame_every
from generator.contract.tokens import check_lengths
from generator.contract.weights import clip_label
from generator.worker.options import (
    add_model_options,
    add_quality_option,
    add_redis_worker_options,
    clip_models,
    models_from_args,
)

if TYPE_CHECKING:
    import torch

    from generator.intake.edits import EditSource
    from generator.method.engine import DrawResult, StepInfo
    from generator.models.loaders import Models
    from generator.models.text_encoders import MultilingualEncoder

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as a single line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _fail(message: str, code: int) -> NoReturn:
    print(f"pseudo-dalle: error: {message}", file=sys.stderr)
    raise SystemExit(code)


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
    add_draw_options(draw)
    draw.set_defaults(handler=_draw)

    edit = commands.add_parser(
        "edit",
        help="edit a picture pseudo-dalle drew: vary it, or draw part of it again",
        description="Start from the tokens a pseudo-dalle PNG carries: --vary subtle or strong "
        "draws a variation, --region or --mask draws that part again with the same or new "
        "words and keeps every token outside it. Ctrl-C stops early and still saves the "
        "picture so far.",
    )
    add_draw_options(edit, edit=True)
    edit.set_defaults(handler=_edit)

    fetch = commands.add_parser(
        "fetch-weights",
        help="download the model weights into the cache",
        description="Download CLIP (each --clip-model named, else the --quality's models) and "
        "the dVAE decoder (with "
        "--text-encoder multilingual or "
        "auto, the multilingual text encoder too) into the cache so later runs work offline. "
        "Prints where each is.",
    )
    add_model_options(fetch)
    add_quality_option(fetch, "fetch the CLIP models of this quality")
    add_text_encoder_options(fetch)
    fetch.add_argument(
        "--with-encoder",
        action="store_true",
        help="also fetch the dVAE encoder, which drawings that start from a picture need",
    )
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


def _settings_from_args(args: argparse.Namespace, size: tuple[int, int], tile: str) -> DrawSettings:
    """The settings the options describe for a picture of `size` tiling along `tile`: the
    --quality preset's cutouts where they are not given."""
    width, height = size
    return DrawSettings(
        width=width,
        height=height,
        tile=tile,
        cutouts=args.cutouts or preset(args.quality).cutouts,
        lr=args.lr,
        temperature=args.temperature,
        temperature_end=args.temperature_end,
        rotation_degrees=args.rotation,
        flip=args.flip,
        noise_std=args.noise,
        checkpointing=args.checkpointing,
        compile=args.compile,
        relaxation=args.relaxation,
        lr_drop=args.lr_drop,
        cut_schedule=args.cut_schedule,
    )


def _job_from_args(args: argparse.Namespace) -> tuple[DrawSettings, Job]:
    """The run the options describe: the --quality preset's size, cutouts and iterations
    where they are not given."""
    chosen = preset(args.quality)
    settings = _settings_from_args(args, args.size or (chosen.size, chosen.size), args.tile)
    seed = secrets.randbelow(MAX_SEED + 1) if args.seed is None else args.seed
    if not args.prompt and not args.image_prompt:
        raise PromptError(NOTHING_TO_DRAW)
    if len(args.image_prompt) > MAX_IMAGE_PROMPTS:
        raise SettingsError(f"at most {MAX_IMAGE_PROMPTS} --image-prompt pictures")
    init = read_picture(PictureArg(args.init_image)) if args.init_image else None
    job = Job(
        args.prompt,
        seed=seed,
        iterations=args.iterations or chosen.iterations,
        init_image=init,
        init_strength=args.init_strength,
        auto_stop=args.auto_stop,
        image_prompts=tuple(read_picture(arg) for arg in args.image_prompt),
    )
    encoder = choose_encoder(args.text_encoder, job.prompts)
    return settings, dataclasses.replace(job, text_encoder=encoder)


def _start(args: argparse.Namespace) -> None:
    """What `draw` and `edit` check and set before reading anything."""
    if args.progress_dir is not None and args.save_every is None:
        _fail("--progress-dir needs --save-every N", EXIT_USAGE)
    from generator.method.runtime import configure_torch

    configure_torch(choose_threads(args.threads, reserve=0))


def _draw(args: argparse.Namespace) -> int:
    _start(args)
    try:
        settings, job = _job_from_args(args)
        if job.text_encoder == "clip":
            check_lengths(job.prompts)
        models = models_from_args(args)
        multilingual = _multilingual(args, models) if job.text_encoder != "clip" else None
        encoder = _picture_encoder(args, models) if job.init_image is not None else None
    except ModelLoadError as error:
        _fail(str(error), EXIT_FAILED)
    except GeneratorError as error:
        _fail(str(error), EXIT_USAGE)
    out = args.out or _default_out(job.prompt, job.seed)
    return _run_and_save(
        args, models, settings, job, out, multilingual=multilingual, encoder=encoder
    )


def _edit(args: argparse.Namespace) -> int:
    _start(args)
    try:
        source = read_source(args)
        if args.upscale == "subtle":
            return _upscale(args, source)
        plan = edit_plan(args, source)
        base = edit_base(args, source, preset(args.quality).iterations)
        text_encoder = choose_encoder(args.text_encoder, base.prompts)
        if text_encoder == "clip":
            check_lengths(base.prompts)
        models = models_from_args(args)
        check_decoder(args.picture, source.grid, models.decoder_sha256)
        multilingual = _multilingual(args, models) if text_encoder != "clip" else None
        from generator.method.edits import edit_job

        grid, fresh = plan.grid, None
        if plan.spec.kind in ENCODED:
            from generator.method.canvas import encoded_canvas
            from generator.method.engine import Engine

            encoder = _picture_encoder(args, models)
            engine = Engine(models, picture_encoder=lambda: encoder)
            grid, fresh = encoded_canvas(engine, grid, plan.spec, source.tile)
        job = dataclasses.replace(base, text_encoder=text_encoder)
        job = edit_job(job, grid, plan.spec, fresh)
        settings = _settings_from_args(args, grid.size, source.tile)
    except ModelLoadError as error:
        _fail(str(error), EXIT_FAILED)
    except GeneratorError as error:
        _fail(str(error), EXIT_USAGE)
    out = args.out or Path(f"{args.picture.stem}-{plan.spec.kind}-{job.seed}.png")
    return _run_and_save(args, models, settings, job, out, multilingual=multilingual)


def _upscale(args: argparse.Namespace, source: EditSource) -> int:
    """Upscale (Subtle): twice the size with Lanczos, the PNG saying so. Nothing is drawn, so
    the result carries no token grid: edit the picture it came from instead."""
    from generator.intake.edits import upscaled_subtly
    from generator.method.output import png_bytes, write_atomically

    out = args.out or Path(f"{args.picture.stem}-upscaled.png")
    bigger = upscaled_subtly(args.picture.read_bytes())  # its size and pixels checked again
    width, height = source.grid.size
    record = {"kind": "upscale", "method": "lanczos", "parent_sha256": source.sha256}
    metadata = {"prompt": source.prompt, EDIT_KEY: json.dumps(record, separators=(",", ":"))}
    try:
        write_atomically(out, png_bytes(bigger, metadata))
    except OSError as error:
        _fail(f"cannot write {error.filename or out}: {error.strerror}", EXIT_FAILED)
    print(f"upscaled {width}x{height} to {2 * width}x{2 * height} (Lanczos), saved {out}")
    return 0


def _run_and_save(
    args: argparse.Namespace,
    models: Models,
    settings: DrawSettings,
    job: Job,
    out: Path,
    *,
    multilingual: MultilingualEncoder | None,
    encoder: torch.nn.Module | None = None,
) -> int:
    """Draw `job` with a progress bar, save it (and the time-lapse asked for) and say so."""
    from generator.method.fast import resolve_precision
    from generator.method.output import save_result, save_timelapse

    precision = resolve_precision(args.precision, models.device)
    settings = dataclasses.replace(settings, precision=precision)
    with tempfile.TemporaryDirectory(prefix="pseudo-dalle-frames-") as scratch:
        frames_dir = args.progress_dir or Path(scratch)
        save_every = args.save_every
        if save_every is None and args.timelapse is not None:
            save_every = frame_every(job.iterations)
        engine_graphs = None if args.cuda_graphs else False
        result, frames = _run_with_progress(
            models,
            settings,
            job,
            frames_dir,
            save_every,
            cuda_graphs=engine_graphs,
            multilingual=multilingual,
            picture_encoder=encoder,
        )
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

    clip_dim = int(models.only_clip().text_projection.shape[1])
    clip_name = models.clip_names[0]
    return load_multilingual(
        args.multilingual_model,
        clip_dim=clip_dim,
        clip_name=clip_name if clip_name in CLIP_WEIGHTS else None,
        device=models.device,
        cache_dir=args.cache_dir or default_cache_dir(),
        offline=args.offline,
    )


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
        models,
        settings,
        cuda_graphs=cuda_graphs,
        multilingual=multilingual,
        picture_encoder=None if picture_encoder is None else lambda: picture_encoder,
    )
    frames: list[Path] = []
    report_every = max(1, min(10, job.iterations // 100))
    bar = tqdm(total=job.iterations, unit="it", file=sys.stderr, dynamic_ncols=True)
    labels = [clip_label(name) for name in models.clip_names]

    def on_step(info: StepInfo) -> None:
        bar.update(1)
        if info.step % report_every == 0 or info.step == info.total:
            postfix = {"loss": f"{info.loss.item():.4f}"}
            if len(labels) > 1:
                shares = info.model_losses.tolist()
                postfix |= {
                    label: f"{share:.4f}" for label, share in zip(labels, shares, strict=True)
                }
            bar.set_postfix(postfix, refresh=False)
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
    if losses and len(result.clip_models) > 1:
        shares = [
            f"{clip_label(name)} {history[0]:.4f} -> {history[-1]:.4f}"
            for name, history in zip(result.clip_models, result.model_losses, strict=True)
        ]
        loss += f" ({', '.join(shares)})"
    timings = result.timings
    print(
        f"{status}: {result.steps}/{result.job.iterations} iterations in {timings.loop_s:.1f} s "
        f"({timings.iterations_per_second:.2f} it/s, {result.settings.precision}, "
        f"{result.job.text_encoder} text encoder), {loss}, seed {result.seed}, saved {out}"
    )
    if result.auto_stopped:
        print(
            f"auto-stopped at step {result.steps}: the loss, averaged over {AUTO_STOP_WINDOW} "
            f"steps, did not beat its best for {result.job.auto_stop} windows in a row"
        )


def _redis_worker(args: argparse.Namespace) -> int:
    from generator.worker.process import leave
    from generator.worker.redis_streams import run as serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    leave(serve(args))
    return 0  # not reached: `leave` ends the process


def _fetch_weights(args: argparse.Namespace) -> int:
    from generator.contract.encoders import encoder_folder
    from generator.contract.weights import default_cache_dir
    from generator.models.loaders import clip_path, decoder_path, encoder_path

    try:
        for name in clip_models(args):
            print(f"CLIP: {clip_path(name, args.cache_dir, offline=args.offline)}")
        print(f"decoder: {decoder_path(args.decoder, args.cache_dir, offline=args.offline)}")
        if args.with_encoder:
            print(f"encoder: {encoder_path(args.encoder, args.cache_dir, offline=args.offline)}")
        if args.text_encoder != "clip":
            folder = encoder_folder(
                args.multilingual_model,
                args.cache_dir or default_cache_dir(),
                offline=args.offline,
            )
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
