// Package storetest gives tests a real, migrated, empty database: a fresh
// SQLite file, or a fresh PostgreSQL database on a test server, removed when
// the test ends. Other packages' tests use it to run against the real store
// instead of a mock:
//
//	func TestSomething(t *testing.T) {
//		storetest.Dialects(t, func(t *testing.T, db *store.DB) {
//			...
//		})
//	}
//
// PostgreSQL is reached at $SOLSTICE_TEST_POSTGRES_URL (default
// DefaultPostgresURL) with a role allowed to create databases. When it
// cannot be reached the PostgreSQL tests are skipped, except in CI
// (CI=true), where they fail.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, for creating and dropping databases

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/store"
)

// DefaultPostgresURL is the test server used when SOLSTICE_TEST_POSTGRES_URL
// is unset.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Option adjusts the store.Config of a test database.
type Option func(*store.Config)

// WithClock makes the store stamp revisions (and audit entries without a
// time) with c.
func WithClock(c solstice.Clock) Option {
	return func(cfg *store.Config) { cfg.Clock = c }
}

// Open returns a migrated SQLite database in a file under t.TempDir(),
// closed when the test ends. It fails the test if the database cannot be
// opened.
func Open(t testing.TB, opts ...Option) *store.DB {
	t.Helper()
	return open(t, store.Config{DataDir: t.TempDir()}, opts)
}

// OpenPostgres returns a migrated database created for this test on the
// PostgreSQL test server, closed and dropped when the test ends. It skips
// the test when the server cannot be reached, or fails it if the
// environment variable CI is "true".
func OpenPostgres(t testing.TB, opts ...Option) *store.DB {
	t.Helper()
	serverURL := os.Getenv("SOLSTICE_TEST_POSTGRES_URL")
	if serverURL == "" {
		serverURL = DefaultPostgresURL
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatalf("SOLSTICE_TEST_POSTGRES_URL: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := sql.Open("pgx", serverURL)
	if err != nil {
		t.Fatalf("open PostgreSQL test server: %v", err)
	}
	defer func() { _ = admin.Close() }()
	pingCtx, cancelPing := context.WithTimeout(ctx, 3*time.Second)
	defer cancelPing()
	if err := admin.PingContext(pingCtx); err != nil {
		msg := "PostgreSQL test server %s unreachable (set SOLSTICE_TEST_POSTGRES_URL): %v"
		if os.Getenv("CI") == "true" {
			t.Fatalf(msg, u.Redacted(), err)
		}
		t.Skipf(msg, u.Redacted(), err)
	}

	name := "solstice_test_" + strings.ToLower(rand.Text())
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() { dropDatabase(t, serverURL, name) })

	u.Path = "/" + name
	return open(t, store.Config{URL: u.String()}, opts)
}

// Dialects runs f as one subtest per database, "sqlite" and "postgres", each
// with its own fresh, migrated database (see Open and OpenPostgres). The
// subtests run one after the other unless f calls t.Parallel.
func Dialects(t *testing.T, f func(t *testing.T, db *store.DB), opts ...Option) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { f(t, Open(t, opts...)) })
	t.Run("postgres", func(t *testing.T) { f(t, OpenPostgres(t, opts...)) })
}

func open(t testing.TB, cfg store.Config, opts []Option) *store.DB {
	t.Helper()
	cfg.Migrate = true
	for _, opt := range opts {
		opt(&cfg)
	}
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close test database: %v", err)
		}
	})
	return db
}

// dropDatabase removes a test database, disconnecting whoever still uses it.
func dropDatabase(t testing.TB, serverURL, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := sql.Open("pgx", serverURL)
	if err != nil {
		t.Errorf("drop test database %s: %v", name, err)
		return
	}
	defer func() { _ = admin.Close() }()
	if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		t.Errorf("drop test database %s: %v", name, err)
	}
}
