"""The SQLite store: fair order, caps, restarts, settings, and databases of earlier versions."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

from bot.jobs.pictures import GivenPicture
from bot.jobs.retention import DAY_S, Retention
from bot.jobs.schema import MIGRATIONS
from bot.jobs.spec import Rules, picture_fields
from bot.jobs.store import MOVES, JobRow, JobStatus, Store
from bot.limits import GuildLimits, HardLimits
from generator.contract.edits import EditSpec
from generator.contract.images import ImageInput
from generator.contract.jobs import JobSpec, ParentJob, PictureRef

from .specs import a_spec

LEGACY = Path(__file__).parent / "data" / "store-0.2-9828631.sql"


def _store(tmp_path: Path, rules: Rules | None = None) -> Store:
    return Store(tmp_path / "jobs.sqlite3", GuildLimits(), rules)


def _spec(prompt: str = "a cat", **fields: object) -> JobSpec:
    """A small job's spec drawing `prompt`, with `fields` changed."""
    return a_spec(prompt=prompt, **fields)


def _add(store: Store, user: int, prompt: str = "a cat") -> int:
    job = store.add_job(guild_id=1, channel_id=2, user_id=user, spec=_spec(prompt))
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


def test_a_member_refused_before_drawing_keeps_their_turn(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = _add(store, 1)
    _finished(store, first, "eA==")  # Alice was served
    _finished(store, _add(store, 2), "eA==")  # then Bob
    bob = _add(store, 2)
    alice = _add(store, 1)
    assert [j.id for j in store.queue_order()] == [alice, bob]
    refused = store.refuse(alice, "no worker holds its models")
    assert refused is not None
    assert (refused.status, refused.started_at, refused.error) == (
        JobStatus.FAILED,
        None,
        "no worker holds its models",
    )
    # Refused before it started, Alice's drawing took no turn: her next one goes before Bob's.
    again = _add(store, 1)
    assert [j.id for j in store.queue_order()] == [again, bob]


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
    waiting = _add(store, 4)
    refused = store.refuse(waiting, "boom")
    assert refused is not None
    assert (refused.status, refused.error, refused.started_at) == (JobStatus.FAILED, "boom", None)
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
    "refuse": lambda s, j: s.refuse(j, "no worker"),
    "requeue": lambda s, j: s.requeue(j, "again"),
    "note": lambda s, j: s.note(j, "a note"),
    "card_posted": lambda s, j: s.card_posted(j, 42, 1.0),
    "withhold": lambda s, j: s.withhold(j),
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


def test_a_continued_job_carries_its_parents_state_until_it_ends(tmp_path: Path) -> None:
    store = _store(tmp_path)
    parent = _finished(store, _add(store, 1), "UERDMQ==")
    child = store.add_job(
        guild_id=1,
        channel_id=2,
        user_id=1,
        spec=_spec(parent=ParentJob(id=parent.id, how="continue")),
        init_state=parent.continue_state,
    )
    assert (child.spec.continues, child.init_state) == (parent.id, "UERDMQ==")
    ended = _finished(store, child.id, "bmV3")
    assert (ended.init_state, ended.continue_state) == (None, "bmV3")


def test_retention_forgets_old_states(tmp_path: Path) -> None:
    store = _store(tmp_path)
    now = time.time()
    recent = _finished(store, _add(store, 1), "cmVjZW50")
    forgotten = _finished(store, _add(store, 1), "b2xk")
    store.db.execute(
        "UPDATE jobs SET finished_at = ? WHERE id = ?", (now - 31 * DAY_S, forgotten.id)
    )
    assert Retention(store, keep_days=30).sweep(now) == (1, 0)
    assert [store.job(j.id).continue_state for j in (recent, forgotten)] == ["cmVjZW50", None]  # type: ignore[union-attr]
    assert Retention(store, keep_days=30).sweep(now) == (0, 0)


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
        guild_id=1, channel_id=2, user_id=1, spec=_spec("", **picture_fields(given)), picture=given
    )
    plain = store.job(_add(store, 2))
    assert plain is not None
    assert (job.spec.image_use, job.spec.init_strength) == ("both", 0.7)
    assert (plain.spec.image_use, store.picture(plain), store.thumbnail(plain.id)) == (
        None,
        None,
        None,
    )
    store.close()
    store = _store(tmp_path)  # a restart
    assert store.picture(job) == given
    assert store.thumbnail(job.id) == b"small"
    start = _picture("start", 0.2)
    still = store.add_job(
        guild_id=1, channel_id=2, user_id=3, spec=_spec(**picture_fields(start)), picture=start
    )
    ended = _finished(store, job.id, "c3RhdGU=")
    assert Retention(store, keep_days=1).sweep(time.time()) == (0, 0)
    assert store.picture(ended) == given
    assert Retention(store, keep_days=1).sweep(time.time() + 2 * DAY_S) == (1, 1)
    forgotten = store.job(job.id)
    assert forgotten is not None
    # The card can still say how the job used its picture; the picture itself is gone.
    assert (forgotten.spec.image_use, store.picture(forgotten), store.thumbnail(job.id)) == (
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
            assert isinstance(script, str)
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
    assert (old.spec.prompt, old.spec.image_use, old.spec.timelapse) == ("old", None, False)
    assert store.picture(old) is None
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


def load_legacy(path: Path) -> None:
    """The database 0.2 (commit 9828631) wrote, at `path`."""
    with sqlite3.connect(path) as db:
        db.executescript(LEGACY.read_text())


def test_the_jobs_of_a_0_2_database_get_the_specs_0_2_would_have_drawn(tmp_path: Path) -> None:
    load_legacy(tmp_path / "jobs.sqlite3")
    rules = Rules(
        limits=HardLimits(min_progress_interval_s=9.0), main_clip="main.pt", max_cutouts=20
    )
    store = _store(tmp_path, rules)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    jobs = {job.id: job for job in store.jobs_with_status(*JobStatus)}
    assert [jobs[i].status for i in sorted(jobs)] == [
        "done",
        "failed",
        "cancelled",
        "done",
        "running",
        "queued",
        "queued",
        "queued",
        "queued",
    ]
    plain, draft, picture, continued = (jobs[i].spec for i in (6, 7, 8, 9))
    # What 0.2 decided when a job started: the server's early stop and progress interval (7 s,
    # raised to the operator's 9 s), the quality's cutouts (here at most 20) and models, with
    # the operator's main CLIP first.
    assert plain == JobSpec(
        prompt="a plain waiting drawing | fog:-0.5",
        seed=7,
        iterations=3,
        width=64,
        height=64,
        quality="normal",
        cutouts=20,
        clip_models=("main.pt",),
        auto_stop=4,
        progress_every_s=9.0,
    )
    assert (draft.quality, draft.cutouts, draft.clip_models) == ("draft", 16, ("main.pt",))
    assert (picture.image_use, picture.init_strength, picture.timelapse) == ("both", 0.7, True)
    assert picture.init_image == picture.image_prompts[0]
    assert isinstance(picture.init_image, PictureRef)
    assert picture.init_image.name == "red.png"
    given = store.picture(jobs[8])
    assert given is not None
    assert given.image.sha256 == picture.init_image.sha256
    assert (continued.parent, continued.iterations) == (ParentJob(id=1, how="continue"), 4)
    assert jobs[9].init_state == jobs[1].continue_state == "c3RhdGU="
    # Ended jobs keep what their cards show; the pre-0.2 job's latent file is not read any more.
    assert jobs[2].error == "the GPU ran out of memory; try a smaller size"
    assert json.loads(jobs[3].notice or "")["values"] == {"member": 12}
    assert (jobs[4].spec.prompt, jobs[4].continue_state) == ("drawn before 0.2", None)
    # New jobs carry on from the old numbering.
    assert _add(store, 30) == 10


def test_a_withheld_job_stays_withheld_and_bars_and_reports_count_once(tmp_path: Path) -> None:
    store = _store(tmp_path)
    job = _in_state(store, JobStatus.RUNNING)
    assert store.job(job).withheld is False  # type: ignore[union-attr]
    assert store.withhold(job) is not None
    finished = store.finish(job, worker="w", steps=9, seconds=2.0, continue_state="eQ==")
    assert finished is not None
    assert finished.withheld is True
    assert store.bar(1, 5, by=9) is True
    assert store.bar(1, 5, by=9) is False
    assert [store.barred(1, 5), store.barred(2, 5), store.barred(1, 6)] == [True, False, False]
    assert store.barred_count(1) == 1
    assert store.unbar(1, 5) is True
    assert store.unbar(1, 5) is False
    assert not store.barred(1, 5)
    assert store.report(job, 7) is True
    assert store.report(job, 7) is False
    assert store.report(job, 8) is True


def test_remix_is_each_members_own_on_each_server_and_outlives_a_restart(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert not store.remix(1, 5)  # off until a member turns it on
    store.set_remix(1, 5, True)
    assert [store.remix(1, 5), store.remix(2, 5), store.remix(1, 6)] == [True, False, False]
    store.close()
    store = _store(tmp_path)
    assert store.remix(1, 5)
    store.set_remix(1, 5, False)
    assert not store.remix(1, 5)


def test_an_edit_carries_the_tokens_it_starts_from_until_it_ends(tmp_path: Path) -> None:
    store = _store(tmp_path)
    parent = _finished(store, _add(store, 1), continue_state="cGFyZW50")
    edit = EditSpec(kind="subtle")
    spec = _spec(parent=ParentJob(id=parent.id, how="edit"), edit=edit)
    job = store.add_job(
        guild_id=1, channel_id=2, user_id=1, spec=spec, init_state=parent.continue_state
    )
    assert (job.spec.edit, job.init_state) == (edit, "cGFyZW50")
    done = _finished(store, job.id, continue_state="ZWRpdA==")
    assert (done.init_state, done.continue_state) == (None, "ZWRpdA==")
