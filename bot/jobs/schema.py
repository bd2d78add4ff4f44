"""The database's schema, as the migrations that build it, in order: `migrate` brings a database
of any earlier version up to date, each step in one transaction.

Most steps are SQL. Step 8 is code: it turns the columns in which versions up to 0.2 kept a
job's settings into one `spec` column holding the job's `JobSpec` (`bot.jobs.spec.legacy` says
how each old job is read), and drops the latent files of versions before 0.2, which the bot
cannot read without torch: a job still waiting to continue from one fails, saying so.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.i18n import reason_notice
from bot.jobs.spec import Rules, legacy
from bot.limits import GuildSettings
from generator.contract.quality import DEFAULT_QUALITY, QUALITIES
from generator.contract.reasons import STATE_UNUSABLE


@dataclass(frozen=True)
class Upgrade:
    """What a code step needs to know: the operator's rules, and each server's settings."""

    rules: Rules
    settings_of: Callable[[int], GuildSettings]


JOBS = """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        guild_id INTEGER NOT NULL,
        channel_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        spec TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'queued',
        card_message_id INTEGER,
        card_posted_at REAL,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        steps INTEGER NOT NULL DEFAULT 0,
        seconds REAL,
        error TEXT,
        requeues INTEGER NOT NULL DEFAULT 0,
        notice TEXT,
        continue_state TEXT,
        init_state TEXT,
        worker TEXT
    )
"""
# The columns step 8 keeps as they are.
KEPT = (
    "id",
    "guild_id",
    "channel_id",
    "user_id",
    "status",
    "card_message_id",
    "card_posted_at",
    "created_at",
    "started_at",
    "finished_at",
    "steps",
    "seconds",
    "error",
    "requeues",
    "notice",
    "continue_state",
    "init_state",
    "worker",
)


def _one_spec_column(db: sqlite3.Connection, upgrade: Upgrade) -> None:
    cursor = db.execute("SELECT * FROM jobs ORDER BY id")
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    pictures = {
        job_id: (name, sha256, weight)
        for job_id, name, sha256, weight in db.execute(
            "SELECT job_id, name, sha256, weight FROM job_pictures"
        )
    }
    db.execute(JOBS.replace("CREATE TABLE jobs", "CREATE TABLE jobs_with_specs"))
    marks = ", ".join("?" for _ in (*KEPT, "spec"))
    for row in rows:
        spec = legacy(
            row, upgrade.settings_of(row["guild_id"]), upgrade.rules, pictures.get(row["id"])
        )
        if row["status"] in ("queued", "running") and row["init_latent"] and not row["init_state"]:
            row.update(
                status="failed", error=reason_notice(STATE_UNUSABLE), finished_at=time.time()
            )
        values: list[Any] = [row[name] for name in KEPT]
        db.execute(
            f"INSERT INTO jobs_with_specs ({', '.join(KEPT)}, spec) VALUES ({marks})",
            [*values, spec.model_dump_json()],
        )
    db.execute("DROP TABLE jobs")
    db.execute("ALTER TABLE jobs_with_specs RENAME TO jobs")
    db.execute("CREATE INDEX jobs_status ON jobs (status, id)")
    db.execute("CREATE INDEX jobs_finished ON jobs (finished_at)")


Migration = str | Callable[[sqlite3.Connection, Upgrade], None]

MIGRATIONS: tuple[Migration, ...] = (
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
    _one_spec_column,
    """
    ALTER TABLE jobs ADD COLUMN withheld INTEGER NOT NULL DEFAULT 0 CHECK (withheld IN (0, 1));
    CREATE TABLE barred (
        guild_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        barred_by INTEGER NOT NULL,
        barred_at REAL NOT NULL,
        PRIMARY KEY (guild_id, user_id)
    );
    CREATE TABLE reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        reporter INTEGER NOT NULL,
        reported_at REAL NOT NULL,
        UNIQUE (job_id, reporter)
    );
    """,
    """
    CREATE TABLE member_settings (
        guild_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        remix INTEGER NOT NULL DEFAULT 0 CHECK (remix IN (0, 1)),
        PRIMARY KEY (guild_id, user_id)
    );
    """,
    "ALTER TABLE jobs ADD COLUMN language TEXT",
)


def migrate(db: sqlite3.Connection, upgrade: Upgrade) -> None:
    """Bring `db` to the newest version (its `user_version` says which it has)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        if isinstance(step, str):
            db.executescript(f"BEGIN; {step}; PRAGMA user_version = {number}; COMMIT;")
            continue
        # A table is rebuilt: the other tables' references to it are checked afterwards.
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute("BEGIN")
        try:
            step(db, upgrade)
            problems = db.execute("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise sqlite3.IntegrityError(f"migration {number} broke references: {problems}")
            db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.execute("PRAGMA foreign_keys=ON")
