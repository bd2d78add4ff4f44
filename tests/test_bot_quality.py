"""/draw quality through the real bot and the fake Discord: each quality's cutouts and CLIP
models in the spec a worker is given, the refusal of a quality no worker can draw, the admins'
max_quality and auto_stop, with the workers as the test's puppets; and a real worker reached
through Redis holding three tiny CLIPs under the presets' model names and drawing `best`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from generator.contract.quality import PRESETS, QUALITIES, job_bytes

from .bot_harness import (
    bot_with_puppets,
    run,
    running_bot,
    text_of,
    wait_for_card,
    wait_for_job,
)
from .conftest import ModelFiles
from .fake_discord import ADMIN, ALICE
from .redis_harness import RedisServer, WorkerProcess

pytestmark = pytest.mark.e2e


def _models(files: ModelFiles, cache: Path, extra: str = '["ViT-B/16", "RN50"]') -> str:
    return (
        f'clip = "ViT-B/32"\nextra_clips = {extra}\ncache_dir = "{cache}"\n'
        f'decoder = "{files.decoder_pickle}"\ndevice = "cpu"\noffline = true'
    )


def _png_text(data: bytes) -> dict[str, str]:
    with Image.open(io.BytesIO(data)) as image:
        return dict(image.text)  # type: ignore[attr-defined]


def test_every_quality_draws_with_its_cutouts_and_models(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        # At most 24 cutouts a job: fewer than normal, better and best ask for, more than draft.
        worker = "cutouts = 24\nrestart_delay_s = 0.2\nthreads = 1"
        async with bot_with_puppets(tmp_path, model_files, worker=worker) as (
            fake,
            running,
            config,
            workers,
        ):
            main = config.models.clip  # the operator's CLIP, a file: not the presets' ViT-B/32
            workers.join(clip_models=(main, "ViT-B/16", "RN50"))
            cutouts, models = [], []
            for number, quality in enumerate(QUALITIES, start=1):
                asked = await fake.command(
                    ALICE, "draw", prompt="a lighthouse", quality=quality, iterations=2, size=64
                )
                assert f"Queued as job {number}" in await fake.reply_to(asked)
                spec = (await workers.next_job(number)).spec
                assert spec.quality == quality
                assert spec.cutouts == min(PRESETS[quality].cutouts, 24)
                cutouts.append(spec.cutouts)
                models.append(spec.clip_models)
                workers.finish(number, 2)
                final = await wait_for_card(fake, number, "Finished")
                job = running.store.job(number)
                assert job is not None
                assert (job.spec, job.steps) == (spec, 2)
                assert (job.spec.width, job.spec.height, job.spec.iterations) == (64, 64, 2)
                fields = {f["name"]: f["value"] for f in final.payload["embeds"][0]["fields"]}
                assert fields.get("Quality") == (None if quality == "normal" else quality)
            assert cutouts == [16, 24, 24, 24]
            assert models == [
                (main,),
                (main,),
                (main, "ViT-B/16"),
                (main, "ViT-B/16", "RN50"),
            ]

    run(scenario())


def test_a_quality_no_worker_can_draw_is_refused_and_admins_cap_quality(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, limits='max_quality = "better"') as (
            fake,
            running,
            config,
            workers,
        ):
            main = config.models.clip
            workers.join(clip_models=(main,))
            said = await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="a fox", quality="better", size=64)
            )
            assert said == (
                "This quality needs the CLIP model ViT-B/16, which no drawing worker holds: "
                "draw at a lower quality, or ask the bot's operator to add it."
            )
            assert running.store.job(1) is None

            # The operator's ceiling is better; this server lowers it to draft.
            said = await fake.reply_to(await fake.command(ADMIN, "drawconfig", max_quality="best"))
            assert "max_quality lowered from best to the bot's limit, better." in said
            assert "Highest quality: better" in said
            said = await fake.reply_to(await fake.command(ADMIN, "drawconfig", max_quality="draft"))
            assert "Highest quality: draft" in said
            said = await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="a fox", quality="best", iterations=3)
            )
            assert "Queued as job 1" in said
            assert "Quality lowered from best to this server's maximum, draft." in said
            spec = (await workers.next_job(1)).spec
            draft = PRESETS["draft"]
            assert (spec.quality, spec.width, spec.height) == ("draft", draft.size, draft.size)
            assert (spec.iterations, spec.clip_models) == (3, (main,))
            workers.finish(1, 3)
            job = await wait_for_job(running.store, 1, lambda job: job.status == "done")
            assert (job.spec.quality, job.spec.width) == ("draft", draft.size)

    run(scenario())


def test_auto_stop_ends_a_drawing_that_stopped_improving_and_the_card_says_so(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files) as (fake, running, config, workers):
            workers.join(places=2, clip_models=(config.models.clip,))
            said = await fake.reply_to(await fake.command(ADMIN, "drawconfig", auto_stop=1))
            assert "Early stop: after 1 windows of 10 iterations without improvement" in said
            for job_id in (1, 2):
                await fake.reply_to(
                    await fake.command(ALICE, "draw", prompt="a fox", iterations=400, size=64)
                )
                spec = (await workers.next_job(job_id)).spec
                assert (spec.auto_stop, spec.iterations) == (1, 400)
            # The worker stopped job 1 at the end of a window; job 2 went all the way.
            workers.finish(1, 30)
            workers.finish(2, 400)
            stopped = await wait_for_card(fake, 1, "Finished")
            whole = await wait_for_card(fake, 2, "Finished")
            job = running.store.job(1)
            assert job is not None
            assert job.steps == 30
            assert (
                "Stopped early at iteration 30 of 400: the picture had stopped improving."
                in text_of(stopped)
            )
            assert "400 iterations in" in text_of(whole)
            assert "Stopped early" not in text_of(whole)

    run(scenario())


@pytest.mark.redis
@pytest.mark.slow
def test_a_redis_worker_holds_the_models_the_bot_publishes_and_draws_best(
    model_files: ModelFiles, named_clips: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    async def scenario() -> None:
        best = job_bytes(512, 512, 48, PRESETS["best"].clip_models, half=False) / 2**30
        options = (
            "cutouts = 64\nthreads = 1\nmax_batch = 4\n"
            f'precision = "fp32"\nmemory_limit_gb = {2.5 * best}'
        )
        async with running_bot(
            tmp_path,
            model_files,
            redis=f'url = "{redis_server.url}"',
            models=_models(model_files, named_clips),
            worker=options,
        ) as (fake, running, _):
            worker = WorkerProcess(
                redis_server.url, "gpu-a", tmp_path / "gpu-a.log", "--cache-dir", str(named_clips)
            )
            try:
                await running.worker_pid(timeout=120)
                (info,) = running.app.scheduler.workers()
                assert info.clip_models == ("ViT-B/32", "ViT-B/16", "RN50")
                # Room for two and a half best jobs besides the (tiny) models: two places of four.
                assert info.places == 2
                asked = await fake.command(
                    ALICE, "draw", prompt="a lamp", quality="best", iterations=2, size=64
                )
                assert "Queued as job 1" in await fake.reply_to(asked)
                final = await wait_for_card(fake, 1, "Finished", timeout=120)
                text = _png_text(final.files["pseudo-dalle-1.png"])
                assert json.loads(text["settings"])["cutouts"] == PRESETS["best"].cutouts
                judged = [m["model"] for m in json.loads(text["clip_models"])]
                assert judged == ["ViT-B/32", "ViT-B/16", "RN50"]
            finally:
                worker.kill()

    run(scenario())
