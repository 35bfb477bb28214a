package sdk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/snapshot"
)

// Status is a Client's state, as OpenFeature names provider states.
type Status int

// Client states. A client holding a snapshot evaluates from it in every
// state; Stale and Error say that it may be out of date.
const (
	StatusNotReady Status = iota // no snapshot held yet
	StatusReady                  // a snapshot is held and the control plane answers
	StatusStale                  // the held snapshot expired, or polls have failed longer than StaleAfter
	StatusError                  // the control plane refuses the client's configuration (401, 403, 404)
)

var statusNames = [...]string{"NOT_READY", "READY", "STALE", "ERROR"}

// String returns the state's name ("READY").
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// held is one verified, compiled snapshot. It is immutable: evaluations,
// pins and views share it without locks.
type held struct {
	compiled  *flags.Compiled
	version   int64
	revision  int64
	issuedAt  time.Time
	expiresAt time.Time
	keyIDs    []string
	payload   []byte // the exact verified payload bytes, for OpenOptions.HeldPayload
	etag      string // the payload digest, as the control plane tags it
	fromCache bool
}

func newHeld(o *snapshot.Opened, c *flags.Compiled, fromCache bool) *held {
	sum := sha256.Sum256(o.RawPayload)
	return &held{
		compiled:  c,
		version:   o.Payload.Version,
		revision:  o.Payload.Revision,
		issuedAt:  time.Unix(o.Payload.IssuedAt, 0).UTC(),
		expiresAt: time.Unix(o.Payload.ExpiresAt, 0).UTC(),
		keyIDs:    o.KeyIDs,
		payload:   o.RawPayload,
		etag:      `"` + hex.EncodeToString(sum[:]) + `"`,
		fromCache: fromCache,
	}
}

// Stats are a Client's counters since it was created.
type Stats struct {
	Polls       int64                     // requests sent
	Accepted    int64                     // new snapshots installed from the control plane
	NotModified int64                     // polls that found the held snapshot current
	Failures    int64                     // polls that failed: network and HTTP errors, rejected snapshots
	Rejected    map[snapshot.Reason]int64 // rejected snapshots by reason (also counted in Failures)
	LastSuccess time.Time                 // when the control plane last answered a poll usefully
	LastError   error                     // the last poll's error; nil after a success
}

// Client polls one environment's signed snapshots from the control plane,
// verifies them, keeps the newest verified one (and a copy on disk), and
// evaluates flags against it locally. It is safe for concurrent use:
// evaluations read an immutable compiled set through an atomic pointer and
// never wait for polling.
type Client struct {
	cfg  Config
	url  string
	log  *slog.Logger
	subs subscribers

	cur       atomic.Pointer[held]
	ready     chan struct{} // closed when the first snapshot is held
	readyOnce sync.Once

	// pollMu serializes polls, the loading of the last-known-good file and
	// the delivery of events, which is what keeps events in order.
	pollMu     sync.Mutex
	cacheTried bool // guarded by pollMu

	mu           sync.Mutex // guards the fields below
	status       Status
	changed      chan struct{} // closed and replaced on every status change
	failingSince time.Time     // start of the current run of failed polls; zero when the last one succeeded
	stats        Stats

	runMu   sync.Mutex // guards cancel and done, the goroutine Start runs
	cancel  context.CancelFunc
	done    chan struct{}
	running atomic.Int32 // Run loops under way, whoever started them
}

// New returns a client for cfg. It does no I/O: call Start (or Run) to load
// the last-known-good snapshot and begin polling. It returns a KindInvalid
// *solstice.Error listing every problem of cfg.
func New(cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Client{
		cfg:     cfg,
		url:     cfg.BaseURL + "/v1/snapshots/" + url.PathEscape(cfg.Environment),
		log:     cfg.Logger.With("env", cfg.Environment),
		ready:   make(chan struct{}),
		changed: make(chan struct{}),
	}, nil
}

// Environment returns the environment the client polls.
func (c *Client) Environment() string { return c.cfg.Environment }

// Subscribe registers f to receive every event from now on, in order, and
// returns a function that unregisters it. Events are delivered
// synchronously, one at a time, from the goroutine that polls (or, for the
// last-known-good file, the one that calls Start), after the state they
// report is visible (Status, Snapshot, Pin): f must return quickly, and
// must not call Poll, Run, Start or Close.
func (c *Client) Subscribe(f func(Event)) (unsubscribe func()) {
	return c.subs.add(f)
}

// Status returns the client's current state.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Ready reports whether the client holds a verified snapshot (from the
// control plane or the last-known-good file), so that evaluations serve
// configured values. The snapshot may be stale: see Status and Snapshot.
func (c *Client) Ready() bool { return c.cur.Load() != nil }

// WaitReady blocks until the client holds a snapshot and returns nil. It
// returns early with an error wrapping ctx.Err() (and the last poll's
// error, if any) if ctx ends first, or wrapping the control plane's refusal
// if that comes first (EventError: a wrong server key or environment,
// which waiting does not mend). Polling must be running (Start or Run).
func (c *Client) WaitReady(ctx context.Context) error {
	for {
		select {
		case <-c.ready:
			return nil
		default:
		}
		c.mu.Lock()
		status, changed, last := c.status, c.changed, c.stats.LastError
		c.mu.Unlock()
		if status == StatusError && last != nil {
			return fmt.Errorf("wait for a snapshot of %q: %w", c.cfg.Environment, last)
		}
		select {
		case <-c.ready:
			return nil
		case <-changed:
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("wait for a snapshot of %q: %w (last poll: %w)", c.cfg.Environment, ctx.Err(), last)
			}
			return fmt.Errorf("wait for a snapshot of %q: %w", c.cfg.Environment, ctx.Err())
		}
	}
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Rejected = make(map[snapshot.Reason]int64, len(c.stats.Rejected))
	for k, v := range c.stats.Rejected {
		s.Rejected[k] = v
	}
	return s
}

// Flags returns the compiled flag set of the held snapshot, nil when none
// is held (flags.Evaluate then answers reason ERROR, code GENERAL).
func (c *Client) Flags() *flags.Compiled {
	if h := c.cur.Load(); h != nil {
		return h.compiled
	}
	return nil
}

// Evaluate evaluates flag key for ctx against the held snapshot with the
// same evaluator as the control plane (flags.Evaluate). Like it, it
// returns no error: problems are in the Result (reason ERROR with code
// FLAG_NOT_FOUND, or GENERAL when no snapshot is held yet).
func (c *Client) Evaluate(key string, ctx flags.Context) flags.Result {
	return flags.Evaluate(c.Flags(), key, ctx)
}

// EvaluateAs is Evaluate for a caller that needs a value of type t (see
// flags.EvaluateAs): a flag of another type gives reason ERROR, code
// TYPE_MISMATCH.
func (c *Client) EvaluateAs(key string, t flags.Type, ctx flags.Context) flags.Result {
	return flags.EvaluateAs(c.Flags(), key, t, ctx)
}

// Start loads the last-known-good snapshot (if Config.CacheFile is set)
// and then polls in a goroutine until ctx ends or Close is called. It
// returns once the file is loaded, so that Ready is already true when a
// usable file was found. Calling Start while polling runs (started by
// Start or Run) does nothing.
func (c *Client) Start(ctx context.Context) {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	if c.running.Load() > 0 {
		return
	}
	if c.done != nil {
		select {
		case <-c.done: // ended with its context: start again
		default:
			return
		}
	}
	c.loadCache()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	c.cancel, c.done = cancel, done
	go func() {
		defer close(done)
		_ = c.Run(ctx) // returns nil when ctx ends
	}()
}

// Close stops the polling Start began and waits for it to end (a Run the
// caller started ends with its own context). The client keeps its
// snapshot and goes on evaluating; Start polls again. It returns nil.
func (c *Client) Close() error {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	if c.cancel != nil {
		c.cancel()
		<-c.done
		c.cancel, c.done = nil, nil
	}
	return nil
}

// Run loads the last-known-good snapshot if none is held yet, then polls
// until ctx ends, and returns nil. A poll that succeeds is followed by the
// next at once (it waits on the server, up to PollWait), but never sooner
// than MinBackoff after the previous one started; a poll that fails is
// retried after an exponential backoff with full jitter between
// MinBackoff and MaxBackoff (longer if the server sent Retry-After). No
// failure stops it: failures are logged and reported as events. Run one
// loop per client: through Run or Start, not both.
func (c *Client) Run(ctx context.Context) error {
	c.running.Add(1)
	defer c.running.Add(-1)
	c.loadCache()
	failures := 0
	for {
		start := time.Now()
		retryAfter, err := c.poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		if err != nil {
			failures++
			wait = c.backoff(failures, retryAfter)
		} else {
			failures = 0
			wait = c.cfg.MinBackoff - time.Since(start)
		}
		if !c.sleep(ctx, wait) {
			return nil
		}
	}
}

// Poll does one poll: one request to the control plane, whose answer it
// verifies and installs, then the staleness check. It is one step of Run,
// and what tests call. With a snapshot held it long-polls (up to
// PollWait). It returns nil when the held snapshot is current (200 with a
// new snapshot, 304, or the same snapshot again); ctx.Err() when ctx ended;
// the transport error; a *solstice.Error for an HTTP error status
// (KindUnauthorized for 401, KindForbidden for 403, KindNotFound for 404,
// KindRateLimited for 429, KindInvalid for other 4xx, KindInternal for
// 5xx); and a *snapshot.VerifyError, wrapped, for a refused snapshot
// (errors.Is(err, snapshot.ErrRollback) and so on; a snapshot that does not
// compile matches snapshot.ErrMalformed).
func (c *Client) Poll(ctx context.Context) error {
	_, err := c.poll(ctx)
	return err
}

// backoff returns the wait after the n-th failed poll in a row.
func (c *Client) backoff(n int, retryAfter time.Duration) time.Duration {
	ceil := c.cfg.MaxBackoff
	if n >= 1 && n < 32 {
		if b := c.cfg.MinBackoff << (n - 1); b > 0 && b < ceil {
			ceil = b
		}
	}
	// Full jitter spreads a fleet's retries after an outage; the floor
	// keeps a single server from retrying in a tight loop.
	d := time.Duration(rand.Int64N(int64(ceil) + 1)) //nolint:gosec // jitter, not a secret
	d = max(d, c.cfg.MinBackoff, retryAfter)
	return min(d, c.cfg.MaxBackoff)
}

// sleep waits d, waking at the moments the held snapshot turns stale to
// report it. It returns false if ctx ended.
func (c *Client) sleep(ctx context.Context, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return ctx.Err() == nil
		}
		if s, ok := c.untilStale(); ok && s < left {
			left = max(s, time.Millisecond)
		}
		t := time.NewTimer(left)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		c.pollMu.Lock()
		var evs []Event
		c.checkStale(c.cfg.Clock.Now(), &evs)
		c.deliver(evs)
		c.pollMu.Unlock()
	}
}

// untilStale returns how long until the held snapshot turns stale, and
// false if it is not Ready (nothing to report).
func (c *Client) untilStale() (time.Duration, bool) {
	h := c.cur.Load()
	if h == nil {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status != StatusReady {
		return 0, false
	}
	now := c.cfg.Clock.Now()
	d := h.expiresAt.Sub(now)
	if !c.failingSince.IsZero() {
		d = min(d, c.failingSince.Add(c.cfg.StaleAfter).Sub(now))
	}
	return d, true
}

// staleLocked reports whether h is stale at now: expired, or polls have
// been failing for StaleAfter. c.mu must be held.
func (c *Client) staleLocked(h *held, now time.Time) (bool, string) {
	if !now.Before(h.expiresAt) {
		return true, fmt.Sprintf("snapshot version %d expired at %s", h.version, h.expiresAt.Format(time.RFC3339))
	}
	if !c.failingSince.IsZero() && now.Sub(c.failingSince) >= c.cfg.StaleAfter {
		return true, fmt.Sprintf("polls have failed since %s; serving snapshot version %d", c.failingSince.UTC().Format(time.RFC3339), h.version)
	}
	return false, ""
}

// setStatusLocked changes the status and wakes WaitReady. c.mu must be
// held.
func (c *Client) setStatusLocked(s Status) {
	if c.status == s {
		return
	}
	c.status = s
	close(c.changed)
	c.changed = make(chan struct{})
}

// checkStale turns a Ready client Stale when its snapshot is. c.pollMu
// must be held.
func (c *Client) checkStale(now time.Time, evs *[]Event) {
	h := c.cur.Load()
	if h == nil {
		return
	}
	c.mu.Lock()
	stale, why := c.staleLocked(h, now)
	if !stale || c.status != StatusReady {
		c.mu.Unlock()
		return
	}
	c.setStatusLocked(StatusStale)
	last := c.stats.LastError
	c.mu.Unlock()
	c.log.Warn("snapshot is stale", "version", h.version, "reason", why, "last_error", last)
	*evs = append(*evs, c.event(EventStale, h, now, why, last))
}

// event builds an event about the held snapshot h (nil: none).
func (c *Client) event(k EventKind, h *held, now time.Time, msg string, err error) Event {
	e := Event{Kind: k, Message: msg, Err: err, At: now}
	if h != nil {
		e.Version, e.Revision = h.version, h.revision
	}
	return e
}

// deliver hands events to the subscribers, in order. c.pollMu must be
// held, so that events of successive polls never interleave.
func (c *Client) deliver(evs []Event) {
	if len(evs) == 0 {
		return
	}
	fns := c.subs.list()
	for _, e := range evs {
		for _, f := range fns {
			f(e)
		}
	}
}

// install makes h the held snapshot and reports it. c.pollMu must be held.
func (c *Client) install(h *held, now time.Time, evs *[]Event) {
	prev := c.cur.Swap(h)
	c.readyOnce.Do(func() { close(c.ready) })
	c.mu.Lock()
	old := c.status
	if !h.fromCache {
		c.failingSince = time.Time{}
		c.stats.Accepted++
		c.stats.LastSuccess, c.stats.LastError = now, nil
	}
	c.setStatusLocked(StatusReady)
	c.mu.Unlock()

	source := "control plane"
	if h.fromCache {
		source = "last-known-good file " + c.cfg.CacheFile
	}
	c.log.Info("snapshot accepted", "version", h.version, "revision", h.revision, "flags", h.compiled.Len(), "from", source)
	switch {
	case prev == nil:
		*evs = append(*evs, c.event(EventReady, h, now, fmt.Sprintf("snapshot version %d (revision %d) from the %s", h.version, h.revision, source), nil))
	case old != StatusReady:
		c.log.Info("recovered", "version", h.version)
		*evs = append(*evs, c.event(EventRecovered, h, now, fmt.Sprintf("snapshot version %d is current again", h.version), nil))
	}
	if prev != nil {
		if changes := changedFlags(prev.compiled.Set(), h.compiled.Set()); len(changes) > 0 {
			e := c.event(EventConfigurationChanged, h, now, fmt.Sprintf("snapshot version %d (revision %d) changed %d flags", h.version, h.revision, len(changes)), nil)
			e.FlagChanges = changes
			*evs = append(*evs, e)
		}
	}
	c.checkStale(now, evs) // a last-known-good snapshot may have expired
}

// succeeded records a poll that found the held snapshot current. c.pollMu
// must be held.
func (c *Client) succeeded(now time.Time, evs *[]Event) {
	h := c.cur.Load()
	c.mu.Lock()
	c.failingSince = time.Time{}
	c.stats.NotModified++
	c.stats.LastSuccess, c.stats.LastError = now, nil
	old := c.status
	recovered := false
	if h != nil && (old == StatusStale || old == StatusError) {
		if stale, _ := c.staleLocked(h, now); !stale {
			c.setStatusLocked(StatusReady)
			recovered = true
		}
	}
	c.mu.Unlock()
	if recovered {
		c.log.Info("recovered", "version", h.version)
		*evs = append(*evs, c.event(EventRecovered, h, now, fmt.Sprintf("snapshot version %d is current again", h.version), nil))
	}
	c.checkStale(now, evs)
}

// failure classifies a failed poll.
type failure int

const (
	failTransient failure = iota // network, 5xx, 429: retry
	failConfig                   // 401, 403, 404, other 4xx: the client's configuration is refused
	failRejected                 // a snapshot failed verification (already logged)
)

// failed records a poll that failed with err. c.pollMu must be held.
func (c *Client) failed(now time.Time, err error, kind failure, evs *[]Event) {
	h := c.cur.Load()
	c.mu.Lock()
	first := c.failingSince.IsZero()
	if first {
		c.failingSince = now
	}
	c.stats.Failures++
	c.stats.LastError = err
	toError := kind == failConfig && c.status != StatusError
	if toError {
		c.setStatusLocked(StatusError)
	}
	c.mu.Unlock()
	switch {
	case toError:
		c.log.Error("the control plane refuses this client's configuration", "err", err)
		*evs = append(*evs, c.event(EventError, h, now, err.Error(), err))
	case kind == failRejected:
	case first:
		c.log.Warn("poll failed; retrying with backoff", "err", err)
	default:
		c.log.Debug("poll failed", "err", err)
	}
	c.checkStale(now, evs)
}

// rejected records a snapshot that failed verification. c.pollMu must be
// held.
func (c *Client) rejected(now time.Time, verr *snapshot.VerifyError, evs *[]Event) error {
	err := fmt.Errorf("snapshot of %q refused: %w", c.cfg.Environment, verr)
	c.mu.Lock()
	if c.stats.Rejected == nil {
		c.stats.Rejected = map[snapshot.Reason]int64{}
	}
	c.stats.Rejected[verr.Reason]++
	c.mu.Unlock()
	h := c.cur.Load()
	attrs := []any{"reason", verr.Reason, "err", verr}
	if h != nil {
		attrs = append(attrs, "keeping_version", h.version)
	}
	c.log.Warn("snapshot refused", attrs...)
	e := c.event(EventRejected, h, now, verr.Error(), err)
	e.Reason = verr.Reason
	*evs = append(*evs, e)
	c.failed(now, err, failRejected, evs)
	return err
}

// openOptions are the checks a snapshot must pass given what is held.
func (c *Client) openOptions(now time.Time, h *held) snapshot.OpenOptions {
	o := snapshot.OpenOptions{
		Trusted:     c.cfg.TrustedKeys,
		Environment: c.cfg.Environment,
		Now:         now,
		MaxSize:     c.cfg.MaxSnapshotSize,
	}
	if h != nil {
		o.HeldVersion, o.HeldPayload = h.version, h.payload
	}
	return o
}

// accept verifies a snapshot the control plane sent and installs it.
// c.pollMu must be held.
func (c *Client) accept(body []byte, now time.Time, evs *[]Event) error {
	h := c.cur.Load()
	o, err := snapshot.Open(body, c.openOptions(now, h))
	var verr *snapshot.VerifyError
	switch {
	case err == nil:
	case errors.Is(err, snapshot.ErrNotModified):
		c.log.Debug("snapshot not modified", "version", h.version)
		c.succeeded(now, evs)
		return nil
	case errors.As(err, &verr):
		return c.rejected(now, verr, evs)
	default: // the options are invalid: cannot happen after New's checks
		err = fmt.Errorf("open snapshot of %q: %w", c.cfg.Environment, err)
		c.failed(now, err, failTransient, evs)
		return err
	}
	compiled, err := flags.Compile(o.Payload.Set())
	if err != nil {
		return c.rejected(now, &snapshot.VerifyError{
			Reason:  snapshot.ReasonMalformed,
			Message: fmt.Sprintf("signed snapshot version %d does not compile", o.Payload.Version),
			KeyIDs:  o.KeyIDs, Environment: o.Payload.Environment, Version: o.Payload.Version,
			ExpiresAt: time.Unix(o.Payload.ExpiresAt, 0).UTC(), Err: err,
		}, evs)
	}
	// NOTE: the file is written before the swap, so that whoever sees the
	// new snapshot (WaitReady, events) also finds it on disk.
	c.writeCache(o.Envelope)
	c.install(newHeld(o, compiled, false), now, evs)
	return nil
}
