package sdk

import (
	"context"
	"slices"
	"time"

	"github.com/solsticehq/solstice/flags"
)

// Snapshot describes the snapshot a Client holds.
type Snapshot struct {
	Environment string
	Version     int64 // the snapshot version: strictly increasing per environment
	Revision    int64 // the content revision it was built from
	IssuedAt    time.Time
	ExpiresAt   time.Time
	KeyIDs      []string // the trusted keys whose signatures verified
	// FromCache says the snapshot was loaded from the last-known-good file
	// and the control plane has not sent a newer one since.
	FromCache bool
	// Stale says the snapshot has expired, or polls have failed for longer
	// than Config.StaleAfter: the configuration may be out of date.
	Stale bool
	// Flags is the compiled flag set, immutable and shared.
	Flags *flags.Compiled
}

// Snapshot describes the held snapshot, and returns false when none is
// held yet.
func (c *Client) Snapshot() (Snapshot, bool) {
	h := c.cur.Load()
	if h == nil {
		return Snapshot{}, false
	}
	c.mu.Lock()
	stale, _ := c.staleLocked(h, c.cfg.Clock.Now())
	stale = stale || c.status == StatusStale
	c.mu.Unlock()
	return Snapshot{
		Environment: c.cfg.Environment,
		Version:     h.version,
		Revision:    h.revision,
		IssuedAt:    h.issuedAt,
		ExpiresAt:   h.expiresAt,
		KeyIDs:      slices.Clone(h.keyIDs),
		FromCache:   h.fromCache,
		Stale:       stale,
		Flags:       h.compiled,
	}, true
}

// Pinned evaluates against one snapshot, whatever the Client receives
// later: a game server pins at the start of a match or round, so that every
// evaluation in it sees the same configuration, and picks up new versions
// only by pinning again at the next one. A Pinned is immutable and safe
// for concurrent use.
type Pinned struct {
	c *Client
	h *held // nil: nothing was held when pinned
}

// Pin returns an evaluator bound to the snapshot held now. When none is
// held yet, the Pinned has Version 0 and evaluates like a client without a
// snapshot (reason ERROR, code GENERAL).
func (c *Client) Pin() *Pinned {
	return &Pinned{c: c, h: c.cur.Load()}
}

// Client returns the client p was pinned from.
func (p *Pinned) Client() *Client { return p.c }

// Version returns the pinned snapshot's version, 0 if none was held.
func (p *Pinned) Version() int64 {
	if p.h == nil {
		return 0
	}
	return p.h.version
}

// Revision returns the content revision of the pinned snapshot, 0 if none
// was held.
func (p *Pinned) Revision() int64 {
	if p.h == nil {
		return 0
	}
	return p.h.revision
}

// Flags returns the pinned compiled flag set, nil if none was held.
func (p *Pinned) Flags() *flags.Compiled {
	if p.h == nil {
		return nil
	}
	return p.h.compiled
}

// Evaluate evaluates flag key for ctx against the pinned snapshot
// (flags.Evaluate). It returns no error: problems are in the Result.
func (p *Pinned) Evaluate(key string, ctx flags.Context) flags.Result {
	return flags.Evaluate(p.Flags(), key, ctx)
}

// EvaluateAs is Evaluate for a caller that needs a value of type t (see
// flags.EvaluateAs).
func (p *Pinned) EvaluateAs(key string, t flags.Type, ctx flags.Context) flags.Result {
	return flags.EvaluateAs(p.Flags(), key, t, ctx)
}

type pinnedKey struct{}

// WithPinned returns a copy of ctx carrying p. The OpenFeature provider
// (package ofprovider) evaluates against the snapshot pinned in the Go
// context it is given, when p was pinned from the provider's client, so
// that a match's evaluations through OpenFeature stay on one version:
//
//	p := client.Pin() // at the start of the match
//	ctx = sdk.WithPinned(ctx, p)
//	of.Boolean(ctx, "double-xp", false, evalCtx) // always p's version
func WithPinned(ctx context.Context, p *Pinned) context.Context {
	return context.WithValue(ctx, pinnedKey{}, p)
}

// PinnedFrom returns the Pinned carried by ctx, and false if there is
// none.
func PinnedFrom(ctx context.Context) (*Pinned, bool) {
	p, ok := ctx.Value(pinnedKey{}).(*Pinned)
	return p, ok && p != nil
}
