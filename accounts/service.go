package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/solsticehq/solstice"
)

// Default session lifetimes.
const (
	DefaultIdleTimeout     = 12 * time.Hour
	DefaultAbsoluteTimeout = 7 * 24 * time.Hour
	// touchInterval coalesces activity updates: a busy session costs one
	// write a minute, and idle time is measured to the minute.
	touchInterval = time.Minute
	// sweepInterval is how often Run deletes expired sessions.
	sweepInterval = 10 * time.Minute
)

// Service manages users and their sessions. It is safe for concurrent use.
type Service struct {
	store    Store
	clock    solstice.Clock
	log      *slog.Logger
	params   HashParams
	idle     time.Duration
	absolute time.Duration
	envCheck func(ctx context.Context, env string) error
	throttle *throttle

	dummyOnce sync.Once
	dummy     string // a hash verified for unknown users, so that they take as long as known ones
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock of session timeouts and timestamps.
func WithClock(c solstice.Clock) Option { return func(s *Service) { s.clock = c } }

// WithLogger sets the logger of failed logins and of Run.
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithHashParams sets the argon2id cost of new password hashes (tests use a
// cheap one).
func WithHashParams(p HashParams) Option { return func(s *Service) { s.params = p } }

// WithIdleTimeout ends sessions unused for d (default DefaultIdleTimeout).
func WithIdleTimeout(d time.Duration) Option { return func(s *Service) { s.idle = d } }

// WithAbsoluteTimeout ends sessions d after login, however active
// (default DefaultAbsoluteTimeout).
func WithAbsoluteTimeout(d time.Duration) Option { return func(s *Service) { s.absolute = d } }

// WithEnvironmentCheck makes role changes check each environment they name
// with f, which returns an error (KindNotFound) for an unknown one.
func WithEnvironmentCheck(f func(ctx context.Context, env string) error) Option {
	return func(s *Service) { s.envCheck = f }
}

// NewService returns a Service over store.
func NewService(store Store, opts ...Option) *Service {
	s := &Service{store: store, clock: solstice.WallClock, log: slog.Default(), params: DefaultHashParams,
		idle: DefaultIdleTimeout, absolute: DefaultAbsoluteTimeout}
	for _, o := range opts {
		o(s)
	}
	s.throttle = newThrottle()
	return s
}

// IdleTimeout returns how long an unused session lives.
func (s *Service) IdleTimeout() time.Duration { return s.idle }

// AbsoluteTimeout returns how long any session lives.
func (s *Service) AbsoluteTimeout() time.Duration { return s.absolute }

// ---- users ----

// NewUser is the input of CreateUser.
type NewUser struct {
	Username    string          `json:"username"`
	DisplayName string          `json:"display_name,omitempty"`
	Password    string          `json:"password"`
	Roles       map[string]Role `json:"roles"` // must hold AllEnvironments
	// MustChangePassword makes Password a one-time password.
	MustChangePassword bool `json:"must_change_password,omitempty"`
}

// MaxDisplayNameLength bounds a display name, in bytes.
const MaxDisplayNameLength = 200

// NormalizeUsername returns the stored form of a username: trimmed and
// lower-case (usernames are not case-sensitive).
func NormalizeUsername(name string) string { return strings.ToLower(strings.TrimSpace(name)) }

// validUsername reports whether name is 1 to 64 of a-z, 0-9, '.', '_', '-',
// starting with a letter or digit: it can never look like the actor name of
// a token ("token:...") or of the CLI ("cli:...").
func validUsername(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// checkRoles validates a role map, and the environments it names when the
// service has an environment check.
func (s *Service) checkRoles(ctx context.Context, roles map[string]Role) []solstice.FieldError {
	var fields []solstice.FieldError
	if _, ok := roles[AllEnvironments]; !ok {
		fields = append(fields, solstice.FieldError{Pointer: "/roles/*", Message: "a default role (for every environment) is required"})
	}
	for _, env := range sortedKeys(roles) {
		ptr := "/roles/" + env
		if !roles[env].Valid() {
			fields = append(fields, solstice.FieldError{Pointer: ptr, Message: fmt.Sprintf("must be viewer, editor, approver or admin; got %q", roles[env])})
		}
		if env == AllEnvironments || s.envCheck == nil {
			continue
		}
		if err := s.envCheck(ctx, env); err != nil {
			if solstice.IsKind(err, solstice.KindNotFound) {
				fields = append(fields, solstice.FieldError{Pointer: ptr, Message: fmt.Sprintf("environment %q does not exist", env)})
				continue
			}
			return append(fields, solstice.FieldError{Pointer: ptr, Message: "could not check the environment"})
		}
	}
	return fields
}

func sortedKeys(m map[string]Role) []string {
	keys := make([]string, 0, len(m))
	for k := range maps.Keys(m) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (s *Service) audit(ctx context.Context, action, username string, details string) solstice.AuditEntry {
	e := solstice.AuditEntry{Time: s.clock.Now().UTC(), Actor: solstice.ActorFrom(ctx), Action: action, Resource: "user/" + username}
	if details != "" {
		e.Details = []byte(details)
	}
	return e
}

// CreateUser creates a user. It returns KindInvalid (with field errors) for
// a bad username, password, display name or role map, and KindConflict when
// the username is taken.
func (s *Service) CreateUser(ctx context.Context, in NewUser) (User, error) {
	name := NormalizeUsername(in.Username)
	var fields []solstice.FieldError
	if !validUsername(name) {
		fields = append(fields, solstice.FieldError{Pointer: "/username", Message: "must be 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"})
	}
	if len(in.DisplayName) > MaxDisplayNameLength {
		fields = append(fields, solstice.FieldError{Pointer: "/display_name", Message: fmt.Sprintf("must be at most %d bytes", MaxDisplayNameLength)})
	}
	fields = append(fields, solstice.ErrorFields(CheckPassword(in.Password))...)
	fields = append(fields, s.checkRoles(ctx, in.Roles)...)
	if len(fields) > 0 {
		return User{}, solstice.Invalid("invalid user", fields...)
	}
	hash, err := HashPassword(in.Password, s.params)
	if err != nil {
		return User{}, err
	}
	now := s.clock.Now().UTC()
	u := User{
		Username: name, DisplayName: strings.TrimSpace(in.DisplayName), Roles: maps.Clone(in.Roles), PasswordHash: hash,
		MustChangePassword: in.MustChangePassword, CreatedAt: now, UpdatedAt: now,
	}
	if err := s.store.CreateUser(ctx, u, s.audit(ctx, "user.create", name, rolesJSON(u.Roles))); err != nil {
		return User{}, err
	}
	return s.store.GetUser(ctx, name)
}

func rolesJSON(roles map[string]Role) string {
	var b strings.Builder
	b.WriteString(`{"roles":{`)
	for i, env := range sortedKeys(roles) {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%q", env, roles[env])
	}
	b.WriteString("}}")
	return b.String()
}

// GetUser returns the user username, or KindNotFound.
func (s *Service) GetUser(ctx context.Context, username string) (User, error) {
	return s.store.GetUser(ctx, NormalizeUsername(username))
}

// ListUsers returns every user, sorted by username.
func (s *Service) ListUsers(ctx context.Context) ([]User, error) { return s.store.ListUsers(ctx) }

// isActiveAdmin reports whether u can manage users.
func isActiveAdmin(u User) bool { return u.Can(AllEnvironments, RoleAdmin) }

// keepAnAdmin returns KindConflict when changing before into after would
// leave no active administrator.
func (s *Service) keepAnAdmin(ctx context.Context, before, after User) error {
	if !isActiveAdmin(before) || isActiveAdmin(after) {
		return nil
	}
	users, err := s.store.ListUsers(ctx)
	if err != nil {
		return err
	}
	for _, u := range users {
		if u.Username != before.Username && isActiveAdmin(u) {
			return nil
		}
	}
	return solstice.Errorf(solstice.KindConflict, "%s is the last active administrator: make someone else an admin first", before.Username)
}

// SetRoles replaces a user's roles. It returns KindNotFound, KindInvalid for
// a bad role map, or KindConflict when it would leave no active
// administrator.
func (s *Service) SetRoles(ctx context.Context, username string, roles map[string]Role) (User, error) {
	u, err := s.GetUser(ctx, username)
	if err != nil {
		return User{}, err
	}
	if fields := s.checkRoles(ctx, roles); len(fields) > 0 {
		return User{}, solstice.Invalid("invalid roles", fields...)
	}
	after := u
	after.Roles = maps.Clone(roles)
	after.UpdatedAt = s.clock.Now().UTC()
	if err := s.keepAnAdmin(ctx, u, after); err != nil {
		return User{}, err
	}
	if err := s.store.UpdateUser(ctx, after, false, s.audit(ctx, "user.roles", u.Username, rolesJSON(roles))); err != nil {
		return User{}, err
	}
	return s.store.GetUser(ctx, u.Username)
}

// SetDisplayName changes a user's display name. It returns KindNotFound or
// KindInvalid.
func (s *Service) SetDisplayName(ctx context.Context, username, display string) (User, error) {
	u, err := s.GetUser(ctx, username)
	if err != nil {
		return User{}, err
	}
	if len(display) > MaxDisplayNameLength {
		return User{}, solstice.Invalid("invalid user", solstice.FieldError{Pointer: "/display_name", Message: fmt.Sprintf("must be at most %d bytes", MaxDisplayNameLength)})
	}
	u.DisplayName, u.UpdatedAt = strings.TrimSpace(display), s.clock.Now().UTC()
	if err := s.store.UpdateUser(ctx, u, false, s.audit(ctx, "user.update", u.Username, "")); err != nil {
		return User{}, err
	}
	return s.store.GetUser(ctx, u.Username)
}

// SetDisabled disables (ending every session) or re-enables a user. It
// returns KindNotFound, or KindConflict when disabling the last active
// administrator.
func (s *Service) SetDisabled(ctx context.Context, username string, disabled bool) (User, error) {
	u, err := s.GetUser(ctx, username)
	if err != nil {
		return User{}, err
	}
	after := u
	after.Disabled, after.UpdatedAt = disabled, s.clock.Now().UTC()
	if err := s.keepAnAdmin(ctx, u, after); err != nil {
		return User{}, err
	}
	action := "user.enable"
	if disabled {
		action = "user.disable"
	}
	if err := s.store.UpdateUser(ctx, after, disabled, s.audit(ctx, action, u.Username, "")); err != nil {
		return User{}, err
	}
	return s.store.GetUser(ctx, u.Username)
}

// SetPassword sets a user's password (an administrator's reset; with
// mustChange it is a one-time password) and ends every session of the user.
// It returns KindNotFound or KindInvalid.
func (s *Service) SetPassword(ctx context.Context, username, password string, mustChange bool) error {
	u, err := s.GetUser(ctx, username)
	if err != nil {
		return err
	}
	if err := CheckPassword(password); err != nil {
		return err
	}
	hash, err := HashPassword(password, s.params)
	if err != nil {
		return err
	}
	u.PasswordHash, u.MustChangePassword, u.UpdatedAt = hash, mustChange, s.clock.Now().UTC()
	return s.store.UpdateUser(ctx, u, true, s.audit(ctx, "user.password", u.Username, fmt.Sprintf(`{"one_time":%t}`, mustChange)))
}

// EnsureAdmin creates the first administrator, "admin" with a random
// one-time password, when there are no users at all, and returns its
// username and password; otherwise it returns two empty strings. Two
// processes starting together create one administrator: the loser returns
// empty strings.
func (s *Service) EnsureAdmin(ctx context.Context) (username, password string, err error) {
	n, err := s.store.CountUsers(ctx)
	if err != nil || n > 0 {
		return "", "", err
	}
	pw, err := GeneratePassword()
	if err != nil {
		return "", "", err
	}
	_, err = s.CreateUser(ctx, NewUser{
		Username: "admin", DisplayName: "Administrator", Password: pw,
		Roles: map[string]Role{AllEnvironments: RoleAdmin}, MustChangePassword: true,
	})
	if solstice.IsKind(err, solstice.KindConflict) {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	return "admin", pw, nil
}

// ---- sessions ----

// Login is a started session: the user, the session, and the token the
// browser keeps (never stored).
type Login struct {
	User    User
	Session Session
	Token   string
}

// errBadLogin is the one answer to every wrong username or password, so
// that the answer does not tell which was wrong.
func errBadLogin() error {
	return solstice.Errorf(solstice.KindUnauthorized, "invalid username or password")
}

// Login checks a username and password and starts a session. Every failure
// returns the same KindUnauthorized error ("invalid username or password"),
// after the same work (an unknown user is hashed against a dummy). Repeated
// failures for one username or from one address are throttled:
// KindRateLimited until the limiter refills.
func (s *Service) Login(ctx context.Context, username, password, address, userAgent string) (Login, error) {
	name := NormalizeUsername(username)
	now := s.clock.Now()
	keys := []string{"user:" + name, "addr:" + address}
	if !s.throttle.allowed(keys, now) {
		s.log.WarnContext(ctx, "login throttled", "username", name, "address", address)
		return Login{}, solstice.Errorf(solstice.KindRateLimited, "too many failed logins: wait a minute and try again")
	}
	u, err := s.store.GetUser(ctx, name)
	if err != nil && !solstice.IsKind(err, solstice.KindNotFound) {
		return Login{}, err
	}
	hash := u.PasswordHash
	if err != nil || u.Disabled {
		hash = s.dummyHash()
	}
	ok, verr := VerifyPassword(hash, password)
	if verr != nil {
		s.log.ErrorContext(ctx, "unreadable password hash", "username", name, "err", verr)
	}
	if err != nil || u.Disabled || !ok || verr != nil {
		s.throttle.failed(keys, now)
		s.log.InfoContext(ctx, "failed login", "username", name, "address", address)
		return Login{}, errBadLogin()
	}
	return s.startSession(ctx, u, address, userAgent)
}

func (s *Service) dummyHash() string {
	s.dummyOnce.Do(func() {
		h, err := HashPassword("not the password of anyone", s.params)
		if err == nil {
			s.dummy = h
		}
	})
	return s.dummy
}

// sessionTokenBytes is the entropy of a session token.
const sessionTokenBytes = 32

var tokenEncoding = base64.RawURLEncoding

func (s *Service) startSession(ctx context.Context, u User, address, userAgent string) (Login, error) {
	raw := make([]byte, sessionTokenBytes)
	if _, err := rand.Read(raw); err != nil {
		return Login{}, fmt.Errorf("start session: %w", err)
	}
	token := tokenEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(token))
	now := s.clock.Now().UTC()
	if len(userAgent) > 256 {
		userAgent = userAgent[:256]
	}
	sess := Session{Hash: sum[:], Username: u.Username, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(s.absolute),
		Address: address, UserAgent: userAgent}
	if err := s.store.RecordLogin(ctx, sess); err != nil {
		return Login{}, err
	}
	u.LastLoginAt = &now
	return Login{User: u, Session: sess, Token: token}, nil
}

// Authenticate returns the user and session of a session token. It returns
// KindUnauthorized for a malformed, unknown, idle, expired or ended session
// and for a disabled user.
func (s *Service) Authenticate(ctx context.Context, token string) (User, Session, error) {
	raw, err := tokenEncoding.DecodeString(token)
	if err != nil || len(raw) != sessionTokenBytes {
		return User{}, Session{}, solstice.Errorf(solstice.KindUnauthorized, "not a session")
	}
	sum := sha256.Sum256([]byte(token))
	sess, err := s.store.SessionByHash(ctx, sum[:])
	if solstice.IsKind(err, solstice.KindNotFound) {
		return User{}, Session{}, solstice.Errorf(solstice.KindUnauthorized, "your session has ended: log in again")
	}
	if err != nil {
		return User{}, Session{}, err
	}
	now := s.clock.Now().UTC()
	if !now.Before(sess.ExpiresAt) || now.Sub(sess.LastSeenAt) >= s.idle {
		_ = s.store.DeleteSession(ctx, sum[:]) // best effort: the sweep deletes it anyway
		return User{}, Session{}, solstice.Errorf(solstice.KindUnauthorized, "your session has expired: log in again")
	}
	u, err := s.store.GetUser(ctx, sess.Username)
	if solstice.IsKind(err, solstice.KindNotFound) || err == nil && u.Disabled {
		return User{}, Session{}, solstice.Errorf(solstice.KindUnauthorized, "your account is disabled")
	}
	if err != nil {
		return User{}, Session{}, err
	}
	if now.Sub(sess.LastSeenAt) >= touchInterval {
		if err := s.store.TouchSession(ctx, sum[:], now); err == nil {
			sess.LastSeenAt = now
		}
	}
	return u, sess, nil
}

// Logout ends the session of token. Ending an unknown session is not an
// error; a database failure is.
func (s *Service) Logout(ctx context.Context, token string) error {
	sum := sha256.Sum256([]byte(token))
	return s.store.DeleteSession(ctx, sum[:])
}

// ChangePassword changes the password of username after checking its
// current one, ends every session of the user, and starts a new one for the
// caller. It returns KindUnauthorized for a wrong current password (which
// the login throttle counts), KindInvalid for an unacceptable new one
// (including one equal to the current).
func (s *Service) ChangePassword(ctx context.Context, username, current, next, address, userAgent string) (Login, error) {
	u, err := s.GetUser(ctx, username)
	if err != nil {
		return Login{}, err
	}
	now := s.clock.Now()
	keys := []string{"user:" + u.Username, "addr:" + address}
	if !s.throttle.allowed(keys, now) {
		return Login{}, solstice.Errorf(solstice.KindRateLimited, "too many failed attempts: wait a minute and try again")
	}
	ok, err := VerifyPassword(u.PasswordHash, current)
	if err != nil {
		return Login{}, err
	}
	if !ok {
		s.throttle.failed(keys, now)
		return Login{}, solstice.Invalid("wrong password", solstice.FieldError{Pointer: "/current", Message: "is not your current password"})
	}
	if err := CheckPassword(next); err != nil {
		return Login{}, err
	}
	if next == current {
		return Login{}, solstice.Invalid("invalid password", solstice.FieldError{Pointer: "/password", Message: "must differ from the current password"})
	}
	hash, err := HashPassword(next, s.params)
	if err != nil {
		return Login{}, err
	}
	u.PasswordHash, u.MustChangePassword, u.UpdatedAt = hash, false, now.UTC()
	if err := s.store.UpdateUser(ctx, u, true, s.audit(ctx, "user.password", u.Username, `{"one_time":false}`)); err != nil {
		return Login{}, err
	}
	return s.startSession(ctx, u, address, userAgent)
}

// csrfLabel separates CSRF tokens from any other use of the session token.
const csrfLabel = "solstice csrf v1"

// CSRFToken returns the anti-forgery token of a session: an HMAC of a fixed
// label keyed by the session token. A page embeds it in every form and
// request header; a forged request from another site cannot know it, and
// it needs no storage.
func CSRFToken(sessionToken string) string {
	m := hmac.New(sha256.New, []byte(sessionToken))
	m.Write([]byte(csrfLabel))
	return tokenEncoding.EncodeToString(m.Sum(nil))
}

// ValidCSRF reports, in constant time, whether given is the CSRF token of
// sessionToken.
func ValidCSRF(sessionToken, given string) bool {
	if sessionToken == "" || given == "" {
		return false
	}
	return hmac.Equal([]byte(CSRFToken(sessionToken)), []byte(given))
}

// Tick deletes the sessions that expired by now.
func (s *Service) Tick(ctx context.Context, now time.Time) error {
	n, err := s.store.DeleteExpiredSessions(ctx, now.Add(-s.idle), now)
	if err != nil {
		return fmt.Errorf("delete expired sessions: %w", err)
	}
	if n > 0 {
		s.log.DebugContext(ctx, "deleted expired sessions", "sessions", n)
	}
	return nil
}

// Run calls Tick every ten minutes until ctx ends; a failed Tick is logged
// and retried at the next one. It returns nil when ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		if err := s.Tick(ctx, s.clock.Now()); err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "session sweep failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
