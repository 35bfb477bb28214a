// Package store persists Solstice in SQLite (the embedded default) or
// PostgreSQL (for several replicas) through gorm. It is the only package that
// imports gorm: it implements the Store interfaces that the domain packages
// declare (flags.Store, auth.Store) and the snapshot publisher's version
// counter, and it applies the embedded migrations of package migrations.
//
// Every error it returns is a *solstice.Error: KindNotFound for a missing
// row, KindConflict for a duplicate, KindPreconditionFailed for a failed
// expectation in a Write, KindInvalid for a malformed argument and
// KindInternal, wrapping the driver's error, for anything else.
package store

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/migrations"
)

var (
	_ flags.Store = (*DB)(nil)
	_ auth.Store  = (*DB)(nil)
)

// FileName is the name of the SQLite database file inside Config.DataDir.
const FileName = "solstice.db"

// Config says which database to open.
type Config struct {
	// URL selects the database: "postgres://..." or "postgresql://..." for
	// PostgreSQL (any libpq-style URL that pgx understands), "sqlite:PATH"
	// for an SQLite file at PATH. Empty: SQLite in DataDir.
	URL string
	// DataDir is the directory of the SQLite file FileName when URL is
	// empty. It is created (mode 0700) if missing.
	DataDir string
	// Migrate applies pending migrations before Open returns.
	Migrate bool
	// Clock stamps revisions, and audit entries that carry no time. Default:
	// solstice.WallClock.
	Clock solstice.Clock
	// MaxOpenConns bounds the connection pool. Default: 10 for PostgreSQL;
	// for SQLite, the number of CPUs (at least 4): readers run in parallel
	// under WAL, writers take turns anyway.
	MaxOpenConns int
}

// DB is an open database. It implements flags.Store and auth.Store and is
// safe for concurrent use.
type DB struct {
	gorm    *gorm.DB
	sql     *sql.DB
	dialect string
	clock   solstice.Clock
}

// Open connects to the database that cfg names and, with cfg.Migrate,
// applies pending migrations. It returns a KindInvalid error for a bad
// configuration and a KindInternal error when the database cannot be
// reached or migrated.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	dialect, dialector, err := dialectorFor(cfg)
	if err != nil {
		return nil, err
	}
	g, err := gorm.Open(dialector, &gorm.Config{
		Logger: logger.Discard, // errors are returned, with their cause, to the caller who logs them
		// Every write that spans statements opens its own transaction.
		SkipDefaultTransaction: true,
		DisableAutomaticPing:   true,
	})
	if err != nil {
		return nil, internal("open "+dialect+" database", err)
	}
	sqlDB, err := g.DB()
	if err != nil {
		return nil, internal("open "+dialect+" database", err)
	}
	conns := cfg.MaxOpenConns
	if conns <= 0 {
		conns = 10
		if dialect == migrations.SQLite {
			conns = max(4, runtime.NumCPU())
		}
	}
	sqlDB.SetMaxOpenConns(conns)
	sqlDB.SetMaxIdleConns(conns)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)

	db := &DB{gorm: g, sql: sqlDB, dialect: dialect, clock: cfg.Clock}
	if db.clock == nil {
		db.clock = solstice.WallClock
	}
	if err := db.Ping(ctx); err != nil {
		_ = db.Close() // the Ping error is the one worth reporting
		return nil, err
	}
	if cfg.Migrate {
		if _, err := db.Migrate(ctx); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	return db, nil
}

// dialectorFor picks the driver and data source for cfg.
func dialectorFor(cfg Config) (string, gorm.Dialector, error) {
	switch {
	case strings.HasPrefix(cfg.URL, "postgres://"), strings.HasPrefix(cfg.URL, "postgresql://"):
		return migrations.Postgres, postgres.Open(cfg.URL), nil
	case strings.HasPrefix(cfg.URL, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(cfg.URL, "sqlite:"), "//")
		dsn, err := sqliteDSN(path)
		return migrations.SQLite, sqlite.Open(dsn), err
	case cfg.URL != "":
		return "", nil, solstice.Errorf(solstice.KindInvalid, "unsupported database URL %q: want postgres://, postgresql:// or sqlite:", redact(cfg.URL))
	case cfg.DataDir == "":
		return "", nil, solstice.Errorf(solstice.KindInvalid, "no database configured: set a database URL or a data directory")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return "", nil, internal("create data directory", err)
	}
	dsn, err := sqliteDSN(filepath.Join(cfg.DataDir, FileName))
	return migrations.SQLite, sqlite.Open(dsn), err
}

// sqliteDSN returns the go-sqlite3 data source for the file at path.
//
// WAL lets readers run beside the one writer. _txlock=immediate makes every
// transaction take the write lock when it begins: a transaction that reads
// and then writes can otherwise fail at once with SQLITE_BUSY when another
// writer got there first, instead of waiting out the busy timeout. It also
// makes a Write's read-check-append sequence serializable per database.
//
// NOTE: synchronous stays FULL (not the NORMAL often paired with WAL): a
// revision or audit entry that was reported committed must survive a power
// loss, and writes are rare enough that the extra fsync does not matter.
func sqliteDSN(path string) (string, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return "", solstice.Errorf(solstice.KindInvalid, "invalid SQLite file name %q", path)
	}
	return path + "?_journal_mode=WAL&_synchronous=FULL&_foreign_keys=on&_busy_timeout=5000&_txlock=immediate", nil
}

// redact hides the password of a database URL for messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Dialect returns "sqlite" or "postgres" (migrations.SQLite or
// migrations.Postgres).
func (db *DB) Dialect() string { return db.dialect }

// Ping checks that the database answers. It returns a KindInternal error
// when it does not.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.sql.PingContext(ctx); err != nil {
		return internal("ping "+db.dialect+" database", err)
	}
	return nil
}

// Close closes the connections. It returns a KindInternal error if the
// driver fails to.
func (db *DB) Close() error {
	if err := db.sql.Close(); err != nil {
		return internal("close "+db.dialect+" database", err)
	}
	return nil
}

// Migrate applies the pending migrations of package migrations, in order,
// each in its own transaction, and returns the file names of those it
// applied (none when the schema is current). On PostgreSQL it holds an
// advisory lock while it runs, so replicas starting together migrate once.
// It returns a KindInternal error, after the migrations that succeeded,
// when one fails.
func (db *DB) Migrate(ctx context.Context) ([]string, error) {
	provider, err := db.migrationProvider()
	if err != nil {
		return nil, internal("migrate", err)
	}
	results, err := provider.Up(ctx)
	applied := make([]string, 0, len(results))
	for _, r := range results {
		if r.Error == nil {
			applied = append(applied, filepath.Base(r.Source.Path))
		}
	}
	if err != nil {
		return applied, internal("migrate", err)
	}
	return applied, nil
}

func (db *DB) migrationProvider() (*goose.Provider, error) {
	fsys, err := migrations.FS(db.dialect)
	if err != nil {
		return nil, err
	}
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	dialect := goose.DialectSQLite3
	if db.dialect == migrations.Postgres {
		dialect = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	return goose.NewProvider(dialect, db.sql, fsys, opts...)
}

// now returns the store's clock reading as it will be stored.
func (db *DB) now() time.Time { return dbTime(db.clock.Now()) }

// dbTime returns t as it is stored: in UTC, to the microsecond (the
// precision of PostgreSQL; SQLite keeps the same so that both dialects
// return equal values).
func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// dbTimePtr is dbTime for optional times.
func dbTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := dbTime(*t)
	return &u
}

// transaction runs fn in a transaction that commits when fn returns nil.
// Errors from fn are returned as they are; a failure to begin or commit is
// a KindInternal error naming op.
func (db *DB) transaction(ctx context.Context, op string, fn func(tx *gorm.DB) error) error {
	err := db.gorm.WithContext(ctx).Transaction(fn)
	var serr *solstice.Error
	if err == nil || errors.As(err, &serr) {
		return err
	}
	return internal(op, err)
}

// internal wraps err as a KindInternal error naming the operation. (Not
// solstice.Errorf with %w: that would put the cause's text in Message as
// well as in Err, and Error() would print it twice.)
func internal(op string, err error) *solstice.Error {
	return &solstice.Error{Kind: solstice.KindInternal, Message: op, Err: err}
}

// notFound reports whether err means that the row does not exist.
func notFound(err error) bool { return errors.Is(err, gorm.ErrRecordNotFound) }
