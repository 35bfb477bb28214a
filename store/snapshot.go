package store

import (
	"context"

	"github.com/solsticehq/solstice"
)

// nextSnapshotVersionQuery increments an environment's counter, creating it
// at 1, in one statement: the row lock taken by the upsert makes concurrent
// callers, in any number of processes, take turns.
const nextSnapshotVersionQuery = `
INSERT INTO snapshot_versions (environment, version) VALUES (?, 1)
ON CONFLICT (environment) DO UPDATE SET version = snapshot_versions.version + 1
RETURNING version`

// NextSnapshotVersion increments and returns the snapshot version of env:
// 1 first, then strictly increasing, across restarts and across processes
// sharing the database. A version is used up even if the snapshot that was
// to carry it is never published. It returns a KindNotFound error if env
// does not exist.
func (db *DB) NextSnapshotVersion(ctx context.Context, env string) (int64, error) {
	var version int64
	err := db.gorm.WithContext(ctx).Raw(nextSnapshotVersionQuery, env).Scan(&version).Error
	if foreignKeyViolation(err) {
		return 0, solstice.Errorf(solstice.KindNotFound, "environment %q not found", env)
	}
	if err != nil {
		return 0, internal("next snapshot version", err)
	}
	if version < 1 {
		return 0, solstice.Errorf(solstice.KindInternal, "next snapshot version of %q: no version returned", env)
	}
	return version, nil
}
