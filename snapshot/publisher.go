package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
)

// Source returns the current servable content of an environment. It is
// implemented by the flags service (over the store).
type Source interface {
	Set(ctx context.Context, env string) (flags.Set, error)
}

// Versions hands out snapshot versions. It is implemented by the store,
// which keeps one counter per environment so that versions keep increasing
// across restarts and replicas.
type Versions interface {
	// NextSnapshotVersion atomically increments env's counter and returns
	// the new value (1 for the first snapshot).
	NextSnapshotVersion(ctx context.Context, env string) (int64, error)
}

// Keys returns the keys to sign an environment's snapshots with. It is
// implemented by *Keyring.
type Keys interface {
	Signers(env string) ([]Signer, error)
}

var _ Keys = (*Keyring)(nil)

// Heads reports the newest content revision of every environment. It is
// implemented by the flags service. With it, Tick also publishes every
// environment whose content changed outside this process (the CLI, another
// replica) or was never published.
type Heads interface {
	Heads(ctx context.Context) (map[string]int64, error)
}

// Default Publisher settings.
const (
	DefaultTTL      = 24 * time.Hour
	DefaultInterval = time.Minute
)

// Publisher holds the current snapshot of every environment it published
// and replaces it, atomically, on every Publish. Readers (the snapshot
// endpoint) call Current or Wait and never see a half-built snapshot.
// Before a snapshot is half way to expiry, Tick re-signs it: the same
// content under a new version and a new expiry, so that clients never hold
// an expired snapshot while the control plane is up.
type Publisher struct {
	src      Source
	versions Versions
	keys     Keys
	ttl      time.Duration
	interval time.Duration
	clock    solstice.Clock
	log      *slog.Logger
	heads    Heads
	onPub    []func(*Built)

	mu   sync.RWMutex
	envs map[string]*envState
}

// envState is one environment's publishing state.
type envState struct {
	// lock serializes publishes. It is a one-slot semaphore rather than a
	// mutex so that a caller waiting for it can give up when its context
	// ends.
	lock chan struct{}
	cur  atomic.Pointer[Built]

	// requested counts Publish calls; covered (guarded by lock) is the
	// count at the moment the current snapshot's build started. A caller
	// whose request number is covered gets that snapshot without a build
	// of its own: it read the content after the caller asked.
	requested atomic.Uint64
	covered   uint64
	wanted    atomic.Bool // Publish was called: Tick keeps the environment fresh

	chMu    sync.Mutex
	changed chan struct{} // closed and replaced on every publish
}

// Option configures a Publisher.
type Option func(*Publisher)

// WithTTL sets how long a snapshot is valid (default DefaultTTL; at least
// a second, or every Publish fails with Build's KindInvalid error). Tick
// re-signs a snapshot once half its TTL has passed, so clients that poll
// keep at least half a TTL of margin to ride out an outage of the control
// plane.
func WithTTL(d time.Duration) Option { return func(p *Publisher) { p.ttl = d } }

// WithInterval sets how often Run calls Tick (default DefaultInterval; a
// non-positive d keeps the default).
func WithInterval(d time.Duration) Option {
	return func(p *Publisher) {
		if d > 0 {
			p.interval = d
		}
	}
}

// WithClock sets the clock that stamps snapshots and drives Run.
func WithClock(c solstice.Clock) Option { return func(p *Publisher) { p.clock = c } }

// WithLogger sets the logger Run reports failed re-signs to (default
// slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(p *Publisher) { p.log = l } }

// WithHeads makes Tick publish every environment whose head revision
// differs from its current snapshot's (see Heads).
func WithHeads(h Heads) Option { return func(p *Publisher) { p.heads = h } }

// OnPublish registers f to be called with every snapshot made current,
// after readers can see it. f must be quick and must not call back into
// the Publisher.
func OnPublish(f func(*Built)) Option { return func(p *Publisher) { p.onPub = append(p.onPub, f) } }

// NewPublisher returns a Publisher that builds snapshots from src, numbers
// them with versions and signs them with keys.
func NewPublisher(src Source, versions Versions, keys Keys, opts ...Option) *Publisher {
	p := &Publisher{
		src:      src,
		versions: versions,
		keys:     keys,
		ttl:      DefaultTTL,
		interval: DefaultInterval,
		clock:    solstice.WallClock,
		log:      slog.Default(),
		envs:     map[string]*envState{},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func (p *Publisher) state(env string) *envState {
	p.mu.RLock()
	st := p.envs[env]
	p.mu.RUnlock()
	if st != nil {
		return st
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if st = p.envs[env]; st == nil {
		st = &envState{lock: make(chan struct{}, 1), changed: make(chan struct{})}
		p.envs[env] = st
	}
	return st
}

// Current returns the current snapshot of env, and false if env has none
// yet.
func (p *Publisher) Current(env string) (*Built, bool) {
	p.mu.RLock()
	st := p.envs[env]
	p.mu.RUnlock()
	if st == nil {
		return nil, false
	}
	b := st.cur.Load()
	return b, b != nil
}

// Publish builds a snapshot of env's current content under the next
// version and makes it current. Call it after every change of env's
// content; concurrent calls for one environment are serialized, and a call
// that waited while another built from content read after it was made
// returns that snapshot instead of building again. Versions never go
// backwards: a snapshot whose version is not above the current one is not
// installed.
//
// It returns ctx.Err() if ctx ends while it waits for another publish of
// env; the wrapped errors of the Source, Versions, Keys and Build; and a
// KindConflict error if the version is not above the current one (the
// version counter went backwards, as after restoring an old database: every
// client would refuse the snapshot as a rollback anyway).
func (p *Publisher) Publish(ctx context.Context, env string) (*Built, error) {
	return p.publish(ctx, env, p.clock.Now())
}

func (p *Publisher) publish(ctx context.Context, env string, now time.Time) (*Built, error) {
	st := p.state(env)
	st.wanted.Store(true)
	req := st.requested.Add(1)
	select {
	case st.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-st.lock }()

	if b := st.cur.Load(); b != nil && st.covered >= req {
		return b, nil
	}
	start := st.requested.Load()
	b, err := p.build(ctx, env, now)
	if err != nil {
		return nil, fmt.Errorf("publish snapshot %q: %w", env, err)
	}
	if cur := st.cur.Load(); cur != nil && b.Version() <= cur.Version() {
		return nil, solstice.Errorf(solstice.KindConflict, "publish snapshot %q: version %d is not above the current %d; the snapshot version counter went backwards", env, b.Version(), cur.Version())
	}
	st.cur.Store(b)
	st.covered = start
	st.chMu.Lock()
	close(st.changed)
	st.changed = make(chan struct{})
	st.chMu.Unlock()
	for _, f := range p.onPub {
		f(b)
	}
	return b, nil
}

func (p *Publisher) build(ctx context.Context, env string, now time.Time) (*Built, error) {
	set, err := p.src.Set(ctx, env)
	if err != nil {
		return nil, err
	}
	if set.Environment == "" {
		set.Environment = env
	}
	if set.Environment != env {
		return nil, solstice.Errorf(solstice.KindInternal, "source returned the content of %q", set.Environment)
	}
	signers, err := p.keys.Signers(env)
	if err != nil {
		return nil, err
	}
	version, err := p.versions.NextSnapshotVersion(ctx, env)
	if err != nil {
		return nil, err
	}
	return Build(set, version, now, p.ttl, signers)
}

// Wait returns env's current snapshot as soon as its version is above
// after: at once if it already is, else when a publish makes it so. It is
// what a long poll waits on; it starts no goroutine and holds nothing when
// it returns. It returns ctx.Err() if ctx ends first. Waiting on an
// environment records it (with no snapshot), so callers should wait only
// on environments that exist.
func (p *Publisher) Wait(ctx context.Context, env string, after int64) (*Built, error) {
	st := p.state(env)
	for {
		// Take the channel before looking at the snapshot: a publish in
		// between closes this channel, so it cannot be missed.
		st.chMu.Lock()
		changed := st.changed
		st.chMu.Unlock()
		if b := st.cur.Load(); b != nil && b.Version() > after {
			return b, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Tick re-signs, by a Publish at now, every environment whose current
// snapshot is at least half way from its issue to its expiry, and retries
// every environment whose publishes have all failed so far. With WithHeads
// it also publishes every environment whose head revision is not the one
// its snapshot was built from. It is one step of Run, and what tests call.
// It returns the publish errors, joined; environments are independent, so
// one failure does not stop the others.
func (p *Publisher) Tick(ctx context.Context, now time.Time) error {
	var heads map[string]int64
	var errs []error
	if p.heads != nil {
		h, err := p.heads.Heads(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("read environment heads: %w", err))
		}
		heads = h
	}
	p.mu.RLock()
	envs := make([]string, 0, len(p.envs)+len(heads))
	for env, st := range p.envs {
		if _, ok := heads[env]; st.wanted.Load() && !ok {
			envs = append(envs, env)
		}
	}
	p.mu.RUnlock()
	for env := range heads {
		envs = append(envs, env)
	}
	sort.Strings(envs)

	for _, env := range envs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b, ok := p.Current(env)
		head, tracked := heads[env]
		fresh := ok && now.Before(b.IssuedAt().Add(b.ExpiresAt().Sub(b.IssuedAt())/2))
		if fresh && (!tracked || b.Revision() == head) {
			continue
		}
		if _, err := p.publish(ctx, env, now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run calls Tick every interval (see WithInterval) with the clock's time
// until ctx ends, logging Tick's errors; it then returns nil. Re-signing
// must go on after a failure, so no Tick error stops it.
func (p *Publisher) Run(ctx context.Context) error {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := p.Tick(ctx, p.clock.Now()); err != nil && ctx.Err() == nil {
				p.log.Error("re-sign snapshots", "err", err)
			}
		}
	}
}
