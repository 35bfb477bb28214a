-- The recent additions to the players sets of telemetry (PostgreSQL). Keep
-- it in step with sqlite/00006_telemetry_recent.sql.
--
-- A batch of first exposures adds a few players to each set it touches; a
-- set (a chunk of telemetry_seen, an hour of telemetry_cohorts) holds up to
-- thousands. Rewriting the whole set for a few players made ingest write
-- kilobytes per set and transaction. The additions now go to a small recent
-- bitmap beside the set, in these tables, and are folded into the set once
-- the recent bitmap has grown (store/telemetry_ingest.go): a set's players
-- are its row's bitmap united with its recent row's.

-- +goose Up

CREATE TABLE telemetry_seen_recent (
    environment text    NOT NULL,
    flag        text    NOT NULL,
    variant     text    NOT NULL,
    chunk       integer NOT NULL CHECK (chunk BETWEEN 0 AND 65535),
    players     bytea   NOT NULL,
    PRIMARY KEY (environment, flag, variant, chunk)
);

CREATE TABLE telemetry_cohorts_recent (
    environment text   NOT NULL,
    flag        text   NOT NULL,
    variant     text   NOT NULL,
    hour        bigint NOT NULL,
    players     bytea  NOT NULL,
    PRIMARY KEY (environment, flag, variant, hour)
);

-- +goose Down
DROP TABLE telemetry_cohorts_recent;
DROP TABLE telemetry_seen_recent;
