-- Telemetry from game servers (SQLite). Keep it in step with
-- postgres/00002_telemetry.sql: the same tables, columns, keys and indexes.
--
-- Times of data are whole minutes since the Unix epoch (INTEGER, UTC), days
-- are UTC days since the epoch: counters are cut at minute boundaries, and
-- integers compare and add the same in both dialects. Player sets are roaring
-- bitmaps (portable serialization) of ids from telemetry_players.
-- docs/telemetry.md explains the model.

-- +goose Up

-- The idempotency record: one row per batch, written in the batch's own
-- transaction. digest is the SHA-256 of the batch's normalized content.
CREATE TABLE telemetry_batches (
    environment TEXT      NOT NULL REFERENCES environments (name),
    batch_id    TEXT      NOT NULL CHECK (batch_id <> ''),
    digest      BLOB      NOT NULL CHECK (length(digest) = 32),
    server_id   TEXT      NOT NULL,
    received_at TIMESTAMP NOT NULL,
    PRIMARY KEY (environment, batch_id)
);
CREATE INDEX telemetry_batches_received_at ON telemetry_batches (received_at);

-- What each game server delivered: the end of its newest window (through),
-- its newest activity minute, when it last reported.
CREATE TABLE telemetry_servers (
    environment      TEXT      NOT NULL REFERENCES environments (name),
    server_id        TEXT      NOT NULL CHECK (server_id <> ''),
    through          INTEGER   NOT NULL CHECK (through >= 0),
    last_activity    INTEGER   NOT NULL CHECK (last_activity >= 0),
    snapshot_version INTEGER   NOT NULL CHECK (snapshot_version >= 0),
    first_seen       TIMESTAMP NOT NULL,
    last_seen        TIMESTAMP NOT NULL,
    PRIMARY KEY (environment, server_id)
);

-- The environment's watermark: it only grows.
CREATE TABLE telemetry_watermarks (
    environment TEXT    NOT NULL PRIMARY KEY REFERENCES environments (name),
    minute      INTEGER NOT NULL CHECK (minute >= 0)
);

-- Counters per flag, variant and minute. Sums of squares are REAL: they
-- only feed a variance estimate, and may outgrow 64-bit integers.
CREATE TABLE telemetry_counters (
    environment             TEXT    NOT NULL,
    flag                    TEXT    NOT NULL,
    variant                 TEXT    NOT NULL,
    minute                  INTEGER NOT NULL,
    accepted                INTEGER NOT NULL CHECK (accepted >= 0),
    rejected                INTEGER NOT NULL CHECK (rejected >= 0),
    exposures               INTEGER NOT NULL CHECK (exposures >= 0),
    sessions                INTEGER NOT NULL CHECK (sessions >= 0),
    session_actions         INTEGER NOT NULL CHECK (session_actions >= 0),
    session_rejects         INTEGER NOT NULL CHECK (session_rejects >= 0),
    session_actions_sq      REAL    NOT NULL CHECK (session_actions_sq >= 0),
    session_rejects_sq      REAL    NOT NULL CHECK (session_rejects_sq >= 0),
    session_actions_rejects REAL    NOT NULL CHECK (session_actions_rejects >= 0),
    PRIMARY KEY (environment, flag, variant, minute)
) WITHOUT ROWID;

-- Rejected actions by reason code, and custom counters by name.
CREATE TABLE telemetry_rejects (
    environment TEXT    NOT NULL,
    flag        TEXT    NOT NULL,
    variant     TEXT    NOT NULL,
    minute      INTEGER NOT NULL,
    reason      TEXT    NOT NULL CHECK (reason <> ''),
    rejects     INTEGER NOT NULL CHECK (rejects >= 0),
    PRIMARY KEY (environment, flag, variant, minute, reason)
) WITHOUT ROWID;

CREATE TABLE telemetry_custom (
    environment TEXT    NOT NULL,
    flag        TEXT    NOT NULL,
    variant     TEXT    NOT NULL,
    minute      INTEGER NOT NULL,
    name        TEXT    NOT NULL CHECK (name <> ''),
    value       INTEGER NOT NULL CHECK (value >= 0),
    PRIMARY KEY (environment, flag, variant, minute, name)
) WITHOUT ROWID;

-- The player dictionary: dense 32-bit ids for the player keys game servers
-- send, so that sets of players are compact bitmaps. AUTOINCREMENT: an id is
-- never reused.
CREATE TABLE telemetry_players (
    id          INTEGER PRIMARY KEY AUTOINCREMENT CHECK (id BETWEEN 1 AND 4294967295),
    environment TEXT    NOT NULL,
    player_key  TEXT    NOT NULL CHECK (player_key <> ''),
    UNIQUE (environment, player_key)
);

-- The players ever exposed to a variant: a roaring bitmap per 65,536 ids.
CREATE TABLE telemetry_seen (
    environment TEXT    NOT NULL,
    flag        TEXT    NOT NULL,
    variant     TEXT    NOT NULL,
    chunk       INTEGER NOT NULL CHECK (chunk BETWEEN 0 AND 65535),
    players     BLOB    NOT NULL,
    PRIMARY KEY (environment, flag, variant, chunk)
);

-- The players first exposed to a variant in an hour: a 64-bit roaring bitmap
-- of (minute of the hour << 32 | player id).
CREATE TABLE telemetry_cohorts (
    environment TEXT    NOT NULL,
    flag        TEXT    NOT NULL,
    variant     TEXT    NOT NULL,
    hour        INTEGER NOT NULL,
    players     BLOB    NOT NULL,
    PRIMARY KEY (environment, flag, variant, hour)
);

-- Each player's first and last active minute (0 to 1439) of a UTC day.
CREATE TABLE telemetry_activity (
    environment  TEXT    NOT NULL,
    day          INTEGER NOT NULL,
    player_id    INTEGER NOT NULL,
    first_minute INTEGER NOT NULL CHECK (first_minute BETWEEN 0 AND 1439),
    last_minute  INTEGER NOT NULL CHECK (last_minute BETWEEN first_minute AND 1439),
    PRIMARY KEY (environment, day, player_id)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE telemetry_activity;
DROP TABLE telemetry_cohorts;
DROP TABLE telemetry_seen;
DROP TABLE telemetry_players;
DROP TABLE telemetry_custom;
DROP TABLE telemetry_rejects;
DROP TABLE telemetry_counters;
DROP TABLE telemetry_watermarks;
DROP TABLE telemetry_servers;
DROP TABLE telemetry_batches;
