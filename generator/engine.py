"""The optimisation loop: steps a batch of independent jobs until each has its picture.

Every job owns its random stream (initial tokens, Gumbel noise, cutouts) and its Adam state, so
a job's result does not depend on which other jobs share its steps. The loop does no I/O: it
hands what it already computed to an `on_step` callback and asks `should_stop` once per step
and job, so a caller can report progress or cancel at any step boundary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image

from generator.cutouts import cutout_transforms, make_cutouts
from generator.latent import decode, gumbel_noise, hard_one_hot, initial_logits, relax
from generator.loaders import Models
from generator.objective import embed_cutouts, embed_prompts, weighted_loss
from generator.settings import DrawSettings, Job


@dataclass(frozen=True)
class StepInfo:
    """Handed to `on_step` after each completed step of a job. Tensors live on the device;
    `loss.item()` or copying `image` synchronises, so do it only when reporting."""

    job_index: int
    step: int  # completed steps, 1..total
    total: int
    loss: torch.Tensor  # 0-d: the loss of this step's forward pass
    image: torch.Tensor  # (3, H, W) in [0, 1]: the image this step's forward pass decoded
    logits: torch.Tensor  # (1, V, h, w): the latent after this step's update; clone to keep


StepCallback = Callable[[StepInfo], None]
_AUTOCAST = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
StopCheck = Callable[[int], bool]


@dataclass(frozen=True)
class Timings:
    setup_s: float
    loop_s: float
    steps: int

    @property
    def iterations_per_second(self) -> float:
        return self.steps / self.loop_s if self.loop_s > 0 else 0.0


@dataclass(frozen=True)
class DrawResult:
    """A finished (or cancelled) job: the picture and everything needed to redo or continue it."""

    image: Image.Image
    logits: torch.Tensor  # (1, V, h, w) on the CPU: pass as Job.init_logits to continue
    job: Job
    settings: DrawSettings
    steps: int
    cancelled: bool
    losses: list[float] = field(repr=False)
    timings: Timings

    @property
    def seed(self) -> int:
        return self.job.seed


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] on any device -> an RGB PIL image."""
    pixels = (image.detach().clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy(), "RGB")


@dataclass
class _Active:
    index: int
    job: Job
    generator: torch.Generator
    logits: torch.nn.Parameter
    optimizer: torch.optim.Adam
    text: torch.Tensor  # (P, D)
    weights: torch.Tensor  # (P,)
    losses: torch.Tensor  # (iterations,) on the device, filled without synchronising
    started: float
    setup_s: float
    step: int = 0


class Engine:
    """Draws jobs with loaded `Models` under one `DrawSettings`."""

    def __init__(self, models: Models, settings: DrawSettings) -> None:
        self.models = models
        self.settings = settings
        self.device = models.device

    def draw(
        self, job: Job, on_step: StepCallback | None = None, should_stop: StopCheck | None = None
    ) -> DrawResult:
        """Draw one job."""
        return self.run([job], on_step, should_stop)[0]

    @torch.no_grad()
    def render(self, logits: torch.Tensor) -> Image.Image:
        """The final picture for a latent: its most likely tokens, decoded."""
        pixels = decode(self.models.decoder, hard_one_hot(logits.to(self.device)))
        return to_pil(pixels[0])

    def run(
        self,
        jobs: Sequence[Job],
        on_step: StepCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> list[DrawResult]:
        """Step all `jobs` together; each leaves the batch when done or stopped.

        Results come back in the order of `jobs`.
        """
        results: dict[int, DrawResult] = {}
        active = [self._start(i, job) for i, job in enumerate(jobs)]
        while active:
            if should_stop is not None:
                for entry in [e for e in active if should_stop(e.index)]:
                    results[entry.index] = self._finish(entry, cancelled=True)
                    active.remove(entry)
                if not active:
                    break
            losses, images = self._step(active)
            for row, entry in enumerate(active):
                entry.losses[entry.step] = losses[row].detach()
                entry.step += 1
                if on_step is not None:
                    on_step(
                        StepInfo(
                            entry.index,
                            entry.step,
                            entry.job.iterations,
                            entry.losses[entry.step - 1],
                            images[row].detach(),
                            entry.logits.detach(),
                        )
                    )
            for entry in [e for e in active if e.step >= e.job.iterations]:
                results[entry.index] = self._finish(entry, cancelled=False)
                active.remove(entry)
        return [results[i] for i in range(len(jobs))]

    def _start(self, index: int, job: Job) -> _Active:
        started = time.perf_counter()
        generator = torch.Generator(device=self.device).manual_seed(job.seed)
        vocab, grid = self.models.vocab_size, self.settings.token_grid
        if job.init_logits is not None:
            init = job.init_logits.detach().to(self.device, torch.float32).clone()
            expected = (1, vocab, *grid)
            if tuple(init.shape) != expected:
                raise ValueError(f"init_logits has shape {tuple(init.shape)}, expected {expected}")
        else:
            init = initial_logits(vocab, grid, self.settings.init_scale, generator)
        logits = torch.nn.Parameter(init)
        text = embed_prompts(self.models.clip, job.prompts)
        weights = torch.tensor([p.weight for p in job.prompts], device=self.device)
        return _Active(
            index=index,
            job=job,
            generator=generator,
            logits=logits,
            optimizer=torch.optim.Adam([logits], lr=self.settings.lr),
            text=text,
            weights=weights,
            losses=torch.zeros(job.iterations, device=self.device),
            started=time.perf_counter(),
            setup_s=time.perf_counter() - started,
        )

    def _step(self, active: list[_Active]) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward, backward and update for every active job; returns (losses, images)."""
        with torch.autocast(
            self.device.type, dtype=_AUTOCAST[self.settings.precision],
            enabled=self.settings.precision != "fp32",
        ):  # fmt: skip
            embeds, images = self._forward(active)
        texts, weights = self._padded_prompts(active)
        losses = weighted_loss(embeds, texts, weights)  # (B,), in fp32 whatever the precision
        for entry in active:
            entry.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        for entry in active:
            entry.optimizer.step()
        return losses, images

    def _forward(self, active: list[_Active]) -> tuple[torch.Tensor, torch.Tensor]:
        """Cutout embeddings (B, N, D) and decoded images (B, 3, H, W) for the active jobs."""
        settings, models = self.settings, self.models
        logits = torch.cat([e.logits for e in active])  # (B, V, h, w)
        noise = torch.cat([gumbel_noise(e.logits.shape, e.generator) for e in active])
        temperature = torch.tensor(
            [settings.temperature_at(e.step, e.job.iterations) for e in active], device=self.device
        ).view(-1, 1, 1, 1)
        images = decode(models.decoder, relax(logits, noise, temperature))  # (B, 3, H, W)
        transforms = torch.stack(
            [cutout_transforms(settings, e.generator, self.device) for e in active]
        )  # (B, N, 2, 3)
        cutouts = make_cutouts(images, transforms, models.clip_resolution)  # (B*N, 3, s, s)
        if settings.noise_std:
            jitter = torch.cat(
                [
                    torch.randn(
                        (settings.cutouts, *cutouts.shape[1:]),
                        generator=e.generator,
                        device=self.device,
                    )
                    for e in active
                ]
            )
            cutouts = cutouts + jitter * settings.noise_std
        embeds = embed_cutouts(models.clip, cutouts).view(len(active), settings.cutouts, -1)
        return embeds, images

    @staticmethod
    def _padded_prompts(active: list[_Active]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt embeddings (B, P, D) and weights (B, P), zero-padded to the longest job."""
        width = max(len(e.weights) for e in active)
        texts = torch.stack(
            [torch.nn.functional.pad(e.text, (0, 0, 0, width - len(e.text))) for e in active]
        )
        weights = torch.stack(
            [torch.nn.functional.pad(e.weights, (0, width - len(e.weights))) for e in active]
        )
        return texts, weights

    def _finish(self, entry: _Active, *, cancelled: bool) -> DrawResult:
        image = self.render(entry.logits.detach())
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        loop_s = time.perf_counter() - entry.started
        return DrawResult(
            image=image,
            logits=entry.logits.detach().cpu().clone(),
            job=entry.job,
            settings=self.settings,
            steps=entry.step,
            cancelled=cancelled,
            losses=entry.losses[: entry.step].cpu().tolist(),
            timings=Timings(setup_s=entry.setup_s, loop_s=loop_s, steps=entry.step),
        )
