"""Quality presets: each through the CLI, a worker's models chosen per job, and the queue's
estimate counting what a job's steps cost."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from bot.jobs.estimates import Running
from bot.jobs.scheduler import Scheduler
from bot.jobs.spec import Ask, Rules, build
from bot.jobs.store import JobRow, Store
from bot.limits import GuildLimits, GuildSettings, HardLimits
from bot.workers.transport import WorkerInfo
from generator.contract.errors import SettingsError
from generator.contract.jobs import JobSpec
from generator.contract.protocol import WorkerOptions
from generator.contract.quality import (
    CLIP_GFLOPS,
    CLIP_KEPT_MIB_PER_CUT,
    DECODER_GFLOPS_512,
    DECODER_KEPT_MIB_512,
    PRESETS,
    QUALITIES,
    VOCAB_SIZE,
    job_cost,
    preset,
)
from generator.contract.settings import DrawSettings, Job
from generator.method.engine import Engine
from generator.method.fast import Networks, build_networks
from generator.method.latent import decode
from generator.method.memory import kept_bytes
from generator.method.objective import embed_cutouts
from generator.method.output import read_png_text
from generator.models.loaders import Models, load_models
from generator.worker.admission import GIB, Admission, Fit, dearest_job, model_bytes

from .cli_harness import Cli, Run
from .conftest import ModelFiles
from .specs import a_spec
from .synthetic import ClipSize, random_clip, random_decoder

FULL: dict[str, ClipSize] = {
    "ViT-B/32": "full",
    "ViT-B/16": "full-B16",
    "RN50": "full-RN50",
    "ViT-L/14": "full-L14",
}


def _cli_draw(cli: Cli, files: ModelFiles, named_clips: Path, out: Path, *extra: str) -> Run:
    return cli(
        *("draw", "a lighthouse", "--seed", "3", "--device", "cpu", "--threads", "1"),
        *("--offline", "--cache-dir", str(named_clips), "--decoder", str(files.decoder_pickle)),
        *("--out", str(out), *extra),
    )


@pytest.mark.parametrize("quality", QUALITIES)
def test_every_preset_runs_through_the_cli(
    cli: Cli, quality: str, model_files: ModelFiles, named_clips: Path, tmp_path: Path
) -> None:
    """The preset's cutouts and models reach the run; the iterations and size given win."""
    out = tmp_path / f"{quality}.png"
    done = _cli_draw(
        cli,
        model_files,
        named_clips,
        out,
        "--quality",
        quality,
        "--iterations",
        "2",
        "--size",
        "64",
    )
    assert done.code == 0, done.stderr
    chosen, text = PRESETS[quality], read_png_text(out)
    settings = json.loads(text["settings"])
    assert settings["cutouts"] == chosen.cutouts
    assert [m["model"] for m in json.loads(text["clip_models"])] == list(chosen.clip_models)
    assert text["iterations"] == "2"
    assert Image.open(out).size == (64, 64)
    if len(chosen.clip_models) > 1:  # the summary shows each model's loss
        for model in chosen.clip_models:
            assert re.search(rf"{re.escape(model)} -?[\d.]+ -> -?[\d.]+", done.stdout)


def test_a_presets_own_size_and_named_models_replacing_its_list(
    cli: Cli, model_files: ModelFiles, named_clips: Path, tmp_path: Path
) -> None:
    draft = _cli_draw(
        cli, model_files, named_clips, tmp_path / "d.png", "--quality", "draft", "--iterations", "1"
    )
    assert draft.code == 0, draft.stderr
    assert Image.open(tmp_path / "d.png").size == (PRESETS["draft"].size,) * 2
    named = _cli_draw(
        cli,
        model_files,
        named_clips,
        tmp_path / "b.png",
        "--quality",
        "best",
        "--iterations",
        "1",
        "--size",
        "64",
        "--cutouts",
        "3",
        "--clip-model",
        "ViT-B/16",
    )
    assert named.code == 0, named.stderr
    text = read_png_text(tmp_path / "b.png")
    assert [m["model"] for m in json.loads(text["clip_models"])] == ["ViT-B/16"]
    assert json.loads(text["settings"])["cutouts"] == 3
    bad = _cli_draw(cli, model_files, named_clips, tmp_path / "x.png", "--quality", "supreme")
    assert bad.code == 2
    assert "invalid choice: 'supreme'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_job_draws_with_the_models_its_settings_name(
    two_clip_models: Models, small_settings: DrawSettings, model_files: ModelFiles
) -> None:
    """A worker holding two models draws a job that names one as that model alone would."""
    job = Job("a lighthouse at night", 7, 4)
    second = str(model_files.clip_48_torchscript)
    alone = Engine(
        load_models(second, str(model_files.decoder_pickle), device="cpu"), small_settings
    ).draw(job)
    both = Engine(two_clip_models, small_settings).draw(job)
    named = dataclasses.replace(small_settings, clip_models=(second,))
    picked = Engine(two_clip_models, named).draw(job)
    assert torch.equal(picked.logits, alone.logits)
    assert picked.clip_models == (second,)
    assert len(picked.model_losses) == 1
    assert not torch.equal(both.logits, alone.logits)
    missing = dataclasses.replace(small_settings, clip_models=("RN50",))
    with pytest.raises(SettingsError, match="CLIP model RN50 is not loaded here"):
        Engine(two_clip_models, missing).draw(job)


class _Workers:
    """The scheduler's view of one ready worker; nothing is dispatched in these tests."""

    keeps_jobs = False

    def __init__(self, *workers: WorkerInfo) -> None:
        self._workers = list(workers)

    def workers(self) -> list[WorkerInfo]:
        return self._workers


def _spec(quality: str, iterations: int = 10, size: int = 512, main: str = "ViT-B/32") -> JobSpec:
    """A member's drawing at `quality`, as the desk makes it (the operator's CLIP `main`)."""
    ask = Ask(prompt="a fox", seed=1, iterations=iterations, size=size, quality=quality)
    limits = HardLimits(max_iterations=5000)
    spec, _ = build(ask, GuildSettings(), Rules(limits=limits, main_clip=main), "en")
    return spec


def _job(store: Store, quality: str, iterations: int, size: int = 512) -> JobRow:
    spec = _spec(quality, iterations, size)
    return store.add_job(guild_id=1, channel_id=2, user_id=3, spec=spec)


def test_the_queue_estimate_counts_what_a_jobs_steps_cost(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3", GuildLimits())
    worker = WorkerInfo("w", "cpu", 1, "host", 1, ("ViT-B/32", "ViT-B/16", "RN50"))
    scheduler = Scheduler(store, _Workers(worker), None, max_requeues=1)  # type: ignore[arg-type]
    running = _job(store, "draft", 300, size=256)
    scheduler.running[running.id] = Running(running, "w", step=100, rate=10.0)
    best, draft = _job(store, "best", 1000), _job(store, "draft", 300, size=256)
    first, second, third = scheduler.start_estimates([best, draft, best])
    assert second is not None
    assert first == pytest.approx(20.0)  # 200 steps left at 10 it/s
    speed = 10.0 * running.spec.cost()  # work per second on that place
    assert second == pytest.approx(20.0 + 1000 * best.spec.cost() / speed)
    assert third == pytest.approx(second + 300 * draft.spec.cost() / speed)
    # A best step costs several draft steps: the best job's wait counts it.
    assert best.spec.cost() / draft.spec.cost() > 5
    store.close()


def test_a_quality_whose_models_no_worker_holds(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3", GuildLimits())
    main = "/models/my-clip.pt"
    plain = WorkerInfo("a", "cpu", 1, "host", 1, (main,))
    two = WorkerInfo("b", "cpu", 1, "host", 2, (main, "ViT-B/16"))
    scheduler = Scheduler(store, _Workers(plain), None, max_requeues=1)  # type: ignore[arg-type]
    models = {q: _spec(q, main=main).clip_models for q in ("normal", "better", "best")}
    # The operator's main CLIP stands for ViT-B/32 at every quality.
    assert models["best"] == (main, "ViT-B/16", "RN50")
    assert scheduler.missing_models(models["normal"]) == ()
    assert scheduler.missing_models(models["better"]) == ("ViT-B/16",)
    assert scheduler.missing_models(models["best"]) == ("ViT-B/16", "RN50")
    scheduler.transport = _Workers(plain, two)  # type: ignore[assignment]
    assert scheduler.missing_models(models["better"]) == ()
    assert scheduler.missing_models(models["best"]) == ("RN50",)
    scheduler.transport = _Workers()  # type: ignore[assignment]
    assert scheduler.missing_models(models["best"]) == ()  # no worker ready yet: it waits
    store.close()


def test_presets_grow_in_cost_and_name_the_main_model_first() -> None:
    costs = [
        job_cost(p.size, p.cutouts, p.clip_models) * p.iterations
        for p in (preset(q) for q in QUALITIES)
    ]
    assert costs == sorted(costs)
    assert len(set(costs)) == len(costs)
    assert preset("best").models("/models/mine.pt") == ("/models/mine.pt", "ViT-B/16", "RN50")
    assert preset("better").models("ViT-B/16") == ("ViT-B/16",)
    with pytest.raises(ValueError, match="quality must be one of draft, normal, better, best"):
        preset("supreme")


def _full_size_on_meta(precision: str) -> tuple[list[str], Networks]:
    """The full-size architectures on the meta device, where nothing is computed."""
    with torch.device("meta"):
        decoder = random_decoder("full").requires_grad_(False)
        clips = {name: random_clip(size).requires_grad_(False) for name, size in FULL.items()}
    return list(clips), build_networks(decoder, [c.visual for c in clips.values()], precision)


@pytest.mark.slow
def test_the_declared_costs_are_what_the_networks_compute() -> None:
    names, networks = _full_size_on_meta("fp32")
    with FlopCounterMode(display=False) as counted:
        decode(networks.decode, torch.zeros(1, VOCAB_SIZE, 64, 64, device="meta"))
    assert counted.get_total_flops() / 1e9 == pytest.approx(DECODER_GFLOPS_512, rel=0.001)
    for name, encoder in zip(names, networks.encoders, strict=True):
        side = encoder.resolution
        with FlopCounterMode(display=False) as counted:
            encoder.encode(torch.zeros(1, 3, side, side, device="meta"))
        assert counted.get_total_flops() / 1e9 == pytest.approx(CLIP_GFLOPS[name], rel=0.001)


@pytest.mark.parametrize(("precision", "which"), [("fp32", 0), ("bf16", 1)])
def test_the_declared_memory_figures_are_what_the_networks_keep(precision: str, which: int) -> None:
    """Measured again on the full-size architectures, on the meta device."""
    names, networks = _full_size_on_meta(precision)
    soft = torch.zeros(1, VOCAB_SIZE, 64, 64, device="meta", requires_grad=True)
    kept = kept_bytes(lambda: decode(networks.decode, soft)) / 2**20
    assert kept == pytest.approx(DECODER_KEPT_MIB_512[which], rel=0.01)
    for name, encoder in zip(names, networks.encoders, strict=True):
        side = encoder.resolution
        cuts = torch.zeros(4, 3, side, side, device="meta", requires_grad=True)
        per_cut = kept_bytes(
            functools.partial(embed_cutouts, encoder.encode, cuts, networks.encode_dtype)
        )
        assert per_cut / 4 / 2**20 == pytest.approx(CLIP_KEPT_MIB_PER_CUT[name][which], rel=0.01)


def test_a_worker_takes_as_many_jobs_as_its_memory_holds_with_every_model(
    model_files: ModelFiles, named_clips: Path
) -> None:
    three = _named(["ViT-B/32", "ViT-B/16", "RN50"], model_files, named_clips)
    one = _named(["ViT-B/32"], model_files, named_clips)
    # best at 512 px, 48 cutouts, in fp32: 768 MiB of latent, 5740 of decoder and
    # 48 x (33.4 + 161.5 + 141.6) of CLIPs; normal: 768 + 5740 + 32 x 33.4.
    best_mib, normal_mib = 768 + 5740 + 48 * (33.4 + 161.5 + 141.6), 768 + 5740 + 32 * 33.4
    for models, quality, mib in ((three, "best", best_mib), (one, "normal", normal_mib)):
        dearest, job = dearest_job(models, WorkerOptions(), "fp32")
        assert dearest == quality
        assert job == pytest.approx(mib * 2**20)
    room = 3.5 * best_mib / 1024
    options = WorkerOptions(max_batch=8, memory_limit_gb=room)
    assert _places(three, options, "fp32") == 3
    assert _places(one, options, "fp32") == 8  # 3.5 best jobs' memory holds 8 normal ones
    assert _places(three, WorkerOptions(max_batch=2, memory_limit_gb=room), "fp32") == 2
    assert _places(three, WorkerOptions(max_batch=8), "fp32") == 8  # a CPU without a limit
    # The models count: what they take is not there for jobs.
    held = model_bytes(three, "fp32") / 2**30
    assert held > model_bytes(one, "fp32") / 2**30
    exact = WorkerOptions(max_batch=8, memory_limit_gb=3 * best_mib / 1024 + held)
    assert _places(three, exact, "fp32") == 3
    less = WorkerOptions(max_batch=8, memory_limit_gb=3 * best_mib / 1024 + held * 0.9)
    assert _places(three, less, "fp32") == 2
    assert _places(three, WorkerOptions(memory_limit_gb=0.1, max_batch=4), "fp32") == 1


def _named(names: list[str], model_files: ModelFiles, named_clips: Path) -> Models:
    """Tiny CLIPs under the names of OpenAI's, as a worker holding those loads them."""
    return load_models(
        names, str(model_files.decoder_pickle), device="cpu", cache_dir=named_clips, offline=True
    )


def _places(models: Models, options: WorkerOptions, precision: str) -> int:
    return Admission(models, options, precision).places


def test_a_worker_counts_each_job_at_its_own_size(
    model_files: ModelFiles, named_clips: Path
) -> None:
    """A pan's wider canvas and Upscale (Creative)'s doubled one cost what their pixels do: a
    job that fits beside the ones drawn starts, one that fits alone waits, one that cannot
    fit even alone is refused."""
    models = _named(["ViT-B/32"], model_files, named_clips)
    square, pan, upscale = (
        a_spec(width=512, height=512, cutouts=32, clip_models=("ViT-B/32",)),
        a_spec(width=768, height=512, cutouts=32, clip_models=("ViT-B/32",)),
        a_spec(width=1024, height=1024, cutouts=32, clip_models=("ViT-B/32",)),
    )
    # 512x512 with 32 cutouts in fp32: 768 MiB of latent, 5740 of decoder, 32 x 33.4 of CLIP;
    # the latent and the decoder grow with the pixels, the CLIP's part does not.
    clip_mib = 32 * 33.4
    mib = {
        spec.width * spec.height: (768 + 5740) * spec.width * spec.height / 512**2 + clip_mib
        for spec in (square, pan, upscale)
    }
    # Room for the models, two 512x512 jobs and a little: a pan fits alone, not beside them.
    room_mib = 2 * mib[512 * 512] + 100
    options = WorkerOptions(
        max_batch=4, memory_limit_gb=room_mib / 1024 + model_bytes(models, "fp32") / GIB
    )
    admission = Admission(models, options, "fp32")
    for spec in (square, pan, upscale):
        assert admission.cost(spec) == pytest.approx(
            mib[spec.width * spec.height] * 2**20, rel=1e-6
        )
    assert admission.places == 2
    assert admission.fit(square, []) is Fit.NOW
    assert admission.fit(square, [square]) is Fit.NOW
    assert admission.fit(square, [square, square]) is Fit.LATER
    assert admission.fit(pan, []) is Fit.NOW
    assert admission.fit(pan, [square]) is Fit.LATER
    assert admission.fit(upscale, []) is Fit.NEVER
    # On a CPU without a limit nothing is counted.
    unlimited = Admission(models, WorkerOptions(max_batch=4), "fp32")
    assert unlimited.fit(upscale, [upscale, upscale]) is Fit.NOW
