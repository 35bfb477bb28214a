package guardrails

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/solsticehq/solstice"
)

// RuleSource lists the guardrails to watch. It is implemented by the
// store.
type RuleSource interface {
	// Rules returns every guardrail of every flag and environment the job
	// watches, in a stable order, or the error that prevented it (the job
	// then skips the tick).
	Rules(ctx context.Context) ([]Rule, error)
}

// CounterSource reads telemetry. It is implemented by the telemetry
// aggregation.
type CounterSource interface {
	// Counters returns r's counters over the data after since (the zero
	// time: all data), cut at the watermark; Counters.Since must not be
	// before since. For D1Retention only players first exposed after
	// since count, so that a resumed test counts no player exposed before
	// the resume. It returns an error when it cannot read them; the job
	// holds a guardrail whose counters fail for longer than its
	// MissingAfter.
	Counters(ctx context.Context, r Rule, since time.Time) (Counters, error)
}

// StateStore keeps guardrail states. It is implemented by the store; two
// jobs (two replicas) may share one.
type StateStore interface {
	// State returns the stored state of ref, or a KindNotFound error if
	// none was ever stored.
	State(ctx context.Context, ref Ref) (State, error)
	// SwapState stores next in place of the state of next.Guardrail if
	// the stored state's Version is old (0: none stored), atomically; it
	// returns a KindConflict error, and stores nothing, otherwise.
	SwapState(ctx context.Context, old int64, next State) error
}

// Actions carries out incidents: it rolls the flag back through the same
// domain service as any revert (a new revision and an audit entry), pauses
// or holds the rollout, alerts the owners, and records the incident. It is
// implemented by the wiring in cmd.
type Actions interface {
	// Apply carries out inc, or returns the error that prevented it; the
	// incident then stays pending and is retried. It must be idempotent
	// per inc.ID: the job retries an incident whose Apply failed or whose
	// completion it could not record.
	Apply(ctx context.Context, inc Incident) error
}

// Default Job settings.
const (
	DefaultInterval = 10 * time.Second
	// DefaultClaimTimeout is how long a pending incident stays with the
	// job that claimed it before another job may retry it.
	DefaultClaimTimeout = time.Minute
)

// Job evaluates guardrails on a schedule and acts on the verdicts. Several
// jobs may share one StateStore: every phase change is a compare-and-swap,
// so for each trip exactly one job wins and carries it out.
type Job struct {
	rules    RuleSource
	counters CounterSource
	states   StateStore
	actions  Actions
	interval time.Duration
	claim    time.Duration
	clock    solstice.Clock
	log      *slog.Logger

	mu       sync.Mutex
	failures map[Ref]time.Time // since when the counters of a rule have been failing
}

// Option configures a Job.
type Option func(*Job)

// WithInterval sets how often Run calls Tick (default DefaultInterval; a
// non-positive d keeps the default).
func WithInterval(d time.Duration) Option {
	return func(j *Job) {
		if d > 0 {
			j.interval = d
		}
	}
}

// WithClaimTimeout sets how long a pending incident claimed by one job is
// left to it before another retries it (default DefaultClaimTimeout; a
// non-positive d keeps the default).
func WithClaimTimeout(d time.Duration) Option {
	return func(j *Job) {
		if d > 0 {
			j.claim = d
		}
	}
}

// WithClock sets the clock that drives Run.
func WithClock(c solstice.Clock) Option { return func(j *Job) { j.clock = c } }

// WithLogger sets the logger Run reports Tick's errors to (default
// slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(j *Job) { j.log = l } }

// NewJob returns a job that watches the rules of rules with the counters of
// counters, keeps their states in states and carries out incidents with
// actions.
func NewJob(rules RuleSource, counters CounterSource, states StateStore, actions Actions, opts ...Option) *Job {
	j := &Job{
		rules: rules, counters: counters, states: states, actions: actions,
		interval: DefaultInterval, claim: DefaultClaimTimeout,
		clock: solstice.WallClock, log: slog.Default(),
		failures: map[Ref]time.Time{},
	}
	for _, o := range opts {
		o(j)
	}
	return j
}

// Run calls Tick every interval with the clock's time until ctx ends,
// logging Tick's errors; it then returns nil. Guardrails must keep watching
// after a failure, so no Tick error stops it.
func (j *Job) Run(ctx context.Context) error {
	t := time.NewTicker(j.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := j.Tick(ctx, j.clock.Now()); err != nil && ctx.Err() == nil {
				j.log.Error("guardrail tick", "err", err)
			}
		}
	}
}

// Tick evaluates every guardrail at now and acts on the verdicts: a trip
// carries out the rule's action, a hold holds the rollout and alerts, a
// hold past its timeout fails safe; a tripped guardrail stays tripped. It
// first retries incidents whose action failed. It is one step of Run, and
// what tests and the simulation call.
//
// Guardrails are independent: it returns the errors of all of them,
// joined, each naming its guardrail, or the error of listing the rules, or
// ctx's error. Counters that fail for longer than a rule's MissingAfter
// hold the rule rather than leave it unwatched. A swap lost to another job
// is not an error: that job made the move, and the next tick sees it.
func (j *Job) Tick(ctx context.Context, now time.Time) error {
	rules, err := j.rules.Rules(ctx)
	if err != nil {
		return fmt.Errorf("list guardrails: %w", err)
	}
	alphas := splitAlpha(rules)
	var errs []error
	for i, r := range rules {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := j.tick(ctx, r, alphas[i], now); err != nil {
			errs = append(errs, fmt.Errorf("guardrail %s: %w", r.Ref, err))
		}
	}
	return errors.Join(errs...)
}

func (j *Job) tick(ctx context.Context, r Rule, alpha float64, now time.Time) error {
	st, err := j.load(ctx, r.Ref, now)
	if err != nil {
		return err
	}
	if st.Pending != nil {
		if st, err = j.settle(ctx, st, now, true); err != nil || st.Pending != nil {
			return err
		}
	}
	if st.Phase == PhaseTripped {
		return nil // the latch
	}
	c, overdue, cerr := j.read(ctx, r, st, now)
	if cerr != nil && !overdue {
		return cerr // too early to hold: the next tick may read them
	}
	v := evaluate(r, alpha, c, cerr == nil, now, false)
	if _, changed, err := Step(st, r, v); err != nil || !changed {
		return errors.Join(cerr, err)
	}
	// The state changes: decide again with the reason and the confidence
	// sequence, for the state and the incident. Evaluation is pure, so
	// the decision is the same.
	v = evaluate(r, alpha, c, cerr == nil, now, true)
	next, _, err := Step(st, r, v)
	if err != nil {
		return errors.Join(cerr, err)
	}
	if err := j.states.SwapState(ctx, st.Version, next); err != nil {
		if solstice.IsKind(err, solstice.KindConflict) {
			return cerr
		}
		return errors.Join(cerr, fmt.Errorf("store state: %w", err))
	}
	if next.Pending != nil {
		_, err = j.settle(ctx, next, now, false)
	}
	return errors.Join(cerr, err)
}

// load returns ref's stored state, or a new one.
func (j *Job) load(ctx context.Context, ref Ref, now time.Time) (State, error) {
	st, err := j.states.State(ctx, ref)
	switch {
	case solstice.IsKind(err, solstice.KindNotFound):
		return NewState(ref, now), nil
	case err != nil:
		return State{}, fmt.Errorf("load state: %w", err)
	}
	return st, nil
}

// read returns the rule's counters for the current test, or the source's
// error and whether the failures have lasted longer than the rule's
// MissingAfter, so that the rule must be held rather than left unwatched.
func (j *Job) read(ctx context.Context, r Rule, st State, now time.Time) (c Counters, overdue bool, err error) {
	c, err = j.counters.Counters(ctx, r, st.TestStarted)
	if err == nil && c.Since.Before(st.TestStarted) {
		err = solstice.Errorf(solstice.KindInternal, "counters since %s for a test that started at %s",
			c.Since.Format(time.RFC3339), st.TestStarted.Format(time.RFC3339))
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err == nil {
		delete(j.failures, r.Ref)
		return c, false, nil
	}
	first, seen := j.failures[r.Ref]
	if !seen {
		first = now
		j.failures[r.Ref] = now
	}
	return Counters{}, now.Sub(first) > r.WithDefaults().MissingAfter, fmt.Errorf("read counters: %w", err)
}

// settle carries out st's pending incident and records that it is done.
// With claim, it first claims the incident, unless another job claimed it
// less than the claim timeout ago. It returns the latest state it stored
// (or st), whose Pending is nil when the incident was carried out.
func (j *Job) settle(ctx context.Context, st State, now time.Time, claim bool) (State, error) {
	if claim {
		if now.Sub(st.ClaimedAt) < j.claim {
			return st, nil
		}
		c := st
		c.Version++
		c.ClaimedAt = now
		if err := j.states.SwapState(ctx, st.Version, c); err != nil {
			if solstice.IsKind(err, solstice.KindConflict) {
				return st, nil
			}
			return st, fmt.Errorf("claim incident %s: %w", st.Pending.ID, err)
		}
		st = c
	}
	if err := j.actions.Apply(ctx, *st.Pending); err != nil {
		return st, fmt.Errorf("carry out incident %s: %w", st.Pending.ID, err)
	}
	j.log.Info("guardrail incident", "guardrail", st.Guardrail.String(), "event", st.Pending.Event,
		"action", st.Pending.Action, "id", st.Pending.ID, "reason", st.Pending.Reason)
	done := st
	done.Version++
	done.Pending, done.ClaimedAt = nil, time.Time{}
	if err := j.states.SwapState(ctx, st.Version, done); err != nil {
		if solstice.IsKind(err, solstice.KindConflict) {
			return st, nil
		}
		return st, fmt.Errorf("record incident %s: %w", st.Pending.ID, err)
	}
	return done, nil
}

// Resume resumes the tripped guardrail ref for the person by at now: a new
// test starts that counts only data after now, and an EventResume incident
// is carried out. Resuming the flag's rollout itself is the rollout's
// business.
//
// It returns the store's KindNotFound error for a guardrail that has no
// state (it never tripped), a KindConflict error when it is not tripped,
// when its action has not been carried out yet, or when another writer
// changed it meanwhile, and the store's or Actions' errors.
func (j *Job) Resume(ctx context.Context, ref Ref, by solstice.Actor, now time.Time) (State, error) {
	st, err := j.states.State(ctx, ref)
	if err != nil {
		return State{}, fmt.Errorf("resume guardrail %s: %w", ref, err)
	}
	next, err := Resume(st, by, now)
	if err != nil {
		return st, err
	}
	if err := j.states.SwapState(ctx, st.Version, next); err != nil {
		return st, fmt.Errorf("resume guardrail %s: %w", ref, err)
	}
	return j.settle(ctx, next, now, false)
}

// Report is one guardrail's status: its rule, its stored state and a
// verdict evaluated now on the current test's counters.
type Report struct {
	Rule    Rule    `json:"rule"`
	State   State   `json:"state"`
	Verdict Verdict `json:"verdict"`
}

// Reports evaluates every guardrail at now without changing anything, for
// the status API. It returns the error of listing the rules, or the
// errors of loading states and counters, joined; guardrails whose state
// fails to load are left out, those whose counters fail show a hold.
func (j *Job) Reports(ctx context.Context, now time.Time) ([]Report, error) {
	rules, err := j.rules.Rules(ctx)
	if err != nil {
		return nil, fmt.Errorf("list guardrails: %w", err)
	}
	alphas := splitAlpha(rules)
	var errs []error
	out := make([]Report, 0, len(rules))
	for i, r := range rules {
		st, err := j.load(ctx, r.Ref, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("guardrail %s: %w", r.Ref, err))
			continue
		}
		c, err := j.counters.Counters(ctx, r, st.TestStarted)
		if err != nil {
			errs = append(errs, fmt.Errorf("guardrail %s: read counters: %w", r.Ref, err))
		}
		out = append(out, Report{Rule: r, State: st, Verdict: evaluate(r, alphas[i], c, err == nil, now, true)})
	}
	return out, errors.Join(errs...)
}
