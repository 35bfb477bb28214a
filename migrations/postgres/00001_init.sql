-- The initial schema of Solstice (PostgreSQL). Keep it in step with
-- sqlite/00001_init.sql: the same tables, columns, keys and indexes.
--
-- JSON is kept in json (not jsonb) columns: PostgreSQL validates it but keeps
-- the text byte for byte as written, which revisions rely on to compare
-- object contents exactly.

-- +goose Up
CREATE TABLE environments (
    name        text        NOT NULL PRIMARY KEY CHECK (name <> ''),
    description text        NOT NULL DEFAULT '',
    protected   boolean     NOT NULL DEFAULT FALSE,
    head        bigint      NOT NULL DEFAULT 0 CHECK (head >= 0),
    created_at  timestamptz NOT NULL
);

CREATE TABLE flags (
    key         text        NOT NULL PRIMARY KEY CHECK (key <> ''),
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    tags        json        NOT NULL DEFAULT '[]' CHECK (json_typeof(tags) = 'array'),
    type        text        NOT NULL CHECK (type IN ('boolean', 'string', 'number', 'object')),
    schema      json,
    version     bigint      NOT NULL CHECK (version >= 1),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE revisions (
    environment text        NOT NULL REFERENCES environments (name),
    number      bigint      NOT NULL CHECK (number >= 1),
    author      text        NOT NULL,
    message     text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    diff        json        NOT NULL CHECK (json_typeof(diff) = 'array'),
    PRIMARY KEY (environment, number)
);

-- The full history: one row per object per revision that changed it; NULL
-- content records a removal. The primary key serves "latest version of each
-- object at or before revision n".
CREATE TABLE object_versions (
    environment text   NOT NULL,
    kind        text   NOT NULL CHECK (kind IN ('flag', 'segment')),
    key         text   NOT NULL CHECK (key <> ''),
    revision    bigint NOT NULL,
    content     json,
    PRIMARY KEY (environment, kind, key, revision),
    FOREIGN KEY (environment, revision) REFERENCES revisions (environment, number)
);

-- The current state, materialized from object_versions for fast reads. Every
-- row points at the version it was copied from.
CREATE TABLE objects (
    environment text   NOT NULL,
    kind        text   NOT NULL,
    key         text   NOT NULL,
    revision    bigint NOT NULL,
    content     json   NOT NULL,
    PRIMARY KEY (environment, kind, key),
    FOREIGN KEY (environment, kind, key, revision) REFERENCES object_versions (environment, kind, key, revision)
);

CREATE TABLE audit_log (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time        timestamptz NOT NULL,
    actor_name  text        NOT NULL,
    actor_kind  text        NOT NULL,
    token_id    text        NOT NULL DEFAULT '',
    address     text        NOT NULL DEFAULT '',
    action      text        NOT NULL,
    environment text        NOT NULL DEFAULT '',
    resource    text        NOT NULL,
    revision    bigint      NOT NULL DEFAULT 0,
    details     json
);
-- Entries are listed newest first (by id), optionally filtered by one of
-- these columns.
CREATE INDEX audit_log_environment ON audit_log (environment, id);
CREATE INDEX audit_log_resource ON audit_log (resource, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_actor ON audit_log (actor_name, id);
CREATE INDEX audit_log_time ON audit_log (time);

CREATE TABLE tokens (
    id           text        NOT NULL PRIMARY KEY CHECK (id <> ''),
    name         text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('admin', 'server')),
    role         text        NOT NULL DEFAULT '' CHECK (role IN ('', 'viewer', 'editor', 'admin')),
    environment  text        REFERENCES environments (name),
    hash         bytea       NOT NULL UNIQUE CHECK (length(hash) > 0),
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    -- A server key reads exactly one environment.
    CHECK (kind <> 'server' OR environment IS NOT NULL)
);
CREATE INDEX tokens_created_at ON tokens (created_at);

-- The last snapshot version published per environment. Versions only grow,
-- across restarts and processes.
CREATE TABLE snapshot_versions (
    environment text   NOT NULL PRIMARY KEY REFERENCES environments (name),
    version     bigint NOT NULL CHECK (version >= 1)
);

-- +goose Down
DROP TABLE snapshot_versions;
DROP TABLE tokens;
DROP TABLE audit_log;
DROP TABLE objects;
DROP TABLE object_versions;
DROP TABLE revisions;
DROP TABLE flags;
DROP TABLE environments;
