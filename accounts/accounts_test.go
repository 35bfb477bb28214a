package accounts_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/store/storetest"
)

// cheap keeps the tests fast; the parameters are recorded in each hash.
var cheap = accounts.HashParams{Memory: 64, Time: 1, Threads: 1}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newService(t *testing.T, opts ...accounts.Option) (*accounts.Service, *clock) {
	t.Helper()
	s, clk, _ := newServiceDB(t, opts...)
	return s, clk
}

func newServiceDB(t *testing.T, opts ...accounts.Option) (*accounts.Service, *clock, accounts.Store) {
	t.Helper()
	clk := &clock{now: time.Date(2025, 12, 21, 10, 0, 0, 0, time.UTC)}
	db := storetest.Open(t, storetest.WithClock(clk))
	opts = append([]accounts.Option{accounts.WithClock(clk), accounts.WithHashParams(cheap), accounts.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	return accounts.NewService(db, opts...), clk, db
}

func wantKind(t *testing.T, err error, want solstice.Kind) {
	t.Helper()
	if got := solstice.ErrorKind(err); got != want {
		t.Fatalf("error kind = %q (%v), want %q", got, err, want)
	}
}

func mustCreate(t *testing.T, s *accounts.Service, name string, roles map[string]accounts.Role) {
	t.Helper()
	if _, err := s.CreateUser(t.Context(), accounts.NewUser{Username: name, Password: name + "-password", Roles: roles}); err != nil {
		t.Fatalf("CreateUser(%s): %v", name, err)
	}
}

func TestRoleAllows(t *testing.T) {
	tests := []struct {
		role, need accounts.Role
		want       bool
	}{
		{accounts.RoleViewer, accounts.RoleViewer, true},
		{accounts.RoleViewer, accounts.RoleEditor, false},
		{accounts.RoleEditor, accounts.RoleEditor, true},
		{accounts.RoleEditor, accounts.RoleApprover, false},
		{accounts.RoleApprover, accounts.RoleEditor, true},
		{accounts.RoleApprover, accounts.RoleAdmin, false},
		{accounts.RoleAdmin, accounts.RoleApprover, true},
		{"", accounts.RoleViewer, false},
		{"owner", accounts.RoleViewer, false},
	}
	for _, tc := range tests {
		if got := tc.role.Allows(tc.need); got != tc.want {
			t.Errorf("%q.Allows(%q) = %t, want %t", tc.role, tc.need, got, tc.want)
		}
	}
}

func TestUserRolePerEnvironment(t *testing.T) {
	u := accounts.User{Roles: map[string]accounts.Role{"*": accounts.RoleEditor, "production": accounts.RoleViewer, "staging": accounts.RoleApprover}}
	tests := []struct {
		env  string
		need accounts.Role
		want bool
	}{
		{"development", accounts.RoleEditor, true},
		{"production", accounts.RoleEditor, false},
		{"production", accounts.RoleViewer, true},
		{"staging", accounts.RoleApprover, true},
		{accounts.AllEnvironments, accounts.RoleAdmin, false},
	}
	for _, tc := range tests {
		if got := u.Can(tc.env, tc.need); got != tc.want {
			t.Errorf("Can(%q, %q) = %t, want %t", tc.env, tc.need, got, tc.want)
		}
	}
	u.Disabled = true
	if u.Can("development", accounts.RoleViewer) {
		t.Error("a disabled user can view")
	}
	if got := u.EnvironmentRoles(); !cmp.Equal(got, []string{"production", "staging"}) {
		t.Errorf("EnvironmentRoles = %v", got)
	}
}

func TestPasswordHash(t *testing.T) {
	h, err := accounts.HashPassword("correct horse battery", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("hash %q is not a PHC argon2id string with the given parameters", h)
	}
	h2, _ := accounts.HashPassword("correct horse battery", cheap)
	if h == h2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	for pw, want := range map[string]bool{"correct horse battery": true, "correct horse batterY": false, "": false} {
		if ok, err := accounts.VerifyPassword(h, pw); err != nil || ok != want {
			t.Errorf("VerifyPassword(%q) = %t, %v; want %t", pw, ok, err, want)
		}
	}
	parts := strings.Split(h, "$")
	for name, bad := range map[string]string{
		"empty":        "",
		"bcrypt":       "$2a$10$abcdefghijklmnopqrstuv",
		"argon2i":      strings.Replace(h, "argon2id", "argon2i", 1),
		"version":      strings.Replace(h, "v=19", "v=16", 1),
		"huge memory":  "$argon2id$v=19$m=4194304,t=1,p=1$" + parts[4] + "$" + parts[5],
		"zero time":    "$argon2id$v=19$m=64,t=0,p=1$" + parts[4] + "$" + parts[5],
		"bad salt":     "$argon2id$v=19$m=64,t=1,p=1$!!$" + parts[5],
		"short key":    "$argon2id$v=19$m=64,t=1,p=1$" + parts[4] + "$AAAA",
		"extra fields": h + "$x",
	} {
		if _, err := accounts.VerifyPassword(bad, "x"); err == nil {
			t.Errorf("%s: VerifyPassword(%q) accepted a malformed hash", name, bad)
		}
	}
}

func TestCheckPassword(t *testing.T) {
	tests := map[string]bool{
		"short":                  false,
		"ten chars!":             true,
		"ünïcödé ok":             true,
		strings.Repeat("x", 256): true,
		strings.Repeat("x", 257): false,
		string([]byte{0xff, 0xfe}) + "aaaaaaaaaa": false,
	}
	for pw, ok := range tests {
		err := accounts.CheckPassword(pw)
		if (err == nil) != ok {
			t.Errorf("CheckPassword(%.20q) = %v, want ok=%t", pw, err, ok)
		}
		if err != nil && solstice.ErrorFields(err)[0].Pointer != "/password" {
			t.Errorf("CheckPassword(%.20q) fields = %v, want /password", pw, solstice.ErrorFields(err))
		}
	}
}

func TestGeneratePassword(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		pw, err := accounts.GeneratePassword()
		if err != nil {
			t.Fatal(err)
		}
		if len(pw) != 20 || strings.ContainsAny(pw, "0O1lI") || accounts.CheckPassword(pw) != nil {
			t.Errorf("GeneratePassword = %q: want 20 characters without look-alikes", pw)
		}
		if seen[pw] {
			t.Errorf("GeneratePassword repeated %q", pw)
		}
		seen[pw] = true
	}
}

func TestCreateUserValidation(t *testing.T) {
	s, _ := newService(t, accounts.WithEnvironmentCheck(func(_ context.Context, env string) error {
		if env == "production" {
			return nil
		}
		return solstice.Errorf(solstice.KindNotFound, "environment %q not found", env)
	}))
	ok := map[string]accounts.Role{"*": accounts.RoleViewer}
	tests := []struct {
		name string
		in   accounts.NewUser
		want []string // pointers
	}{
		{"bad username", accounts.NewUser{Username: "token:x", Password: "long enough pw", Roles: ok}, []string{"/username"}},
		{"empty username", accounts.NewUser{Username: " ", Password: "long enough pw", Roles: ok}, []string{"/username"}},
		{"short password", accounts.NewUser{Username: "a", Password: "short", Roles: ok}, []string{"/password"}},
		{"no default role", accounts.NewUser{Username: "a", Password: "long enough pw", Roles: map[string]accounts.Role{"production": accounts.RoleAdmin}}, []string{"/roles/*"}},
		{"bad role", accounts.NewUser{Username: "a", Password: "long enough pw", Roles: map[string]accounts.Role{"*": "owner"}}, []string{"/roles/*"}},
		{"unknown environment", accounts.NewUser{Username: "a", Password: "long enough pw", Roles: map[string]accounts.Role{"*": accounts.RoleViewer, "qa": accounts.RoleEditor}}, []string{"/roles/qa"}},
		{"long display name", accounts.NewUser{Username: "a", DisplayName: strings.Repeat("x", 201), Password: "long enough pw", Roles: ok}, []string{"/display_name"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.CreateUser(t.Context(), tc.in)
			wantKind(t, err, solstice.KindInvalid)
			var got []string
			for _, f := range solstice.ErrorFields(err) {
				got = append(got, f.Pointer)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("field pointers (-want +got):\n%s", diff)
			}
		})
	}
	u, err := s.CreateUser(t.Context(), accounts.NewUser{Username: " Alice ", Password: "long enough pw", Roles: map[string]accounts.Role{"*": accounts.RoleViewer, "production": accounts.RoleApprover}})
	if err != nil {
		t.Fatal(err)
	}
	if u.Username != "alice" || u.Role("production") != accounts.RoleApprover || u.PasswordHash == "" {
		t.Errorf("created %+v: want username alice, approver in production, a hash", u)
	}
	_, err = s.CreateUser(t.Context(), accounts.NewUser{Username: "ALICE", Password: "long enough pw", Roles: ok})
	wantKind(t, err, solstice.KindConflict)
}

func TestLogin(t *testing.T) {
	s, clk := newService(t)
	ctx := t.Context()
	mustCreate(t, s, "alice", map[string]accounts.Role{"*": accounts.RoleEditor})
	mustCreate(t, s, "dave", map[string]accounts.Role{"*": accounts.RoleViewer})
	if _, err := s.SetDisabled(ctx, "dave", true); err != nil {
		t.Fatal(err)
	}

	l, err := s.Login(ctx, "Alice", "alice-password", "10.0.0.1", "test")
	if err != nil {
		t.Fatal(err)
	}
	u, sess, err := s.Authenticate(ctx, l.Token)
	if err != nil || u.Username != "alice" || sess.Address != "10.0.0.1" {
		t.Fatalf("Authenticate = %+v, %+v, %v", u, sess, err)
	}
	if !sess.ExpiresAt.Equal(clk.Now().Add(accounts.DefaultAbsoluteTimeout)) {
		t.Errorf("ExpiresAt = %v, want login + %v", sess.ExpiresAt, accounts.DefaultAbsoluteTimeout)
	}

	// Every failure reads the same.
	for name, tc := range map[string][2]string{
		"wrong password": {"alice", "wrong-password"},
		"unknown user":   {"mallory", "alice-password"},
		"disabled user":  {"dave", "dave-password"},
		"empty":          {"", ""},
	} {
		_, err := s.Login(ctx, tc[0], tc[1], "10.0.0."+name[:1], "test")
		if !solstice.IsKind(err, solstice.KindUnauthorized) || solstice.ErrorMessage(err) != "invalid username or password" {
			t.Errorf("%s: Login error = %v, want the generic unauthorized message", name, err)
		}
	}

	// Five failures for one username throttle it, even with the right
	// password, from any address, until the bucket refills.
	for i := range 4 {
		if _, err := s.Login(ctx, "alice", "guess", "10.1.0."+string(rune('1'+i)), "test"); !solstice.IsKind(err, solstice.KindUnauthorized) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	_, err = s.Login(ctx, "alice", "alice-password", "10.2.0.1", "test")
	wantKind(t, err, solstice.KindRateLimited)
	clk.advance(25 * time.Second)
	if _, err := s.Login(ctx, "alice", "alice-password", "10.2.0.1", "test"); err != nil {
		t.Errorf("after the refill: %v", err)
	}

	// Logout ends the session.
	if err := s.Logout(ctx, l.Token); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Authenticate(ctx, l.Token)
	wantKind(t, err, solstice.KindUnauthorized)
	for _, bad := range []string{"", "garbage", strings.Repeat("A", 43)} {
		_, _, err = s.Authenticate(ctx, bad)
		wantKind(t, err, solstice.KindUnauthorized)
	}
}

func TestThrottleByAddress(t *testing.T) {
	s, _ := newService(t)
	ctx := t.Context()
	mustCreate(t, s, "alice", map[string]accounts.Role{"*": accounts.RoleEditor})
	for i := range 20 { // a different username each time: only the address bucket drains
		if _, err := s.Login(ctx, "user"+string(rune('a'+i)), "guess", "10.9.9.9", "test"); !solstice.IsKind(err, solstice.KindUnauthorized) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	_, err := s.Login(ctx, "alice", "alice-password", "10.9.9.9", "test")
	wantKind(t, err, solstice.KindRateLimited)
	if _, err := s.Login(ctx, "alice", "alice-password", "10.9.9.10", "test"); err != nil {
		t.Errorf("from another address: %v", err)
	}
}

func TestSessionTimeouts(t *testing.T) {
	s, clk := newService(t, accounts.WithIdleTimeout(time.Hour), accounts.WithAbsoluteTimeout(5*time.Hour))
	ctx := t.Context()
	mustCreate(t, s, "alice", map[string]accounts.Role{"*": accounts.RoleEditor})

	idle, err := s.Login(ctx, "alice", "alice-password", "", "")
	if err != nil {
		t.Fatal(err)
	}
	active, err := s.Login(ctx, "alice", "alice-password", "", "")
	if err != nil {
		t.Fatal(err)
	}
	// Activity every 50 minutes keeps one session alive past the idle
	// timeout, up to the absolute one.
	for elapsed := 50 * time.Minute; elapsed < 5*time.Hour; elapsed += 50 * time.Minute {
		clk.advance(50 * time.Minute)
		if _, _, err := s.Authenticate(ctx, active.Token); err != nil {
			t.Fatalf("active session after %v: %v", elapsed, err)
		}
	}
	_, _, err = s.Authenticate(ctx, idle.Token)
	wantKind(t, err, solstice.KindUnauthorized)
	clk.advance(55 * time.Minute) // 5h05m after login, 55 minutes after the last activity
	_, _, err = s.Authenticate(ctx, active.Token)
	wantKind(t, err, solstice.KindUnauthorized)
}

func TestTickDeletesExpiredSessions(t *testing.T) {
	s, clk, db := newServiceDB(t, accounts.WithIdleTimeout(time.Hour))
	ctx := t.Context()
	mustCreate(t, s, "alice", map[string]accounts.Role{"*": accounts.RoleEditor})
	old, _ := s.Login(ctx, "alice", "alice-password", "", "")
	clk.advance(2 * time.Hour)
	fresh, _ := s.Login(ctx, "alice", "alice-password", "", "")
	if err := s.Tick(ctx, clk.Now()); err != nil {
		t.Fatal(err)
	}
	// Tick deleted the idle session from the store: a service with a
	// longer idle timeout does not find it either.
	lenient := accounts.NewService(db, accounts.WithClock(clk), accounts.WithIdleTimeout(24*time.Hour))
	if _, _, err := lenient.Authenticate(ctx, fresh.Token); err != nil {
		t.Errorf("fresh session: %v", err)
	}
	_, _, err := lenient.Authenticate(ctx, old.Token)
	wantKind(t, err, solstice.KindUnauthorized)
}

func TestCSRFToken(t *testing.T) {
	a, b := accounts.CSRFToken("session-a"), accounts.CSRFToken("session-b")
	if a == b || a != accounts.CSRFToken("session-a") || len(a) < 40 {
		t.Errorf("CSRF tokens %q, %q: want stable, distinct per session, 256 bits", a, b)
	}
	tests := []struct {
		session, given string
		want           bool
	}{
		{"session-a", a, true},
		{"session-a", b, false},
		{"session-a", "", false},
		{"", accounts.CSRFToken(""), false},
		{"session-a", a[:len(a)-1], false},
	}
	for _, tc := range tests {
		if got := accounts.ValidCSRF(tc.session, tc.given); got != tc.want {
			t.Errorf("ValidCSRF(%q, %q) = %t, want %t", tc.session, tc.given, got, tc.want)
		}
	}
}

func TestEnsureAdmin(t *testing.T) {
	s, _ := newService(t)
	ctx := t.Context()
	name, pw, err := s.EnsureAdmin(ctx)
	if err != nil || name != "admin" || len(pw) != 20 {
		t.Fatalf("EnsureAdmin = %q, %q, %v; want admin and a 20-character password", name, pw, err)
	}
	l, err := s.Login(ctx, name, pw, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if !l.User.MustChangePassword || !l.User.Can("production", accounts.RoleAdmin) {
		t.Errorf("first admin %+v: want a one-time password and the admin role everywhere", l.User)
	}
	name, pw, err = s.EnsureAdmin(ctx)
	if err != nil || name != "" || pw != "" {
		t.Errorf("second EnsureAdmin = %q, %q, %v; want nothing", name, pw, err)
	}
}

func TestChangePassword(t *testing.T) {
	s, _ := newService(t)
	ctx := t.Context()
	if _, err := s.CreateUser(ctx, accounts.NewUser{Username: "alice", Password: "one-time-pw", Roles: map[string]accounts.Role{"*": accounts.RoleEditor}, MustChangePassword: true}); err != nil {
		t.Fatal(err)
	}
	other, _ := s.Login(ctx, "alice", "one-time-pw", "", "")

	_, err := s.ChangePassword(ctx, "alice", "wrong", "new password!", "", "")
	wantKind(t, err, solstice.KindInvalid)
	_, err = s.ChangePassword(ctx, "alice", "one-time-pw", "short", "", "")
	wantKind(t, err, solstice.KindInvalid)
	_, err = s.ChangePassword(ctx, "alice", "one-time-pw", "one-time-pw", "", "")
	wantKind(t, err, solstice.KindInvalid)

	l, err := s.ChangePassword(ctx, "alice", "one-time-pw", "new password!", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if l.User.MustChangePassword {
		t.Error("MustChangePassword still set after a change")
	}
	if _, _, err := s.Authenticate(ctx, l.Token); err != nil {
		t.Errorf("the new session: %v", err)
	}
	_, _, err = s.Authenticate(ctx, other.Token)
	wantKind(t, err, solstice.KindUnauthorized)
	if _, err := s.Login(ctx, "alice", "new password!", "", ""); err != nil {
		t.Errorf("login with the new password: %v", err)
	}

	// An administrator's reset ends sessions too.
	if err := s.SetPassword(ctx, "alice", "reset password", true); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Authenticate(ctx, l.Token)
	wantKind(t, err, solstice.KindUnauthorized)
	wantKind(t, s.SetPassword(ctx, "nobody", "reset password", true), solstice.KindNotFound)
}

func TestLastAdministrator(t *testing.T) {
	s, _ := newService(t)
	ctx := t.Context()
	mustCreate(t, s, "root", map[string]accounts.Role{"*": accounts.RoleAdmin})
	mustCreate(t, s, "alice", map[string]accounts.Role{"*": accounts.RoleEditor})

	_, err := s.SetRoles(ctx, "root", map[string]accounts.Role{"*": accounts.RoleEditor})
	wantKind(t, err, solstice.KindConflict)
	_, err = s.SetDisabled(ctx, "root", true)
	wantKind(t, err, solstice.KindConflict)

	if _, err := s.SetRoles(ctx, "alice", map[string]accounts.Role{"*": accounts.RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetRoles(ctx, "root", map[string]accounts.Role{"*": accounts.RoleViewer}); err != nil {
		t.Errorf("demoting one of two admins: %v", err)
	}
	_, err = s.SetRoles(ctx, "alice", map[string]accounts.Role{"*": "owner"})
	wantKind(t, err, solstice.KindInvalid)
	_, err = s.SetRoles(ctx, "nobody", map[string]accounts.Role{"*": accounts.RoleViewer})
	wantKind(t, err, solstice.KindNotFound)
}
