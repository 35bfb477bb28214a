package auth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/store/storetest"
)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func TestCreateValidates(t *testing.T) {
	svc := auth.NewService(storetest.Open(t), nil)
	ctx := context.Background()
	tests := []struct {
		name    string
		in      auth.NewToken
		pointer string
	}{
		{"no name", auth.NewToken{Kind: auth.KindAdmin}, "/name"},
		{"long name", auth.NewToken{Name: strings.Repeat("n", 101)}, "/name"},
		{"bad role", auth.NewToken{Name: "x", Role: "owner"}, "/role"},
		{"admin with environment", auth.NewToken{Name: "x", Environment: "staging"}, "/environment"},
		{"server without environment", auth.NewToken{Name: "x", Kind: auth.KindServer}, "/environment"},
		{"server with role", auth.NewToken{Name: "x", Kind: auth.KindServer, Environment: "staging", Role: auth.RoleAdmin}, "/role"},
		{"bad kind", auth.NewToken{Name: "x", Kind: "robot"}, "/kind"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svc.Create(ctx, tc.in)
			fields := solstice.ErrorFields(err)
			if !solstice.IsKind(err, solstice.KindInvalid) || len(fields) == 0 || fields[0].Pointer != tc.pointer {
				t.Errorf("err = %v, fields %+v; want invalid at %s", err, fields, tc.pointer)
			}
		})
	}
	if ts, _ := svc.List(ctx); len(ts) != 0 {
		t.Errorf("invalid requests stored tokens: %+v", ts)
	}
}

func TestAuthenticateAndRevoke(t *testing.T) {
	db := storetest.Open(t)
	c := &clock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	svc := auth.NewService(db, c)
	other := auth.NewService(db, c) // a second process sharing the database
	ctx := solstice.WithActor(context.Background(), solstice.Actor{Name: "alice", Kind: "user"})

	created, err := svc.Create(ctx, auth.NewToken{Name: "deploy", Role: auth.RoleEditor})
	if err != nil {
		t.Fatal(err)
	}
	tok := created.Token
	if !strings.HasPrefix(created.Secret, auth.AdminPrefix) || len(created.Secret) < len(auth.AdminPrefix)+40 {
		t.Errorf("secret %q lacks the prefix or entropy", created.Secret)
	}
	if tok.Role != auth.RoleEditor || tok.CreatedBy != "alice" || !strings.HasPrefix(tok.ID, "tok_") {
		t.Errorf("token = %+v", tok)
	}
	for _, s := range []*auth.Service{svc, other} {
		got, err := s.Authenticate(ctx, created.Secret)
		if err != nil || got.ID != tok.ID {
			t.Fatalf("Authenticate = %+v, %v", got, err)
		}
	}
	for _, bad := range []string{"", "hello", auth.AdminPrefix + "unknown", created.Secret + "x"} {
		if _, err := svc.Authenticate(ctx, bad); !solstice.IsKind(err, solstice.KindUnauthorized) {
			t.Errorf("Authenticate(%q) err = %v, want unauthorized", bad, err)
		}
	}
	stored, err := db.GetToken(ctx, tok.ID)
	if err != nil || stored.LastUsedAt == nil {
		t.Errorf("last use not recorded: %+v, %v", stored, err)
	}

	if err := svc.Revoke(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, created.Secret); !solstice.IsKind(err, solstice.KindUnauthorized) {
		t.Errorf("revoking process still accepts the token: %v", err)
	}
	// The other process may trust its cache for at most CacheTTL.
	c.now = c.now.Add(auth.CacheTTL + time.Second)
	if _, err := other.Authenticate(ctx, created.Secret); !solstice.IsKind(err, solstice.KindUnauthorized) {
		t.Errorf("another process accepts a revoked token after CacheTTL: %v", err)
	}
	if err := svc.Revoke(ctx, tok.ID); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("second revoke: %v", err)
	}
	if err := svc.Revoke(ctx, "tok_nope"); !solstice.IsKind(err, solstice.KindNotFound) {
		t.Errorf("revoke unknown: %v", err)
	}
	audit, err := db.ListAudit(ctx, solstice.AuditFilter{Resource: "token/" + tok.ID})
	if err != nil || len(audit) != 2 {
		t.Errorf("audit of token = %+v, %v; want create and revoke", audit, err)
	}
}

func TestRoles(t *testing.T) {
	tests := []struct {
		have, need auth.Role
		want       bool
	}{
		{auth.RoleAdmin, auth.RoleViewer, true},
		{auth.RoleAdmin, auth.RoleAdmin, true},
		{auth.RoleEditor, auth.RoleEditor, true},
		{auth.RoleEditor, auth.RoleAdmin, false},
		{auth.RoleViewer, auth.RoleEditor, false},
		{"", auth.RoleViewer, false},
		{"", "", false},
	}
	for _, tc := range tests {
		if got := tc.have.Allows(tc.need); got != tc.want {
			t.Errorf("%q.Allows(%q) = %v, want %v", tc.have, tc.need, got, tc.want)
		}
	}
}
