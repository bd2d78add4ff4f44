"""All SQL lives here: jobs, guild settings, migrations, and the fair queue order.

A job moves queued -> running -> done | failed | cancelled, and running -> queued when its
drawing was interrupted; each move is one method (`add_job`, `start`, `finish`, `fail`,
`cancel`, `requeue`, ...), so every caller makes it the same way. `MOVES` names the states each
move starts from, in one place; a move from any other state changes nothing, is logged and
counted (`Store.refused`), and returns None: a late `Finished` from a worker whose job was
cancelled, failed, requeued or taken over by another worker cannot mark it done. What a worker
reports also has to come from the worker the job is with. After a restart, a job left running
goes back to the queue, so nothing is lost silently.

What Continue needs is the job's `continue_state` (a few KB, see
`generator.method.latent.pack_state`),
kept `[storage] keep_days` after the job ends; a continued job carries its parent's in
`init_state`. Jobs from versions before it have a `latent` file path instead.

A picture a member gave with a job is kept as `generator.intake`'s re-encoded copy, with a
thumbnail for its card, in `job_pictures` (the job's `image_use` and `init_strength` say how it
is used), so a queued job keeps it across restarts and Reroll can use it again; it is removed
`keep_days` after the job ends, with what Continue needs.

Whether a job gets a time-lapse is its `timelapse` column; the animation itself is never
stored: it goes from the worker's `Finished` to the final card.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path

from pydantic import ValidationError

from bot.i18n import notice
from bot.limits import STRICT, GuildLimits
from generator.contract.images import ImageInput
from generator.contract.quality import DEFAULT_QUALITY, QUALITIES

log = logging.getLogger("pseudo_dalle.store")

MIGRATIONS = (
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        guild_id INTEGER NOT NULL,
        channel_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        prompt TEXT NOT NULL,
        seed INTEGER NOT NULL,
        iterations INTEGER NOT NULL,
        size INTEGER NOT NULL,
        parent_id INTEGER,
        init_latent TEXT,
        status TEXT NOT NULL DEFAULT 'queued',
        card_message_id INTEGER,
        card_posted_at REAL,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        steps INTEGER NOT NULL DEFAULT 0,
        seconds REAL,
        latent TEXT,
        error TEXT,
        requeues INTEGER NOT NULL DEFAULT 0,
        notice TEXT
    );
    CREATE INDEX jobs_status ON jobs (status, id);
    CREATE TABLE guild_settings (
        guild_id INTEGER PRIMARY KEY,
        settings TEXT NOT NULL
    );
    """,
    """
    ALTER TABLE jobs ADD COLUMN continue_state TEXT;
    ALTER TABLE jobs ADD COLUMN init_state TEXT;
    CREATE INDEX jobs_finished ON jobs (finished_at);
    """,
    """
    ALTER TABLE jobs ADD COLUMN worker TEXT;
    """,
    """
    ALTER TABLE jobs ADD COLUMN text_encoder TEXT NOT NULL DEFAULT 'clip';
    """,
    """
    ALTER TABLE jobs ADD COLUMN image_use TEXT CHECK (image_use IN ('start', 'steer', 'both'));
    ALTER TABLE jobs ADD COLUMN init_strength REAL;
    CREATE TABLE job_pictures (
        job_id INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
        png BLOB NOT NULL,
        name TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        weight REAL NOT NULL,
        thumbnail BLOB NOT NULL
    );
    """,
    """
    ALTER TABLE jobs ADD COLUMN timelapse INTEGER NOT NULL DEFAULT 0 CHECK (timelapse IN (0, 1));
    """,
    f"""
    ALTER TABLE jobs ADD COLUMN quality TEXT NOT NULL DEFAULT '{DEFAULT_QUALITY}'
        CHECK (quality IN ({", ".join(f"'{q}'" for q in QUALITIES)}));
    """,
)


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
    "requeue": (JobStatus.RUNNING,),
    "note": ACTIVE,
    "card_posted": (*ACTIVE, *ENDED),
}


@dataclass(frozen=True)
class JobRow:
    id: int
    guild_id: int
    channel_id: int
    user_id: int
    prompt: str
    seed: int
    iterations: int
    size: int
    parent_id: int | None
    init_latent: str | None
    status: JobStatus
    card_message_id: int | None
    card_posted_at: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    steps: int
    seconds: float | None
    latent: str | None
    error: str | None
    requeues: int
    notice: str | None
    continue_state: str | None
    init_state: str | None
    worker: str | None  # the worker drawing it, or that drew it
    text_encoder: str  # what reads its prompt: "clip" or "multilingual"
    image_use: str | None  # how it uses the picture it was given (IMAGE_USES), if any
    init_strength: float | None  # how firmly it holds to a picture it starts from
    timelapse: bool  # its final card shows the drawing taking shape
    quality: str  # its preset (generator.contract.quality): cutouts and CLIP models

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", JobStatus(self.status))
        object.__setattr__(self, "timelapse", bool(self.timelapse))


_COLUMNS = ", ".join(f.name for f in fields(JobRow))


@dataclass(frozen=True)
class GivenPicture:
    """A picture given with a job: the re-encoded copy, how the job uses it, and the small
    copy its card shows."""

    image: ImageInput
    use: str  # one of IMAGE_USES
    strength: float
    thumbnail: bytes = field(repr=False)


class GuildSettings(GuildLimits):
    """A server's limits, the channels it draws in (none listed: every channel), whether
    members may give pictures with their drawings, and whether drawings get a time-lapse when
    the member does not say."""

    model_config = STRICT

    allowed_channels: tuple[int, ...] = ()
    image_inputs: bool = True
    timelapse: bool = False


class Store:
    def __init__(self, path: Path | str, defaults: GuildLimits) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.defaults = GuildSettings.model_validate(defaults.model_dump())
        self.refused: Counter[str] = Counter()  # moves refused, by move
        self._migrate()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self.db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")

    def close(self) -> None:
        self.db.close()

    def _job(self, row: tuple[object, ...] | None) -> JobRow | None:
        return JobRow(*row) if row is not None else None  # type: ignore[arg-type]

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
        prompt: str,
        seed: int,
        iterations: int,
        size: int,
        parent: JobRow | None = None,
        text_encoder: str = "clip",
        picture: GivenPicture | None = None,
        timelapse: bool = False,
        quality: str = DEFAULT_QUALITY,
    ) -> JobRow:
        """Queue a job, with the `picture` it was given; continuing `parent`, it carries what
        the parent left to go on from."""
        self.db.execute("BEGIN")
        try:
            cursor = self.db.execute(
                "INSERT INTO jobs (guild_id, channel_id, user_id, prompt, seed, iterations, "
                "size, parent_id, init_state, init_latent, created_at, text_encoder, image_use, "
                "init_strength, timelapse, quality) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    guild_id,
                    channel_id,
                    user_id,
                    prompt,
                    seed,
                    iterations,
                    size,
                    parent.id if parent else None,
                    parent.continue_state if parent else None,
                    parent.latent if parent and not parent.continue_state else None,
                    time.time(),
                    text_encoder,
                    picture.use if picture else None,
                    picture.strength if picture else None,
                    timelapse,
                    quality,
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
        row = self.db.execute(
            "SELECT png, name, sha256, weight, thumbnail FROM job_pictures WHERE job_id = ?",
            (job.id,),
        ).fetchone()
        if row is None or job.image_use is None or job.init_strength is None:
            return None
        png, name, sha256, weight, thumbnail = row
        image = ImageInput(png=png, name=name, sha256=sha256, weight=weight)
        return GivenPicture(image, job.image_use, job.init_strength, thumbnail)

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

    def jobs_with_status(self, *statuses: str) -> list[JobRow]:
        marks = ", ".join("?" for _ in statuses)
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE status IN ({marks}) ORDER BY id", statuses
        ).fetchall()
        return [JobRow(*row) for row in rows]

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
        return [JobRow(*row) for row in rows]

    def forget_continue_states(self, ended_before: float) -> list[str]:
        """Drop what Continue needs for jobs that ended before `ended_before`; returns the
        latent files of earlier versions that those jobs pointed to, for deleting."""
        ended = (JobStatus.DONE, JobStatus.CANCELLED, JobStatus.FAILED)
        marks = ", ".join("?" for _ in ended)
        where = (
            f"status IN ({marks}) AND finished_at < ? "
            "AND (continue_state IS NOT NULL OR latent IS NOT NULL)"
        )
        files = [
            row[0]
            for row in self.db.execute(
                f"SELECT latent FROM jobs WHERE {where} AND latent IS NOT NULL",
                (*ended, ended_before),
            )
        ]
        self.db.execute(
            f"UPDATE jobs SET continue_state = NULL, latent = NULL WHERE {where}",
            (*ended, ended_before),
        )
        return files

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

    def save_guild_settings(self, guild_id: int, settings: GuildSettings) -> None:
        self.db.execute(
            "INSERT INTO guild_settings (guild_id, settings) VALUES (?, ?) "
            "ON CONFLICT (guild_id) DO UPDATE SET settings = excluded.settings",
            (guild_id, settings.model_dump_json()),
        )
