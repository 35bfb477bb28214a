package rollout

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Scheduler applies scheduled changes when they are due: the phases and
// ends of events, the starts of scheduled plans, and the steps of running
// plans whose gates pass (or their rollback when a guardrail trips).
//
// Each change is applied exactly once, even with several schedulers (one
// per control-plane process) on one database: an event's change is claimed
// in the store with a compare-and-swap before it is applied, and a plan's
// transition is itself a compare-and-swap on the plan's version that
// claims the configuration change it implies. A scheduler that dies while
// applying a change leaves its claim; once the claim is older than the
// claim timeout another scheduler takes it over and, before writing
// anything, looks for the revisions the first one already wrote (every
// revision of a change carries the change's ID in its message), so a crash
// between writing and recording never applies a change twice.
//
// A change whose time passed while no scheduler ran is applied once, at
// the next tick, and its record, its audit entry and its revision message
// say how late it was. An event that was over by then skips its phases
// (they would only flash on and off) and applies its end.
type Scheduler struct {
	e *engine
}

// NewScheduler returns a scheduler over the store, writing flags through
// fl and reading (and restarting the tests of) guardrails through guards,
// which may be nil when no guardrails are kept.
func NewScheduler(store Store, fl Flags, guards Guardrails, opts ...Option) *Scheduler {
	return &Scheduler{e: newEngine(store, fl, guards, opts)}
}

// Instance returns the name this scheduler claims changes under.
func (s *Scheduler) Instance() string { return s.e.instance }

// Run calls Tick every interval with the clock's time until ctx ends,
// logging Tick's errors; it then returns nil. A schedule must keep running
// after a failure, so no Tick error stops it.
func (s *Scheduler) Run(ctx context.Context) error {
	t := time.NewTicker(s.e.interval)
	defer t.Stop()
	for {
		if err := s.Tick(ctx, s.e.clock.Now()); err != nil && ctx.Err() == nil {
			s.e.log.Error("rollout scheduler tick failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick applies every change due at now: first the events' (in the order
// of their start), then the plans'. A failure of one event or plan does not
// stop the others; Tick returns them all, joined. A change that failed for
// a transient reason (an outage) is retried once its claim is stale; one
// that cannot apply (an invalid configuration) is recorded as failed, or
// pauses its plan, and is not retried.
func (s *Scheduler) Tick(ctx context.Context, now time.Time) error {
	now = now.UTC()
	var errs []error
	events, err := s.e.store.ListEvents(ctx, EventFilter{Open: true})
	if err != nil {
		errs = append(errs, fmt.Errorf("list events: %w", err))
	}
	for _, ev := range events {
		if err := s.e.tickEvent(ctx, ev, now); err != nil {
			errs = append(errs, fmt.Errorf("event %s/%s: %w", ev.Environment, ev.Key, err))
		}
	}
	plans, err := s.e.store.ListPlans(ctx, PlanFilter{Active: true})
	if err != nil {
		errs = append(errs, fmt.Errorf("list plans: %w", err))
	}
	for _, p := range plans {
		if err := s.e.tickPlan(ctx, p, now); err != nil {
			errs = append(errs, fmt.Errorf("rollout %s/%s: %w", p.Environment, p.ID, err))
		}
	}
	return errors.Join(errs...)
}
