"""The SQLite store: fair order, caps, restarts, settings."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path

from bot.limits import GuildLimits
from bot.jobs.retention import DAY_S, Retention
from bot.jobs.store import MIGRATIONS, MOVES, GivenPicture, JobRow, JobStatus, Store
from generator.contract.images import ImageInput


def _store(tmp_path: Path) -> Store:
    return Store(tmp_path / "jobs.sqlite3", GuildLimits())


def _add(store: Store, user: int, prompt: str = "a cat") -> int:
    job = store.add_job(
        guild_id=1, channel_id=2, user_id=user, prompt=prompt, seed=0, iterations=10, size=64
    )
    return job.id


def _running(store: Store, job_id: int, worker: str = "w") -> JobRow:
    """Started and given to `worker`."""
    store.start(job_id)
    running = store.assign(job_id, worker)
    assert running is not None
    return running


def _finished(store: Store, job_id: int, continue_state: str) -> JobRow:
    _running(store, job_id)
    done = store.finish(job_id, worker="w", steps=10, seconds=1.0, continue_state=continue_state)
    assert done is not None
    return done


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
    _running(store, job)
    store.progress(job, 7, worker="w")
    store.close()
    again = _store(tmp_path)
    (requeued,) = again.requeue_interrupted(set())
    assert (requeued.id, requeued.status, requeued.steps) == (job, "queued", 0)
    assert requeued.notice is not None
    assert "restarted" in requeued.notice


def test_guild_settings_round_trip(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.guild_settings(1) == store.defaults
    changed = store.defaults.__class__(
        default_iterations=5,
        max_iterations=50,
        max_queued_per_user=1,
        progress_interval_s=3.0,
        max_size=256,
        allowed_channels=(9, 10),
    )
    store.save_guild_settings(1, changed)
    assert store.guild_settings(1) == changed
    assert store.guild_settings(2) == store.defaults


def test_each_move_of_a_job(tmp_path: Path) -> None:
    store = _store(tmp_path)
    job = _add(store, 1)
    started = store.start(job)
    assert started is not None
    assert (started.status, started.steps, started.worker) == (JobStatus.RUNNING, 0, None)
    assert started.started_at is not None
    assert store.assign(job, "w") is not None
    store.note(job, "Cancelled by <@1>.")
    stopped = store.stopped(job, worker="w", steps=5, seconds=1.5, continue_state="c3RhdGU=")
    assert stopped is not None
    assert (
        stopped.status,
        stopped.steps,
        stopped.seconds,
        stopped.continue_state,
        stopped.notice,
    ) == (JobStatus.CANCELLED, 5, 1.5, "c3RhdGU=", "Cancelled by <@1>.")
    other = _add(store, 2)
    _running(store, other)
    store.progress(other, 9, worker="w")
    requeued = store.requeue(other, "again", requeues=1)
    assert requeued is not None
    assert (requeued.status, requeued.started_at, requeued.steps, requeued.notice) == (
        JobStatus.QUEUED,
        None,
        0,
        "again",
    )
    assert requeued.requeues == 1
    _running(store, other)
    failed = store.fail(other, "boom", requeues=3)
    assert failed is not None
    assert (failed.status, failed.error, failed.requeues) == (JobStatus.FAILED, "boom", 3)
    third = _add(store, 3)
    _running(store, third)
    store.note(third, "stale")
    done = store.finish(third, worker="w", steps=10, seconds=2.0, continue_state="c3RhdGU=")
    assert done is not None
    assert (done.status, done.steps, done.notice) == (JobStatus.DONE, 10, None)
    assert store.active_count() == 0
    assert store.job(third) == done
    assert store.refused.total() == 0


def _in_state(store: Store, state: JobStatus) -> int:
    """A job in `state`, drawn (when it got that far) by worker "w"."""
    job = _add(store, 1)
    if state == JobStatus.QUEUED:
        return job
    _running(store, job)
    if state == JobStatus.DONE:
        store.finish(job, worker="w", steps=3, seconds=1.0, continue_state="eA==")
    elif state == JobStatus.FAILED:
        store.fail(job, "boom")
    elif state == JobStatus.CANCELLED:
        store.stopped(job, worker="w", steps=3, seconds=1.0, continue_state="eA==")
    return job


MOVE_CALLS = {
    "start": lambda s, j: s.start(j),
    "assign": lambda s, j: s.assign(j, "w"),
    "taken": lambda s, j: s.taken(j, "w2", requeues=1, notice="moved"),
    "progress": lambda s, j: s.progress(j, 7, worker="w"),
    "finish": lambda s, j: s.finish(j, worker="w", steps=9, seconds=2.0, continue_state="eQ=="),
    "cancel": lambda s, j: s.cancel(j, notice="by a member"),
    "stopped": lambda s, j: s.stopped(j, worker="w", steps=9, seconds=2.0, continue_state="eQ=="),
    "fail": lambda s, j: s.fail(j, "late"),
    "requeue": lambda s, j: s.requeue(j, "again"),
    "note": lambda s, j: s.note(j, "a note"),
    "card_posted": lambda s, j: s.card_posted(j, 42, 1.0),
}


def test_a_move_from_a_state_it_does_not_start_from_changes_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert set(MOVE_CALLS) == set(MOVES)
    refused = 0
    for move, call in MOVE_CALLS.items():
        for state in JobStatus:
            job = _in_state(store, state)
            before = store.job(job)
            assert before is not None
            assert before.status == state
            result = call(store, job)
            if state in MOVES[move]:
                assert result is not None, (move, state)
                assert store.job(job) == result
            else:
                refused += 1
                assert result is None, (move, state)
                assert store.job(job) == before, (move, state)
                assert store.refused[move] >= 1
    assert store.refused.total() == refused > 0


def test_what_a_worker_reports_counts_only_while_the_job_is_with_that_worker(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path)
    job = _add(store, 1)
    _running(store, job, worker="gpu-a")
    taken = store.taken(job, "gpu-b", requeues=1, notice="gpu-b took it over")
    assert taken is not None
    # gpu-a lost the job while it was stopped; what it says when it wakes up changes nothing.
    assert store.progress(job, 50, worker="gpu-a") is None
    assert store.finish(job, worker="gpu-a", steps=99, seconds=9.0, continue_state="eA==") is None
    assert store.fail(job, "late", worker="gpu-a") is None
    assert store.job(job) == taken
    assert dict(store.refused) == {"progress": 1, "finish": 1, "fail": 1}
    done = store.finish(job, worker="gpu-b", steps=10, seconds=1.0, continue_state="eQ==")
    assert done is not None
    assert (done.status, done.worker, done.requeues) == (JobStatus.DONE, "gpu-b", 1)


def _database_of_version_1(path: Path, latent: Path) -> None:
    """A database as versions before continue states left it: one finished job whose latent
    is a file, and a queued job continuing it."""
    with sqlite3.connect(path) as db:
        db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
        db.execute(
            "INSERT INTO jobs (guild_id, channel_id, user_id, prompt, seed, iterations, size, "
            "status, created_at, finished_at, steps, latent) "
            "VALUES (1, 2, 3, 'old', 5, 10, 64, 'done', 1.0, 2.0, 10, ?)",
            (str(latent),),
        )
        db.execute(
            "INSERT INTO jobs (guild_id, channel_id, user_id, prompt, seed, iterations, size, "
            "parent_id, init_latent, created_at) VALUES (1, 2, 3, 'old', 5, 10, 64, 1, ?, 3.0)",
            (str(latent),),
        )


def test_jobs_of_earlier_versions_keep_their_latent_files(tmp_path: Path) -> None:
    latent = tmp_path / "latents" / "1.pt"
    _database_of_version_1(tmp_path / "jobs.sqlite3", latent)
    store = _store(tmp_path)
    old, queued = store.job(1), store.job(2)
    assert old is not None
    assert queued is not None
    assert (old.latent, old.continue_state) == (str(latent), None)
    assert (queued.init_latent, queued.init_state) == (str(latent), None)
    # Continuing the old job again still points the new job at the old file.
    again = store.add_job(
        guild_id=1,
        channel_id=2,
        user_id=3,
        prompt="old",
        seed=5,
        iterations=10,
        size=64,
        parent=old,
    )
    assert (again.init_latent, again.init_state) == (str(latent), None)


def test_a_continued_job_carries_its_parents_state_until_it_ends(tmp_path: Path) -> None:
    store = _store(tmp_path)
    parent = _finished(store, _add(store, 1), "UERDMQ==")
    child = store.add_job(
        guild_id=1,
        channel_id=2,
        user_id=1,
        prompt="a cat",
        seed=0,
        iterations=10,
        size=64,
        parent=parent,
    )
    assert (child.parent_id, child.init_state, child.init_latent) == (parent.id, "UERDMQ==", None)
    ended = _finished(store, child.id, "bmV3")
    assert (ended.init_state, ended.continue_state) == (None, "bmV3")


def test_retention_forgets_old_states_and_deletes_old_latent_files(tmp_path: Path) -> None:
    latents = tmp_path / "latents"
    latents.mkdir()
    old_file, orphan, recent_orphan = latents / "1.pt", latents / "7.pt", latents / "8.pt"
    for path in (old_file, orphan, recent_orphan):
        path.write_bytes(b"x")
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes(b"x")
    _database_of_version_1(tmp_path / "jobs.sqlite3", old_file)
    store = _store(tmp_path)
    now = time.time()
    os.utime(orphan, (now - 40 * DAY_S, now - 40 * DAY_S))
    recent = _finished(store, _add(store, 1), "cmVjZW50")
    forgotten = _finished(store, _add(store, 1), "b2xk")
    store.db.execute(
        "UPDATE jobs SET finished_at = ? WHERE id = ?", (now - 31 * DAY_S, forgotten.id)
    )
    pointing_outside = _finished(store, _add(store, 1), "eA==")
    store.db.execute(
        "UPDATE jobs SET finished_at = 1, latent = ? WHERE id = ?",
        (str(outside), pointing_outside.id),
    )
    deleted = Retention(store, keep_days=30, latents_dir=latents).sweep(now)
    assert deleted == 2
    assert sorted(p.name for p in latents.iterdir()) == ["8.pt"]
    assert outside.exists()
    assert [store.job(j.id).continue_state for j in (recent, forgotten)] == ["cmVjZW50", None]  # type: ignore[union-attr]
    old = store.job(1)
    assert old is not None
    assert old.latent is None
    assert Retention(store, keep_days=30, latents_dir=latents).sweep(now) == 0


def test_invalid_stored_guild_settings_fall_back_to_the_defaults(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.db.execute(
        "INSERT INTO guild_settings (guild_id, settings) VALUES (1, ?)",
        ('{"max_size": 100, "max_iterations": 7, "dropped_key": 1}',),
    )
    assert store.guild_settings(1) == store.defaults
    store.db.execute(
        "UPDATE guild_settings SET settings = ? WHERE guild_id = 1",
        ('{"max_iterations": 7, "dropped_key": 1}',),
    )
    assert store.guild_settings(1) == store.defaults.model_copy(update={"max_iterations": 7})


def _picture(use: str = "both", strength: float = 0.7) -> GivenPicture:
    png = b"\x89PNG fake copy"
    image = ImageInput(png=png, name="lamp.png", sha256=hashlib.sha256(png).hexdigest())
    return GivenPicture(image, use, strength, thumbnail=b"small")


def test_a_picture_is_kept_with_its_job_and_forgotten_with_what_continue_needs(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path)
    given = _picture()
    job = store.add_job(
        guild_id=1,
        channel_id=2,
        user_id=1,
        prompt="",
        seed=0,
        iterations=10,
        size=64,
        picture=given,
    )
    plain = store.job(_add(store, 2))
    assert plain is not None
    assert (job.image_use, job.init_strength) == ("both", 0.7)
    assert (plain.image_use, store.picture(plain), store.thumbnail(plain.id)) == (None, None, None)
    store.close()
    store = _store(tmp_path)  # a restart
    assert store.picture(job) == given
    assert store.thumbnail(job.id) == b"small"
    still = store.add_job(
        guild_id=1,
        channel_id=2,
        user_id=3,
        prompt="a cat",
        seed=0,
        iterations=10,
        size=64,
        picture=_picture("start", 0.2),
    )
    ended = _finished(store, job.id, "c3RhdGU=")
    assert Retention(store, keep_days=1, latents_dir=tmp_path).sweep(time.time()) == 0
    assert store.picture(ended) == given
    Retention(store, keep_days=1, latents_dir=tmp_path).sweep(time.time() + 2 * DAY_S)
    forgotten = store.job(job.id)
    assert forgotten is not None
    # The card can still say how the job used its picture; the picture itself is gone.
    assert (forgotten.image_use, store.picture(forgotten), store.thumbnail(job.id)) == (
        "both",
        None,
        None,
    )
    assert store.picture(still) == _picture("start", 0.2)  # still queued: kept
    assert store.forget_pictures(time.time() + 10 * DAY_S) == 0


def test_a_database_of_version_4_gains_pictures_and_servers_keep_their_settings(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as db:
        for script in MIGRATIONS[:4]:
            db.executescript(script)
        db.execute("PRAGMA user_version = 4")
        db.execute(
            "INSERT INTO jobs (guild_id, channel_id, user_id, prompt, seed, iterations, size, "
            "created_at) VALUES (1, 2, 3, 'old', 5, 10, 64, 3.0)"
        )
        db.execute(
            "INSERT INTO guild_settings (guild_id, settings) VALUES (1, ?)",
            ('{"max_iterations": 7, "allowed_channels": [2]}',),
        )
    store = _store(tmp_path)
    old = store.job(1)
    assert old is not None
    assert (old.prompt, old.image_use, old.init_strength, old.timelapse) == (
        "old",
        None,
        None,
        False,
    )
    assert store.picture(old) is None
    animated = store.add_job(
        guild_id=1,
        channel_id=2,
        user_id=3,
        prompt="new",
        seed=1,
        iterations=5,
        size=64,
        timelapse=True,
    )
    assert store.job(animated.id).timelapse is True  # type: ignore[union-attr]
    settings = store.guild_settings(1)
    assert not settings.timelapse
    assert (settings.max_iterations, settings.allowed_channels, settings.image_inputs) == (
        7,
        (2,),
        True,
    )
    store.save_guild_settings(1, settings.model_copy(update={"image_inputs": False}))
    assert not store.guild_settings(1).image_inputs
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
