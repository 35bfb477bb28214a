-- Rollout plans, seasonal events and the records of their scheduled changes
-- (PostgreSQL). Keep it in step with sqlite/00004_rollout.sql: the same
-- tables, columns, keys and indexes. docs/rollouts.md explains the model.
--
-- JSON is kept in json columns, times as timestamptz, as in 00001_init.sql.
-- The columns beside each JSON document copy the fields that lists filter
-- on.

-- +goose Up

-- One row per rollout plan of a flag in an environment. plan is the
-- rollout.Plan as JSON; version counts its writes (the ETag) and is what
-- every transition swaps. pending is true while the plan has a
-- configuration change claimed but not recorded. Deleting a flag deletes
-- its plans.
CREATE TABLE rollout_plans (
    environment text        NOT NULL REFERENCES environments (name),
    id          text        NOT NULL CHECK (id <> ''),
    flag        text        NOT NULL REFERENCES flags (key) ON DELETE CASCADE,
    status      text        NOT NULL CHECK (status IN ('draft', 'scheduled', 'running', 'paused', 'completed', 'rolled_back', 'cancelled')),
    pending     boolean     NOT NULL DEFAULT FALSE,
    version     bigint      NOT NULL CHECK (version >= 1),
    plan        json        NOT NULL CHECK (json_typeof(plan) = 'object'),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (environment, id)
);
-- Serves the cascade when a flag is deleted, and the plans of one flag.
CREATE INDEX rollout_plans_flag ON rollout_plans (flag, environment);
-- Serves the scheduler: the plans it may have to act on.
CREATE INDEX rollout_plans_active ON rollout_plans (environment, id)
    WHERE status IN ('scheduled', 'running', 'paused') OR pending;

-- One row per seasonal event. event is the rollout.Event as JSON; uid
-- names its scheduled changes and is never reused; starts_at and ends_at
-- are its window in UTC (ends_at: its end, or its cancellation if
-- earlier, and no earlier than its start); closed is set when its end has
-- been recorded.
CREATE TABLE rollout_events (
    environment text        NOT NULL REFERENCES environments (name),
    key         text        NOT NULL CHECK (key <> ''),
    uid         text        NOT NULL UNIQUE CHECK (uid <> ''),
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    closed      boolean     NOT NULL DEFAULT FALSE,
    version     bigint      NOT NULL CHECK (version >= 1),
    event       json        NOT NULL CHECK (json_typeof(event) = 'object'),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (environment, key),
    CHECK (ends_at >= starts_at)
);
-- Serves the calendar (events overlapping a range) and the scheduler (the
-- events not closed).
CREATE INDEX rollout_events_window ON rollout_events (environment, starts_at, ends_at);
CREATE INDEX rollout_events_open ON rollout_events (starts_at) WHERE NOT closed;

-- The claim, then the record, of each scheduled change of an event: its
-- primary key is what makes a change happen once. attempt counts the
-- claims and is what a takeover or a finish swaps. record is the
-- rollout.Record as JSON. Records outlive their events (no foreign key).
CREATE TABLE rollout_changes (
    id          text        NOT NULL PRIMARY KEY CHECK (id <> ''),
    environment text        NOT NULL REFERENCES environments (name),
    event_uid   text        NOT NULL CHECK (event_uid <> ''),
    kind        text        NOT NULL CHECK (kind IN ('phase_start', 'event_end')),
    due_at      timestamptz NOT NULL,
    status      text        NOT NULL CHECK (status IN ('claimed', 'done', 'failed', 'skipped')),
    attempt     integer     NOT NULL CHECK (attempt >= 1),
    claimed_by  text        NOT NULL CHECK (claimed_by <> ''),
    claimed_at  timestamptz NOT NULL,
    applied_at  timestamptz,
    record      json        NOT NULL CHECK (json_typeof(record) = 'object'),
    CHECK ((status = 'claimed') = (applied_at IS NULL))
);
CREATE INDEX rollout_changes_event ON rollout_changes (environment, event_uid, due_at);
CREATE INDEX rollout_changes_due ON rollout_changes (environment, due_at);

-- +goose Down
DROP TABLE rollout_changes;
DROP TABLE rollout_events;
DROP TABLE rollout_plans;
