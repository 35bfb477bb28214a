package store_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/store"
)

func TestEnvironments(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		mustWrite(t, db, flags.Write{CreateEnvironments: []flags.Environment{
			{Name: "staging", CreatedAt: t0},
			{Name: "production", Description: "live", Protected: true, Head: 99, CreatedAt: t0},
		}})

		got, err := db.ListEnvironments(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []flags.Environment{
			{Name: "production", Description: "live", Protected: true, CreatedAt: t0us},
			{Name: "staging", CreatedAt: t0us},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ListEnvironments (-want +got):\n%s", diff)
		}

		mustWrite(t, db, flags.Write{UpdateEnvironments: []flags.Environment{
			{Name: "production", Description: "players", Protected: false},
		}})
		env, err := db.GetEnvironment(ctx, "production")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(flags.Environment{Name: "production", Description: "players", CreatedAt: t0us}, env); diff != "" {
			t.Errorf("GetEnvironment after update (-want +got):\n%s", diff)
		}

		_, err = db.Write(ctx, flags.Write{CreateEnvironments: []flags.Environment{{Name: "staging", CreatedAt: t0}}})
		wantKind(t, err, solstice.KindConflict)
		_, err = db.Write(ctx, flags.Write{UpdateEnvironments: []flags.Environment{{Name: "qa"}}})
		wantKind(t, err, solstice.KindNotFound)
		_, err = db.GetEnvironment(ctx, "qa")
		wantKind(t, err, solstice.KindNotFound)
		if !strings.Contains(err.Error(), `"qa"`) {
			t.Errorf("not-found error %q does not name the environment", err)
		}
	})
}

func TestFlags(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		drops := flags.Flag{
			Key: "winter-drops", Name: "Winter drops", Description: "drop table", Tags: []string{"event", "winter"},
			Type: flags.TypeObject, Schema: json.RawMessage(`{"type":"object"}`), Version: 1, CreatedAt: t0, UpdatedAt: t0,
		}
		xp := flags.Flag{Key: "double-xp", Name: "Double XP", Type: flags.TypeBoolean, Version: 1, CreatedAt: t0, UpdatedAt: t0}
		mustWrite(t, db, flags.Write{CreateFlags: []flags.Flag{drops, xp}})

		roundTripped := func(f flags.Flag) flags.Flag {
			f.CreatedAt, f.UpdatedAt = f.CreatedAt.Truncate(time.Microsecond), f.UpdatedAt.Truncate(time.Microsecond)
			return f
		}
		got, err := db.ListFlags(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]flags.Flag{roundTripped(xp), roundTripped(drops)}, got); diff != "" {
			t.Errorf("ListFlags (-want +got):\n%s", diff)
		}

		_, err = db.Write(ctx, flags.Write{CreateFlags: []flags.Flag{xp}})
		wantKind(t, err, solstice.KindConflict)

		updated := drops
		updated.Name, updated.Tags, updated.Schema, updated.Version = "Winter loot", nil, nil, 2
		updated.UpdatedAt = t0.Add(time.Hour)
		updated.Type = flags.TypeString // ignored: a flag's type never changes
		mustWrite(t, db, flags.Write{UpdateFlags: []flags.FlagUpdate{{Flag: updated, Expect: 1}}})
		f, err := db.GetFlag(ctx, "winter-drops")
		if err != nil {
			t.Fatal(err)
		}
		want := roundTripped(updated)
		want.Type = flags.TypeObject
		if diff := cmp.Diff(want, f); diff != "" {
			t.Errorf("GetFlag after update (-want +got):\n%s", diff)
		}

		// A stale update names both versions.
		stale := updated
		stale.Version = 2
		_, err = db.Write(ctx, flags.Write{UpdateFlags: []flags.FlagUpdate{{Flag: stale, Expect: 1}}})
		wantKind(t, err, solstice.KindPreconditionFailed)
		if msg := err.Error(); !strings.Contains(msg, "expected version 1") || !strings.Contains(msg, "stored version is 2") {
			t.Errorf("precondition error %q does not say what was expected and what is stored", msg)
		}
		ghost := flags.Flag{Key: "ghost", Name: "x", Type: flags.TypeBoolean, Version: 2}
		_, err = db.Write(ctx, flags.Write{UpdateFlags: []flags.FlagUpdate{{Flag: ghost, Expect: 1}}})
		wantKind(t, err, solstice.KindNotFound)

		_, err = db.Write(ctx, flags.Write{DeleteFlags: []flags.FlagDelete{{Key: "winter-drops", Expect: 1}}})
		wantKind(t, err, solstice.KindPreconditionFailed)
		_, err = db.Write(ctx, flags.Write{DeleteFlags: []flags.FlagDelete{{Key: "ghost", Expect: flags.AnyVersion}}})
		wantKind(t, err, solstice.KindNotFound)
		mustWrite(t, db, flags.Write{DeleteFlags: []flags.FlagDelete{
			{Key: "winter-drops", Expect: 2},
			{Key: "double-xp", Expect: flags.AnyVersion},
		}})
		_, err = db.GetFlag(ctx, "winter-drops")
		wantKind(t, err, solstice.KindNotFound)
		if !strings.Contains(err.Error(), `flag "winter-drops" not found`) {
			t.Errorf("not-found error %q does not name the flag", err)
		}
		if got, err := db.ListFlags(ctx); err != nil || len(got) != 0 {
			t.Errorf("ListFlags after deleting all = %v, %v; want none", got, err)
		}
	})
}

func TestWriteRejectsMalformedInput(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		createEnv(t, db, "production")
		flag := flags.Flag{Key: "f", Name: "F", Type: flags.TypeBoolean, Version: 2}
		tests := []struct {
			name string
			w    flags.Write
		}{
			{"environment without name", flags.Write{CreateEnvironments: []flags.Environment{{}}}},
			{"new flag version not 1", flags.Write{CreateFlags: []flags.Flag{flag}}},
			{"update skips a version", flags.Write{UpdateFlags: []flags.FlagUpdate{{Flag: flag, Expect: 2}}}},
			{"delete expects version 0", flags.Write{DeleteFlags: []flags.FlagDelete{{Key: "f"}}}},
			{"unknown object kind", revise("production", flags.ObjectWrite{Kind: "rule", Key: "a", Content: doc("a", "1")})},
			{"object content not JSON", revise("production", flags.ObjectWrite{Kind: flags.KindFlag, Key: "a", Content: json.RawMessage("{")})},
			{"object written twice", revise("production", set("a", "1", 0), set("a", "2", 0))},
			{"expectation below AnyVersion", revise("production", set("a", "1", -2))},
			{"audit details not JSON", flags.Write{Audit: []solstice.AuditEntry{{Action: "x", Details: json.RawMessage("nope")}}}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := db.Write(t.Context(), tt.w)
				wantKind(t, err, solstice.KindInvalid)
			})
		}
	})
}

func TestRevisions(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production", "staging")
		segment := flags.ObjectWrite{Kind: flags.KindSegment, Key: "beta", Content: json.RawMessage(`{"key":"beta"}`)}

		w := revise("production", set("a", "1", 0), segment)
		w.Revisions[0].Audit = []solstice.AuditEntry{{Action: "flag_config.update", Resource: "flag/a", Actor: solstice.Actor{Name: "alice", Kind: "user"}}}
		revs := mustWrite(t, db, w)
		want := []flags.Revision{{
			Environment: "production", Number: 1, Author: "alice", Message: "change", CreatedAt: t0us,
			Diff: []flags.Change{
				{Kind: flags.KindFlag, Key: "a", After: doc("a", "1")},
				{Kind: flags.KindSegment, Key: "beta", After: segment.Content},
			},
		}}
		if diff := cmp.Diff(want, revs); diff != "" {
			t.Errorf("Write result (-want +got):\n%s", diff)
		}
		if got, err := db.GetRevision(ctx, "production", 1); err != nil {
			t.Fatal(err)
		} else if diff := cmp.Diff(want[0], got); diff != "" {
			t.Errorf("GetRevision (-want +got):\n%s", diff)
		}

		revs = mustWrite(t, db, revise("production", set("a", "2", 1)))
		wantDiff := []flags.Change{{Kind: flags.KindFlag, Key: "a", Before: doc("a", "1"), After: doc("a", "2")}}
		if revs[0].Number != 2 || !cmp.Equal(wantDiff, revs[0].Diff) {
			t.Errorf("update revision = %+v, want number 2 with diff %+v", revs[0], wantDiff)
		}
		if op := revs[0].Diff[0].Op(); op != "update" {
			t.Errorf("Op() = %q, want update", op)
		}

		obj, err := db.GetObject(ctx, "production", flags.KindFlag, "a")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(flags.Object{Kind: flags.KindFlag, Key: "a", Content: doc("a", "2"), Revision: 2}, obj); diff != "" {
			t.Errorf("GetObject (-want +got):\n%s", diff)
		}
		all, err := db.ListObjects(ctx, "production", "")
		if err != nil {
			t.Fatal(err)
		}
		wantAll := []flags.Object{
			{Kind: flags.KindFlag, Key: "a", Content: doc("a", "2"), Revision: 2},
			{Kind: flags.KindSegment, Key: "beta", Content: segment.Content, Revision: 1},
		}
		if diff := cmp.Diff(wantAll, all); diff != "" {
			t.Errorf("ListObjects (-want +got):\n%s", diff)
		}
		segments, err := db.ListObjects(ctx, "production", flags.KindSegment)
		if err != nil || !cmp.Equal(wantAll[1:], segments) {
			t.Errorf("ListObjects(segment) = %+v, %v; want %+v", segments, err, wantAll[1:])
		}
		if got, err := db.ListObjects(ctx, "staging", ""); err != nil || got == nil || len(got) != 0 {
			t.Errorf("ListObjects of an empty environment = %#v, %v; want an empty list", got, err)
		}

		// Expectations that do not hold, with a message saying why.
		for _, tt := range []struct {
			write flags.ObjectWrite
			msg   string
		}{
			{set("a", "3", 1), "expected revision 1, stored revision is 2"},
			{set("a", "3", 0), "expected it not to exist, stored revision is 2"},
			{set("b", "3", 1), "expected revision 1, it does not exist"},
			{remove("a", 1), "expected revision 1, stored revision is 2"},
		} {
			_, err := db.Write(ctx, revise("production", tt.write))
			wantKind(t, err, solstice.KindPreconditionFailed)
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
		}

		// A write that changes nothing appends nothing, and audits nothing.
		w = revise("production", set("a", "2", 2), remove("never-existed", flags.AnyVersion))
		w.Revisions[0].Audit = []solstice.AuditEntry{{Action: "flag_config.update", Resource: "flag/a"}}
		revs = mustWrite(t, db, w)
		if revs[0].Number != 2 || len(revs[0].Diff) != 0 || revs[0].Diff == nil {
			t.Errorf("no-op write returned %+v, want number 2 (the head) and an empty diff", revs[0])
		}

		// Removal.
		revs = mustWrite(t, db, revise("production", remove("a", 2)))
		if revs[0].Number != 3 || revs[0].Diff[0].Op() != "delete" || string(revs[0].Diff[0].Before) != string(doc("a", "2")) {
			t.Errorf("removal revision = %+v", revs[0])
		}
		_, err = db.GetObject(ctx, "production", flags.KindFlag, "a")
		wantKind(t, err, solstice.KindNotFound)
		if !strings.Contains(err.Error(), `flag "a" not found in environment "production"`) {
			t.Errorf("not-found error %q does not name the object", err)
		}

		env, err := db.GetEnvironment(ctx, "production")
		if err != nil || env.Head != 3 {
			t.Errorf("environment head = %d, %v; want 3", env.Head, err)
		}
		audit, err := db.ListAudit(ctx, solstice.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(audit) != 1 || audit[0].Environment != "production" || audit[0].Revision != 1 || !audit[0].Time.Equal(t0us) {
			t.Errorf("audit = %+v, want the one entry of revision 1 stamped with its environment, number and time", audit)
		}

		// Unknown environments and revisions.
		_, err = db.Write(ctx, revise("qa", set("a", "1", 0)))
		wantKind(t, err, solstice.KindNotFound)
		_, err = db.GetRevision(ctx, "production", 4)
		wantKind(t, err, solstice.KindNotFound)
		_, err = db.GetRevision(ctx, "qa", 1)
		wantKind(t, err, solstice.KindNotFound)
		if !strings.Contains(err.Error(), `environment "qa" not found`) {
			t.Errorf("error %q does not name the environment", err)
		}
		_, err = db.GetObject(ctx, "qa", flags.KindFlag, "a")
		wantKind(t, err, solstice.KindNotFound)
		_, err = db.ListObjects(ctx, "qa", "")
		wantKind(t, err, solstice.KindNotFound)
	})
}

// TestWriteIsAtomic checks that a failure late in a Write leaves nothing of
// its earlier parts.
func TestWriteIsAtomic(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "staging", "production")
		mustWrite(t, db, revise("production", set("a", "1", 0)))

		audit := []solstice.AuditEntry{{Action: "flag_config.update", Resource: "flag/a"}}
		_, err := db.Write(ctx, flags.Write{
			CreateEnvironments: []flags.Environment{{Name: "qa", CreatedAt: t0}},
			CreateFlags:        []flags.Flag{{Key: "new", Name: "New", Type: flags.TypeBoolean, Version: 1}},
			Revisions: []flags.RevisionWrite{
				{Environment: "staging", Objects: []flags.ObjectWrite{set("a", "1", 0)}, Audit: audit},
				{Environment: "production", Objects: []flags.ObjectWrite{set("a", "2", 7)}, Audit: audit},
			},
			Audit: audit,
		})
		wantKind(t, err, solstice.KindPreconditionFailed)

		if env, err := db.GetEnvironment(ctx, "staging"); err != nil || env.Head != 0 {
			t.Errorf("staging head = %d, %v; want 0", env.Head, err)
		}
		if objs, err := db.ListObjects(ctx, "staging", ""); err != nil || len(objs) != 0 {
			t.Errorf("staging objects = %+v, %v; want none", objs, err)
		}
		if revs, err := db.ListRevisions(ctx, "staging", flags.RevisionFilter{}); err != nil || len(revs) != 0 {
			t.Errorf("staging revisions = %+v, %v; want none", revs, err)
		}
		_, err = db.GetEnvironment(ctx, "qa")
		wantKind(t, err, solstice.KindNotFound)
		_, err = db.GetFlag(ctx, "new")
		wantKind(t, err, solstice.KindNotFound)
		if entries, err := db.ListAudit(ctx, solstice.AuditFilter{}); err != nil || len(entries) != 0 {
			t.Errorf("audit log = %+v, %v; want it empty", entries, err)
		}

		// The same Write without the stale expectation applies whole, the
		// two revisions of one Write to one environment in order.
		revs := mustWrite(t, db, flags.Write{Revisions: []flags.RevisionWrite{
			{Environment: "production", Objects: []flags.ObjectWrite{set("a", "2", 1)}},
			{Environment: "production", Objects: []flags.ObjectWrite{set("a", "3", 2)}},
			{Environment: "staging", Objects: []flags.ObjectWrite{set("a", "1", 0)}},
		}})
		var numbers []int64
		for _, r := range revs {
			numbers = append(numbers, r.Number)
		}
		if diff := cmp.Diff([]int64{2, 3, 1}, numbers); diff != "" {
			t.Errorf("revision numbers (-want +got):\n%s", diff)
		}
	})
}

func TestObjectsAt(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production", "staging")
		segment := func(value string) flags.ObjectWrite {
			return flags.ObjectWrite{Kind: flags.KindSegment, Key: "a", Content: doc("seg", value), Expect: flags.AnyVersion}
		}
		mustWrite(t, db, revise("production", set("a", "1", 0), set("b", "1", 0))) // 1
		mustWrite(t, db, revise("staging", set("a", "other", 0)))                  // another environment's history
		mustWrite(t, db, revise("production", set("a", "2", 1)))                   // 2
		mustWrite(t, db, revise("production", remove("b", 1)))                     // 3
		mustWrite(t, db, revise("production", set("b", "again", 0), segment("1"))) // 4
		mustWrite(t, db, revise("production", remove("a", 2), segment("2")))       // 5

		flag := func(key, value string, rev int64) flags.Object {
			return flags.Object{Kind: flags.KindFlag, Key: key, Content: doc(key, value), Revision: rev}
		}
		seg := func(value string, rev int64) flags.Object {
			return flags.Object{Kind: flags.KindSegment, Key: "a", Content: doc("seg", value), Revision: rev}
		}
		want := map[int64][]flags.Object{
			0: {},
			1: {flag("a", "1", 1), flag("b", "1", 1)},
			2: {flag("a", "2", 2), flag("b", "1", 1)},
			3: {flag("a", "2", 2)},
			4: {flag("a", "2", 2), flag("b", "again", 4), seg("1", 4)},
			5: {flag("b", "again", 4), seg("2", 5)},
		}
		for n := int64(0); n <= 5; n++ {
			got, err := db.ObjectsAt(ctx, "production", n)
			if err != nil {
				t.Fatalf("ObjectsAt(%d): %v", n, err)
			}
			if diff := cmp.Diff(want[n], got); diff != "" {
				t.Errorf("ObjectsAt(%d) (-want +got):\n%s", n, diff)
			}
		}
		current, err := db.ListObjects(ctx, "production", "")
		if err != nil || !cmp.Equal(want[5], current) {
			t.Errorf("ListObjects = %+v, %v; want the state at the head %+v", current, err, want[5])
		}

		_, err = db.ObjectsAt(ctx, "production", 6)
		wantKind(t, err, solstice.KindNotFound)
		_, err = db.ObjectsAt(ctx, "production", -1)
		wantKind(t, err, solstice.KindInvalid)
		_, err = db.ObjectsAt(ctx, "qa", 0)
		wantKind(t, err, solstice.KindNotFound)
	})
}

// TestContentIsStoredByteForByte checks that documents come back exactly as
// written, in objects, history and diffs, including characters that JSON
// encoders like to escape.
func TestContentIsStoredByteForByte(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production")
		content := json.RawMessage(`{"b":1,"a":"<&> ünïcödé \u2028 🎄","c":[1.50,1e3]}`)
		write := flags.ObjectWrite{Kind: flags.KindFlag, Key: "x", Content: content}
		revs := mustWrite(t, db, revise("production", write))

		rev, err := db.GetRevision(ctx, "production", revs[0].Number)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := db.GetObject(ctx, "production", flags.KindFlag, "x")
		if err != nil {
			t.Fatal(err)
		}
		at, err := db.ObjectsAt(ctx, "production", 1)
		if err != nil {
			t.Fatal(err)
		}
		for name, got := range map[string]json.RawMessage{
			"revision diff": rev.Diff[0].After,
			"object":        obj.Content,
			"ObjectsAt":     at[0].Content,
		} {
			if string(got) != string(content) {
				t.Errorf("%s content = %s, want %s", name, got, content)
			}
		}
		// Writing the same bytes again is no change.
		write.Expect = 1
		revs = mustWrite(t, db, revise("production", write))
		if len(revs[0].Diff) != 0 {
			t.Errorf("rewriting identical content produced diff %+v", revs[0].Diff)
		}
	})
}

func TestListRevisionsPaging(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production", "staging")
		for i := range 7 {
			mustWrite(t, db, revise("production", set("a", strings.Repeat("x", i+1), flags.AnyVersion)))
		}
		numbers := func(f flags.RevisionFilter) []int64 {
			t.Helper()
			revs, err := db.ListRevisions(ctx, "production", f)
			if err != nil {
				t.Fatalf("ListRevisions(%+v): %v", f, err)
			}
			n := []int64{}
			for _, r := range revs {
				n = append(n, r.Number)
			}
			return n
		}
		for _, tt := range []struct {
			filter flags.RevisionFilter
			want   []int64
		}{
			{flags.RevisionFilter{}, []int64{7, 6, 5, 4, 3, 2, 1}},
			{flags.RevisionFilter{Limit: 3}, []int64{7, 6, 5}},
			{flags.RevisionFilter{Limit: 3, BeforeNumber: 5}, []int64{4, 3, 2}},
			{flags.RevisionFilter{Limit: 3, BeforeNumber: 2}, []int64{1}},
			{flags.RevisionFilter{BeforeNumber: 1}, []int64{}},
			{flags.RevisionFilter{Limit: 5000}, []int64{7, 6, 5, 4, 3, 2, 1}},
		} {
			if diff := cmp.Diff(tt.want, numbers(tt.filter)); diff != "" {
				t.Errorf("ListRevisions(%+v) numbers (-want +got):\n%s", tt.filter, diff)
			}
		}
		revs, err := db.ListRevisions(ctx, "production", flags.RevisionFilter{Limit: 1})
		if err != nil || len(revs) != 1 || len(revs[0].Diff) != 1 || revs[0].Author != "alice" {
			t.Errorf("ListRevisions returned %+v, %v; want whole revisions with their diffs", revs, err)
		}
		if revs, err := db.ListRevisions(ctx, "staging", flags.RevisionFilter{}); err != nil || len(revs) != 0 {
			t.Errorf("revisions of an environment without any = %+v, %v", revs, err)
		}
		_, err = db.ListRevisions(ctx, "qa", flags.RevisionFilter{})
		wantKind(t, err, solstice.KindNotFound)
		_, err = db.ListRevisions(ctx, "production", flags.RevisionFilter{Limit: -1})
		wantKind(t, err, solstice.KindInvalid)
	})
}
