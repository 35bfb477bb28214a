-- People of the web UI and four-eyes change requests (SQLite). Keep it in
-- step with postgres/00005_accounts.sql: the same tables, columns, keys and
-- indexes. docs/ui.md explains the model.

-- +goose Up

-- Usernames are stored lower-case. password_hash is an argon2id PHC string.
CREATE TABLE users (
    username             TEXT      NOT NULL PRIMARY KEY CHECK (username <> ''),
    display_name         TEXT      NOT NULL DEFAULT '',
    password_hash        TEXT      NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    must_change_password BOOLEAN   NOT NULL DEFAULT FALSE CHECK (must_change_password IN (0, 1)),
    disabled             BOOLEAN   NOT NULL DEFAULT FALSE CHECK (disabled IN (0, 1)),
    created_at           TIMESTAMP NOT NULL,
    updated_at           TIMESTAMP NOT NULL,
    last_login_at        TIMESTAMP
);

-- A user's role per environment; environment '*' is the default role, for
-- every environment without a row of its own. (Not a foreign key, because of
-- '*'; the accounts service checks the names.)
CREATE TABLE user_roles (
    username    TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    environment TEXT NOT NULL CHECK (environment <> ''),
    role        TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'approver', 'admin')),
    PRIMARY KEY (username, environment)
);

-- Login sessions. hash is the SHA-256 of the token the browser holds; the
-- token itself is never stored.
CREATE TABLE sessions (
    hash         BLOB      NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
    username     TEXT      NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    created_at   TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    expires_at   TIMESTAMP NOT NULL,
    address      TEXT      NOT NULL DEFAULT '',
    user_agent   TEXT      NOT NULL DEFAULT ''
);
CREATE INDEX sessions_username ON sessions (username);
CREATE INDEX sessions_last_seen_at ON sessions (last_seen_at);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Four-eyes change requests. before_content and after_content are flag
-- states (JSON) of a 'config' request; a 'revert' request names its
-- target_revision. AUTOINCREMENT: ids are never reused.
CREATE TABLE change_requests (
    id               INTEGER   PRIMARY KEY AUTOINCREMENT,
    environment      TEXT      NOT NULL REFERENCES environments (name),
    kind             TEXT      NOT NULL CHECK (kind IN ('config', 'revert')),
    flag             TEXT      NOT NULL DEFAULT '',
    target_revision  INTEGER   NOT NULL DEFAULT 0 CHECK (target_revision >= 0),
    base_revision    INTEGER   NOT NULL CHECK (base_revision >= 0),
    before_content   TEXT      CHECK (before_content IS NULL OR json_valid(before_content)),
    after_content    TEXT      CHECK (after_content IS NULL OR json_valid(after_content)),
    message          TEXT      NOT NULL DEFAULT '',
    author           TEXT      NOT NULL CHECK (author <> ''),
    status           TEXT      NOT NULL CHECK (status IN ('open', 'approved', 'rejected', 'withdrawn')),
    created_at       TIMESTAMP NOT NULL,
    decided_by       TEXT      NOT NULL DEFAULT '',
    decided_at       TIMESTAMP,
    comment          TEXT      NOT NULL DEFAULT '',
    applied_revision INTEGER   NOT NULL DEFAULT 0 CHECK (applied_revision >= 0),
    CHECK (kind <> 'config' OR (flag <> '' AND after_content IS NOT NULL)),
    CHECK (kind <> 'revert' OR target_revision >= 1)
);
CREATE INDEX change_requests_status ON change_requests (status, id);
CREATE INDEX change_requests_environment ON change_requests (environment, id);
CREATE INDEX change_requests_flag ON change_requests (flag, id);

-- +goose Down
DROP TABLE change_requests;
DROP TABLE sessions;
DROP TABLE user_roles;
DROP TABLE users;
