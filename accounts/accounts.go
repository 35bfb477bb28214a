// Package accounts holds the people who use the web UI: users with
// per-environment roles, argon2id password hashes, login sessions with idle
// and absolute timeouts, and the CSRF tokens derived from them.
//
// The admin API and game servers authenticate with tokens (package auth);
// accounts is only for people in a browser. Persistence is behind the Store
// interface declared here and implemented by package store.
package accounts

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/solsticehq/solstice"
)

// Role is what a user may do in an environment. Each role includes the ones
// before it: viewer < editor < approver < admin.
type Role string

// Roles.
const (
	RoleViewer   Role = "viewer"   // read everything
	RoleEditor   Role = "editor"   // change flag configurations, propose changes to protected environments, revert
	RoleApprover Role = "approver" // also approve or reject other people's change requests
	RoleAdmin    Role = "admin"    // also manage users, keys and environments
)

// Roles lists the roles from least to most powerful.
var Roles = []Role{RoleViewer, RoleEditor, RoleApprover, RoleAdmin}

// AllEnvironments is the environment name of a user's default role: the role
// in every environment that has no role of its own for that user.
const AllEnvironments = "*"

func (r Role) rank() int { return slices.Index(Roles, r) + 1 }

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool { return r.rank() > 0 }

// Allows reports whether r includes the permissions of need. An invalid role
// allows nothing.
func (r Role) Allows(need Role) bool { return r.Valid() && r.rank() >= need.rank() }

// User is a person who logs in to the web UI.
type User struct {
	Username    string `json:"username"`
	DisplayName string `json:"display_name,omitempty"`
	// Roles maps environment names to the user's role there;
	// AllEnvironments holds the role everywhere else and is always set.
	Roles map[string]Role `json:"roles"`
	// PasswordHash is the argon2id hash in PHC string format; never shown.
	PasswordHash string `json:"-"`
	// MustChangePassword is set for one-time passwords: the user must choose
	// a new password before doing anything else.
	MustChangePassword bool       `json:"must_change_password"`
	Disabled           bool       `json:"disabled"`
	CreatedAt          time.Time  `json:"created_at"`
	UpdatedAt          time.Time  `json:"updated_at"`
	LastLoginAt        *time.Time `json:"last_login_at,omitempty"`
}

// Role returns u's role in env: its own role there, or the default one.
func (u User) Role(env string) Role {
	if r, ok := u.Roles[env]; ok {
		return r
	}
	return u.Roles[AllEnvironments]
}

// Can reports whether u is active and has at least role need in env. Use
// AllEnvironments for actions that are not about one environment (flag
// definitions, users, keys).
func (u User) Can(env string, need Role) bool { return !u.Disabled && u.Role(env).Allows(need) }

// Name returns the display name, or the username when there is none.
func (u User) Name() string {
	if u.DisplayName != "" {
		return u.DisplayName
	}
	return u.Username
}

// Actor returns u as the actor of the changes it makes: revisions and audit
// entries name the username.
func (u User) Actor(address string) solstice.Actor {
	return solstice.Actor{Name: u.Username, Kind: "user", Address: address}
}

// EnvironmentRoles returns the environment names of u's own roles, sorted,
// without AllEnvironments.
func (u User) EnvironmentRoles() []string {
	var envs []string
	for env := range maps.Keys(u.Roles) {
		if env != AllEnvironments {
			envs = append(envs, env)
		}
	}
	slices.Sort(envs)
	return envs
}

// Session is a login. The token the browser holds is never stored: Hash is
// its SHA-256.
type Session struct {
	Hash       []byte    `json:"-"`
	Username   string    `json:"username"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	// ExpiresAt is the absolute end of the session, whatever its activity.
	ExpiresAt time.Time `json:"expires_at"`
	Address   string    `json:"address,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
}

// Store persists users and sessions. It is implemented by package store.
// Errors are *solstice.Error values: KindNotFound for a missing user or
// session, KindConflict for an existing username.
type Store interface {
	// CreateUser stores u and records audit in the same transaction.
	CreateUser(ctx context.Context, u User, audit solstice.AuditEntry) error
	// UpdateUser replaces everything about u.Username but CreatedAt and
	// LastLoginAt, and records audit in the same transaction. With
	// endSessions, every session of the user is deleted too.
	UpdateUser(ctx context.Context, u User, endSessions bool, audit solstice.AuditEntry) error
	GetUser(ctx context.Context, username string) (User, error)
	ListUsers(ctx context.Context) ([]User, error) // sorted by username
	CountUsers(ctx context.Context) (int, error)
	// RecordLogin stores a new session and the user's last login time.
	RecordLogin(ctx context.Context, s Session) error
	// SessionByHash returns the session whose Hash is hash.
	SessionByHash(ctx context.Context, hash []byte) (Session, error)
	// TouchSession sets the last activity of a session; best effort.
	TouchSession(ctx context.Context, hash []byte, at time.Time) error
	// DeleteSession ends one session; an unknown one is not an error.
	DeleteSession(ctx context.Context, hash []byte) error
	// DeleteExpiredSessions deletes sessions idle since before idleBefore or
	// whose absolute expiry is at or before now, and returns how many.
	DeleteExpiredSessions(ctx context.Context, idleBefore, now time.Time) (int, error)
}
