-- Guardrails (SQLite): their definitions, their states, their incidents, and
-- the outbox of webhook messages. Keep it in step with
-- postgres/00003_guardrails.sql: the same tables, columns, keys and indexes.
--
-- JSON is kept as TEXT checked with json_valid, times as TIMESTAMP in UTC
-- with microsecond precision, as in 00001_init.sql.

-- +goose Up

-- One row per guardrail of a flag in an environment. rule is the
-- guardrails.Rule as canonical JSON; version counts its writes (the ETag).
-- Deleting a flag deletes its guardrails, and their states with them.
CREATE TABLE guardrails (
    environment TEXT      NOT NULL REFERENCES environments (name),
    flag        TEXT      NOT NULL REFERENCES flags (key) ON DELETE CASCADE,
    key         TEXT      NOT NULL CHECK (key <> ''),
    rule        TEXT      NOT NULL CHECK (json_valid(rule) AND json_type(rule) = 'object'),
    version     INTEGER   NOT NULL CHECK (version >= 1),
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (environment, flag, key)
);
-- Serves the cascade when a flag is deleted.
CREATE INDEX guardrails_flag ON guardrails (flag);

-- A guardrail's state (guardrails.State as JSON), swapped by comparing
-- version. It goes with its guardrail.
CREATE TABLE guardrail_states (
    environment TEXT    NOT NULL,
    flag        TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    version     INTEGER NOT NULL CHECK (version >= 1),
    state       TEXT    NOT NULL CHECK (json_valid(state) AND json_type(state) = 'object'),
    PRIMARY KEY (environment, flag, key),
    FOREIGN KEY (environment, flag, key) REFERENCES guardrails (environment, flag, key) ON DELETE CASCADE
);

-- Incidents outlive their guardrails (no foreign key to them). number is
-- the public id: AUTOINCREMENT never reuses one. incident is the
-- guardrails.Incident as JSON; the columns before it copy the fields that
-- lists filter on.
CREATE TABLE guardrail_incidents (
    number      INTEGER   PRIMARY KEY AUTOINCREMENT,
    id          TEXT      NOT NULL UNIQUE CHECK (id <> ''),
    environment TEXT      NOT NULL REFERENCES environments (name),
    flag        TEXT      NOT NULL CHECK (flag <> ''),
    guardrail   TEXT      NOT NULL CHECK (guardrail <> ''),
    event       TEXT      NOT NULL CHECK (event <> ''),
    action      TEXT      NOT NULL DEFAULT '',
    test        INTEGER   NOT NULL,
    time        TIMESTAMP NOT NULL,
    revision    INTEGER   NOT NULL DEFAULT 0 CHECK (revision >= 0),
    outcome     TEXT      NOT NULL DEFAULT '',
    recorded_at TIMESTAMP NOT NULL,
    acked_by    TEXT      CHECK (acked_by IS NULL OR json_valid(acked_by)),
    acked_at    TIMESTAMP,
    incident    TEXT      NOT NULL CHECK (json_valid(incident) AND json_type(incident) = 'object'),
    CHECK ((acked_by IS NULL) = (acked_at IS NULL))
);
-- Incidents are listed newest first (by number), optionally filtered.
CREATE INDEX guardrail_incidents_environment ON guardrail_incidents (environment, flag, guardrail, number);
CREATE INDEX guardrail_incidents_flag ON guardrail_incidents (flag, guardrail, number);
CREATE INDEX guardrail_incidents_event ON guardrail_incidents (event, number);
CREATE INDEX guardrail_incidents_unacked ON guardrail_incidents (number) WHERE acked_at IS NULL;

-- The transactional outbox: webhook messages queued with the change they
-- announce, until they are delivered or given up.
CREATE TABLE webhook_messages (
    id              TEXT      NOT NULL PRIMARY KEY CHECK (id <> ''),
    endpoint        TEXT      NOT NULL CHECK (endpoint <> ''),
    event           TEXT      NOT NULL CHECK (event <> ''),
    payload         TEXT      NOT NULL CHECK (json_valid(payload)),
    created_at      TIMESTAMP NOT NULL,
    attempts        INTEGER   NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at TIMESTAMP NOT NULL,
    claimed_at      TIMESTAMP,
    delivered_at    TIMESTAMP,
    given_up_at     TIMESTAMP,
    last_error      TEXT      NOT NULL DEFAULT ''
);
-- Serves Claim: the messages still to send, oldest first.
CREATE INDEX webhook_messages_pending ON webhook_messages (created_at, id)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;

-- +goose Down
DROP TABLE webhook_messages;
DROP TABLE guardrail_incidents;
DROP TABLE guardrail_states;
DROP TABLE guardrails;
