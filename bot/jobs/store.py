"""All SQL lives here (and in `bot.jobs.schema`, the migrations): jobs, the pictures given with
them, server settings, members' own settings, and the fair queue order.

A job is stored with its `JobSpec`, decided when the member asked (`bot.jobs.spec`), and moves
queued -> running -> done | failed | cancelled, running -> queued when its drawing was
interrupted, and queued -> failed when it is refused before it starts; each move is one method
(`add_job`, `start`, `finish`, `fail`, `refuse`, `cancel`, `requeue`, ...), so every caller makes
it the same way. `MOVES` names the states each move starts from, in one place; a move from any
other state changes nothing, is logged and counted (`Store.refused`), and returns None: a late
`Finished` from a worker whose job was cancelled, failed, requeued or taken over by another
worker cannot mark it done. What a worker reports also has to come from the worker the job is
with. After a restart, a job left running goes back to the queue, so nothing is lost silently.

What Continue and the edits need is the job's `continue_state` (a few KB, see
`generator.method.latent.pack_state`), kept `[storage] keep_days` after the job ends; a
continued or edited job carries what it starts from in `init_state` until it ends.

A picture a member gave with a job is kept as `generator.intake`'s re-encoded copy, with a
thumbnail for its card, in `job_pictures` (the spec names it and says how it is used), so a
queued job keeps it across restarts and Reroll can use it again; it is removed `keep_days`
after the job ends, with what Continue needs.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path

from pydantic import ValidationError

from bot.i18n import notice
from bot.jobs.pictures import GivenPicture
from bot.jobs.schema import Upgrade, migrate
from bot.jobs.spec import Rules
from bot.limits import GuildLimits, GuildSettings
from generator.contract.images import ImageInput
from generator.contract.jobs import JobSpec

log = logging.getLogger("pseudo_dalle.store")


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
ENDED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)

# Each move of a job and the states it may start from; from any other state the move changes
# nothing (a late report from a worker that no longer has the job, say) and is refused.
MOVES: dict[str, tuple[JobStatus, ...]] = {
    "start": (JobStatus.QUEUED,),
    "assign": (JobStatus.RUNNING,),
    "taken": (JobStatus.RUNNING,),
    "progress": (JobStatus.RUNNING,),
    "finish": (JobStatus.RUNNING,),
    "cancel": (JobStatus.QUEUED,),
    "stopped": (JobStatus.RUNNING,),
    "fail": (JobStatus.RUNNING,),
    "refuse": (JobStatus.QUEUED,),
    "requeue": (JobStatus.RUNNING,),
    "note": ACTIVE,
    "card_posted": (*ACTIVE, *ENDED),
    "withhold": (JobStatus.RUNNING, JobStatus.DONE, JobStatus.CANCELLED),
}


@dataclass(frozen=True)
class JobRow:
    """A job as stored: who asked where, what it draws (`spec`), and how far it got."""

    id: int
    guild_id: int
    channel_id: int
    user_id: int
    spec: JobSpec
    status: JobStatus
    card_message_id: int | None
    card_posted_at: float | None
    created_at: float
    started_at: float | None  # when it was last dispatched; None while it has never been
    finished_at: float | None
    steps: int
    seconds: float | None
    error: str | None  # why it failed (`bot.i18n.render_notice` says it)
    requeues: int
    notice: str | None  # a line for its card
    continue_state: str | None  # what Continue goes on from, once it has ended
    init_state: str | None  # the continue state it continues or edits, until it ends
    worker: str | None  # the worker drawing it, or that drew it
    withheld: bool  # a picture of it crossed the screening where it may not be shown
    language: str | None  # the requester's, when they asked (None: asked before 0.3)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", JobStatus(self.status))
        object.__setattr__(self, "withheld", bool(self.withheld))

    @classmethod
    def of(cls, row: tuple[object, ...]) -> JobRow:
        """The job in a row of `_COLUMNS`."""
        values = dict(zip(_NAMES, row, strict=True))
        values["spec"] = JobSpec.model_validate_json(str(values["spec"]))
        return cls(**values)  # type: ignore[arg-type]


_NAMES = tuple(f.name for f in fields(JobRow))
_COLUMNS = ", ".join(_NAMES)


class Store:
    def __init__(self, path: Path | str, defaults: GuildLimits, rules: Rules | None = None) -> None:
        """Open (or create) the database at `path`; `rules` are the operator's, which the jobs
        of an earlier version are read by when it is brought up to date."""
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.defaults = GuildSettings.model_validate(defaults.model_dump())
        self.refused: Counter[str] = Counter()  # moves refused, by move
        migrate(self.db, Upgrade(rules or Rules(), self.guild_settings))

    def close(self) -> None:
        self.db.close()

    def _job(self, row: tuple[object, ...] | None) -> JobRow | None:
        return JobRow.of(row) if row is not None else None

    def job(self, job_id: int) -> JobRow | None:
        return self._job(
            self.db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        )

    def add_job(
        self,
        *,
        guild_id: int,
        channel_id: int,
        user_id: int,
        spec: JobSpec,
        picture: GivenPicture | None = None,
        init_state: str | None = None,
        language: str | None = None,
    ) -> JobRow:
        """Queue a job drawing `spec`, with the `picture` it names; one that continues or edits
        another carries the `init_state` it starts from. `language` is the requester's."""
        self.db.execute("BEGIN")
        try:
            cursor = self.db.execute(
                "INSERT INTO jobs (guild_id, channel_id, user_id, spec, init_state, created_at, "
                "language) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    guild_id,
                    channel_id,
                    user_id,
                    spec.model_dump_json(),
                    init_state,
                    time.time(),
                    language,
                ),
            )
            job_id = int(cursor.lastrowid or 0)
            if picture is not None:
                image = picture.image
                self.db.execute(
                    "INSERT INTO job_pictures (job_id, png, name, sha256, weight, thumbnail) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (job_id, image.png, image.name, image.sha256, image.weight, picture.thumbnail),
                )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        job = self.job(job_id)
        assert job is not None
        return job

    def picture(self, job: JobRow) -> GivenPicture | None:
        """The picture `job` was given; None when it had none or it is no longer kept."""
        use = job.spec.image_use
        row = self.db.execute(
            "SELECT png, name, sha256, weight, thumbnail FROM job_pictures WHERE job_id = ?",
            (job.id,),
        ).fetchone()
        if row is None or use is None:
            return None
        png, name, sha256, weight, thumbnail = row
        image = ImageInput(png=png, name=name, sha256=sha256, weight=weight)
        return GivenPicture(image, use, job.spec.init_strength, thumbnail)

    def thumbnail(self, job_id: int) -> bytes | None:
        """The small copy of the picture job `job_id` was given, for its card."""
        row = self.db.execute(
            "SELECT thumbnail FROM job_pictures WHERE job_id = ?", (job_id,)
        ).fetchone()
        return bytes(row[0]) if row is not None else None

    def _move(
        self, move: str, job_id: int, values: dict[str, object], *, worker: str | None = None
    ) -> JobRow | None:
        """Apply `move` to the job if it is in a state the move starts from (and, for what a
        worker reports, still with that `worker`); else change nothing, log it, count it in
        `refused`, and return None."""
        allowed = MOVES[move]
        condition = f"status IN ({', '.join('?' for _ in allowed)})"
        arguments: list[object] = [*values.values(), job_id, *allowed]
        if worker is not None:
            condition += " AND worker IS ?"
            arguments.append(worker)
        assignments = ", ".join(f"{name} = ?" for name in values)
        cursor = self.db.execute(
            f"UPDATE jobs SET {assignments} WHERE id = ? AND {condition}", arguments
        )
        if cursor.rowcount == 1:
            return self.job(job_id)
        self.refused[move] += 1
        current = self.job(job_id)
        log.warning(
            "job %s: %s refused: it is %s%s",
            job_id,
            move,
            current.status if current else "unknown",
            f" with worker {current.worker}" if current and worker is not None else "",
        )
        return None

    # -- the job's moves (their start states: MOVES) ---------------------------------------
    def start(self, job_id: int) -> JobRow | None:
        """Dispatched: to a worker or, through Redis, to the shared queue (see `assign`)."""
        return self._move(
            "start",
            job_id,
            {"status": JobStatus.RUNNING, "started_at": time.time(), "steps": 0, "worker": None},
        )

    def assign(self, job_id: int, worker: str) -> JobRow | None:
        """The transport handed the job to `worker`."""
        return self._move("assign", job_id, {"worker": worker})

    def taken(
        self, job_id: int, worker: str, *, requeues: int, notice: str | None
    ) -> JobRow | None:
        """A worker took the job from the shared queue; after another worker stopped while
        drawing it, `requeues` counts the restarts and `notice` says so."""
        values: dict[str, object] = {"worker": worker, "requeues": requeues, "steps": 0}
        if notice is not None:
            values["notice"] = notice
        return self._move("taken", job_id, values)

    def progress(self, job_id: int, steps: int, *, worker: str) -> JobRow | None:
        return self._move("progress", job_id, {"steps": steps}, worker=worker)

    # A job that ended no longer needs what it started from: `init_state` is cleared.
    def finish(
        self, job_id: int, *, worker: str, steps: int, seconds: float, continue_state: str
    ) -> JobRow | None:
        values: dict[str, object] = {
            "status": JobStatus.DONE,
            "steps": steps,
            "seconds": seconds,
            "continue_state": continue_state,
            "finished_at": time.time(),
            "notice": None,
            "init_state": None,
        }
        return self._move("finish", job_id, values, worker=worker)

    def cancel(self, job_id: int, *, notice: str) -> JobRow | None:
        """Cancelled while it waited."""
        values: dict[str, object] = {
            "status": JobStatus.CANCELLED,
            "finished_at": time.time(),
            "init_state": None,
            "notice": notice,
        }
        return self._move("cancel", job_id, values)

    def stopped(
        self, job_id: int, *, worker: str, steps: int, seconds: float, continue_state: str
    ) -> JobRow | None:
        """Cancelled while drawing: its worker stopped it and says what it drew."""
        values: dict[str, object] = {
            "status": JobStatus.CANCELLED,
            "finished_at": time.time(),
            "init_state": None,
            "steps": steps,
            "seconds": seconds,
            "continue_state": continue_state,
        }
        return self._move("stopped", job_id, values, worker=worker)

    def fail(
        self, job_id: int, error: str, *, requeues: int | None = None, worker: str | None = None
    ) -> JobRow | None:
        """Failed: as its `worker` reports, or decided by the bot (no worker given)."""
        values: dict[str, object] = {
            "status": JobStatus.FAILED,
            "error": error,
            "finished_at": time.time(),
            "init_state": None,
        }
        if requeues is not None:
            values["requeues"] = requeues
        return self._move("fail", job_id, values, worker=worker)

    def refuse(self, job_id: int, error: str) -> JobRow | None:
        """Failed before it started (no worker can draw it): it never took a turn."""
        values: dict[str, object] = {
            "status": JobStatus.FAILED,
            "error": error,
            "finished_at": time.time(),
            "init_state": None,
        }
        return self._move("refuse", job_id, values)

    def requeue(
        self, job_id: int, notice: str | None, *, requeues: int | None = None
    ) -> JobRow | None:
        """Back to the queue from the start: its drawing was interrupted."""
        values: dict[str, object] = {
            "status": JobStatus.QUEUED,
            "started_at": None,
            "steps": 0,
            "notice": notice,
            "worker": None,
        }
        if requeues is not None:
            values["requeues"] = requeues
        return self._move("requeue", job_id, values)

    def note(self, job_id: int, notice: str) -> JobRow | None:
        """A line for the job's card, e.g. who cancelled it."""
        return self._move("note", job_id, {"notice": notice})

    def card_posted(self, job_id: int, message_id: int, posted_at: float) -> JobRow | None:
        return self._move(
            "card_posted", job_id, {"card_message_id": message_id, "card_posted_at": posted_at}
        )

    def withhold(self, job_id: int) -> JobRow | None:
        """A picture of the job may not be shown where it was asked for: from now on none is."""
        return self._move("withhold", job_id, {"withheld": 1})

    def jobs_with_status(self, *statuses: str) -> list[JobRow]:
        marks = ", ".join("?" for _ in statuses)
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE status IN ({marks}) ORDER BY id", statuses
        ).fetchall()
        return [JobRow.of(row) for row in rows]

    def queue_order(self) -> list[JobRow]:
        """Queued jobs in the order they will run: round-robin between requesters.

        The requester served longest ago (or never) goes first; each requester's own jobs keep
        the order they were asked for.
        """
        queued = self.jobs_with_status(JobStatus.QUEUED)
        per_user: dict[int, list[JobRow]] = defaultdict(list)
        for job in queued:
            per_user[job.user_id].append(job)
        served = dict(
            self.db.execute(
                "SELECT user_id, MAX(started_at) FROM jobs WHERE started_at IS NOT NULL "
                "GROUP BY user_id"
            ).fetchall()
        )
        users = sorted(per_user, key=lambda u: (served.get(u) or 0.0, per_user[u][0].id))
        order: list[JobRow] = []
        depth = 0
        while len(order) < len(queued):
            order.extend(per_user[u][depth] for u in users if depth < len(per_user[u]))
            depth += 1
        return order

    def active_count(self, *, user_id: int | None = None, guild_id: int | None = None) -> int:
        query = f"SELECT COUNT(*) FROM jobs WHERE status IN ({', '.join('?' for _ in ACTIVE)})"
        args: list[str | int] = [*ACTIVE]
        if user_id is not None:
            query += " AND user_id = ?"
            args.append(user_id)
        if guild_id is not None:
            query += " AND guild_id = ?"
            args.append(guild_id)
        return int(self.db.execute(query, args).fetchone()[0])

    def requeue_interrupted(self, held: set[int]) -> list[JobRow]:
        """After a restart: jobs left running go back to the queue, with a notice on the card,
        except those in `held`, which workers still have."""
        said = notice("The bot restarted while this was drawing; it starts again from the queue.")
        requeued = [
            self.requeue(job.id, said)
            for job in self.jobs_with_status(JobStatus.RUNNING)
            if job.id not in held
        ]
        return [job for job in requeued if job is not None]

    def recently_done(self, count: int = 5) -> list[JobRow]:
        """The last `count` jobs that finished and took time, newest first, for ETAs."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE status = ? AND seconds > 0 AND steps > 0 "
            "ORDER BY id DESC LIMIT ?",
            (JobStatus.DONE, count),
        ).fetchall()
        return [JobRow.of(row) for row in rows]

    def forget_continue_states(self, ended_before: float) -> int:
        """Drop what Continue needs for jobs that ended before `ended_before`; returns how many."""
        marks = ", ".join("?" for _ in ENDED)
        cursor = self.db.execute(
            f"UPDATE jobs SET continue_state = NULL WHERE status IN ({marks}) AND finished_at < ? "
            "AND continue_state IS NOT NULL",
            (*ENDED, ended_before),
        )
        return cursor.rowcount

    def forget_pictures(self, ended_before: float) -> int:
        """Drop the pictures given to jobs that ended before `ended_before`; returns how many."""
        marks = ", ".join("?" for _ in ENDED)
        cursor = self.db.execute(
            "DELETE FROM job_pictures WHERE job_id IN (SELECT id FROM jobs "
            f"WHERE status IN ({marks}) AND finished_at < ?)",
            (*ENDED, ended_before),
        )
        return cursor.rowcount

    def guild_settings(self, guild_id: int) -> GuildSettings:
        row = self.db.execute(
            "SELECT settings FROM guild_settings WHERE guild_id = ?", (guild_id,)
        ).fetchone()
        if row is None:
            return self.defaults
        stored = json.loads(row[0])
        # Keys a later version dropped are ignored; a value the declarations no longer allow
        # gives the server the defaults again (with a log line) rather than a broken /draw.
        known = {k: v for k, v in stored.items() if k in GuildSettings.model_fields}
        try:
            return GuildSettings.model_validate_json(
                json.dumps({**self.defaults.model_dump(mode="json"), **known})
            )
        except ValidationError as error:
            log.warning(
                "guild %s's stored settings are invalid (%s); using defaults", guild_id, error
            )
            return self.defaults

    # -- moderation ---------------------------------------------------------------------------
    def bar(self, guild_id: int, user_id: int, *, by: int) -> bool:
        """Bar a member from drawing on a server; False when they were barred already."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO barred (guild_id, user_id, barred_by, barred_at) "
            "VALUES (?, ?, ?, ?)",
            (guild_id, user_id, by, time.time()),
        )
        return cursor.rowcount == 1

    def unbar(self, guild_id: int, user_id: int) -> bool:
        """Let a barred member draw again; False when they were not barred."""
        cursor = self.db.execute(
            "DELETE FROM barred WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
        )
        return cursor.rowcount == 1

    def barred(self, guild_id: int, user_id: int) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM barred WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
        ).fetchone()
        return row is not None

    def barred_count(self, guild_id: int) -> int:
        return int(
            self.db.execute(
                "SELECT COUNT(*) FROM barred WHERE guild_id = ?", (guild_id,)
            ).fetchone()[0]
        )

    def report(self, job_id: int, reporter: int) -> bool:
        """Member `reporter` reported job `job_id`; False when they had reported it already."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO reports (job_id, reporter, reported_at) VALUES (?, ?, ?)",
            (job_id, reporter, time.time()),
        )
        return cursor.rowcount == 1

    # -- a member's own settings, per server ---------------------------------------------------
    def remix(self, guild_id: int, user_id: int) -> bool:
        """Whether Reroll and the edits first ask the member for the words (off until set)."""
        row = self.db.execute(
            "SELECT remix FROM member_settings WHERE guild_id = ? AND user_id = ?",
            (guild_id, user_id),
        ).fetchone()
        return bool(row[0]) if row is not None else False

    def set_remix(self, guild_id: int, user_id: int, on: bool) -> None:
        self.db.execute(
            "INSERT INTO member_settings (guild_id, user_id, remix) VALUES (?, ?, ?) "
            "ON CONFLICT (guild_id, user_id) DO UPDATE SET remix = excluded.remix",
            (guild_id, user_id, int(on)),
        )

    def save_guild_settings(self, guild_id: int, settings: GuildSettings) -> None:
        self.db.execute(
            "INSERT INTO guild_settings (guild_id, settings) VALUES (?, ?) "
            "ON CONFLICT (guild_id) DO UPDATE SET settings = excluded.settings",
            (guild_id, settings.model_dump_json()),
        )
