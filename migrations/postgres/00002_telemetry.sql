-- Telemetry from game servers (PostgreSQL). Keep it in step with
-- sqlite/00002_telemetry.sql: the same tables, columns, keys and indexes.
--
-- Times of data are whole minutes since the Unix epoch (bigint, UTC), days
-- are UTC days since the epoch: counters are cut at minute boundaries, and
-- integers compare and add the same in both dialects. Player sets are roaring
-- bitmaps (portable serialization) of ids from telemetry_players.
-- docs/telemetry.md explains the model.

-- +goose Up

-- The idempotency record: one row per batch, written in the batch's own
-- transaction. digest is the SHA-256 of the batch's normalized content.
CREATE TABLE telemetry_batches (
    environment text        NOT NULL REFERENCES environments (name),
    batch_id    text        NOT NULL CHECK (batch_id <> ''),
    digest      bytea       NOT NULL CHECK (length(digest) = 32),
    server_id   text        NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (environment, batch_id)
);
CREATE INDEX telemetry_batches_received_at ON telemetry_batches (received_at);

-- What each game server delivered: the end of its newest window (through),
-- its newest activity minute, when it last reported.
CREATE TABLE telemetry_servers (
    environment      text        NOT NULL REFERENCES environments (name),
    server_id        text        NOT NULL CHECK (server_id <> ''),
    through          bigint      NOT NULL CHECK (through >= 0),
    last_activity    bigint      NOT NULL CHECK (last_activity >= 0),
    snapshot_version bigint      NOT NULL CHECK (snapshot_version >= 0),
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    PRIMARY KEY (environment, server_id)
);

-- The environment's watermark: it only grows.
CREATE TABLE telemetry_watermarks (
    environment text   NOT NULL PRIMARY KEY REFERENCES environments (name),
    minute      bigint NOT NULL CHECK (minute >= 0)
);

-- Counters per flag, variant and minute. Sums of squares are double
-- precision: they only feed a variance estimate, and may outgrow bigint.
CREATE TABLE telemetry_counters (
    environment             text             NOT NULL,
    flag                    text             NOT NULL,
    variant                 text             NOT NULL,
    minute                  bigint           NOT NULL,
    accepted                bigint           NOT NULL CHECK (accepted >= 0),
    rejected                bigint           NOT NULL CHECK (rejected >= 0),
    exposures               bigint           NOT NULL CHECK (exposures >= 0),
    sessions                bigint           NOT NULL CHECK (sessions >= 0),
    session_actions         bigint           NOT NULL CHECK (session_actions >= 0),
    session_rejects         bigint           NOT NULL CHECK (session_rejects >= 0),
    session_actions_sq      double precision NOT NULL CHECK (session_actions_sq >= 0),
    session_rejects_sq      double precision NOT NULL CHECK (session_rejects_sq >= 0),
    session_actions_rejects double precision NOT NULL CHECK (session_actions_rejects >= 0),
    PRIMARY KEY (environment, flag, variant, minute)
);

-- Rejected actions by reason code, and custom counters by name.
CREATE TABLE telemetry_rejects (
    environment text   NOT NULL,
    flag        text   NOT NULL,
    variant     text   NOT NULL,
    minute      bigint NOT NULL,
    reason      text   NOT NULL CHECK (reason <> ''),
    rejects     bigint NOT NULL CHECK (rejects >= 0),
    PRIMARY KEY (environment, flag, variant, minute, reason)
);

CREATE TABLE telemetry_custom (
    environment text   NOT NULL,
    flag        text   NOT NULL,
    variant     text   NOT NULL,
    minute      bigint NOT NULL,
    name        text   NOT NULL CHECK (name <> ''),
    value       bigint NOT NULL CHECK (value >= 0),
    PRIMARY KEY (environment, flag, variant, minute, name)
);

-- The player dictionary: dense 32-bit ids for the player keys game servers
-- send, so that sets of players are compact bitmaps.
CREATE TABLE telemetry_players (
    id          bigint GENERATED ALWAYS AS IDENTITY (MAXVALUE 4294967295) PRIMARY KEY,
    environment text   NOT NULL,
    player_key  text   NOT NULL CHECK (player_key <> ''),
    UNIQUE (environment, player_key)
);

-- The players ever exposed to a variant: a roaring bitmap per 65,536 ids.
CREATE TABLE telemetry_seen (
    environment text    NOT NULL,
    flag        text    NOT NULL,
    variant     text    NOT NULL,
    chunk       integer NOT NULL CHECK (chunk BETWEEN 0 AND 65535),
    players     bytea   NOT NULL,
    PRIMARY KEY (environment, flag, variant, chunk)
);

-- The players first exposed to a variant in an hour: a 64-bit roaring bitmap
-- of (minute of the hour << 32 | player id).
CREATE TABLE telemetry_cohorts (
    environment text   NOT NULL,
    flag        text   NOT NULL,
    variant     text   NOT NULL,
    hour        bigint NOT NULL,
    players     bytea  NOT NULL,
    PRIMARY KEY (environment, flag, variant, hour)
);

-- Each player's first and last active minute (0 to 1439) of a UTC day.
CREATE TABLE telemetry_activity (
    environment  text     NOT NULL,
    day          integer  NOT NULL,
    player_id    bigint   NOT NULL,
    first_minute smallint NOT NULL CHECK (first_minute BETWEEN 0 AND 1439),
    last_minute  smallint NOT NULL CHECK (last_minute BETWEEN first_minute AND 1439),
    PRIMARY KEY (environment, day, player_id)
);

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
