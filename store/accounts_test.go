package store_test

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/review"
	"github.com/solsticehq/solstice/store"
)

const testHash = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U"

func TestUsers(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		n, err := db.CountUsers(ctx)
		if err != nil || n != 0 {
			t.Fatalf("CountUsers on an empty database = %d, %v; want 0", n, err)
		}
		alice := accounts.User{
			Username: "alice", DisplayName: "Alice", PasswordHash: testHash, MustChangePassword: true,
			Roles:     map[string]accounts.Role{accounts.AllEnvironments: accounts.RoleEditor, "production": accounts.RoleViewer},
			CreatedAt: t0, UpdatedAt: t0,
		}
		bob := accounts.User{Username: "bob", PasswordHash: testHash, Roles: map[string]accounts.Role{"*": accounts.RoleAdmin}, CreatedAt: t0, UpdatedAt: t0}
		for _, u := range []accounts.User{bob, alice} {
			if err := db.CreateUser(ctx, u, solstice.AuditEntry{Action: "user.create", Resource: "user/" + u.Username}); err != nil {
				t.Fatalf("CreateUser(%s): %v", u.Username, err)
			}
		}
		stored := func(u accounts.User) accounts.User {
			u.CreatedAt, u.UpdatedAt = u.CreatedAt.Truncate(time.Microsecond), u.UpdatedAt.Truncate(time.Microsecond)
			return u
		}
		got, err := db.GetUser(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(stored(alice), got); diff != "" {
			t.Errorf("GetUser (-want +got):\n%s", diff)
		}
		list, err := db.ListUsers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]accounts.User{stored(alice), stored(bob)}, list); diff != "" {
			t.Errorf("ListUsers, by username (-want +got):\n%s", diff)
		}
		if n, err := db.CountUsers(ctx); err != nil || n != 2 {
			t.Errorf("CountUsers = %d, %v; want 2", n, err)
		}
		wantKind(t, db.CreateUser(ctx, alice, solstice.AuditEntry{Action: "user.create"}), solstice.KindConflict)
		_, err = db.GetUser(ctx, "carol")
		wantKind(t, err, solstice.KindNotFound)

		// A session, its touch, and the update that ends it.
		sess := accounts.Session{Hash: hash("s1"), Username: "alice", CreatedAt: t0, LastSeenAt: t0, ExpiresAt: t0.Add(time.Hour), Address: "10.0.0.1", UserAgent: "test"}
		if err := db.RecordLogin(ctx, sess); err != nil {
			t.Fatal(err)
		}
		wantKind(t, db.RecordLogin(ctx, sess), solstice.KindConflict)
		orphan := sess
		orphan.Hash, orphan.Username = hash("s2"), "carol"
		wantKind(t, db.RecordLogin(ctx, orphan), solstice.KindNotFound)
		if err := db.TouchSession(ctx, sess.Hash, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := db.TouchSession(ctx, sess.Hash, t0); err != nil { // never moves back
			t.Fatal(err)
		}
		gotSess, err := db.SessionByHash(ctx, sess.Hash)
		if err != nil {
			t.Fatal(err)
		}
		wantSess := sess
		wantSess.CreatedAt, wantSess.LastSeenAt, wantSess.ExpiresAt = t0us, t0us.Add(time.Minute), t0us.Add(time.Hour)
		if diff := cmp.Diff(wantSess, gotSess); diff != "" {
			t.Errorf("SessionByHash (-want +got):\n%s", diff)
		}
		got, _ = db.GetUser(ctx, "alice")
		if got.LastLoginAt == nil || !got.LastLoginAt.Equal(t0us) {
			t.Errorf("LastLoginAt = %v, want %v", got.LastLoginAt, t0us)
		}

		// Updating roles without ending sessions keeps them.
		upd := got
		upd.Roles = map[string]accounts.Role{"*": accounts.RoleApprover}
		upd.DisplayName = "Alice A."
		if err := db.UpdateUser(ctx, upd, false, solstice.AuditEntry{Action: "user.roles", Resource: "user/alice"}); err != nil {
			t.Fatal(err)
		}
		got, _ = db.GetUser(ctx, "alice")
		if diff := cmp.Diff(upd.Roles, got.Roles); diff != "" || got.DisplayName != "Alice A." {
			t.Errorf("after UpdateUser: roles (-want +got):\n%s display name %q", diff, got.DisplayName)
		}
		if _, err := db.SessionByHash(ctx, sess.Hash); err != nil {
			t.Errorf("session gone after an update without endSessions: %v", err)
		}
		if err := db.UpdateUser(ctx, upd, true, solstice.AuditEntry{Action: "user.password", Resource: "user/alice"}); err != nil {
			t.Fatal(err)
		}
		_, err = db.SessionByHash(ctx, sess.Hash)
		wantKind(t, err, solstice.KindNotFound)
		missing := upd
		missing.Username = "carol"
		wantKind(t, db.UpdateUser(ctx, missing, false, solstice.AuditEntry{Action: "user.update"}), solstice.KindNotFound)

		entries, err := db.ListAudit(ctx, solstice.AuditFilter{Resource: "user/alice"})
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, e := range entries {
			actions = append(actions, e.Action)
		}
		if diff := cmp.Diff([]string{"user.password", "user.roles", "user.create"}, actions); diff != "" {
			t.Errorf("audit of alice (-want +got):\n%s", diff)
		}
	})
}

func TestDeleteExpiredSessions(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		u := accounts.User{Username: "alice", PasswordHash: testHash, Roles: map[string]accounts.Role{"*": accounts.RoleViewer}, CreatedAt: t0, UpdatedAt: t0}
		if err := db.CreateUser(ctx, u, solstice.AuditEntry{Action: "user.create"}); err != nil {
			t.Fatal(err)
		}
		sessions := map[string]accounts.Session{
			"fresh":   {LastSeenAt: t0.Add(-time.Minute), ExpiresAt: t0.Add(time.Hour)},
			"idle":    {LastSeenAt: t0.Add(-13 * time.Hour), ExpiresAt: t0.Add(time.Hour)},
			"expired": {LastSeenAt: t0.Add(-time.Minute), ExpiresAt: t0},
		}
		for name, s := range sessions {
			s.Hash, s.Username, s.CreatedAt = hash(name), "alice", t0.Add(-24*time.Hour)
			if err := db.RecordLogin(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		n, err := db.DeleteExpiredSessions(ctx, t0.Add(-12*time.Hour), t0)
		if err != nil || n != 2 {
			t.Fatalf("DeleteExpiredSessions = %d, %v; want 2", n, err)
		}
		for name := range sessions {
			_, err := db.SessionByHash(ctx, hash(name))
			if want := name == "fresh"; (err == nil) != want {
				t.Errorf("session %s: SessionByHash error %v, want it kept: %t", name, err, want)
			}
		}
	})
}

func TestChangeRequests(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production", "staging")
		cfg := review.ChangeRequest{
			Environment: "production", Kind: review.KindConfig, Flag: "winter", BaseRevision: 3,
			Before: json.RawMessage(`{"key":"winter","enabled":false}`), After: json.RawMessage(`{"key":"winter","enabled":true}`),
			Message: "Enable winter", Author: "alice", Status: review.StatusOpen, CreatedAt: t0,
		}
		rev := review.ChangeRequest{
			Environment: "staging", Kind: review.KindRevert, TargetRevision: 2, BaseRevision: 5,
			Message: "Revert", Author: "bob", Status: review.StatusOpen, CreatedAt: t0,
		}
		var ids []int64
		for _, cr := range []review.ChangeRequest{cfg, rev} {
			id, err := db.CreateChangeRequest(ctx, cr, solstice.AuditEntry{Action: "change_request.create", Environment: cr.Environment})
			if err != nil {
				t.Fatalf("CreateChangeRequest: %v", err)
			}
			ids = append(ids, id)
		}
		if ids[1] <= ids[0] {
			t.Fatalf("ids %v do not increase", ids)
		}
		got, err := db.GetChangeRequest(ctx, ids[0])
		if err != nil {
			t.Fatal(err)
		}
		want := cfg
		want.ID, want.CreatedAt = ids[0], t0us
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GetChangeRequest (-want +got):\n%s", diff)
		}
		entries, err := db.ListAudit(ctx, solstice.AuditFilter{Action: "change_request.create", Environment: "production"})
		if err != nil || len(entries) != 1 || entries[0].Resource != "change_request/"+strconv.FormatInt(ids[0], 10) {
			t.Errorf("audit of the creation = %+v, %v; want one entry for change_request/%d", entries, err, ids[0])
		}

		for _, tc := range []struct {
			name string
			f    review.Filter
			want []int64
		}{
			{"all", review.Filter{}, []int64{ids[1], ids[0]}},
			{"environment", review.Filter{Environment: "production"}, []int64{ids[0]}},
			{"flag", review.Filter{Flag: "winter"}, []int64{ids[0]}},
			{"author", review.Filter{Author: "bob"}, []int64{ids[1]}},
			{"status", review.Filter{Status: review.StatusApproved}, nil},
			{"paging", review.Filter{BeforeID: ids[1], Limit: 1}, []int64{ids[0]}},
		} {
			list, err := db.ListChangeRequests(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var gotIDs []int64
			for _, cr := range list {
				gotIDs = append(gotIDs, cr.ID)
			}
			if diff := cmp.Diff(tc.want, gotIDs); diff != "" {
				t.Errorf("%s: ListChangeRequests ids (-want +got):\n%s", tc.name, diff)
			}
		}

		// A decision applies only from the expected status.
		decided := want
		at := t0.Add(time.Minute)
		decided.Status, decided.DecidedBy, decided.DecidedAt, decided.Comment, decided.AppliedRevision = review.StatusApproved, "bob", &at, "ok", 4
		audit := solstice.AuditEntry{Action: "change_request.approve", Environment: "production", Resource: "change_request/1"}
		if err := db.UpdateChangeRequest(ctx, decided, review.StatusOpen, &audit); err != nil {
			t.Fatal(err)
		}
		wantKind(t, db.UpdateChangeRequest(ctx, decided, review.StatusOpen, nil), solstice.KindConflict)
		missing := decided
		missing.ID = 999
		wantKind(t, db.UpdateChangeRequest(ctx, missing, review.StatusOpen, nil), solstice.KindNotFound)
		got, _ = db.GetChangeRequest(ctx, ids[0])
		atUS := at.Truncate(time.Microsecond)
		decided.DecidedAt = &atUS
		if diff := cmp.Diff(decided, got); diff != "" {
			t.Errorf("after UpdateChangeRequest (-want +got):\n%s", diff)
		}

		_, err = db.GetChangeRequest(ctx, 999)
		wantKind(t, err, solstice.KindNotFound)
		orphan := cfg
		orphan.Environment = "qa"
		_, err = db.CreateChangeRequest(ctx, orphan, solstice.AuditEntry{Action: "change_request.create"})
		wantKind(t, err, solstice.KindNotFound)
	})
}
