"""Workers through Redis: real redis-server processes, real `pseudo-dalle worker` processes on
the tiny models, the real bot against the fake Discord."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis

from bot.jobs.store import JobRow, JobStatus
from generator.contract.redis_keys import Keys
from generator.worker.devices import claim_device
from pseudo_dalle.doctor import report

from .bot_harness import (
    Running,
    cards_of,
    run,
    running_bot,
    start_bot,
    text_of,
    title,
    wait_for_card,
    wait_for_job,
)
from .conftest import ModelFiles
from .fake_discord import ALICE, BOB, CAROL, FakeDiscord
from .redis_harness import RedisServer, WorkerProcess, free_port

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


@contextlib.asynccontextmanager
async def bot_with_workers(
    tmp_path: Path, files: ModelFiles, redis: RedisServer, names: list[str], **sections: str
) -> AsyncIterator[tuple[FakeDiscord, Running, dict[str, WorkerProcess]]]:
    # No transport of the test's: the workers are reached through Redis, as the config says.
    async with running_bot(
        tmp_path, files, transport=None, redis=f'url = "{redis.url}"', **sections
    ) as (
        fake,
        running,
        _,
    ):
        workers = {name: WorkerProcess(redis.url, name, tmp_path / f"{name}.log") for name in names}
        try:
            yield fake, running, workers
        finally:
            for worker in workers.values():
                worker.kill()


async def until(check: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition never held")
        await asyncio.sleep(0.05)


async def doctor(config: Path) -> str:
    """What `pseudo-dalle doctor` prints for this config; made in a thread, as the bot runs on
    meanwhile."""
    return "\n".join(await asyncio.to_thread(report, config))


def jobs(running: Running, count: int) -> list[JobRow]:
    found = [running.store.job(job_id) for job_id in range(1, count + 1)]
    assert all(job is not None for job in found)
    return [job for job in found if job is not None]


def test_two_workers_share_three_members_jobs_in_fair_turns(
    model_files: ModelFiles, tmp_path: Path, redis_server: RedisServer
) -> None:
    async def scenario() -> None:
        redis = f'url = "{redis_server.url}"'
        async with running_bot(tmp_path, model_files, redis=redis) as (fake, running, config):
            alone = await fake.reply_to(await fake.command(BOB, "help"))
            assert "No drawing worker is connected right now" in alone
            nobody = await doctor(config.path)
            assert f"workers: none connected to {redis_server.url}" in nobody
            for member in (ALICE, ALICE, BOB, BOB, CAROL, CAROL):
                await fake.reply_to(
                    await fake.command(member, "draw", prompt="a lamp", iterations=40, size=64)
                )
            names = ["gpu-a", "gpu-b"]
            workers = [WorkerProcess(redis_server.url, n, tmp_path / f"{n}.log") for n in names]
            try:
                await until(lambda: len(running.app.scheduler.workers()) == 2)
                report = await doctor(config.path)
                await until(lambda: all(j.status == JobStatus.DONE for j in jobs(running, 6)))
                shown = await fake.reply_to(await fake.command(BOB, "help"))
                done = jobs(running, 6)
            finally:
                for worker in workers:
                    worker.kill()
        by_start = [job.id for job in sorted(done, key=lambda job: job.started_at or 0)]
        assert by_start == [1, 3, 5, 2, 4, 6]  # Alice, Bob, Carol, then their second jobs
        assert {job.worker for job in done} == set(names)
        assert all(job.requeues == 0 for job in done)
        assert all(job.steps == job.spec.iterations == 40 for job in done)
        for job in done:
            finals = [
                e
                for e in fake.events
                if e.kind in ("create", "edit") and f"Finished · job {job.id}" in text_of(e)
            ]
            assert finals, f"job {job.id} has no final card"
        assert f"workers: 2 connected to {redis_server.url}" in report
        assert "  gpu-a: cpu, " in report
        assert "  gpu-b: cpu, " in report
        assert "gpu-a · cpu · 1 of 1 place(s) free" in shown
        assert "gpu-b · cpu · 1 of 1 place(s) free" in shown

    run(scenario())


def test_a_worker_killed_mid_job_hands_it_to_the_other(
    model_files: ModelFiles, tmp_path: Path, redis_server: RedisServer
) -> None:
    async def scenario() -> None:
        async with bot_with_workers(tmp_path, model_files, redis_server, ["gpu-a", "gpu-b"]) as (
            fake,
            running,
            workers,
        ):
            await until(lambda: len(running.app.scheduler.workers()) == 2)
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="a tower", iterations=400, size=64)
            )
            first = await wait_for_job(running.store, 1, lambda job: job.worker is not None)
            await wait_for_card(fake, 1, "Drawing")
            assert first.worker is not None
            victim, survivor = (
                workers[first.worker],
                next(w for name, w in workers.items() if name != first.worker),
            )
            queue_shown = await fake.reply_to(await fake.command(BOB, "queue"))
            assert f"on {first.worker}" in queue_shown
            killed, since = time.monotonic(), len(fake.events)
            os.kill(victim.process.pid, signal.SIGKILL)
            taken = await wait_for_job(
                running.store, 1, lambda job: job.worker == survivor.name, timeout=60
            )
            took = time.monotonic() - killed
            assert took < 25  # the lease (15 s) and a renewal
            assert taken.requeues == 1
            said = f"A drawing worker stopped while drawing this; worker {survivor.name} started"
            await fake.wait_for(lambda: any(said in text_of(e) for e in cards_of(fake, 1, since)))
            final = await wait_for_card(fake, 1, "Finished")
            assert "400 iterations in" in text_of(final)
            job = running.store.job(1)
            assert job is not None
            assert (job.status, job.worker) == (JobStatus.DONE, survivor.name)

    run(scenario())


def test_a_worker_that_wakes_after_losing_its_job_changes_nothing(
    model_files: ModelFiles, tmp_path: Path, redis_server: RedisServer
) -> None:
    """A worker stopped (SIGSTOP) past its lease loses its job to the other worker; woken up,
    what it still says about the job changes nothing: the job stays the other worker's."""
    long = "max_iterations = 100000\nprogress_interval_s = 2"

    async def scenario() -> None:
        async with bot_with_workers(
            tmp_path,
            model_files,
            redis_server,
            ["gpu-a", "gpu-b"],
            defaults=long,
            limits="max_iterations = 100000",
        ) as (fake, running, workers):
            store = running.store
            await until(lambda: len(running.app.scheduler.workers()) == 2)
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="a lake", iterations=100000, size=64)
            )
            first = await wait_for_job(store, 1, lambda job: job.steps > 0)
            assert first.worker is not None
            sleeper = workers[first.worker]
            other = next(w for name, w in workers.items() if name != first.worker)
            os.kill(sleeper.process.pid, signal.SIGSTOP)
            try:
                taken = await wait_for_job(
                    store, 1, lambda job: job.worker == other.name and job.steps > 0, 60
                )
            finally:
                os.kill(sleeper.process.pid, signal.SIGCONT)
            assert taken.requeues == 1
            dropped = "job 1 was handed to another worker; dropping it"
            await sleeper.wait_for_log(dropped, timeout=30)
            # Whatever the woken worker sent before it noticed, the job is still gpu-b's.
            await asyncio.sleep(2)
            now = store.job(1)
            assert now is not None
            assert (now.status, now.worker, now.requeues) == (
                JobStatus.RUNNING,
                other.name,
                1,
            )
            assert not any(title(e).startswith("Finished") for e in cards_of(fake, 1))
            await fake.reply_to(await fake.command(ALICE, "cancel", job=1))
            ended = await wait_for_job(store, 1, lambda job: job.status != JobStatus.RUNNING)
            assert (ended.status, ended.worker) == (JobStatus.CANCELLED, other.name)

    run(scenario())


def test_redis_killed_and_restarted_mid_queue_loses_nothing(
    model_files: ModelFiles, tmp_path: Path, redis_server: RedisServer
) -> None:
    async def scenario() -> None:
        async with bot_with_workers(tmp_path, model_files, redis_server, ["gpu-a"]) as (
            fake,
            running,
            _,
        ):
            await until(lambda: len(running.app.scheduler.workers()) == 1)
            for member in (ALICE, BOB, CAROL):
                await fake.reply_to(
                    await fake.command(member, "draw", prompt="a bell", iterations=150, size=64)
                )
            await wait_for_job(running.store, 1, lambda job: job.steps > 0)
            redis_server.kill()
            await asyncio.sleep(3)
            redis_server.start()
            await until(lambda: all(j.status == JobStatus.DONE for j in jobs(running, 3)), 120)
            for job in jobs(running, 3):
                assert (job.steps, job.worker) == (150, "gpu-a")
                final = await wait_for_card(fake, job.id, "Finished")
                assert "150 iterations in" in text_of(final)

    run(scenario())


def test_a_worker_without_redis_retries_and_says_why(tmp_path: Path) -> None:
    async def scenario() -> None:
        port = free_port()
        url = f"redis://:hunter2@127.0.0.1:{port}/0"
        worker = WorkerProcess(url, "lonely", tmp_path / "lonely.log")
        try:
            await worker.wait_for_log("trying again in 2 s", timeout=30)
            log = worker.log()
            assert f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0" in log
            assert "trying again in 1 s" in log
            assert "hunter2" not in log
            server = RedisServer(tmp_path / "redis", port=port)
            server.start()
            try:
                # This server has no password, so the worker is now refused, and says that.
                await worker.wait_for_log("AUTH", timeout=30)
            finally:
                server.kill()
        finally:
            worker.kill()

    run(scenario())


def test_a_worker_waits_for_redis_then_for_the_bot(tmp_path: Path) -> None:
    async def scenario() -> None:
        port = free_port()
        worker = WorkerProcess(f"redis://127.0.0.1:{port}/0", "early", tmp_path / "early.log")
        try:
            await worker.wait_for_log("cannot reach Redis at", timeout=30)
            server = RedisServer(tmp_path / "redis", port=port)
            server.start()
            try:
                await worker.wait_for_log("connected to Redis", timeout=40)
                await worker.wait_for_log("waiting for the bot to publish its settings")
                assert worker.process.poll() is None
            finally:
                server.kill()
        finally:
            worker.kill()

    run(scenario())


def test_the_bot_restarted_finds_its_jobs_still_drawing_or_done(
    model_files: ModelFiles, tmp_path: Path, redis_server: RedisServer
) -> None:
    """Workers go on while the bot is away; what they said meanwhile is read when it is back:
    job 1 finished while the bot was down, job 2 was still drawing; neither starts again."""

    async def scenario() -> None:
        async with running_bot(
            tmp_path,
            model_files,
            redis=f'url = "{redis_server.url}"',
            worker="cutouts = 4\nthreads = 1\nmax_batch = 2",
        ) as (fake, running, config):
            worker = WorkerProcess(redis_server.url, "gpu-a", tmp_path / "gpu-a.log")
            try:
                await until(lambda: len(running.app.scheduler.workers()) == 1)
                await fake.reply_to(
                    await fake.command(ALICE, "draw", prompt="a ship", iterations=300, size=64)
                )
                await fake.reply_to(
                    await fake.command(BOB, "draw", prompt="a car", iterations=800, size=64)
                )
                await wait_for_job(running.store, 2, lambda job: job.steps > 0)
                await running.stop()
                assert "job 1 finished" not in worker.log()
                paused = await wait_for_card(fake, 2, "Drawing")
                assert "this card catches up when the bot is back" in text_of(paused)
                await worker.wait_for_log("job 1 finished after 300 steps")
                restarted = await start_bot(config, fake)
                try:
                    for job_id, steps in ((1, 300), (2, 800)):
                        job = await wait_for_job(
                            restarted.store, job_id, lambda j: j.status == JobStatus.DONE
                        )
                        assert (job.steps, job.requeues, job.worker) == (steps, 0, "gpu-a")
                        final = await wait_for_card(fake, job_id, "Finished")
                        assert f"{steps} iterations in" in text_of(final)
                    assert worker.log().count("took job") == 2
                finally:
                    await restarted.stop()
            finally:
                worker.kill()

    run(scenario())


def test_workers_scaled_on_one_host_share_out_its_gpus(redis_server: RedisServer) -> None:
    """Docker Compose gives every scaled worker all the GPUs; each takes one nobody holds."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = Keys()
    gpus = [("cuda:0", "GPU-1111"), ("cuda:1", "GPU-2222")]
    assert claim_device(client, keys, "w1", gpus) == ("cuda:0", "pseudo-dalle:gpu:GPU-1111")
    assert claim_device(client, keys, "w2", gpus) == ("cuda:1", "pseudo-dalle:gpu:GPU-2222")
    assert claim_device(client, keys, "w3", gpus) is None
    assert claim_device(client, keys, "w1", gpus) == ("cuda:0", "pseudo-dalle:gpu:GPU-1111")
    client.delete("pseudo-dalle:gpu:GPU-1111")  # w1 stopped (or its key expired)
    assert claim_device(client, keys, "w3", gpus) == ("cuda:0", "pseudo-dalle:gpu:GPU-1111")
    client.close()
