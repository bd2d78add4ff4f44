"""Command-line options shared by `pseudo-dalle draw`, `fetch-weights` and the worker process,
so that neither imports the other. Imports nothing heavy: torch loads only in
`models_from_args`."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from generator.contract.metrics import METRICS_BIND_ENV, parse_bind
from generator.contract.quality import DEFAULT_QUALITY, PRESETS, QUALITIES, preset
from generator.contract.redis_keys import Keys
from generator.contract.threads import AUTO, MAX_THREADS
from generator.contract.weights import CLIP_WEIGHTS, DEFAULT_CLIP_MODEL, DEFAULT_DECODER_URL

if TYPE_CHECKING:
    from generator.models.loaders import Models


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--clip-model (repeatable), --decoder, --cache-dir and --offline; the worker process takes
    them too. `clip_models` reads the CLIP models back."""
    names = ", ".join(CLIP_WEIGHTS)
    parser.add_argument(
        "--clip-model",
        action="append",
        metavar="NAME_OR_PATH",
        help=f"CLIP model name ({names}) or checkpoint file (default: the --quality's models, "
        f"{DEFAULT_CLIP_MODEL} at {DEFAULT_QUALITY}); repeat it to have several models judge "
        "each step, their losses counting the same",
    )
    parser.add_argument(
        "--decoder",
        default=DEFAULT_DECODER_URL,
        metavar="URL_OR_PATH",
        help=f"dVAE decoder URL or file (default {DEFAULT_DECODER_URL})",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where downloaded weights live (default $PSEUDO_DALLE_CACHE, "
        "else ~/.cache/pseudo-dalle)",
    )
    parser.add_argument(
        "--offline", action="store_true", help="never download; use cached or local files only"
    )


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not AUTO <= value <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be from {AUTO} to {MAX_THREADS}, got {value}")
    return value


def add_threads_option(parser: argparse.ArgumentParser, *, reserve: int) -> None:
    """--threads: torch's CPU threads; 0 (default) is every available core but `reserve`."""
    left = f" but {reserve}" if reserve else ""
    parser.add_argument(
        "--threads",
        type=_threads,
        default=AUTO,
        metavar="N",
        help=f"CPU threads for torch (default 0: every available core{left}); fewer than the "
        "cores helps when other programs share the machine",
    )


def add_cuda_graphs_option(parser: argparse.ArgumentParser) -> None:
    """--cuda-graphs / --no-cuda-graphs; the worker process takes it too."""
    parser.add_argument(
        "--cuda-graphs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="on a GPU, capture each step in a CUDA graph and replay it: far fewer kernel "
        "launches; a capture that fails falls back to plain steps (default on)",
    )


def add_redis_worker_options(parser: argparse.ArgumentParser) -> None:
    """The options of `pseudo-dalle worker`; the rest comes from the bot through Redis."""
    parser.add_argument(
        "--redis",
        default=os.environ.get("REDIS_URL", ""),
        metavar="URL",
        help="the bot's Redis, e.g. redis://host:6379/0 (default $REDIS_URL)",
    )
    parser.add_argument(
        "--name",
        default=f"{socket.gethostname()}-{os.getpid()}",
        help="this worker's name in /queue, /help and doctor (default HOST-PID)",
    )
    parser.add_argument(
        "--prefix", default=Keys.prefix, help=f"Redis key prefix (default {Keys.prefix})"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where this host keeps downloaded weights (default $PSEUDO_DALLE_CACHE, "
        "else ~/.cache/pseudo-dalle)",
    )
    add_metrics_option(parser, environ=True)


def _bind(text: str) -> str:
    if text:
        try:
            parse_bind(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return text


def add_metrics_option(parser: argparse.ArgumentParser, *, environ: bool) -> None:
    """--metrics-bind: where the worker serves its Prometheus metrics; the bot's worker process
    takes it too. With `environ`, $PSEUDO_DALLE_METRICS_BIND is the default, so each container
    of a scaled service can be given its own port."""
    said = f"default ${METRICS_BIND_ENV}, else off" if environ else "default off"
    parser.add_argument(
        "--metrics-bind",
        type=_bind,
        metavar="HOST:PORT",
        default=os.environ.get(METRICS_BIND_ENV, "") if environ else "",
        help=f"serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 127.0.0.1:9465 ({said})",
    )


def add_quality_option(parser: argparse.ArgumentParser, what: str) -> None:
    """--quality: a preset of `generator.contract.quality`; `what` says what it sets here."""
    parser.add_argument(
        "--quality",
        choices=QUALITIES,
        default=DEFAULT_QUALITY,
        help=f"{what}: {_presets()} (default {DEFAULT_QUALITY})",
    )


def _presets() -> str:
    return "; ".join(
        f"{p.name} {p.size} px, {p.cutouts} cutouts, {p.iterations} iterations, "
        f"{' + '.join(p.clip_models)}"
        for p in PRESETS.values()
    )


def clip_models(args: argparse.Namespace) -> list[str]:
    """The CLIP models `add_model_options` read, in order: those of the --quality preset when
    none was named. (argparse's `append` would add to a default list rather than replace it.)"""
    named: list[str] | None = args.clip_model
    return named or list(preset(args.quality).models())


def models_from_args(args: argparse.Namespace) -> Models:
    """Load the models that `add_model_options` and a --device option describe."""
    from generator.models.loaders import load_models

    return load_models(
        clip_models(args),
        args.decoder,
        device=args.device,
        cache_dir=args.cache_dir,
        offline=args.offline,
    )
