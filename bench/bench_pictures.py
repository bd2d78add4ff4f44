"""What the init strength does, and what an image prompt costs.

For one picture and prompt, draws from the picture at each strength and prints, after 50, 200
and 500 iterations, the share of token positions that still hold the picture's token, and at
the end CLIP's similarity of the picture to the prompt. Then times a step without and with an
image prompt cut once (the engine's way) against one re-cut at every step (an extra CLIP pass
over the picture's crops). Without weight files the models are random with the real
architectures; with OpenAI's files (`--clip --decoder --encoder`) this is the first thing to
run on a GPU. Prints Markdown tables:

    python -m bench.bench_pictures                    # full-size random models, 128 px
    python -m bench.bench_pictures --size 256 --cutouts 32 --device cuda --clip ViT-B/32 \\
        --decoder https://cdn.openai.com/dall-e/decoder.pkl --encoder encoder.pkl
"""

from __future__ import annotations

import argparse
import io
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
from PIL import Image

from generator.contract.images import ImageInput
from generator.contract.prompts import parse_prompts
from generator.contract.settings import DrawSettings, Job
from generator.contract.threads import choose_threads
from generator.intake.images import from_file, from_upload
from generator.method.cutouts import cutout_transforms, make_cutouts
from generator.method.engine import Engine, StepInfo
from generator.method.fast import ImageEncoder
from generator.method.objective import embed_cutouts, embed_prompts
from generator.method.pictures import fitted_pixels, picture_embeddings, picture_tokens
from generator.method.runtime import configure_torch
from generator.models.loaders import Models, load_encoder, load_models
from tests.synthetic import write_clip, write_decoder, write_encoder

PROMPT = "a lighthouse on a cliff at sunset"


def _picture(path: str | None) -> ImageInput:
    if path:
        return from_file(Path(path))
    buffer = io.BytesIO()
    Image.effect_mandelbrot((512, 384), (-2.0, -1.2, 1.0, 1.2), 64).convert("RGB").save(
        buffer, format="PNG"
    )
    return from_upload(buffer.getvalue(), "mandelbrot.png")


def _similarity(models: Models, png: bytes, prompt: str, settings: DrawSettings) -> float:
    """CLIP's cosine similarity of the picture's mean crop embedding to the prompt."""
    pixels = fitted_pixels(png, settings.width, settings.height, models.device)
    generator = torch.Generator(device=models.device).manual_seed(0)
    encoder = ImageEncoder(models.clip.visual, models.clip_resolution)
    (image,) = picture_embeddings([encoder], pixels, settings, generator=generator)
    text = embed_prompts(models.clip, parse_prompts(prompt))[0]
    return float(image @ text)


def agreement_rows(
    engine: Engine, picture: ImageInput, args: argparse.Namespace, settings: DrawSettings
) -> list[str]:
    tokens = picture_tokens(
        engine.picture_encoder(),
        fitted_pixels(picture.png, settings.width, settings.height, engine.device),
    )
    marks = sorted(args.marks)
    rows = []
    for strength in args.strengths:
        held: dict[int, float] = {}

        def on_step(info: StepInfo, held: dict[int, float] = held) -> None:
            if info.step in marks:
                same = info.logits.argmax(dim=-1) == tokens
                held[info.step] = float(same.float().mean())

        job = Job(args.prompt, args.seed, max(marks), init_image=picture, init_strength=strength)
        started = time.perf_counter()
        result = engine.draw(job, on_step)
        seconds = time.perf_counter() - started
        buffer = io.BytesIO()
        result.image.save(buffer, format="PNG")
        similarity = _similarity(engine.models, buffer.getvalue(), args.prompt, settings)
        cells = " | ".join(f"{held[mark]:.3f}" for mark in marks)
        rows.append(f"| {strength:g} | {cells} | {similarity:.4f} | {seconds / max(marks):.3f} |")
    return rows


def _time_steps(engine: Engine, job: Job, steps: int) -> float:
    """Milliseconds per step, after one warm-up step."""
    batch = engine.batch()
    batch.add(job)
    batch.step()
    started = time.perf_counter()
    for _ in range(steps):
        batch.step()
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)
    return (time.perf_counter() - started) * 1000 / steps


def cost_rows(
    engine: Engine, picture: ImageInput, args: argparse.Namespace, settings: DrawSettings
) -> list[str]:
    steps = args.timed_steps
    plain = _time_steps(engine, Job(args.prompt, args.seed, steps + 1), steps)
    once = _time_steps(
        engine, Job(args.prompt, args.seed, steps + 1, image_prompts=(picture,)), steps
    )
    # Re-cutting at every step adds one CLIP pass over the picture's crops (no backward).
    models = engine.models
    pixels = fitted_pixels(picture.png, settings.width, settings.height, models.device)
    generator = torch.Generator(device=models.device).manual_seed(args.seed)
    with torch.no_grad():
        started = time.perf_counter()
        for _ in range(steps):
            transforms = cutout_transforms(settings, generator, models.device)[None]
            embed_cutouts(
                models.clip.visual, make_cutouts(pixels, transforms, models.clip_resolution)
            )
        if models.device.type == "cuda":
            torch.cuda.synchronize(models.device)
        extra = (time.perf_counter() - started) * 1000 / steps
    return [
        f"| text only | {plain:.1f} | 1.00 |",
        f"| + image prompt, cut once (engine) | {once:.1f} | {once / plain:.2f} |",
        f"| + image prompt, cut every step | {plain + extra:.1f} | {(plain + extra) / plain:.2f} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--arch", default="full", choices=("full", "tiny"))
    parser.add_argument("--clip", help="CLIP name or checkpoint instead of random weights")
    parser.add_argument("--decoder", help="decoder URL or file instead of random weights")
    parser.add_argument("--encoder", help="encoder URL or file instead of random weights")
    parser.add_argument("--image", help="the picture (default: a Mandelbrot set, drawn here)")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--cutouts", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--strengths",
        type=lambda t: [float(p) for p in t.split(",")],
        default=[0.0, 0.25, 0.5, 0.75, 1.0],
    )
    parser.add_argument(
        "--marks",
        type=lambda t: [int(p) for p in t.split(",")],
        default=[50, 200, 500],
        help="iterations after which agreement is read (the last is the run's length)",
    )
    parser.add_argument("--timed-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: auto)")
    args = parser.parse_args()
    configure_torch(choose_threads(args.threads, reserve=0))
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        clip_file = args.clip or str(write_clip(scratch / "clip.pt", args.arch))
        decoder_file = args.decoder or str(write_decoder(scratch / "decoder.pt", args.arch))
        encoder_file = args.encoder or str(write_encoder(scratch / "encoder.pt", args.arch))
        models = load_models(clip_file, decoder_file, device=args.device, progress=False)
        settings = DrawSettings(width=args.size, height=args.size, cutouts=args.cutouts)
        engine = Engine(
            models,
            settings,
            cuda_graphs=False,
            picture_encoder=lambda: load_encoder(encoder_file, device=models.device),
        )
        picture = _picture(args.image)
        named = "OpenAI's" if args.clip else f"random {args.arch}"
        print(
            f"{date.today()} · {platform.node()} · device {models.device} · torch "
            f"{torch.__version__} · threads {torch.get_num_threads()} · models: {named} · "
            f"{args.size}x{args.size}, {args.cutouts} cutouts · picture {picture.name} · "
            f"prompt {args.prompt!r}\n"
        )
        marks = sorted(args.marks)
        print(
            "| strength | "
            + " | ".join(f"held @{m}" for m in marks)
            + " | CLIP sim. to prompt | s/it |"
        )
        print("|---" * (len(marks) + 3) + "|")
        for row in agreement_rows(engine, picture, args, settings):
            print(row, flush=True)
        print("\n| step | ms/step | vs. text only |\n|---|---|---|")
        for row in cost_rows(engine, picture, args, settings):
            print(row)


if __name__ == "__main__":
    main()
