package store_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/migrations"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/store/storetest"
)

// t0 is the time of the test clock; its nanoseconds show that stored times
// are truncated to microseconds.
var t0 = time.Date(2025, 12, 21, 10, 30, 0, 123456789, time.UTC)

// t0us is t0 as the store returns it.
var t0us = t0.Truncate(time.Microsecond)

var testClock = storetest.WithClock(solstice.ClockFunc(func() time.Time { return t0 }))

// dialects runs f against a fresh SQLite and PostgreSQL database whose
// clock reads t0.
func dialects(t *testing.T, f func(t *testing.T, db *store.DB)) {
	t.Helper()
	t.Parallel()
	storetest.Dialects(t, f, testClock)
}

func wantKind(t *testing.T, err error, want solstice.Kind) {
	t.Helper()
	if got := solstice.ErrorKind(err); got != want {
		t.Fatalf("error kind = %q (%v), want %q", got, err, want)
	}
}

func mustWrite(t *testing.T, db *store.DB, w flags.Write) []flags.Revision {
	t.Helper()
	revs, err := db.Write(t.Context(), w)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return revs
}

func createEnv(t *testing.T, db *store.DB, names ...string) {
	t.Helper()
	var w flags.Write
	for _, name := range names {
		w.CreateEnvironments = append(w.CreateEnvironments, flags.Environment{Name: name, CreatedAt: t0})
	}
	mustWrite(t, db, w)
}

// doc returns a small canonical JSON document.
func doc(key, value string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"key":%q,"value":%q}`, key, value))
}

// set returns an ObjectWrite of a flag config.
func set(key, value string, expect int64) flags.ObjectWrite {
	return flags.ObjectWrite{Kind: flags.KindFlag, Key: key, Content: doc(key, value), Expect: expect}
}

// remove returns an ObjectWrite removing a flag config.
func remove(key string, expect int64) flags.ObjectWrite {
	return flags.ObjectWrite{Kind: flags.KindFlag, Key: key, Expect: expect}
}

func revise(env string, objects ...flags.ObjectWrite) flags.Write {
	return flags.Write{Revisions: []flags.RevisionWrite{{
		Environment: env, Author: "alice", Message: "change", Objects: objects,
	}}}
}

// closeDB closes db, failing the test if that fails.
func closeDB(t *testing.T, db *store.DB) {
	t.Helper()
	if err := db.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		applied, err := db.Migrate(t.Context())
		if err != nil {
			t.Fatalf("Migrate on a migrated database: %v", err)
		}
		if len(applied) != 0 {
			t.Errorf("Migrate on a migrated database applied %v, want nothing", applied)
		}
	})
}

func TestMigrateFreshSQLite(t *testing.T) {
	t.Parallel()
	db, err := store.Open(t.Context(), store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer closeDB(t, db)
	applied, err := db.Migrate(t.Context())
	if err != nil {
		t.Fatalf("first Migrate: %v", err)
	}
	fsys, err := migrations.FS(migrations.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	want, err := fs.Glob(fsys, "*.sql")
	if err != nil || len(want) < 3 {
		t.Fatalf("migrations: %v, %v", want, err)
	}
	if diff := cmp.Diff(want, applied); diff != "" {
		t.Errorf("first Migrate applied (-want +got):\n%s", diff)
	}
	applied, err = db.Migrate(t.Context())
	if err != nil || len(applied) != 0 {
		t.Errorf("second Migrate = %v, %v; want nothing applied", applied, err)
	}
}

func TestOpenConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  store.Config
		want solstice.Kind
	}{
		{"nothing configured", store.Config{}, solstice.KindInvalid},
		{"unknown scheme", store.Config{URL: "mysql://u:secret@host/db"}, solstice.KindInvalid}, //nolint:gosec // a fake password that errors must hide
		{"sqlite URL", store.Config{URL: "sqlite:" + filepath.Join(dir, "a.db")}, ""},
		{"sqlite URL with slashes", store.Config{URL: "sqlite://" + filepath.Join(dir, "b.db")}, ""},
		{"data dir is created", store.Config{DataDir: filepath.Join(dir, "new", "data")}, ""},
		{"unreachable postgres", store.Config{URL: "postgres://nobody@127.0.0.1:1/x?connect_timeout=1"}, solstice.KindInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := store.Open(t.Context(), tt.cfg)
			if got := solstice.ErrorKind(err); got != tt.want {
				t.Fatalf("Open error = %v (kind %q), want kind %q", err, got, tt.want)
			}
			if err != nil {
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			defer closeDB(t, db)
			if got := db.Dialect(); got != "sqlite" {
				t.Errorf("Dialect() = %q, want sqlite", got)
			}
			if err := db.Ping(t.Context()); err != nil {
				t.Errorf("Ping: %v", err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "new", "data", store.FileName)); err != nil {
		t.Errorf("database file not created in the data directory: %v", err)
	}
}

func TestDialect(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		want := strings.TrimPrefix(t.Name(), "TestDialect/")
		if got := db.Dialect(); got != want {
			t.Errorf("Dialect() = %q, want %q", got, want)
		}
	})
}

// TestSQLiteReopen checks that data, and the snapshot version counter,
// survive a restart.
func TestSQLiteReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := func() *store.DB {
		db, err := store.Open(t.Context(), store.Config{DataDir: dir, Migrate: true})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open()
	createEnv(t, db, "production")
	mustWrite(t, db, revise("production", set("a", "1", 0)))
	if v, err := db.NextSnapshotVersion(t.Context(), "production"); err != nil || v != 1 {
		t.Fatalf("NextSnapshotVersion = %d, %v; want 1", v, err)
	}
	closeDB(t, db)

	db = open()
	defer closeDB(t, db)
	if v, err := db.NextSnapshotVersion(t.Context(), "production"); err != nil || v != 2 {
		t.Errorf("NextSnapshotVersion after reopening = %d, %v; want 2", v, err)
	}
	if obj, err := db.GetObject(t.Context(), "production", flags.KindFlag, "a"); err != nil || obj.Revision != 1 {
		t.Errorf("GetObject after reopening = %+v, %v", obj, err)
	}
}
