// Package auth issues and checks the credentials of Solstice: admin API tokens
// with a role, and environment-scoped, read-only server keys that game
// servers use to fetch snapshots and report telemetry. Secrets are random,
// prefixed so that scanners recognise them, shown once and stored only as a
// SHA-256 digest (they carry 160+ bits of entropy, so a slow hash adds
// nothing).
package auth

import (
	"context"
	"time"

	"github.com/solsticehq/solstice"
)

// Role is what an admin token may do.
type Role string

// Roles, each including the ones before it.
const (
	RoleViewer Role = "viewer" // read everything
	RoleEditor Role = "editor" // change flags, segments, revert
	RoleAdmin  Role = "admin"  // manage tokens, keys, environments
)

// TokenKind separates admin API tokens from game-server keys.
type TokenKind string

// Token kinds.
const (
	KindAdmin  TokenKind = "admin"
	KindServer TokenKind = "server"
)

// Token is the stored record of a credential; the secret itself is never
// stored.
type Token struct {
	ID          string     `json:"id"`   // public identifier, part of the secret ("tok_..." / "srv_...")
	Name        string     `json:"name"` // what it is for
	Kind        TokenKind  `json:"kind"`
	Role        Role       `json:"role,omitempty"`        // admin tokens
	Environment string     `json:"environment,omitempty"` // server keys: the one environment they may read
	Hash        []byte     `json:"-"`                     // SHA-256 of the whole secret
	CreatedBy   string     `json:"created_by"`
	CreatedAt   time.Time  `json:"created_at"`
	LastUsedAt  *time.Time `json:"last_used_at,omitempty"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
}

// Store persists tokens. It is implemented by package store. Errors are
// *solstice.Error values (KindNotFound, KindConflict).
type Store interface {
	CreateToken(ctx context.Context, t Token, audit solstice.AuditEntry) error
	// TokenByHash returns the token whose Hash equals hash, revoked or not.
	TokenByHash(ctx context.Context, hash []byte) (Token, error)
	GetToken(ctx context.Context, id string) (Token, error)
	ListTokens(ctx context.Context) ([]Token, error) // newest first
	RevokeToken(ctx context.Context, id string, at time.Time, audit solstice.AuditEntry) error
	// TouchToken records a use; it is best effort and may be coalesced.
	TouchToken(ctx context.Context, id string, at time.Time) error
}
