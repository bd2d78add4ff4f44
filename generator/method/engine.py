"""The optimisation loop: steps a batch of independent jobs until each has its picture.

Every job owns its random stream (initial tokens, Gumbel noise, cutouts) and its Adam state, so
a job's result does not depend on which other jobs share its steps. With several CLIP models,
each judges the same cutouts (cut once, at the largest side any of them takes, and scaled down
for the others) against the prompts embedded by its own text tower, and their losses count the
same. The loop does no I/O: it hands what it already computed to an `on_step` callback and asks
`should_stop` once per step and job, so a caller can report progress or cancel at any step
boundary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from generator.contract.edits import HELD_SCALE
from generator.contract.errors import SettingsError
from generator.contract.settings import AUTO_STOP_WINDOW, DrawSettings, Job
from generator.contract.weights import clip_label
from generator.method import graphs
from generator.method.cutouts import cutout_transforms, make_cutouts, resized, wrapped
from generator.method.edits import NOT_PULLED, Region
from generator.method.fast import ImageEncoder, Networks, build_networks
from generator.method.latent import (
    as_latent,
    decode,
    gumbel_noise,
    hard_one_hot,
    initial_logits,
    relax,
)
from generator.method.objective import embed_cutouts, embed_prompts, weighted_loss
from generator.method.pictures import (
    anchor_loss,
    anchor_weight,
    fitted_pixels,
    picture_embeddings,
    picture_tokens,
    start_gap,
    start_logits,
)
from generator.models.loaders import Models
from generator.models.text_encoders import MultilingualEncoder

log = logging.getLogger("pseudo_dalle.engine")


@dataclass(frozen=True)
class StepInfo:
    """Handed to `on_step` after each completed step of a job. Tensors live on the device;
    `loss.item()` or copying `image` synchronises, so do it only when reporting."""

    job_index: int  # the job's handle in its Batch: its index in the list given to Engine.run
    step: int  # completed steps, 1..total
    total: int
    loss: torch.Tensor  # 0-d: the loss of this step's forward pass
    model_losses: torch.Tensor  # (M,): each CLIP model's share of `loss`, as in Models.clips
    image: torch.Tensor  # (3, H, W) in [0, 1]: this step's decoded image; valid until the next
    logits: torch.Tensor  # (1, h, w, V): the latent after this step's update; clone to keep


StepCallback = Callable[[StepInfo], None]
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
    logits: torch.Tensor  # (1, h, w, V) on the CPU: pass as Job.init_logits to continue
    job: Job
    settings: DrawSettings
    steps: int
    cancelled: bool
    losses: list[float] = field(repr=False)
    # One history per CLIP model (as in `clip_models`), each as long as `losses`: every step's
    # loss is their sum (plus the pull towards a starting picture, if any).
    model_losses: list[list[float]] = field(repr=False)
    clip_models: tuple[str, ...]  # the CLIP models that judged it, as `Models.clip_names`
    timings: Timings
    decoder_sha256: str  # the decoder that drew it (`Models.decoder_sha256`)
    auto_stopped: bool = False  # ended by `Job.auto_stop`, not by its last iteration

    @property
    def seed(self) -> int:
        return self.job.seed


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] on any device -> an RGB PIL image."""
    pixels = (image.detach().clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy(), "RGB")


@dataclass
class _Active:
    handle: int
    job: Job
    settings: DrawSettings
    generator: torch.Generator
    logits: torch.nn.Parameter  # (1, h, w, V)
    temperature: torch.Tensor  # 0-d, on the device: a captured step reads it at every replay
    cut_size: torch.Tensor  # 0-d, on the device: the cutouts' mean size this step
    optimizer: torch.optim.Adam
    text: tuple[torch.Tensor, ...]  # per CLIP model, (P, D) in its text space
    weights: torch.Tensor  # (P,)
    losses: torch.Tensor  # (iterations,) on the device, filled without synchronising
    model_losses: torch.Tensor  # (iterations, M) likewise, one column per CLIP model
    started: float
    setup_s: float
    anchor: torch.Tensor | None = None  # (1, h, w): the tokens of the picture it started from
    anchor_weight: float = 0.0
    region: Region | None = None  # a region edit: what it keeps and where its cutouts look
    best_window: float = float("inf")  # auto-stop: the lowest mean loss of a window so far
    stale_windows: int = 0  # auto-stop: windows in a row that have not beaten it
    step: int = 0


class Engine:
    """Draws jobs with loaded `Models` (every CLIP model in them judges every step); `settings`
    applies to jobs that bring none of their own.

    Jobs stepped together that share settings go through the networks as one batch when
    `fuse_jobs` is on (the default on CUDA, where a bigger batch keeps the GPU busy). Off (the
    default on CPU), each job of a step runs on its own: CPU kernels are not batch-invariant, so
    fusing would make a job's picture depend on its neighbours, and it buys no speed there.
    With `cuda_graphs` (the default on CUDA) steps are captured and replayed (`graphs`); if a
    capture fails, one log line says why and every step runs eagerly from then on.
    `picture_encoder` gives the dVAE encoder, which jobs that start from a picture need; it is
    called (and may load it) on the first such job.
    """

    def __init__(
        self,
        models: Models,
        settings: DrawSettings | None = None,
        *,
        fuse_jobs: bool | None = None,
        cuda_graphs: bool | None = None,
        multilingual: MultilingualEncoder | None = None,
        picture_encoder: Callable[[], torch.nn.Module] | None = None,
    ) -> None:
        self.models = models
        self.multilingual = multilingual
        self._picture_encoder = picture_encoder
        self._loaded_encoder: torch.nn.Module | None = None
        self.settings = settings or DrawSettings()
        self.device = models.device
        cuda = self.device.type == "cuda"
        self.fuse_jobs = cuda if fuse_jobs is None else fuse_jobs
        self.cuda_graphs = cuda if cuda_graphs is None else cuda_graphs
        self._networks: dict[tuple[str, bool, bool, tuple[int, ...], str], Networks] = {}

    def graphs_failed(self, error: BaseException) -> None:
        """A capture failed: run eagerly from now on."""
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        log.warning("CUDA graphs are off: capturing a step failed (%s); steps run eagerly", reason)
        self.cuda_graphs = False

    def networks(self, settings: DrawSettings) -> Networks:
        """The networks for `settings`' precision, checkpointing, compiling and tiling, built on
        first use."""
        chosen = self.clip_indices(settings)
        key = (settings.precision, settings.checkpointing, settings.compile, chosen, settings.tile)
        if key not in self._networks:
            self._networks[key] = build_networks(
                self.models.decoder,
                [self.models.clips[i].visual for i in chosen],
                settings.precision,
                checkpointing=settings.checkpointing,
                compile_them=settings.compile,
                wrap=settings.tile,
            )
        return self._networks[key]

    @property
    def picture_encoder_loaded(self) -> bool:
        return self._loaded_encoder is not None

    def picture_encoder(self) -> torch.nn.Module:
        """The dVAE encoder, loaded on first use; SettingsError when none was given."""
        if self._loaded_encoder is None:
            if self._picture_encoder is None:
                raise SettingsError(
                    "starting from a picture needs the dVAE encoder, and none is configured"
                )
            self._loaded_encoder = self._picture_encoder()
        return self._loaded_encoder

    def clip_indices(self, settings: DrawSettings) -> tuple[int, ...]:
        """Which of the loaded CLIP models judge under `settings` (all when it names none);
        SettingsError naming a model that is not loaded."""
        names = self.models.clip_names
        if not settings.clip_models:
            return tuple(range(len(names)))
        missing = [name for name in settings.clip_models if name not in names]
        if missing:
            raise SettingsError(
                f"CLIP model {clip_label(missing[0])} is not loaded here (loaded: "
                f"{', '.join(clip_label(name) for name in names)})"
            )
        return tuple(names.index(name) for name in settings.clip_models)

    def clips(self, settings: DrawSettings) -> list[Any]:
        """The CLIP models that judge under `settings`, in its order."""
        return [self.models.clips[i] for i in self.clip_indices(settings)]

    def embed_prompts(
        self, job: Job, settings: DrawSettings | None = None
    ) -> tuple[torch.Tensor, ...]:
        """The job's prompts as unit vectors, (P, D) in the text space of each CLIP model that
        judges under `settings`: by each CLIP's own text tower, or by the multilingual encoder
        into the main CLIP's."""
        settings = settings or self.settings
        clips = self.clips(settings)
        if not job.prompts:
            return tuple(torch.zeros(0, _text_width(clip), device=self.device) for clip in clips)
        if job.text_encoder == "clip":
            return tuple(embed_prompts(clip, job.prompts) for clip in clips)
        chosen = [self.models.clip_names[i] for i in self.clip_indices(settings)]
        if len(chosen) > 1:  # it maps into one CLIP's text space: the main one
            raise SettingsError(
                f"the multilingual text encoder works with one CLIP model, and this run has "
                f"{len(chosen)} ({', '.join(clip_label(name) for name in chosen)}): draw with "
                "one CLIP model, or with the CLIP text encoder"
            )
        if chosen[0] != self.models.clip_names[0]:
            raise SettingsError(
                "the multilingual text encoder works with the main CLIP model "
                f"({clip_label(self.models.clip_names[0])}), not {clip_label(chosen[0])}"
            )
        if self.multilingual is None:
            raise SettingsError(
                "no multilingual text encoder is loaded: load one, or draw with the CLIP one"
            )
        return (self.multilingual.encode(job.prompts).to(self.device),)

    def batch(self) -> Batch:
        """An empty batch to add jobs to and step."""
        return Batch(self)

    def draw(
        self, job: Job, on_step: StepCallback | None = None, should_stop: StopCheck | None = None
    ) -> DrawResult:
        """Draw one job."""
        return self.run([job], on_step, should_stop)[0]

    @torch.no_grad()
    def render(self, logits: torch.Tensor, settings: DrawSettings | None = None) -> Image.Image:
        """The final picture for a latent: its most likely tokens, decoded."""
        decoder = self.networks(settings or self.settings).decoder
        pixels = decode(decoder, hard_one_hot(logits.to(self.device)))
        return to_pil(pixels[0])

    def run(
        self,
        jobs: Sequence[Job],
        on_step: StepCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> list[DrawResult]:
        """Step all `jobs` together; each leaves the batch when done or stopped.

        Results come back in the order of `jobs`; `StepInfo.job_index` is the index in `jobs`.
        """
        batch = self.batch()
        for job in jobs:
            batch.add(job)
        results: dict[int, DrawResult] = {}
        while batch:
            if should_stop is not None:
                for handle in [h for h in batch.handles if should_stop(h)]:
                    results[handle] = batch.stop(handle)
            results.update(batch.step(on_step))
        return [results[i] for i in range(len(jobs))]


class Batch:
    """Jobs stepped together. A job can join at any step boundary and leaves when it is done
    (`step` returns its result) or stopped (`stop`). Each job keeps its own random stream, Adam
    state and settings, so its picture does not depend on when it joined or who it ran with."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._active: list[_Active] = []
        self._next_handle = 0
        self._captured: dict[tuple[DrawSettings, tuple[int, ...]], graphs.CapturedStep] = {}

    def __len__(self) -> int:
        return len(self._active)

    @property
    def handles(self) -> list[int]:
        return [entry.handle for entry in self._active]

    def add(self, job: Job, settings: DrawSettings | None = None) -> int:
        """Start `job` (under `settings`, else the engine's); returns its handle.

        Raises PromptError for a prompt CLIP cannot take and ValueError for `init_logits` or
        `init_tokens` of the wrong shape; the batch is unchanged then.
        """
        started = time.perf_counter()
        engine = self.engine
        settings = settings or engine.settings
        device = engine.device
        generator = torch.Generator(device=device).manual_seed(job.seed)
        vocab, grid = engine.models.vocab_size, settings.token_grid
        anchor, anchor_at, region = None, 0.0, None
        if job.init_logits is not None:
            init = as_latent(job.init_logits.detach(), vocab, grid).to(device, torch.float32)
            init = init.clone(memory_format=torch.contiguous_format)
        elif job.init_tokens is not None and job.frozen:
            kept, fresh = _grid_tokens(job.init_tokens, grid, device), job.fresh.to(device)
            drawn = initial_logits(vocab, grid, settings.init_scale, generator)
            init = torch.where(fresh[..., None], drawn, start_logits(kept, vocab, HELD_SCALE))
            region = Region.of(kept, fresh, vocab, settings.cutouts)
        elif job.init_tokens is not None:
            anchor = _grid_tokens(job.init_tokens, grid, device)
            init = start_logits(anchor, vocab, start_gap(job.init_strength, settings.init_scale))
            if job.fresh is not None:
                fresh = job.fresh.to(device)
                drawn = initial_logits(vocab, grid, settings.init_scale, generator)
                init = torch.where(fresh[..., None], drawn, init)
                anchor = anchor.masked_fill(fresh, NOT_PULLED)
            anchor_at = anchor_weight(job.init_strength)
        elif job.init_image is not None:
            anchor = self._picture_tokens(job.init_image.png, settings)
            init = start_logits(anchor, vocab, start_gap(job.init_strength, settings.init_scale))
            anchor_at = anchor_weight(job.init_strength)
        else:
            init = initial_logits(vocab, grid, settings.init_scale, generator)
        logits = torch.nn.Parameter(init)
        text = tuple(
            torch.cat(targets)
            for targets in zip(
                engine.embed_prompts(job, settings),
                self._picture_targets(job, settings),
                strict=True,
            )
        )  # per CLIP model: (P + I, D)
        weights = [p.weight for p in job.prompts] + [p.weight for p in job.image_prompts]
        handle = self._next_handle
        self._next_handle += 1
        self._active.append(
            _Active(
                handle=handle,
                job=job,
                settings=settings,
                generator=generator,
                logits=logits,
                temperature=torch.full((), settings.temperature, device=device),
                cut_size=torch.full((), settings.cut_size_at(0, job.iterations), device=device),
                optimizer=_adam(
                    logits, settings, job.iterations, engine.cuda_graphs and device.type == "cuda"
                ),
                text=text,
                weights=torch.tensor(weights, device=device),
                losses=torch.zeros(job.iterations, device=device),
                model_losses=torch.zeros(job.iterations, len(text), device=device),
                started=time.perf_counter(),
                setup_s=time.perf_counter() - started,
                anchor=anchor if anchor_at > 0 else None,
                anchor_weight=anchor_at,
                region=region,
            )
        )
        return handle

    def _picture_tokens(self, png: bytes, settings: DrawSettings) -> torch.Tensor:
        """The dVAE encoder's tokens (1, h, w) for a picture fitted to the output."""
        engine = self.engine
        encoder = engine.picture_encoder()
        pixels = fitted_pixels(png, settings.width, settings.height, engine.device)
        tokens = picture_tokens(encoder, pixels)
        if int(tokens.max()) >= engine.models.vocab_size:
            raise SettingsError(
                "the dVAE encoder's codebook is larger than the decoder's: use the encoder "
                "that belongs to the decoder"
            )
        return tokens

    def _picture_targets(self, job: Job, settings: DrawSettings) -> tuple[torch.Tensor, ...]:
        """Unit embeddings (I, D) of the job's image prompts, one tensor per CLIP model, each
        picture cut once like the output. Their crops come from a stream of their own, so the
        job's own stays as without them."""
        engine = self.engine
        clips = engine.clips(settings)
        if not job.image_prompts:
            return tuple(torch.zeros(0, _text_width(clip), device=engine.device) for clip in clips)
        generator = torch.Generator(device=engine.device).manual_seed(job.seed)
        encoders = [ImageEncoder(clip.visual, int(clip.visual.input_resolution)) for clip in clips]
        pictures = [
            picture_embeddings(
                encoders,
                fitted_pixels(picture.png, settings.width, settings.height, engine.device),
                settings,
                generator=generator,
            )
            for picture in job.image_prompts
        ]
        return tuple(torch.stack(per_model) for per_model in zip(*pictures, strict=True))

    def stop(self, handle: int) -> DrawResult:
        """Take a job out before its last iteration; its result has `cancelled` set."""
        entry = next(e for e in self._active if e.handle == handle)
        self._active.remove(entry)
        return self._finish(entry, cancelled=True)

    def step(self, on_step: StepCallback | None = None) -> dict[int, DrawResult]:
        """One iteration for every job; returns the results of the jobs that just finished."""
        groups: dict[DrawSettings, list[_Active]] = {}
        for entry in self._active:
            groups.setdefault(entry.settings, []).append(entry)
        for settings, entries in groups.items():
            chunks = [entries] if self.engine.fuse_jobs else [[e] for e in entries]
            for chunk in chunks:
                for entry in chunk:
                    _follow_schedules(entry, settings)
                losses, model_losses, images = self._run(chunk, settings)
                for row, entry in enumerate(chunk):
                    entry.losses[entry.step] = losses[row].detach()
                    entry.model_losses[entry.step] = model_losses[row].detach()
                    entry.step += 1
                    if on_step is not None:
                        on_step(
                            StepInfo(
                                entry.handle,
                                entry.step,
                                entry.job.iterations,
                                entry.losses[entry.step - 1],
                                entry.model_losses[entry.step - 1],
                                images[row].detach(),
                                entry.logits.detach(),
                            )
                        )
        finished = {}
        for entry in list(self._active):
            if entry.step >= entry.job.iterations or _stalled(entry):
                self._active.remove(entry)
                finished[entry.handle] = self._finish(entry, cancelled=False)
        return finished

    def _run(self, chunk: list[_Active], settings: DrawSettings) -> graphs.StepOutputs:
        """One step of `chunk`: replayed if captured, else captured after a warm-up step where
        CUDA graphs are on, else eager."""
        if not self.engine.cuda_graphs:
            return self._step(chunk, settings)
        members = tuple(entry.handle for entry in chunk)
        handles = set(self.handles)
        for stale in [key for key in self._captured if not set(key[1]) <= handles]:
            del self._captured[stale]
        captured = self._captured.get((settings, members))
        if captured is not None:
            return captured.replay()
        try:
            stream = graphs.side_stream()
        except Exception as error:
            self.engine.graphs_failed(error)
            return self._step(chunk, settings)
        outputs = graphs.warm_up(stream, lambda: self._step(chunk, settings))
        try:
            self._captured[settings, members] = graphs.capture(
                lambda: self._step(chunk, settings), [entry.generator for entry in chunk]
            )
        except Exception as error:
            self.engine.graphs_failed(error)
        return outputs

    def _step(self, chunk: list[_Active], settings: DrawSettings) -> graphs.StepOutputs:
        """One forward, backward and update for jobs sharing `settings`; (losses, each CLIP
        model's losses, images)."""
        embeds, images = self._forward(chunk, settings)
        weights = _padded_weights(chunk)  # (B, P)
        model_losses = torch.stack(
            [
                weighted_loss(model_embeds, _padded_texts(chunk, model), weights)
                for model, model_embeds in enumerate(embeds)
            ],
            dim=1,
        )  # (B, M), in fp32 whatever the precision
        losses = model_losses.sum(dim=1)  # (B,): every CLIP model counts the same
        if any(entry.anchor is not None for entry in chunk):
            losses = losses + torch.stack([_anchor_term(entry) for entry in chunk])
        for entry in chunk:
            entry.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        for entry in chunk:
            entry.optimizer.step()
        return losses, model_losses, images

    def _forward(
        self, chunk: list[_Active], settings: DrawSettings
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Cutout embeddings (B, N, D), one tensor per CLIP model, and decoded images
        (B, 3, H, W) for the jobs of `chunk`.

        Temperatures live on the device and every random draw comes from a device generator, so
        nothing here waits for the device, and a captured step replays as it was recorded.
        """
        engine, device = self.engine, self.engine.device
        parts = [
            _held(
                e,
                relax(
                    e.logits,
                    gumbel_noise(e.logits.shape, e.generator),
                    e.temperature,
                    settings.relaxation,
                ),
            )
            for e in chunk
        ]
        soft = parts[0] if len(parts) == 1 else torch.cat(parts)  # (B, V, h, w), no copy for one
        networks = engine.networks(settings)
        images = decode(networks.decode, soft)  # (B, 3, H, W) in fp32
        transforms = torch.stack(
            [
                _cutouts(e, cutout_transforms(settings, e.generator, device, e.cut_size))
                for e in chunk
            ]
        )  # (B, N, 2, 3)
        cut_from = images
        if settings.tile:  # from the picture tiled 2x2, each job's crops shifted at random
            generators = [e.generator for e in chunk]
            cut_from, transforms = wrapped(images, transforms, generators, settings.tile)
        cutouts = make_cutouts(cut_from, transforms, networks.cut_side)  # (B*N, 3, s, s)
        if settings.noise_std:  # before scaling, so that every CLIP sees the same noisy crops
            jitter = torch.cat(
                [
                    torch.randn(
                        (settings.cutouts, *cutouts.shape[1:]), generator=e.generator, device=device
                    )
                    for e in chunk
                ]
            )
            cutouts = cutouts + jitter * settings.noise_std
        embeds = [
            embed_cutouts(
                encoder.encode, resized(cutouts, encoder.resolution), networks.encode_dtype
            ).view(len(chunk), settings.cutouts, -1)  # (B*N, 3, r, r) -> (B, N, D)
            for encoder in networks.encoders
        ]
        return embeds, images

    def _finish(self, entry: _Active, *, cancelled: bool) -> DrawResult:
        image = self.engine.render(entry.logits.detach(), entry.settings)
        if self.engine.device.type == "cuda":
            torch.cuda.synchronize(self.engine.device)
        loop_s = time.perf_counter() - entry.started
        return DrawResult(
            image=image,
            logits=entry.logits.detach().cpu().clone(),
            job=entry.job,
            settings=entry.settings,
            steps=entry.step,
            cancelled=cancelled,
            losses=entry.losses[: entry.step].cpu().tolist(),
            model_losses=entry.model_losses[: entry.step].T.cpu().tolist(),
            clip_models=tuple(
                self.engine.models.clip_names[i] for i in self.engine.clip_indices(entry.settings)
            ),
            timings=Timings(setup_s=entry.setup_s, loop_s=loop_s, steps=entry.step),
            decoder_sha256=self.engine.models.decoder_sha256,
            auto_stopped=not cancelled and entry.step < entry.job.iterations,
        )


def _adam(
    logits: torch.nn.Parameter, settings: DrawSettings, iterations: int, capturable: bool
) -> torch.optim.Adam:
    """Adam for one job. A captured step keeps Adam's step count on the device, and its
    learning rate too when a drop will change it between replays."""
    lr: float | torch.Tensor = settings.lr_at(0, iterations)
    if capturable and settings.lr_drop is not None:
        lr = torch.tensor(lr, device=logits.device)
    return torch.optim.Adam([logits], lr=lr, capturable=capturable)


def _follow_schedules(entry: _Active, settings: DrawSettings) -> None:
    """Set the job's temperature, cutout size and learning rate for its next step. Each is a
    device tensor filled in place (or a float Adam reads), so nothing waits for the device."""
    step, total = entry.step, entry.job.iterations
    if settings.temperature_end is not None:
        entry.temperature.fill_(settings.temperature_at(step, total))
    if settings.cut_schedule != "fixed":
        entry.cut_size.fill_(settings.cut_size_at(step, total))
    if (
        settings.lr_drop is not None
        and step > 0
        and settings.lr_at(step, total) != (settings.lr_at(step - 1, total))
    ):
        group = entry.optimizer.param_groups[0]
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(settings.lr_at(step, total))
        else:
            group["lr"] = settings.lr_at(step, total)


def _stalled(entry: _Active) -> bool:
    """Auto-stop: at the end of each window of `AUTO_STOP_WINDOW` steps (reading its mean loss
    waits for the device, once a window), whether `Job.auto_stop` windows in a row have not
    beaten the best."""
    patience = entry.job.auto_stop
    if patience is None or entry.step % AUTO_STOP_WINDOW:
        return False
    window = float(entry.losses[entry.step - AUTO_STOP_WINDOW : entry.step].mean())
    if window < entry.best_window:
        entry.best_window, entry.stale_windows = window, 0
    else:
        entry.stale_windows += 1
    return entry.stale_windows >= patience


def _grid_tokens(tokens: torch.Tensor, grid: tuple[int, int], device: torch.device) -> torch.Tensor:
    """An edit's tokens (1, h, w) on the device; ValueError when they are not the output's grid."""
    if tuple(tokens.shape) != (1, *grid):
        raise ValueError(f"init_tokens has shape {tuple(tokens.shape)}, expected {(1, *grid)}")
    return tokens.to(device)


def _held(entry: _Active, soft: torch.Tensor) -> torch.Tensor:
    """A job's soft tokens (1, V, h, w), the cells a region edit keeps held as they were."""
    return soft if entry.region is None else entry.region.hold(soft)


def _cutouts(entry: _Active, transforms: torch.Tensor) -> torch.Tensor:
    """A job's cutout maps (N, 2, 3), a region edit's mostly moved onto its region."""
    return transforms if entry.region is None else entry.region.cut(transforms)


def _anchor_term(entry: _Active) -> torch.Tensor:
    """How far a job that started from a picture has left its tokens, weighted (0-d)."""
    if entry.anchor is None:
        return entry.logits.new_zeros(())
    return entry.anchor_weight * anchor_loss(entry.logits, entry.anchor)


def _text_width(clip: Any) -> int:
    """The width D of a CLIP model's text (and image) embeddings."""
    return int(clip.text_projection.shape[1])


def _padded_weights(chunk: list[_Active]) -> torch.Tensor:
    """Prompt weights (B, P), zero-padded to the longest job."""
    width = max(len(e.weights) for e in chunk)
    return torch.stack(
        [torch.nn.functional.pad(e.weights, (0, width - len(e.weights))) for e in chunk]
    )


def _padded_texts(chunk: list[_Active], model: int) -> torch.Tensor:
    """Prompt embeddings (B, P, D) in CLIP model `model`'s space, zero-padded as the weights."""
    width = max(len(e.weights) for e in chunk)
    return torch.stack(
        [
            torch.nn.functional.pad(e.text[model], (0, 0, 0, width - len(e.text[model])))
            for e in chunk
        ]
    )
