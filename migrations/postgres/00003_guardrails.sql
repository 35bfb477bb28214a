-- Guardrails (PostgreSQL): their definitions, their states, their incidents,
-- and the outbox of webhook messages. Keep it in step with
-- sqlite/00003_guardrails.sql: the same tables, columns, keys and indexes.
--
-- JSON is kept in json (not jsonb) columns, byte for byte as written (a
-- webhook payload is signed as it was queued), as in 00001_init.sql.

-- +goose Up

-- One row per guardrail of a flag in an environment. rule is the
-- guardrails.Rule as canonical JSON; version counts its writes (the ETag).
-- Deleting a flag deletes its guardrails, and their states with them.
CREATE TABLE guardrails (
    environment text        NOT NULL REFERENCES environments (name),
    flag        text        NOT NULL REFERENCES flags (key) ON DELETE CASCADE,
    key         text        NOT NULL CHECK (key <> ''),
    rule        json        NOT NULL CHECK (json_typeof(rule) = 'object'),
    version     bigint      NOT NULL CHECK (version >= 1),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (environment, flag, key)
);
-- Serves the cascade when a flag is deleted.
CREATE INDEX guardrails_flag ON guardrails (flag);

-- A guardrail's state (guardrails.State as JSON), swapped by comparing
-- version. It goes with its guardrail.
CREATE TABLE guardrail_states (
    environment text   NOT NULL,
    flag        text   NOT NULL,
    key         text   NOT NULL,
    version     bigint NOT NULL CHECK (version >= 1),
    state       json   NOT NULL CHECK (json_typeof(state) = 'object'),
    PRIMARY KEY (environment, flag, key),
    FOREIGN KEY (environment, flag, key) REFERENCES guardrails (environment, flag, key) ON DELETE CASCADE
);

-- Incidents outlive their guardrails (no foreign key to them). number is
-- the public id. incident is the guardrails.Incident as JSON; the columns
-- before it copy the fields that lists filter on.
CREATE TABLE guardrail_incidents (
    number      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          text        NOT NULL UNIQUE CHECK (id <> ''),
    environment text        NOT NULL REFERENCES environments (name),
    flag        text        NOT NULL CHECK (flag <> ''),
    guardrail   text        NOT NULL CHECK (guardrail <> ''),
    event       text        NOT NULL CHECK (event <> ''),
    action      text        NOT NULL DEFAULT '',
    test        bigint      NOT NULL,
    time        timestamptz NOT NULL,
    revision    bigint      NOT NULL DEFAULT 0 CHECK (revision >= 0),
    outcome     text        NOT NULL DEFAULT '',
    recorded_at timestamptz NOT NULL,
    acked_by    json,
    acked_at    timestamptz,
    incident    json        NOT NULL CHECK (json_typeof(incident) = 'object'),
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
    id              text        NOT NULL PRIMARY KEY CHECK (id <> ''),
    endpoint        text        NOT NULL CHECK (endpoint <> ''),
    event           text        NOT NULL CHECK (event <> ''),
    payload         json        NOT NULL,
    created_at      timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL,
    claimed_at      timestamptz,
    delivered_at    timestamptz,
    given_up_at     timestamptz,
    last_error      text        NOT NULL DEFAULT ''
);
-- Serves Claim: the messages still to send, oldest first.
CREATE INDEX webhook_messages_pending ON webhook_messages (created_at, id)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;

-- +goose Down
DROP TABLE webhook_messages;
DROP TABLE guardrail_incidents;
DROP TABLE guardrail_states;
DROP TABLE guardrails;
