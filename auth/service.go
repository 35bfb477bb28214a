package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/solsticehq/solstice"
)

// Secret prefixes, so that leaked credentials are recognisable by scanners
// and by people.
const (
	AdminPrefix  = "sol_admin_"
	ServerPrefix = "sol_server_"
)

var secretEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// CacheTTL is how long Authenticate trusts a credential it looked up
// without asking the store again. A revocation takes effect at once in the
// process that made it, and within CacheTTL in other processes sharing the
// database.
const CacheTTL = 10 * time.Second

// Service issues, checks and revokes credentials.
type Service struct {
	store Store
	clock solstice.Clock

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cachedToken
}

type cachedToken struct {
	token Token
	until time.Time
}

// maxCached bounds the cache; past it, the cache starts over.
const maxCached = 10_000

// NewService returns a Service over store.
func NewService(store Store, clock solstice.Clock) *Service {
	if clock == nil {
		clock = solstice.WallClock
	}
	return &Service{store: store, clock: clock, cache: map[[sha256.Size]byte]cachedToken{}}
}

// NewToken is the input of Create.
type NewToken struct {
	Name        string    `json:"name"`
	Kind        TokenKind `json:"kind"`
	Role        Role      `json:"role,omitempty"`        // admin tokens; default viewer
	Environment string    `json:"environment,omitempty"` // server keys: required
}

// Created is a new credential: the stored record and the secret, which is
// shown once and never again.
type Created struct {
	Token  Token  `json:"token"`
	Secret string `json:"secret"`
}

// Create issues a new credential. The caller checks that a server key's
// environment exists. It returns KindInvalid for a bad name, kind, role or
// missing environment.
func (s *Service) Create(ctx context.Context, in NewToken) (Created, error) {
	var fields []solstice.FieldError
	in.Name = strings.TrimSpace(in.Name)
	if in.Name == "" || len(in.Name) > 100 {
		fields = append(fields, solstice.FieldError{Pointer: "/name", Message: "required, at most 100 characters"})
	}
	prefix, idPrefix := "", ""
	switch in.Kind {
	case KindAdmin, "":
		in.Kind, prefix, idPrefix = KindAdmin, AdminPrefix, "tok_"
		if in.Role == "" {
			in.Role = RoleViewer
		}
		if !in.Role.valid() {
			fields = append(fields, solstice.FieldError{Pointer: "/role", Message: "must be viewer, editor or admin"})
		}
		if in.Environment != "" {
			fields = append(fields, solstice.FieldError{Pointer: "/environment", Message: "only server keys are scoped to an environment"})
		}
	case KindServer:
		prefix, idPrefix = ServerPrefix, "srv_"
		if in.Environment == "" {
			fields = append(fields, solstice.FieldError{Pointer: "/environment", Message: "a server key needs an environment"})
		}
		if in.Role != "" {
			fields = append(fields, solstice.FieldError{Pointer: "/role", Message: "server keys are read-only and take no role"})
		}
	default:
		fields = append(fields, solstice.FieldError{Pointer: "/kind", Message: "must be admin or server"})
	}
	if len(fields) > 0 {
		return Created{}, solstice.Invalid("invalid token", fields...)
	}
	var raw [25]byte // 200 bits
	if _, err := rand.Read(raw[:]); err != nil {
		return Created{}, fmt.Errorf("create token: %w", err)
	}
	secret := prefix + strings.ToLower(secretEncoding.EncodeToString(raw[:]))
	sum := sha256.Sum256([]byte(secret))
	t := Token{
		ID:          idPrefix + hex.EncodeToString(sum[:6]),
		Name:        in.Name,
		Kind:        in.Kind,
		Role:        in.Role,
		Environment: in.Environment,
		Hash:        sum[:],
		CreatedBy:   solstice.ActorFrom(ctx).Name,
		CreatedAt:   s.clock.Now().UTC(),
	}
	audit := solstice.AuditEntry{
		Time: t.CreatedAt, Actor: solstice.ActorFrom(ctx), Action: "token.create",
		Environment: t.Environment, Resource: "token/" + t.ID,
	}
	if err := s.store.CreateToken(ctx, t, audit); err != nil {
		return Created{}, err
	}
	return Created{Token: t, Secret: secret}, nil
}

func (r Role) valid() bool { return r == RoleViewer || r == RoleEditor || r == RoleAdmin }

func (r Role) rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleEditor:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Allows reports whether role r includes the permissions of need.
func (r Role) Allows(need Role) bool { return r.rank() >= need.rank() && r.rank() > 0 }

// Authenticate returns the live token whose secret is secret. It returns
// KindUnauthorized for an unknown, malformed or revoked secret.
func (s *Service) Authenticate(ctx context.Context, secret string) (Token, error) {
	if !strings.HasPrefix(secret, AdminPrefix) && !strings.HasPrefix(secret, ServerPrefix) {
		return Token{}, solstice.Errorf(solstice.KindUnauthorized, "not a Solstice token")
	}
	sum := sha256.Sum256([]byte(secret))
	now := s.clock.Now().UTC()
	s.mu.Lock()
	c, ok := s.cache[sum]
	s.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.token, nil
	}
	t, err := s.store.TokenByHash(ctx, sum[:])
	if solstice.IsKind(err, solstice.KindNotFound) {
		return Token{}, solstice.Errorf(solstice.KindUnauthorized, "unknown token")
	}
	if err != nil {
		return Token{}, err
	}
	if subtle.ConstantTimeCompare(t.Hash, sum[:]) != 1 {
		return Token{}, solstice.Errorf(solstice.KindUnauthorized, "unknown token")
	}
	if t.RevokedAt != nil {
		return Token{}, solstice.Errorf(solstice.KindUnauthorized, "token %s was revoked", t.ID)
	}
	if t.LastUsedAt == nil || now.Sub(*t.LastUsedAt) > time.Minute {
		_ = s.store.TouchToken(ctx, t.ID, now) // best effort: a failed touch must not fail the request
	}
	s.mu.Lock()
	if len(s.cache) >= maxCached {
		clear(s.cache)
	}
	s.cache[sum] = cachedToken{token: t, until: now.Add(CacheTTL)}
	s.mu.Unlock()
	return t, nil
}

// List returns every credential, newest first (never their secrets).
func (s *Service) List(ctx context.Context) ([]Token, error) { return s.store.ListTokens(ctx) }

// Revoke revokes a credential at once. It returns KindNotFound, or
// KindConflict when it is already revoked.
func (s *Service) Revoke(ctx context.Context, id string) error {
	t, err := s.store.GetToken(ctx, id)
	if err != nil {
		return err
	}
	if t.RevokedAt != nil {
		return solstice.Errorf(solstice.KindConflict, "token %s is already revoked", id)
	}
	now := s.clock.Now().UTC()
	err = s.store.RevokeToken(ctx, id, now, solstice.AuditEntry{
		Time: now, Actor: solstice.ActorFrom(ctx), Action: "token.revoke", Environment: t.Environment, Resource: "token/" + id,
	})
	s.mu.Lock()
	for k, c := range s.cache {
		if c.token.ID == id {
			delete(s.cache, k)
		}
	}
	s.mu.Unlock()
	return err
}
