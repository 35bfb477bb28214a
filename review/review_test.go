package review_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/review"
	"github.com/solsticehq/solstice/store/storetest"
)

type fixture struct {
	flags  *flags.Service
	review *review.Service
	users  *accounts.Service
}

// as returns a context acting as the UI user name.
func as(ctx context.Context, name string) context.Context {
	return solstice.WithActor(ctx, solstice.Actor{Name: name, Kind: "user"})
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	db := storetest.Open(t)
	fs := flags.NewService(db)
	users := accounts.NewService(db, accounts.WithHashParams(accounts.HashParams{Memory: 64, Time: 1, Threads: 1}),
		accounts.WithLogger(slog.New(slog.DiscardHandler)))
	ctx := t.Context()
	if err := fs.EnsureDefaultEnvironments(ctx); err != nil {
		t.Fatal(err)
	}
	for name, role := range map[string]accounts.Role{"alice": accounts.RoleEditor, "bob": accounts.RoleApprover, "carol": accounts.RoleApprover, "vic": accounts.RoleViewer} {
		if _, err := users.CreateUser(ctx, accounts.NewUser{Username: name, Password: "password-" + name, Roles: map[string]accounts.Role{"*": role}}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := fs.CreateFlag(as(ctx, "alice"), flags.NewFlag{Key: "winter", Type: flags.TypeObject,
		Schema:   json.RawMessage(`{"type":"object","required":["xp"],"properties":{"xp":{"type":"number","maximum":5}}}`),
		Variants: []flags.Variant{{Key: "base", Value: json.RawMessage(`{"xp":1}`)}, {Key: "event", Value: json.RawMessage(`{"xp":2}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{flags: fs, review: review.NewService(db, fs, users), users: users}
}

func wantKind(t *testing.T, err error, want solstice.Kind) {
	t.Helper()
	if got := solstice.ErrorKind(err); got != want {
		t.Fatalf("error kind = %q (%v), want %q", got, err, want)
	}
}

func (f fixture) config(t *testing.T, env string) flags.FlagConfig {
	t.Helper()
	fc, err := f.flags.GetConfig(t.Context(), env, "winter")
	if err != nil {
		t.Fatal(err)
	}
	return fc
}

func TestProposeAndApprove(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	cur := f.config(t, "production")
	next := cur.Config
	next.Enabled, next.DefaultVariant = true, "event"

	// Who may propose.
	_, err := f.review.ProposeConfig(as(ctx, "vic"), "production", "winter", next, cur.Revision, "")
	wantKind(t, err, solstice.KindForbidden)
	_, err = f.review.ProposeConfig(solstice.WithActor(ctx, solstice.Actor{Name: "token:ci", Kind: "token"}), "production", "winter", next, cur.Revision, "")
	wantKind(t, err, solstice.KindForbidden)

	// What may be proposed: invalid, stale and empty proposals store nothing.
	bad := next
	bad.Variants = []flags.Variant{{Key: "base", Value: json.RawMessage(`{"xp":9}`)}, {Key: "event", Value: json.RawMessage(`{"xp":2}`)}}
	_, err = f.review.ProposeConfig(as(ctx, "alice"), "production", "winter", bad, cur.Revision, "")
	wantKind(t, err, solstice.KindInvalid)
	if fe := solstice.ErrorFields(err); len(fe) != 1 || fe[0].Pointer != "/variants/0/value/xp" {
		t.Errorf("field errors = %v, want one at /variants/0/value/xp", fe)
	}
	_, err = f.review.ProposeConfig(as(ctx, "alice"), "production", "winter", next, cur.Revision-1, "")
	wantKind(t, err, solstice.KindPreconditionFailed)
	_, err = f.review.ProposeConfig(as(ctx, "alice"), "production", "winter", cur.Config, cur.Revision, "")
	wantKind(t, err, solstice.KindConflict)
	if list, _ := f.review.List(ctx, review.Filter{}); len(list) != 0 {
		t.Fatalf("rejected proposals stored %d change requests", len(list))
	}

	cr, err := f.review.ProposeConfig(as(ctx, "alice"), "production", "winter", next, cur.Revision, "Start the winter event")
	if err != nil {
		t.Fatal(err)
	}
	if cr.Status != review.StatusOpen || cr.Author != "alice" || cr.BaseRevision != cur.Revision || !strings.Contains(string(cr.After), `"enabled":true`) {
		t.Errorf("change request %+v", cr)
	}
	if got := f.config(t, "production"); got.Config.Enabled {
		t.Fatal("a proposal changed production")
	}

	// Who may approve.
	_, err = f.review.Approve(as(ctx, "alice"), cr.ID, "")
	wantKind(t, err, solstice.KindForbidden) // an editor, and the author
	if _, err := f.users.SetRoles(ctx, "alice", map[string]accounts.Role{"*": accounts.RoleApprover}); err != nil {
		t.Fatal(err)
	}
	_, err = f.review.Approve(as(ctx, "alice"), cr.ID, "")
	wantKind(t, err, solstice.KindForbidden) // still the author

	done, err := f.review.Approve(as(ctx, "bob"), cr.ID, "looks good")
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != review.StatusApproved || done.DecidedBy != "bob" || done.Comment != "looks good" || done.AppliedRevision == 0 {
		t.Errorf("approved request %+v", done)
	}
	got := f.config(t, "production")
	if !got.Config.Enabled || got.Config.DefaultVariant != "event" || got.Revision != done.AppliedRevision {
		t.Errorf("production after approval: %+v at revision %d, want enabled with default event at %d", got.Config, got.Revision, done.AppliedRevision)
	}
	rev, err := f.flags.GetRevision(ctx, "production", done.AppliedRevision)
	if err != nil {
		t.Fatal(err)
	}
	if rev.Author != "bob" || !strings.Contains(rev.Message, "change request #") || !strings.Contains(rev.Message, "by alice") {
		t.Errorf("applied revision by %q: %q", rev.Author, rev.Message)
	}
	entries, err := f.flags.Store().ListAudit(ctx, solstice.AuditFilter{Action: "change_request.approve"})
	if err != nil || len(entries) != 1 || entries[0].Actor.Name != "bob" || entries[0].Revision != done.AppliedRevision {
		t.Errorf("approval audit = %+v, %v", entries, err)
	}
	_, err = f.review.Approve(as(ctx, "carol"), cr.ID, "")
	wantKind(t, err, solstice.KindConflict)
}

func TestStaleRequestIsNotApplied(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	cur := f.config(t, "production")
	next := cur.Config
	next.Enabled = true
	cr, err := f.review.ProposeConfig(as(ctx, "alice"), "production", "winter", next, cur.Revision, "")
	if err != nil {
		t.Fatal(err)
	}
	other := cur.Config
	other.DefaultVariant = "event"
	if _, err := f.flags.PutConfig(as(ctx, "carol"), "production", "winter", other, cur.Revision, "meanwhile"); err != nil {
		t.Fatal(err)
	}
	if stale, err := f.review.Stale(ctx, cr); err != nil || !stale {
		t.Errorf("Stale = %t, %v; want true", stale, err)
	}
	_, err = f.review.Approve(as(ctx, "bob"), cr.ID, "")
	wantKind(t, err, solstice.KindConflict)
	again, _ := f.review.Get(ctx, cr.ID)
	if again.Status != review.StatusOpen || again.DecidedBy != "" {
		t.Errorf("after a failed approval the request is %+v, want open and undecided", again)
	}
	if got := f.config(t, "production"); got.Config.Enabled {
		t.Error("a stale request was applied")
	}
	if _, err := f.review.Reject(as(ctx, "bob"), cr.ID, "outdated"); err != nil {
		t.Fatal(err)
	}
}

func TestRejectAndWithdraw(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	cur := f.config(t, "staging")
	next := cur.Config
	next.Enabled = true
	propose := func() review.ChangeRequest {
		cr, err := f.review.ProposeConfig(as(ctx, "alice"), "staging", "winter", next, cur.Revision, "")
		if err != nil {
			t.Fatal(err)
		}
		return cr
	}
	a, b := propose(), propose()

	_, err := f.review.Reject(as(ctx, "alice"), a.ID, "")
	wantKind(t, err, solstice.KindForbidden)
	r, err := f.review.Reject(as(ctx, "bob"), a.ID, "not now")
	if err != nil || r.Status != review.StatusRejected || r.Comment != "not now" {
		t.Fatalf("Reject = %+v, %v", r, err)
	}
	_, err = f.review.Withdraw(as(ctx, "alice"), a.ID)
	wantKind(t, err, solstice.KindConflict)

	_, err = f.review.Withdraw(as(ctx, "bob"), b.ID)
	wantKind(t, err, solstice.KindForbidden)
	w, err := f.review.Withdraw(as(ctx, "alice"), b.ID)
	if err != nil || w.Status != review.StatusWithdrawn {
		t.Fatalf("Withdraw = %+v, %v", w, err)
	}
	open, err := f.review.List(ctx, review.Filter{Status: review.StatusOpen})
	if err != nil || len(open) != 0 {
		t.Errorf("open requests = %v, %v; want none", open, err)
	}
	_, err = f.review.Approve(as(ctx, "bob"), 999, "")
	wantKind(t, err, solstice.KindNotFound)
	_, err = f.review.Reject(as(ctx, "bob"), a.ID, strings.Repeat("x", review.MaxMessageLength+1))
	wantKind(t, err, solstice.KindInvalid)
}

func TestRevertRequest(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	first := f.config(t, "production")
	next := first.Config
	next.Enabled = true
	if _, err := f.flags.PutConfig(as(ctx, "carol"), "production", "winter", next, first.Revision, "enable"); err != nil {
		t.Fatal(err)
	}
	_, err := f.review.ProposeRevert(as(ctx, "alice"), "production", 99, "")
	wantKind(t, err, solstice.KindNotFound)
	head := f.config(t, "production").Revision
	_, err = f.review.ProposeRevert(as(ctx, "alice"), "production", head, "")
	wantKind(t, err, solstice.KindConflict)

	cr, err := f.review.ProposeRevert(as(ctx, "alice"), "production", first.Revision, "")
	if err != nil {
		t.Fatal(err)
	}
	if cr.Kind != review.KindRevert || cr.TargetRevision != first.Revision || cr.BaseRevision != head {
		t.Errorf("revert request %+v", cr)
	}
	done, err := f.review.Approve(as(ctx, "bob"), cr.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.config(t, "production"); got.Config.Enabled || got.Revision != done.AppliedRevision {
		t.Errorf("after the approved revert: enabled %t at revision %d, want disabled at %d", got.Config.Enabled, got.Revision, done.AppliedRevision)
	}
}
