"""The SQLite store: fair order, caps, restarts, settings."""

from __future__ import annotations

from pathlib import Path

from bot.config import DefaultsConfig
from bot.store import JobStatus, Store


def _store(tmp_path: Path) -> Store:
    return Store(tmp_path / "jobs.sqlite3", DefaultsConfig())


def _add(store: Store, user: int, prompt: str = "a cat") -> int:
    job = store.add_job(
        guild_id=1, channel_id=2, user_id=user, prompt=prompt, seed=0, iterations=10, size=64
    )
    return job.id


def test_round_robin_between_requesters(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a1, a2, a3 = (_add(store, 1) for _ in range(3))
    b1, b2 = _add(store, 2), _add(store, 2)
    c1 = _add(store, 3)
    assert [j.id for j in store.queue_order()] == [a1, b1, c1, a2, b2, a3]
    store.start(a1)
    # Alice was just served, so Bob and Carol come before her next job.
    assert [j.id for j in store.queue_order()] == [b1, c1, a2, b2, a3]
    assert store.active_count(user_id=1, guild_id=1) == 3
    assert store.active_count() == 6


def test_running_jobs_are_requeued_after_a_restart(tmp_path: Path) -> None:
    store = _store(tmp_path)
    job = _add(store, 1)
    store.start(job)
    store.progress(job, 7)
    store.close()
    again = _store(tmp_path)
    (requeued,) = again.requeue_interrupted()
    assert (requeued.id, requeued.status, requeued.steps) == (job, "queued", 0)
    assert requeued.notice is not None
    assert "restarted" in requeued.notice


def test_guild_settings_round_trip(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.guild_settings(1) == store.defaults
    changed = store.defaults.__class__(
        default_iterations=5, max_iterations=50, max_queued_per_user=1, progress_interval_s=3.0,
        max_size=256, allowed_channels=(9, 10),
    )  # fmt: skip
    store.save_guild_settings(1, changed)
    assert store.guild_settings(1) == changed
    assert store.guild_settings(2) == store.defaults


def test_each_move_of_a_job(tmp_path: Path) -> None:
    store = _store(tmp_path)
    job = _add(store, 1)
    started = store.start(job)
    assert (started.status, started.steps) == (JobStatus.RUNNING, 0)
    assert started.started_at is not None
    store.note(job, "Cancelled by <@1>.")
    stopped = store.cancel(job, steps=5, seconds=1.5, latent="1.pt")
    assert (stopped.status, stopped.steps, stopped.seconds, stopped.latent, stopped.notice) == (
        JobStatus.CANCELLED, 5, 1.5, "1.pt", "Cancelled by <@1>.",
    )  # fmt: skip
    other = _add(store, 2)
    store.start(other)
    store.progress(other, 9)
    requeued = store.requeue(other, "again", requeues=1)
    assert (requeued.status, requeued.started_at, requeued.steps, requeued.notice) == (
        JobStatus.QUEUED, None, 0, "again",
    )  # fmt: skip
    assert requeued.requeues == 1
    failed = store.fail(other, "boom", requeues=3)
    assert (failed.status, failed.error, failed.requeues) == (JobStatus.FAILED, "boom", 3)
    third = _add(store, 3)
    store.start(third)
    store.note(third, "stale")
    done = store.finish(third, steps=10, seconds=2.0, latent="3.pt")
    assert (done.status, done.steps, done.notice) == (JobStatus.DONE, 10, None)
    assert store.active_count() == 0
    assert store.job(third) == done
