-- The initial schema of Solstice (SQLite). Keep it in step with
-- postgres/00001_init.sql: the same tables, columns, keys and indexes.
--
-- Times are TIMESTAMP columns so that the driver returns time.Time; the store
-- writes them in UTC with microsecond precision. JSON is kept as TEXT, byte
-- for byte as written (revisions compare object contents exactly), and
-- checked with json_valid.

-- +goose Up
CREATE TABLE environments (
    name        TEXT      NOT NULL PRIMARY KEY CHECK (name <> ''),
    description TEXT      NOT NULL DEFAULT '',
    protected   BOOLEAN   NOT NULL DEFAULT FALSE CHECK (protected IN (0, 1)),
    head        INTEGER   NOT NULL DEFAULT 0 CHECK (head >= 0),
    created_at  TIMESTAMP NOT NULL
);

CREATE TABLE flags (
    key         TEXT      NOT NULL PRIMARY KEY CHECK (key <> ''),
    name        TEXT      NOT NULL,
    description TEXT      NOT NULL DEFAULT '',
    tags        TEXT      NOT NULL DEFAULT '[]' CHECK (json_valid(tags) AND json_type(tags) = 'array'),
    type        TEXT      NOT NULL CHECK (type IN ('boolean', 'string', 'number', 'object')),
    schema      TEXT      CHECK (schema IS NULL OR json_valid(schema)),
    version     INTEGER   NOT NULL CHECK (version >= 1),
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);

CREATE TABLE revisions (
    environment TEXT      NOT NULL REFERENCES environments (name),
    number      INTEGER   NOT NULL CHECK (number >= 1),
    author      TEXT      NOT NULL,
    message     TEXT      NOT NULL DEFAULT '',
    created_at  TIMESTAMP NOT NULL,
    diff        TEXT      NOT NULL CHECK (json_valid(diff) AND json_type(diff) = 'array'),
    PRIMARY KEY (environment, number)
);

-- The full history: one row per object per revision that changed it; NULL
-- content records a removal. The primary key serves "latest version of each
-- object at or before revision n". (Not WITHOUT ROWID: contents run to
-- kilobytes, and a separate primary-key index lets that lookup skip them.)
CREATE TABLE object_versions (
    environment TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('flag', 'segment')),
    key         TEXT    NOT NULL CHECK (key <> ''),
    revision    INTEGER NOT NULL,
    content     TEXT    CHECK (content IS NULL OR json_valid(content)),
    PRIMARY KEY (environment, kind, key, revision),
    FOREIGN KEY (environment, revision) REFERENCES revisions (environment, number)
);

-- The current state, materialized from object_versions for fast reads. Every
-- row points at the version it was copied from.
CREATE TABLE objects (
    environment TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    revision    INTEGER NOT NULL,
    content     TEXT    NOT NULL,
    PRIMARY KEY (environment, kind, key),
    FOREIGN KEY (environment, kind, key, revision) REFERENCES object_versions (environment, kind, key, revision)
);

-- AUTOINCREMENT: ids are never reused, so they order entries and page them.
CREATE TABLE audit_log (
    id          INTEGER   PRIMARY KEY AUTOINCREMENT,
    time        TIMESTAMP NOT NULL,
    actor_name  TEXT      NOT NULL,
    actor_kind  TEXT      NOT NULL,
    token_id    TEXT      NOT NULL DEFAULT '',
    address     TEXT      NOT NULL DEFAULT '',
    action      TEXT      NOT NULL,
    environment TEXT      NOT NULL DEFAULT '',
    resource    TEXT      NOT NULL,
    revision    INTEGER   NOT NULL DEFAULT 0,
    details     TEXT      CHECK (details IS NULL OR json_valid(details))
);
-- Entries are listed newest first (by id), optionally filtered by one of
-- these columns.
CREATE INDEX audit_log_environment ON audit_log (environment, id);
CREATE INDEX audit_log_resource ON audit_log (resource, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_actor ON audit_log (actor_name, id);
CREATE INDEX audit_log_time ON audit_log (time);

CREATE TABLE tokens (
    id           TEXT      NOT NULL PRIMARY KEY CHECK (id <> ''),
    name         TEXT      NOT NULL,
    kind         TEXT      NOT NULL CHECK (kind IN ('admin', 'server')),
    role         TEXT      NOT NULL DEFAULT '' CHECK (role IN ('', 'viewer', 'editor', 'admin')),
    environment  TEXT      REFERENCES environments (name),
    hash         BLOB      NOT NULL UNIQUE CHECK (length(hash) > 0),
    created_by   TEXT      NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at   TIMESTAMP,
    -- A server key reads exactly one environment.
    CHECK (kind <> 'server' OR environment IS NOT NULL)
);
CREATE INDEX tokens_created_at ON tokens (created_at);

-- The last snapshot version published per environment. Versions only grow,
-- across restarts and processes.
CREATE TABLE snapshot_versions (
    environment TEXT    NOT NULL PRIMARY KEY REFERENCES environments (name),
    version     INTEGER NOT NULL CHECK (version >= 1)
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
