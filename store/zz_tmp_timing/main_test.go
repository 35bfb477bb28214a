package pgtime

import (
	"context"
	"database/sql"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/solsticehq/solstice/store"
)

func TestTiming(t *testing.T) {
	for i := 0; i < 3; i++ {
		ctx := context.Background()
		admin, _ := sql.Open("pgx", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
		t1 := time.Now()
		admin.ExecContext(ctx, "CREATE DATABASE zz_timing")
		t2 := time.Now()
		db, err := store.Open(ctx, store.Config{URL: "postgres://postgres@127.0.0.1:5432/zz_timing?sslmode=disable"})
		if err != nil { t.Fatal(err) }
		t3 := time.Now()
		db.Migrate(ctx)
		t4 := time.Now()
		db.Close()
		admin.ExecContext(ctx, "DROP DATABASE zz_timing WITH (FORCE)")
		t5 := time.Now()
		t.Logf("create %v open %v migrate %v drop %v", t2.Sub(t1), t3.Sub(t2), t4.Sub(t3), t5.Sub(t4))
		admin.Close()
	}
}
