-- The decision of an experiment (SQLite). Keep it in step with
-- postgres/00007_experiment_decision.sql. docs/rollouts.md, "Experiments",
-- explains the decision.
--
-- decision is the rollout.ExperimentDecision as JSON: NULL until an
-- experiment plan ends, then written in the same statement as the
-- transition that ends it, and never replaced (store/rollout.go keeps the
-- stored one with COALESCE).

-- +goose Up
ALTER TABLE rollout_plans ADD COLUMN decision TEXT
    CHECK (decision IS NULL OR (json_valid(decision) AND json_type(decision) = 'object'));

-- +goose Down
ALTER TABLE rollout_plans DROP COLUMN decision;
