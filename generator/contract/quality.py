"""Quality presets, declared once: what `draft`, `normal`, `better` and `best` mean.

A preset sets a drawing's size, cutouts, iterations and the CLIP models that judge it; the CLI's
`--quality`, /draw's `quality:`, the admins' `max_quality` and the README's table all come from
`PRESETS`. Options given explicitly win over the preset's values. A preset's first model is the
main CLIP: the bot puts the operator's `[models] clip` in its place (`Preset.models`), so a
server drawing with another CLIP keeps it at every quality.

`job_cost` is what a step of a job costs, in forward GFLOPs, so that the queue can tell how long
a `best` job takes from what a `draft` job took: the decoder's work grows with the picture's
pixels, each CLIP's with the cutouts (the backward pass costs about twice the forward for both,
which the ratio of two costs leaves out). `job_bytes` is the memory a job takes besides the
models, which a worker counts to know how many jobs it can take at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from generator.contract.weights import DEFAULT_CLIP_MODEL, clip_label


@dataclass(frozen=True)
class Preset:
    name: str
    size: int  # the picture's side in pixels
    cutouts: int
    iterations: int
    clip_models: tuple[str, ...]  # the first is the main CLIP

    def models(self, main: str = DEFAULT_CLIP_MODEL) -> tuple[str, ...]:
        """The CLIP models that judge a drawing at this quality, with `main` as the main one
        (a model named twice counts once)."""
        return tuple(dict.fromkeys((main, *self.clip_models[1:])))


QUALITIES = ("draft", "normal", "better", "best")  # from cheapest to dearest
DEFAULT_QUALITY = "normal"
PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("draft", 256, 16, 300, ("ViT-B/32",)),
        Preset("normal", 512, 32, 1000, ("ViT-B/32",)),
        Preset("better", 512, 32, 1500, ("ViT-B/32", "ViT-B/16")),
        Preset("best", 512, 48, 2500, ("ViT-B/32", "ViT-B/16", "RN50")),
    )
}
MAX_PRESET_CUTOUTS = max(preset.cutouts for preset in PRESETS.values())
MAX_PRESET_ITERATIONS = max(preset.iterations for preset in PRESETS.values())


def preset(quality: str) -> Preset:
    """The preset named `quality`; ValueError naming the choices for another name."""
    try:
        return PRESETS[quality]
    except KeyError:
        raise ValueError(
            f"quality must be one of {', '.join(QUALITIES)}, got {quality!r}"
        ) from None


def within(quality: str, max_quality: str) -> bool:
    """Whether `quality` is no dearer than `max_quality`."""
    return QUALITIES.index(quality) <= QUALITIES.index(max_quality)


def cheaper(first: str, second: str) -> str:
    """The cheaper of two qualities."""
    return first if within(first, second) else second


# One forward pass of each network, in GFLOPs as `torch.utils.flop_counter` counts them on the
# full-size architectures (tests/test_quality.py counts again): each CLIP image tower on one
# cutout at its input resolution, and the dVAE decoder for a 512x512 picture.
CLIP_GFLOPS = {"ViT-B/32": 8.82, "ViT-B/16": 35.13, "ViT-L/14": 162.03, "RN50": 11.59}
UNKNOWN_CLIP_GFLOPS = CLIP_GFLOPS[DEFAULT_CLIP_MODEL]  # a model given as a file
DECODER_GFLOPS_512 = 1231.85


def job_cost(size: int, cutouts: int, clip_models: tuple[str, ...]) -> float:
    """A step's forward GFLOPs for a `size` x `size` picture judged on `cutouts` crops by each of
    `clip_models`."""
    decoder = DECODER_GFLOPS_512 * (size / 512) ** 2
    clips = sum(CLIP_GFLOPS.get(name, UNKNOWN_CLIP_GFLOPS) for name in clip_models)
    return decoder + cutouts * clips


# What autograd keeps for a step's backward pass, in MiB, as `generator.method.memory.kept_bytes`
# measures it on the full-size architectures (tests/test_quality.py measures again), each as
# (fp32, bf16 or fp16): the decoder for a 512x512 picture (it grows with the pixels), and each
# CLIP image tower per cutout. Upper bounds: on an H100 a 512x512 job with 32 cutouts in bf16
# peaked at 4141 MiB with its models (bench/RESULTS.md); `job_bytes` says 4425 MiB without them.
DECODER_KEPT_MIB_512 = (5740.0, 2937.0)
CLIP_KEPT_MIB_PER_CUT = {
    "ViT-B/32": (33.4, 22.5),
    "ViT-B/16": (161.5, 119.7),
    "RN50": (141.6, 71.2),
    "ViT-L/14": (604.7, 459.8),
}
UNKNOWN_CLIP_KEPT = CLIP_KEPT_MIB_PER_CUT["ViT-L/14"]  # a model given as a file: the largest
VOCAB_SIZE = 8192  # DALL-E's codebook
# Copies of the (h, w, V) fp32 latent a job holds: the logits, their gradient, Adam's two
# moments, the Gumbel noise and the softmax kept for the backward pass.
LATENT_COPIES = 6


def job_bytes(
    width: int, height: int, cutouts: int, clip_models: tuple[str, ...], *, half: bool
) -> int:
    """The memory a `width` x `height` job judged on `cutouts` crops by each of `clip_models`
    takes besides the models; `half` for bf16 or fp16. The latent and the decoder grow with
    the pixels, the CLIPs with the cutouts."""
    which = 1 if half else 0
    latent = LATENT_COPIES * VOCAB_SIZE * (width // 8) * (height // 8) * 4
    decoder = DECODER_KEPT_MIB_512[which] * width * height / 512**2
    clips = cutouts * sum(
        CLIP_KEPT_MIB_PER_CUT.get(clip_label(name), UNKNOWN_CLIP_KEPT)[which]
        for name in clip_models
    )
    return int(latent + (decoder + clips) * 2**20)
