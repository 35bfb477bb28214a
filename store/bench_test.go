package store_test

import (
	"fmt"
	"testing"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/store/storetest"
)

// Run with: go test -run '^$' -bench . ./store/

func benchDialects(b *testing.B, f func(b *testing.B, db *store.DB)) {
	b.Run("sqlite", func(b *testing.B) { f(b, storetest.Open(b)) })
	b.Run("postgres", func(b *testing.B) { f(b, storetest.OpenPostgres(b)) })
}

func benchEnv(b *testing.B, db *store.DB) {
	b.Helper()
	_, err := db.Write(b.Context(), flags.Write{CreateEnvironments: []flags.Environment{{Name: "production"}}})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkWrite measures one revision changing one flag config: the
// common edit from the UI.
func BenchmarkWrite(b *testing.B) {
	benchDialects(b, func(b *testing.B, db *store.DB) {
		benchEnv(b, db)
		i := 0
		for b.Loop() {
			i++
			_, err := db.Write(b.Context(), revise("production", set("a", fmt.Sprint(i), flags.AnyVersion)))
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkObjectsAt measures reading a past state of an environment of 200
// flags with 10 versions each.
func BenchmarkObjectsAt(b *testing.B) {
	benchDialects(b, func(b *testing.B, db *store.DB) {
		benchEnv(b, db)
		for v := range 10 {
			var objects []flags.ObjectWrite
			for k := range 200 {
				objects = append(objects, set(fmt.Sprintf("flag-%03d", k), fmt.Sprint(v), flags.AnyVersion))
			}
			if _, err := db.Write(b.Context(), revise("production", objects...)); err != nil {
				b.Fatal(err)
			}
		}
		for b.Loop() {
			objects, err := db.ObjectsAt(b.Context(), "production", 5)
			if err != nil || len(objects) != 200 {
				b.Fatalf("ObjectsAt = %d objects, %v", len(objects), err)
			}
		}
	})
}
