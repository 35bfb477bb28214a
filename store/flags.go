package store

import (
	"context"

	"gorm.io/gorm"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
)

// Paging limits of ListRevisions.
const (
	DefaultRevisionLimit = 50
	MaxRevisionLimit     = 1000
)

// ListEnvironments returns every environment, sorted by name. It returns a
// KindInternal error if the database fails.
func (db *DB) ListEnvironments(ctx context.Context) ([]flags.Environment, error) {
	var rows []environmentRow
	if err := db.gorm.WithContext(ctx).Order("name").Find(&rows).Error; err != nil {
		return nil, internal("list environments", err)
	}
	envs := make([]flags.Environment, len(rows))
	for i, r := range rows {
		envs[i] = environmentFromRow(r)
	}
	return envs, nil
}

// GetEnvironment returns the named environment. It returns a KindNotFound
// error if there is none.
func (db *DB) GetEnvironment(ctx context.Context, name string) (flags.Environment, error) {
	row, err := getEnvironment(db.gorm.WithContext(ctx), name)
	if err != nil {
		return flags.Environment{}, err
	}
	return environmentFromRow(row), nil
}

func getEnvironment(tx *gorm.DB, name string) (environmentRow, error) {
	var row environmentRow
	if err := tx.Where("name = ?", name).Take(&row).Error; err != nil {
		if notFound(err) {
			return environmentRow{}, solstice.Errorf(solstice.KindNotFound, "environment %q not found", name)
		}
		return environmentRow{}, internal("get environment", err)
	}
	return row, nil
}

// environmentMissing returns the KindNotFound error of GetEnvironment if env
// does not exist, and nil if it does. The reads below call it only when
// they found nothing, to tell an empty environment from a wrong name.
func (db *DB) environmentMissing(ctx context.Context, env string) error {
	_, err := getEnvironment(db.gorm.WithContext(ctx), env)
	return err
}

// GetFlag returns the definition of the flag key. It returns a KindNotFound
// error if there is none.
func (db *DB) GetFlag(ctx context.Context, key string) (flags.Flag, error) {
	var row flagRow
	if err := db.gorm.WithContext(ctx).Where("key = ?", key).Take(&row).Error; err != nil {
		if notFound(err) {
			return flags.Flag{}, solstice.Errorf(solstice.KindNotFound, "flag %q not found", key)
		}
		return flags.Flag{}, internal("get flag", err)
	}
	f, err := flagFromRow(row)
	if err != nil {
		return flags.Flag{}, internal("decode flag", err)
	}
	return f, nil
}

// ListFlags returns every flag definition, sorted by key. It returns a
// KindInternal error if the database fails.
func (db *DB) ListFlags(ctx context.Context) ([]flags.Flag, error) {
	var rows []flagRow
	if err := db.gorm.WithContext(ctx).Order("key").Find(&rows).Error; err != nil {
		return nil, internal("list flags", err)
	}
	fs := make([]flags.Flag, len(rows))
	for i, r := range rows {
		f, err := flagFromRow(r)
		if err != nil {
			return nil, internal("decode flag", err)
		}
		fs[i] = f
	}
	return fs, nil
}

// GetObject returns the current content of one object of env. It returns a
// KindNotFound error naming the object, or the environment if that does
// not exist.
func (db *DB) GetObject(ctx context.Context, env string, kind flags.ObjectKind, key string) (flags.Object, error) {
	var row objectRow
	err := db.gorm.WithContext(ctx).Where("environment = ? AND kind = ? AND key = ?", env, kind, key).Take(&row).Error
	if notFound(err) {
		if err := db.environmentMissing(ctx, env); err != nil {
			return flags.Object{}, err
		}
		return flags.Object{}, solstice.Errorf(solstice.KindNotFound, "%s %q not found in environment %q", kind, key, env)
	}
	if err != nil {
		return flags.Object{}, internal("get object", err)
	}
	return objectFromRow(row), nil
}

// ListObjects returns the current objects of env of one kind (all kinds when
// kind is ""), sorted by kind then key. It returns a KindNotFound error if
// env does not exist.
func (db *DB) ListObjects(ctx context.Context, env string, kind flags.ObjectKind) ([]flags.Object, error) {
	q := db.gorm.WithContext(ctx).Where("environment = ?", env)
	if kind != "" {
		q = q.Where("kind = ?", kind)
	}
	var rows []objectRow
	if err := q.Order("kind, key").Find(&rows).Error; err != nil {
		return nil, internal("list objects", err)
	}
	if len(rows) == 0 {
		if err := db.environmentMissing(ctx, env); err != nil {
			return nil, err
		}
	}
	objects := make([]flags.Object, len(rows))
	for i, r := range rows {
		objects[i] = objectFromRow(r)
	}
	return objects, nil
}

// objectsAtQuery selects, for each object of an environment, its latest
// version at or before a revision, and keeps it unless that version is a
// removal. The aggregate reads only the primary key index of
// object_versions; each object's content is then fetched by primary key.
//
// NOTE: CROSS JOIN is SQLite's way to say "this table first": without
// statistics its planner would rather scan every version of the
// environment, contents included, and probe the aggregate. PostgreSQL
// treats it as the plain inner join it is.
const objectsAtQuery = `
SELECT v.kind, v.key, v.revision, v.content
FROM (
	SELECT kind, key, MAX(revision) AS revision
	FROM object_versions
	WHERE environment = @env AND revision <= @n
	GROUP BY kind, key
) latest
CROSS JOIN object_versions v
WHERE v.environment = @env AND v.kind = latest.kind AND v.key = latest.key AND v.revision = latest.revision
	AND v.content IS NOT NULL
ORDER BY v.kind, v.key`

// ObjectsAt returns every object of env as it stood right after revision n
// (none for n = 0), sorted by kind then key. It returns a KindInvalid error
// for a negative n and a KindNotFound error if env or its revision n does
// not exist.
func (db *DB) ObjectsAt(ctx context.Context, env string, n int64) ([]flags.Object, error) {
	if n < 0 {
		return nil, solstice.Errorf(solstice.KindInvalid, "revision number %d is negative", n)
	}
	e, err := db.GetEnvironment(ctx, env)
	if err != nil {
		return nil, err
	}
	if n > e.Head {
		return nil, solstice.Errorf(solstice.KindNotFound, "revision %d of environment %q not found", n, env)
	}
	var rows []objectRow
	err = db.gorm.WithContext(ctx).Raw(objectsAtQuery, map[string]any{"env": env, "n": n}).Scan(&rows).Error
	if err != nil {
		return nil, internal("read objects at revision", err)
	}
	objects := make([]flags.Object, len(rows))
	for i, r := range rows {
		objects[i] = objectFromRow(r)
	}
	return objects, nil
}

// GetRevision returns revision n of env. It returns a KindNotFound error if
// env or the revision does not exist.
func (db *DB) GetRevision(ctx context.Context, env string, n int64) (flags.Revision, error) {
	var row revisionRow
	err := db.gorm.WithContext(ctx).Where("environment = ? AND number = ?", env, n).Take(&row).Error
	if notFound(err) {
		if err := db.environmentMissing(ctx, env); err != nil {
			return flags.Revision{}, err
		}
		return flags.Revision{}, solstice.Errorf(solstice.KindNotFound, "revision %d of environment %q not found", n, env)
	}
	if err != nil {
		return flags.Revision{}, internal("get revision", err)
	}
	rev, err := revisionFromRow(row)
	if err != nil {
		return flags.Revision{}, internal("decode revision", err)
	}
	return rev, nil
}

// ListRevisions returns revisions of env newest first: at most f.Limit
// (DefaultRevisionLimit when 0, at most MaxRevisionLimit), older than
// f.BeforeNumber when that is set. It returns a KindInvalid error for a
// negative limit or number and a KindNotFound error if env does not exist.
func (db *DB) ListRevisions(ctx context.Context, env string, f flags.RevisionFilter) ([]flags.Revision, error) {
	if f.Limit < 0 || f.BeforeNumber < 0 {
		return nil, solstice.Errorf(solstice.KindInvalid, "negative revision limit or number")
	}
	limit := f.Limit
	if limit == 0 {
		limit = DefaultRevisionLimit
	}
	limit = min(limit, MaxRevisionLimit)
	q := db.gorm.WithContext(ctx).Where("environment = ?", env)
	if f.BeforeNumber > 0 {
		q = q.Where("number < ?", f.BeforeNumber)
	}
	var rows []revisionRow
	if err := q.Order("number DESC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, internal("list revisions", err)
	}
	if len(rows) == 0 {
		if err := db.environmentMissing(ctx, env); err != nil {
			return nil, err
		}
	}
	revs := make([]flags.Revision, len(rows))
	for i, r := range rows {
		rev, err := revisionFromRow(r)
		if err != nil {
			return nil, internal("decode revision", err)
		}
		revs[i] = rev
	}
	return revs, nil
}
