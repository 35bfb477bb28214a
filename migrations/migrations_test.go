package migrations_test

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/migrations"
)

// The migrations themselves are applied, twice, against real databases by
// the tests of package store; these tests check that the two dialects stay
// in step.

var fileName = regexp.MustCompile(`^[0-9]{5}_[a-z0-9_]+\.sql$`)

func names(t *testing.T, dialect string) []string {
	t.Helper()
	fsys, err := migrations.FS(dialect)
	if err != nil {
		t.Fatalf("FS(%q): %v", dialect, err)
	}
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		t.Fatalf("read %s migrations: %v", dialect, err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		if !fileName.MatchString(e.Name()) {
			t.Errorf("%s/%s: name does not match %s", dialect, e.Name(), fileName)
		}
		body, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			t.Fatalf("read %s/%s: %v", dialect, e.Name(), err)
		}
		for _, annotation := range []string{"-- +goose Up\n", "-- +goose Down\n"} {
			if !strings.Contains(string(body), annotation) {
				t.Errorf("%s/%s: no %q section", dialect, e.Name(), strings.TrimSpace(annotation))
			}
		}
	}
	return names
}

func TestDialectsHaveTheSameVersions(t *testing.T) {
	sqlite := names(t, migrations.SQLite)
	postgres := names(t, migrations.Postgres)
	if len(sqlite) == 0 {
		t.Fatal("no migrations embedded")
	}
	if diff := cmp.Diff(sqlite, postgres); diff != "" {
		t.Errorf("sqlite and postgres migrations differ (-sqlite +postgres):\n%s", diff)
	}
}

func TestUnknownDialect(t *testing.T) {
	_, err := migrations.FS("mysql")
	if got := solstice.ErrorKind(err); got != solstice.KindInvalid {
		t.Errorf("FS(mysql) error kind = %q (%v), want %q", got, err, solstice.KindInvalid)
	}
}
