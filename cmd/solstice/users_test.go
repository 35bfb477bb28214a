package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/web"
)

// users runs `solstice users ARGS` against the cli's data directory.
// NOTE: it calls cmdUsers directly, so the tests do not depend on the
// command table.
func (c *cli) users(stdin string, args ...string) (string, error) {
	c.t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(k string) string {
		switch k {
		case "SOLSTICE_DATA":
			return c.data
		case "SOLSTICE_LOG_FORMAT":
			return "text"
		case "USER":
			return "tester"
		}
		return ""
	}}
	err := cmdUsers(context.Background(), e, args)
	return out.String(), err
}

func (c *cli) usersOK(stdin string, args ...string) string {
	c.t.Helper()
	out, err := c.users(stdin, args...)
	if err != nil {
		c.t.Fatalf("solstice users %s: %v", strings.Join(args, " "), err)
	}
	return out
}

var oneTimePassword = regexp.MustCompile(`\n    (\S{20})\n`)

// openAccounts opens the cli's database the way serve does.
func (c *cli) openAccounts(t *testing.T) (*accounts.Service, func()) {
	t.Helper()
	cfg := config{Data: c.data, LogLevel: "warn", LogFormat: "text"}
	a, err := openApp(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return newAccounts(a), a.Close
}

func TestUsersCommand(t *testing.T) {
	c := newCLI(t)
	out := c.usersOK("", "create", "--name", "Alice", "--display-name", "Alice A.", "--role", "editor", "--env-role", "production=viewer")
	if !strings.Contains(out, "Created alice (editor everywhere, viewer in production)") {
		t.Errorf("create output:\n%s", out)
	}
	m := oneTimePassword.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no one-time password printed:\n%s", out)
	}
	c.usersOK("correct horse battery\n", "create", "--name", "bob", "--role", "approver", "--password-stdin")

	acc, closeDB := c.openAccounts(t)
	ctx := context.Background()
	l, err := acc.Login(ctx, "alice", m[1], "", "")
	if err != nil || !l.User.MustChangePassword {
		t.Errorf("login with the printed password: %+v, %v; want a one-time password", l.User, err)
	}
	if l, err := acc.Login(ctx, "bob", "correct horse battery", "", ""); err != nil || l.User.MustChangePassword {
		t.Errorf("login with the password from stdin: %+v, %v", l.User, err)
	}
	closeDB()

	list := c.usersOK("", "list")
	for _, want := range []string{"alice", "Alice A.", "viewer in production", "one-time password", "bob", "approver everywhere"} {
		if !strings.Contains(list, want) {
			t.Errorf("list lacks %q:\n%s", want, list)
		}
	}
	if out := c.usersOK("", "list", "--json"); !strings.Contains(out, `"username": "alice"`) || strings.Contains(out, "argon2") {
		t.Errorf("list --json (it must never show hashes):\n%s", out)
	}

	c.usersOK("", "set-roles", "alice", "--role", "approver")
	if out := c.usersOK("new password here\n", "set-password", "alice", "--password-stdin"); !strings.Contains(out, "logged out its sessions") {
		t.Errorf("set-password output:\n%s", out)
	}
	c.usersOK("", "disable", "bob")
	acc, closeDB = c.openAccounts(t)
	defer closeDB()
	if u, err := acc.GetUser(ctx, "alice"); err != nil || u.Role("production") != accounts.RoleApprover {
		t.Errorf("alice after set-roles: %+v, %v", u, err)
	}
	if _, err := acc.Login(ctx, "alice", "new password here", "", ""); err != nil {
		t.Errorf("login with the new password: %v", err)
	}
	if _, err := acc.Login(ctx, "bob", "correct horse battery", "", ""); !solstice.IsKind(err, solstice.KindUnauthorized) {
		t.Errorf("a disabled user logs in: %v", err)
	}
	c.usersOK("", "enable", "bob")
}

func TestUsersCommandErrors(t *testing.T) {
	c := newCLI(t)
	c.usersOK("root-password\n", "create", "--name", "root", "--role", "admin", "--password-stdin")
	tests := []struct {
		args  []string
		usage bool   // a usage error (exit 2)
		kind  string // otherwise the error kind
	}{
		{[]string{}, true, ""},
		{[]string{"frobnicate"}, true, ""},
		{[]string{"create"}, true, ""},
		{[]string{"create", "--name", "x", "--env-role", "production"}, true, ""},
		{[]string{"create", "--name", "Bad Name"}, false, string(solstice.KindInvalid)},
		{[]string{"create", "--name", "root"}, false, string(solstice.KindConflict)},
		{[]string{"create", "--name", "qa", "--env-role", "qa=editor"}, false, string(solstice.KindInvalid)},
		{[]string{"set-roles", "root"}, true, ""},
		{[]string{"set-roles", "root", "--role", "viewer"}, false, string(solstice.KindConflict)}, // the last admin
		{[]string{"set-password"}, true, ""},
		{[]string{"disable", "nobody"}, false, string(solstice.KindNotFound)},
	}
	for _, tc := range tests {
		_, err := c.users("", tc.args...)
		var ue *usageError
		switch {
		case tc.usage && !errors.As(err, &ue):
			t.Errorf("users %v: error %v, want a usage error", tc.args, err)
		case !tc.usage && string(solstice.ErrorKind(err)) != tc.kind:
			t.Errorf("users %v: error %v (kind %q), want kind %q", tc.args, err, solstice.ErrorKind(err), tc.kind)
		}
	}
}

func TestEnsureFirstAdmin(t *testing.T) {
	c := newCLI(t)
	acc, closeDB := c.openAccounts(t)
	defer closeDB()
	ctx := context.Background()
	var out bytes.Buffer
	if err := ensureFirstAdmin(ctx, &out, acc); err != nil {
		t.Fatal(err)
	}
	m := oneTimePassword.FindStringSubmatch(out.String())
	if m == nil || !strings.Contains(out.String(), `"admin"`) {
		t.Fatalf("first start printed:\n%s", out.String())
	}
	if l, err := acc.Login(ctx, "admin", m[1], "", ""); err != nil || !l.User.Can("production", accounts.RoleAdmin) {
		t.Errorf("login as the first admin: %+v, %v", l.User, err)
	}
	out.Reset()
	if err := ensureFirstAdmin(ctx, &out, acc); err != nil || out.Len() != 0 {
		t.Errorf("second start: %v, printed %q; want nothing", err, out.String())
	}
}

func TestUIDepsServeTheUI(t *testing.T) {
	c := newCLI(t)
	cfg := config{Data: c.data, LogLevel: "warn", LogFormat: "text"}
	ctx := context.Background()
	a, err := openApp(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var out bytes.Buffer
	e := &env{stdout: &out, stderr: &bytes.Buffer{}, getenv: func(string) string { return "" }}
	deps, err := uiDeps(ctx, e, a, false)
	if err != nil {
		t.Fatal(err)
	}
	m := oneTimePassword.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("the first start printed no password:\n%s", out.String())
	}
	srv := httptest.NewServer(web.New(web.Deps{Flags: a.flags, Auth: a.auth, Logger: slog.New(slog.DiscardHandler), UI: deps}))
	defer srv.Close()
	res, err := http.Get(srv.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET /login: %d", res.StatusCode)
	}
	if _, err := deps.Accounts.Login(ctx, "admin", m[1], "", ""); err != nil {
		t.Errorf("log in with the printed password: %v", err)
	}
}
