-- A bot database as the store of commit 9828631 (release 0.2) wrote it: schema version 7,
-- server settings for guild 1, a done job with a continue state, a failed, a cancelled and a
-- pre-0.2 job with a latent file, a running job, and four waiting jobs (plain with a negative
-- part, draft quality, a picture used both ways with a time-lapse, a continue). Made with
-- that commit's bot.store.Store and dumped with sqlite3's iterdump; tests/test_store.py and
-- tests/test_bot_jobs.py load it.
PRAGMA user_version = 7;
BEGIN TRANSACTION;
CREATE TABLE guild_settings (
        guild_id INTEGER PRIMARY KEY,
        settings TEXT NOT NULL
    );
INSERT INTO "guild_settings" VALUES(1,'{"default_iterations":3,"max_iterations":2500,"max_queued_per_user":2,"progress_interval_s":7.0,"max_size":512,"max_quality":"best","auto_stop":4,"allowed_channels":[],"image_inputs":true,"timelapse":true}');
CREATE TABLE job_pictures (
        job_id INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
        png BLOB NOT NULL,
        name TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        weight REAL NOT NULL,
        thumbnail BLOB NOT NULL
    );
INSERT INTO "job_pictures" VALUES(8,X'89504E470D0A1A0A0000000D4948445200000010000000100802000000909168360000001949444154789C633CA1A1C1400A602249F5A886510D434A03008C2D0138662752880000000049454E44AE426082','red.png','388fd8c58d2de1e6c16b23a27db99824f7a7490eb048104f663d1c3a79a6c3ee',1.0,X'7468756D626E61696C2D6279746573');
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
    , continue_state TEXT, init_state TEXT, worker TEXT, text_encoder TEXT NOT NULL DEFAULT 'clip', image_use TEXT CHECK (image_use IN ('start', 'steer', 'both')), init_strength REAL, timelapse INTEGER NOT NULL DEFAULT 0 CHECK (timelapse IN (0, 1)), quality TEXT NOT NULL DEFAULT 'normal'
        CHECK (quality IN ('draft', 'normal', 'better', 'best')));
INSERT INTO "jobs" VALUES(1,1,222,10,'a done drawing',7,3,64,NULL,NULL,'done',NULL,NULL,1.796589507877179861e+09,1.79658950788281655307e+09,1.79658950788372230537e+09,3,1.5,NULL,NULL,0,NULL,'c3RhdGU=',NULL,'local','clip',NULL,NULL,0,'normal');
INSERT INTO "jobs" VALUES(2,1,222,11,'a failed drawing',7,3,64,NULL,NULL,'failed',NULL,NULL,1.79658950788418626787e+09,1.79658950788471221925e+09,1.79658950788544178006e+09,0,NULL,NULL,'the GPU ran out of memory; try a smaller size',0,NULL,NULL,NULL,'local','clip',NULL,NULL,0,'normal');
INSERT INTO "jobs" VALUES(3,1,222,12,'a cancelled drawing',7,3,64,NULL,NULL,'cancelled',NULL,NULL,1.79658950788584494597e+09,NULL,1.79658950788629651071e+09,0,NULL,NULL,NULL,0,'{"message": "Cancelled by <@{member}>.", "values": {"member": 12}}',NULL,NULL,NULL,'clip',NULL,NULL,0,'normal');
INSERT INTO "jobs" VALUES(4,1,222,13,'drawn before 0.2',7,3,64,NULL,NULL,'done',NULL,NULL,1.79658950789066672324e+09,1.79658950789124250411e+09,1.79658950789209699624e+09,3,1.0,'latents/4.pt',NULL,0,NULL,NULL,NULL,'local','clip',NULL,NULL,0,'normal');
INSERT INTO "jobs" VALUES(5,1,222,20,'a drawing in progress',7,3,64,NULL,NULL,'running',NULL,NULL,1.79658950789295864102e+09,1.79658950789350199692e+09,NULL,2,NULL,NULL,NULL,0,NULL,NULL,NULL,'local','clip',NULL,NULL,0,'normal');
INSERT INTO "jobs" VALUES(6,1,222,21,'a plain waiting drawing | fog:-0.5',7,3,64,NULL,NULL,'queued',NULL,NULL,1.79658950789530205728e+09,NULL,NULL,0,NULL,NULL,NULL,0,NULL,NULL,NULL,NULL,'clip',NULL,NULL,0,'normal');
INSERT INTO "jobs" VALUES(7,1,222,22,'a draft',7,3,64,NULL,NULL,'queued',NULL,NULL,1.79658950789586710928e+09,NULL,NULL,0,NULL,NULL,NULL,0,NULL,NULL,NULL,NULL,'clip',NULL,NULL,0,'draft');
INSERT INTO "jobs" VALUES(8,1,222,23,'a picture',7,3,64,NULL,NULL,'queued',NULL,NULL,1.79658950789643549923e+09,NULL,NULL,0,NULL,NULL,NULL,0,NULL,NULL,NULL,NULL,'clip','both',0.7,1,'normal');
INSERT INTO "jobs" VALUES(9,1,222,24,'a done drawing',7,4,64,1,NULL,'queued',NULL,NULL,1.79658950789700484276e+09,NULL,NULL,0,NULL,NULL,NULL,0,NULL,NULL,'c3RhdGU=',NULL,'clip',NULL,NULL,0,'normal');
CREATE INDEX jobs_status ON jobs (status, id);
CREATE INDEX jobs_finished ON jobs (finished_at);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('jobs',9);
COMMIT;
