-- People of the web UI and four-eyes change requests (PostgreSQL). Keep it
-- in step with sqlite/00005_accounts.sql: the same tables, columns, keys and
-- indexes. docs/ui.md explains the model.

-- +goose Up

-- Usernames are stored lower-case. password_hash is an argon2id PHC string.
CREATE TABLE users (
    username             text        NOT NULL PRIMARY KEY CHECK (username <> ''),
    display_name         text        NOT NULL DEFAULT '',
    password_hash        text        NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    must_change_password boolean     NOT NULL DEFAULT FALSE,
    disabled             boolean     NOT NULL DEFAULT FALSE,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    last_login_at        timestamptz
);

-- A user's role per environment; environment '*' is the default role, for
-- every environment without a row of its own. (Not a foreign key, because of
-- '*'; the accounts service checks the names.)
CREATE TABLE user_roles (
    username    text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    environment text NOT NULL CHECK (environment <> ''),
    role        text NOT NULL CHECK (role IN ('viewer', 'editor', 'approver', 'admin')),
    PRIMARY KEY (username, environment)
);

-- Login sessions. hash is the SHA-256 of the token the browser holds; the
-- token itself is never stored.
CREATE TABLE sessions (
    hash         bytea       NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
    username     text        NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    address      text        NOT NULL DEFAULT '',
    user_agent   text        NOT NULL DEFAULT ''
);
CREATE INDEX sessions_username ON sessions (username);
CREATE INDEX sessions_last_seen_at ON sessions (last_seen_at);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Four-eyes change requests. before_content and after_content are flag
-- states (JSON) of a 'config' request; a 'revert' request names its
-- target_revision.
CREATE TABLE change_requests (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment      text        NOT NULL REFERENCES environments (name),
    kind             text        NOT NULL CHECK (kind IN ('config', 'revert')),
    flag             text        NOT NULL DEFAULT '',
    target_revision  bigint      NOT NULL DEFAULT 0 CHECK (target_revision >= 0),
    base_revision    bigint      NOT NULL CHECK (base_revision >= 0),
    before_content   json,
    after_content    json,
    message          text        NOT NULL DEFAULT '',
    author           text        NOT NULL CHECK (author <> ''),
    status           text        NOT NULL CHECK (status IN ('open', 'approved', 'rejected', 'withdrawn')),
    created_at       timestamptz NOT NULL,
    decided_by       text        NOT NULL DEFAULT '',
    decided_at       timestamptz,
    comment          text        NOT NULL DEFAULT '',
    applied_revision bigint      NOT NULL DEFAULT 0 CHECK (applied_revision >= 0),
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
