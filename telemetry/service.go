// Package telemetry takes in what game servers report (accepted and
// rejected player actions per flag, variant and minute, per-session sums,
// custom counters, first exposures of players to variants, and player
// activity) and aggregates it into the cumulative counters, cut at a
// watermark, that the guardrail job reads.
//
// Batch is the contract (docs/telemetry.md is its reference); Service.Ingest
// validates a batch and stores it through a Store in one transaction
// (shared with the batches that arrive at the same time), exactly once per
// batch ID; Service.Counters answers the guardrails. The
// package knows no HTTP and no SQL: web serves POST /v1/telemetry, store
// implements Store.
package telemetry

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/guardrails"
)

// Defaults of the service's options.
const (
	// DefaultRate and DefaultBurst limit the batches of each server key:
	// a server sending one batch every few seconds never notices; a
	// runaway loop is stopped before it fills the database.
	DefaultRate  = 20
	DefaultBurst = 40
	// DefaultActiveServers is how recently a server must have reported to
	// hold the watermark back: one that stopped reporting for longer (shut
	// down, crashed, partitioned) no longer holds every guardrail still.
	DefaultActiveServers = 5 * time.Minute
	// maxLimiters and maxCachedDays bound the service's memory.
	maxLimiters   = 10_000
	maxCachedDays = 100_000
	// finalMargin is how long after its last possible data a cohort day
	// is still recomputed, for batches validated just before their limit
	// and committed just after.
	finalMargin = 10 * time.Minute
)

// Service ingests batches and answers counters queries. It is safe for
// concurrent use.
type Service struct {
	store  Store
	clock  solstice.Clock
	rate   rate.Limit
	burst  int
	active time.Duration

	mu       sync.Mutex
	limiters map[string]*rate.Limiter

	cacheMu  sync.Mutex
	retained map[dayKey]guardrails.Retention // the retention of final cohort days

	group committer
	known memory
}

// dayKey names one cohort day of a variant.
type dayKey struct {
	env, flag, variant string
	day                int64
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock that validation, rate limits and the watermark
// read (default solstice.WallClock).
func WithClock(c solstice.Clock) Option { return func(s *Service) { s.clock = c } }

// WithRateLimit sets the token bucket of each server key: r batches per
// second, bursts of up to burst (default DefaultRate, DefaultBurst).
// rate.Inf disables the limit.
func WithRateLimit(r rate.Limit, burst int) Option {
	return func(s *Service) { s.rate, s.burst = r, burst }
}

// WithActiveServers sets how recently a server must have reported to hold
// the watermark back (default DefaultActiveServers).
func WithActiveServers(d time.Duration) Option { return func(s *Service) { s.active = d } }

// New returns a service storing into store.
func New(store Store, opts ...Option) *Service {
	s := &Service{
		store:    store,
		clock:    solstice.WallClock,
		rate:     DefaultRate,
		burst:    DefaultBurst,
		active:   DefaultActiveServers,
		limiters: map[string]*rate.Limiter{},
		retained: map[dayKey]guardrails.Retention{},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Result is the answer to an ingested batch.
type Result struct {
	BatchID string `json:"batch_id"`
	// Duplicate is true when the batch had been received before: it was
	// acknowledged again and not counted twice.
	Duplicate bool `json:"duplicate"`
	// NewExposures counts the players first exposed to a variant by this
	// batch.
	NewExposures int64 `json:"new_exposures"`
}

// Ingest validates b, reported by a server of env, and stores it in one
// transaction: either all of it counts or none of it does. Batches that
// arrive together share a transaction (group commit); each is answered
// once its transaction has committed, and one batch's failure does not
// fail the others.
//
// Errors: KindInvalid listing every problem by JSON pointer (nothing is
// stored); KindConflict when b.BatchID was already received in env with
// other content; KindInternal when the store fails.
func (s *Service) Ingest(ctx context.Context, env string, b Batch) (Result, error) {
	now := s.clock.Now()
	w, err := b.plan(now)
	if err != nil {
		return Result{}, err
	}
	w.Environment, w.ReceivedAt = env, now
	s.known.trim(&w)
	in := s.group.commit(ctx, s.store, w)
	if in.Err != nil {
		return Result{}, fmt.Errorf("ingest telemetry batch %q of %s: %w", b.BatchID, env, in.Err)
	}
	s.known.learn(w, in)
	return Result{BatchID: b.BatchID, Duplicate: in.Duplicate, NewExposures: in.NewExposures}, nil
}

// RateLimitError is the cause of the KindRateLimited errors of Admit: how
// long to wait before the next batch will be admitted.
type RateLimitError struct{ RetryAfter time.Duration }

func (e *RateLimitError) Error() string { return fmt.Sprintf("retry after %s", e.RetryAfter) }

// Admit takes one batch from the token bucket of the server key named key.
// It returns nil, or a KindRateLimited *solstice.Error whose cause is a
// *RateLimitError saying when to retry. Call it before reading the batch,
// so that a flood costs as little as possible.
func (s *Service) Admit(key string) error {
	if s.rate == rate.Inf {
		return nil
	}
	now := s.clock.Now()
	s.mu.Lock()
	lim := s.limiters[key]
	if lim == nil {
		if len(s.limiters) >= maxLimiters {
			// Forget the keys whose buckets have refilled: they lose
			// nothing by starting full again.
			for k, l := range s.limiters {
				if l.TokensAt(now) >= float64(s.burst) {
					delete(s.limiters, k)
				}
			}
		}
		lim = rate.NewLimiter(s.rate, s.burst)
		s.limiters[key] = lim
	}
	r := lim.ReserveN(now, 1)
	s.mu.Unlock()
	wait := time.Duration(math.MaxInt64)
	if r.OK() {
		wait = r.DelayFrom(now)
	}
	if wait == 0 {
		return nil
	}
	r.CancelAt(now)
	if !r.OK() {
		// A burst below 1 admits nothing, ever; say "a minute" rather
		// than forever.
		wait = time.Minute
	}
	return &solstice.Error{
		Kind: solstice.KindRateLimited,
		Message: fmt.Sprintf("too many telemetry batches from this server key: at most %g per second (bursts of %d); retry in %s",
			float64(s.rate), s.burst, wait.Round(time.Millisecond)),
		Err: &RateLimitError{RetryAfter: wait},
	}
}

// Watermark returns the end of the telemetry of env that is complete: only
// the minutes before it are counted. It is the earliest of the ends
// delivered by the servers that reported within the active period
// (WithActiveServers), or, when none did, the latest end any server
// delivered; it never moves back, and never past the current minute. The
// zero time means that nothing is complete yet.
func (s *Service) Watermark(ctx context.Context, env string) (time.Time, error) {
	m, _, err := s.watermark(ctx, env, s.clock.Now())
	if err != nil || m == 0 {
		return time.Time{}, err
	}
	return m.Time(), nil
}

// watermark returns the watermark of env at now, advancing the stored one
// if the servers allow, and the reporting state it was computed from.
func (s *Service) watermark(ctx context.Context, env string, now time.Time) (Minute, Reporting, error) {
	r, err := s.store.Reporting(ctx, env)
	if err != nil {
		return 0, r, fmt.Errorf("read the watermark of %s: %w", env, err)
	}
	candidate := watermarkOf(r.Servers, now, s.active)
	if candidate <= r.Watermark {
		return r.Watermark, r, nil
	}
	m, err := s.store.AdvanceWatermark(ctx, env, candidate)
	if err != nil {
		return 0, r, fmt.Errorf("advance the watermark of %s: %w", env, err)
	}
	return m, r, nil
}

// watermarkOf is the watermark that servers support at now: the minimum of
// the active servers' Through, or the maximum of all when none is active,
// but not past the current minute.
func watermarkOf(servers []Server, now time.Time, active time.Duration) Minute {
	var lowest, highest Minute
	anyActive := false
	for _, sv := range servers {
		highest = max(highest, sv.Through)
		if now.Sub(sv.LastSeen) > active {
			continue
		}
		if !anyActive || sv.Through < lowest {
			lowest = sv.Through
		}
		anyActive = true
	}
	w := highest
	if anyActive {
		w = lowest
	}
	return min(w, MinuteOf(now))
}
