// Package migrations holds the versioned SQL schema of Solstice, embedded in
// the binary. Each supported database has its own folder of goose v3
// migrations (auto-increment columns, JSON and time types differ); both
// folders hold the same versions with the same names. Package store applies
// them; nothing else should.
//
// To change the schema, add the next numbered file to both folders; never
// edit a migration that has been released.
package migrations

import (
	"embed"
	"io/fs"

	"github.com/solsticehq/solstice"
)

// Dialects with a folder of migrations.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

//go:embed sqlite/*.sql postgres/*.sql
var files embed.FS

// FS returns the migrations for dialect (SQLite or Postgres) as a file
// system whose root holds the .sql files, ready for goose.NewProvider. It
// returns a KindInvalid error for any other dialect.
func FS(dialect string) (fs.FS, error) {
	switch dialect {
	case SQLite, Postgres:
		return fs.Sub(files, dialect)
	default:
		return nil, solstice.Errorf(solstice.KindInvalid, "no migrations for database dialect %q", dialect)
	}
}
