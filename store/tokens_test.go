package store_test

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/store"
)

func hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func TestTokens(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production")
		root := solstice.Actor{Name: "root", Kind: "cli"}
		admin := auth.Token{
			ID: "tok_admin", Name: "deploys", Kind: auth.KindAdmin, Role: auth.RoleEditor,
			Hash: hash("tok_admin.secret"), CreatedBy: "root", CreatedAt: t0,
		}
		server := auth.Token{
			ID: "srv_game", Name: "game servers", Kind: auth.KindServer, Environment: "production",
			Hash: hash("srv_game.secret"), CreatedBy: "root", CreatedAt: t0.Add(time.Second),
		}
		for _, tok := range []auth.Token{admin, server} {
			audit := solstice.AuditEntry{Actor: root, Action: "token.create", Resource: "token/" + tok.ID}
			if err := db.CreateToken(ctx, tok, audit); err != nil {
				t.Fatalf("CreateToken(%s): %v", tok.ID, err)
			}
		}
		stored := func(tok auth.Token) auth.Token {
			tok.CreatedAt = tok.CreatedAt.Truncate(time.Microsecond)
			return tok
		}

		got, err := db.GetToken(ctx, "tok_admin")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(stored(admin), got); diff != "" {
			t.Errorf("GetToken (-want +got):\n%s", diff)
		}
		got, err = db.TokenByHash(ctx, hash("srv_game.secret"))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(stored(server), got); diff != "" {
			t.Errorf("TokenByHash (-want +got):\n%s", diff)
		}
		list, err := db.ListTokens(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]auth.Token{stored(server), stored(admin)}, list); diff != "" {
			t.Errorf("ListTokens, newest first (-want +got):\n%s", diff)
		}

		// Conflicts and missing references.
		audit := solstice.AuditEntry{Action: "token.create"}
		dupID := admin
		dupID.Hash = hash("other")
		wantKind(t, db.CreateToken(ctx, dupID, audit), solstice.KindConflict)
		dupHash := admin
		dupHash.ID = "tok_other"
		wantKind(t, db.CreateToken(ctx, dupHash, audit), solstice.KindConflict)
		orphan := server
		orphan.ID, orphan.Hash, orphan.Environment = "srv_qa", hash("qa"), "qa"
		wantKind(t, db.CreateToken(ctx, orphan, audit), solstice.KindNotFound)
		_, err = db.GetToken(ctx, "tok_nope")
		wantKind(t, err, solstice.KindNotFound)
		_, err = db.TokenByHash(ctx, hash("nope"))
		wantKind(t, err, solstice.KindNotFound)

		// Revocation.
		revokedAt := t0.Add(time.Hour)
		revoke := solstice.AuditEntry{Actor: root, Action: "token.revoke", Resource: "token/tok_admin"}
		if err := db.RevokeToken(ctx, "tok_admin", revokedAt, revoke); err != nil {
			t.Fatal(err)
		}
		got, err = db.TokenByHash(ctx, admin.Hash)
		if err != nil {
			t.Fatal(err)
		}
		if got.RevokedAt == nil || !got.RevokedAt.Equal(revokedAt.Truncate(time.Microsecond)) || got.RevokedAt.Location() != time.UTC {
			t.Errorf("RevokedAt = %v, want %v in UTC", got.RevokedAt, revokedAt)
		}
		wantKind(t, db.RevokeToken(ctx, "tok_admin", revokedAt, revoke), solstice.KindConflict)
		wantKind(t, db.RevokeToken(ctx, "tok_nope", revokedAt, revoke), solstice.KindNotFound)

		entries, err := db.ListAudit(ctx, solstice.AuditFilter{Actor: "root"})
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, e := range entries {
			actions = append(actions, e.Action+" "+e.Resource)
		}
		want := []string{"token.revoke token/tok_admin", "token.create token/srv_game", "token.create token/tok_admin"}
		if diff := cmp.Diff(want, actions); diff != "" {
			t.Errorf("audit of token changes (-want +got):\n%s", diff)
		}
	})
}

func TestTouchToken(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		tok := auth.Token{ID: "tok_a", Name: "a", Kind: auth.KindAdmin, Role: auth.RoleViewer, Hash: hash("a"), CreatedBy: "root", CreatedAt: t0}
		if err := db.CreateToken(ctx, tok, solstice.AuditEntry{Action: "token.create"}); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			name string
			at   time.Time
			want time.Time
		}{
			{"first use is recorded", t0.Add(time.Hour), t0.Add(time.Hour)},
			{"uses within a minute are coalesced", t0.Add(time.Hour + 59*time.Second), t0.Add(time.Hour)},
			{"a later use is recorded", t0.Add(time.Hour + 61*time.Second), t0.Add(time.Hour + 61*time.Second)},
			{"an older use never moves it back", t0, t0.Add(time.Hour + 61*time.Second)},
		} {
			if err := db.TouchToken(ctx, "tok_a", tt.at); err != nil {
				t.Fatalf("%s: TouchToken: %v", tt.name, err)
			}
			got, err := db.GetToken(ctx, "tok_a")
			if err != nil {
				t.Fatal(err)
			}
			if want := tt.want.Truncate(time.Microsecond); got.LastUsedAt == nil || !got.LastUsedAt.Equal(want) {
				t.Errorf("%s: LastUsedAt = %v, want %v", tt.name, got.LastUsedAt, want)
			}
		}
		if err := db.TouchToken(ctx, "tok_unknown", t0); err != nil {
			t.Errorf("TouchToken of an unknown token = %v, want nil (best effort)", err)
		}
	})
}
