package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/store"
)

func TestListAudit(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production")
		alice := solstice.Actor{Name: "alice", Kind: "user", Address: "192.0.2.1"}
		ci := solstice.Actor{Name: "token:ci", Kind: "token", TokenID: "tok_ci"}
		entries := []solstice.AuditEntry{
			{Time: t0, Actor: alice, Action: "flag.create", Resource: "flag/a", Details: json.RawMessage(`{"name":"A"}`)},
			{Time: t0.Add(1 * time.Minute), Actor: ci, Action: "flag.create", Resource: "flag/b"},
			{Time: t0.Add(2 * time.Minute), Actor: alice, Action: "environment.update", Environment: "staging", Resource: "environment/staging"},
			{Time: t0.Add(3 * time.Minute), Actor: ci, Action: "token.create", Resource: "token/tok_x"},
		}
		mustWrite(t, db, flags.Write{Audit: entries})
		w := revise("production", set("a", "1", 0))
		w.Revisions[0].Audit = []solstice.AuditEntry{{Time: t0.Add(4 * time.Minute), Actor: alice, Action: "flag_config.update", Resource: "flag/a"}}
		mustWrite(t, db, w)

		all, err := db.ListAudit(ctx, solstice.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 5 {
			t.Fatalf("ListAudit returned %d entries, want 5", len(all))
		}
		first := all[4]
		wantFirst := entries[0]
		wantFirst.ID, wantFirst.Time = first.ID, t0us
		if diff := cmp.Diff(wantFirst, first); diff != "" {
			t.Errorf("oldest entry (-want +got):\n%s", diff)
		}
		if last := all[0]; last.Action != "flag_config.update" || last.Environment != "production" || last.Revision != 1 {
			t.Errorf("newest entry = %+v, want the revision's, stamped with its environment and number", last)
		}

		// actions lists the actions of the entries f selects, newest first.
		actions := func(f solstice.AuditFilter) []string {
			t.Helper()
			got, err := db.ListAudit(ctx, f)
			if err != nil {
				t.Fatalf("ListAudit(%+v): %v", f, err)
			}
			a := []string{}
			for _, e := range got {
				a = append(a, e.Action+" "+e.Resource)
			}
			return a
		}
		tests := []struct {
			name   string
			filter solstice.AuditFilter
			want   []string
		}{
			{"everything", solstice.AuditFilter{}, []string{
				"flag_config.update flag/a", "token.create token/tok_x", "environment.update environment/staging", "flag.create flag/b", "flag.create flag/a",
			}},
			{"environment", solstice.AuditFilter{Environment: "staging"}, []string{"environment.update environment/staging"}},
			{"resource", solstice.AuditFilter{Resource: "flag/a"}, []string{"flag_config.update flag/a", "flag.create flag/a"}},
			{"action", solstice.AuditFilter{Action: "flag.create"}, []string{"flag.create flag/b", "flag.create flag/a"}},
			{"actor", solstice.AuditFilter{Actor: "token:ci"}, []string{"token.create token/tok_x", "flag.create flag/b"}},
			{"since is inclusive", solstice.AuditFilter{Since: t0.Add(3 * time.Minute)}, []string{"flag_config.update flag/a", "token.create token/tok_x"}},
			{"until is exclusive", solstice.AuditFilter{Until: t0.Add(1 * time.Minute)}, []string{"flag.create flag/a"}},
			{"since and until", solstice.AuditFilter{Since: t0.Add(30 * time.Second), Until: t0.Add(150 * time.Second)}, []string{
				"environment.update environment/staging", "flag.create flag/b",
			}},
			{"since a sub-second time", solstice.AuditFilter{Since: t0.Add(time.Microsecond)}, []string{
				"flag_config.update flag/a", "token.create token/tok_x", "environment.update environment/staging", "flag.create flag/b",
			}},
			{"combined", solstice.AuditFilter{Actor: "alice", Action: "flag.create"}, []string{"flag.create flag/a"}},
			{"no match", solstice.AuditFilter{Actor: "mallory"}, []string{}},
			{"limit", solstice.AuditFilter{Limit: 2}, []string{"flag_config.update flag/a", "token.create token/tok_x"}},
			{"before id", solstice.AuditFilter{BeforeID: all[1].ID, Limit: 2}, []string{"environment.update environment/staging", "flag.create flag/b"}},
		}
		for _, tt := range tests {
			if diff := cmp.Diff(tt.want, actions(tt.filter)); diff != "" {
				t.Errorf("%s: ListAudit(%+v) (-want +got):\n%s", tt.name, tt.filter, diff)
			}
		}

		_, err = db.ListAudit(ctx, solstice.AuditFilter{Limit: -1})
		wantKind(t, err, solstice.KindInvalid)
	})
}

func TestListAuditLimits(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		entries := make([]solstice.AuditEntry, store.MaxAuditLimit+1)
		for i := range entries {
			entries[i] = solstice.AuditEntry{Action: "flag.create", Resource: fmt.Sprintf("flag/f%d", i)}
		}
		mustWrite(t, db, flags.Write{Audit: entries})
		for _, tt := range []struct{ limit, want int }{
			{0, store.DefaultAuditLimit},
			{store.MaxAuditLimit + 1, store.MaxAuditLimit},
		} {
			got, err := db.ListAudit(ctx, solstice.AuditFilter{Limit: tt.limit})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want {
				t.Errorf("ListAudit with limit %d returned %d entries, want %d", tt.limit, len(got), tt.want)
			}
			if got[0].Resource != fmt.Sprintf("flag/f%d", store.MaxAuditLimit) || got[0].ID <= got[1].ID {
				t.Errorf("ListAudit does not start with the newest entry: %+v", got[0])
			}
			if !got[0].Time.Equal(t0us) {
				t.Errorf("entry without a time stamped %v, want the store clock's %v", got[0].Time, t0us)
			}
		}
	})
}

func TestInternalErrorsKeepTheirCause(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := db.ListFlags(ctx)
		wantKind(t, err, solstice.KindInternal)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v does not wrap context.Canceled", err)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "list flags: ") || strings.Count(msg, "context canceled") != 1 {
			t.Errorf("error text %q, want the operation then the cause once", msg)
		}
	})
}

// TestTimesAreUTC checks that every time comes back in UTC, whatever the
// driver's habit (pgx returns local times) or the time zone written.
func TestTimesAreUTC(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		tokyo := time.FixedZone("JST", 9*60*60)
		local := t0.In(tokyo)
		mustWrite(t, db, flags.Write{
			CreateEnvironments: []flags.Environment{{Name: "production", CreatedAt: local}},
			CreateFlags:        []flags.Flag{{Key: "f", Name: "F", Type: flags.TypeBoolean, Version: 1, CreatedAt: local, UpdatedAt: local}},
			Audit:              []solstice.AuditEntry{{Time: local, Action: "flag.create", Resource: "flag/f"}},
		})
		mustWrite(t, db, revise("production", set("f", "on", 0)))

		env, err := db.GetEnvironment(ctx, "production")
		if err != nil {
			t.Fatal(err)
		}
		flag, err := db.GetFlag(ctx, "f")
		if err != nil {
			t.Fatal(err)
		}
		rev, err := db.GetRevision(ctx, "production", 1)
		if err != nil {
			t.Fatal(err)
		}
		audit, err := db.ListAudit(ctx, solstice.AuditFilter{Action: "flag.create"})
		if err != nil || len(audit) != 1 {
			t.Fatalf("ListAudit = %v, %v", audit, err)
		}
		for name, got := range map[string]time.Time{
			"environment created":  env.CreatedAt,
			"flag created":         flag.CreatedAt,
			"flag updated":         flag.UpdatedAt,
			"revision created":     rev.CreatedAt,
			"audit entry recorded": audit[0].Time,
		} {
			if got.Location() != time.UTC || !got.Equal(t0us) {
				t.Errorf("%s at %v, want %v", name, got, t0us)
			}
		}
	})
}
