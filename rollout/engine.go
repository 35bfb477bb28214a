package rollout

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
)

// Defaults of the options.
const (
	DefaultInterval     = 10 * time.Second
	DefaultClaimTimeout = time.Minute
	DefaultLateAfter    = time.Minute
)

// Option configures a Scheduler or a Service.
type Option func(*engine)

// WithClock sets the clock (default solstice.WallClock).
func WithClock(c solstice.Clock) Option { return func(e *engine) { e.clock = c } }

// WithInterval sets how often a Scheduler's Run ticks (default
// DefaultInterval; a non-positive d keeps it).
func WithInterval(d time.Duration) Option {
	return func(e *engine) {
		if d > 0 {
			e.interval = d
		}
	}
}

// WithClaimTimeout sets how long a change claimed by one scheduler is left
// to it before another one takes it over (default DefaultClaimTimeout; a
// non-positive d keeps it). It must be longer than applying one change
// takes.
func WithClaimTimeout(d time.Duration) Option {
	return func(e *engine) {
		if d > 0 {
			e.claim = d
		}
	}
}

// WithLateAfter sets how late a change must be applied for its revision
// message to say so (default DefaultLateAfter). Records and audit entries
// always carry the exact lateness.
func WithLateAfter(d time.Duration) Option { return func(e *engine) { e.lateAfter = d } }

// WithSampleSource sets what measures the arms for the minimum-sample gate.
// Without one, a plan with a minimum sample never passes that gate.
func WithSampleSource(s SampleSource) Option { return func(e *engine) { e.sample = s } }

// WithEvidence sets what reads the guardrails' evidence when an experiment
// ends. Without one, an experiment's decision has the guardrails' states
// but not their numbers, and is never ship.
func WithEvidence(src EvidenceSource) Option { return func(e *engine) { e.evidence = src } }

// WithInstance names this process in claims (default: "scheduler-" and a
// random suffix).
func WithInstance(name string) Option { return func(e *engine) { e.instance = name } }

// WithLogger sets the logger of Run (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(e *engine) { e.log = l } }

// engine carries out plan transitions and event changes; Scheduler and
// Service share it.
type engine struct {
	store     Store
	flags     Flags
	guards    Guardrails
	sample    SampleSource
	evidence  EvidenceSource
	clock     solstice.Clock
	interval  time.Duration
	claim     time.Duration
	lateAfter time.Duration
	instance  string
	log       *slog.Logger
}

func newEngine(store Store, fl Flags, guards Guardrails, opts []Option) *engine {
	e := &engine{
		store: store, flags: fl, guards: guards,
		clock: solstice.WallClock, interval: DefaultInterval, claim: DefaultClaimTimeout, lateAfter: DefaultLateAfter,
		instance: "scheduler-" + strings.ToLower(rand.Text()[:8]), log: slog.Default(),
	}
	for _, o := range opts {
		o(e)
	}
	return e
}

// errSuperseded means that a plan's pending change was taken over or
// replaced by another process while this one was applying it.
var errSuperseded = errors.New("superseded")

// transient reports whether err may go away by itself (an outage), so the
// change must be retried rather than recorded as failed.
func transient(err error) bool {
	return err != nil && solstice.ErrorKind(err) == solstice.KindInternal
}

func (e *engine) head(ctx context.Context, env string) (int64, error) {
	heads, err := e.flags.Heads(ctx)
	if err != nil {
		return 0, err
	}
	h, ok := heads[env]
	if !ok {
		return 0, solstice.Errorf(solstice.KindNotFound, "environment %q not found", env)
	}
	return h, nil
}

// ---- writing a flag ----

type writeSpec struct {
	env, flag string
	id        string // the change's ID, tagged in the revision message
	actor     solstice.Actor
	message   string
	// after > 0 makes a retry: revisions after it are searched for one
	// tagged with id that changed the flag, which means the change was
	// already written.
	after int64
	retry bool
	build func(cur flags.Config) (flags.Config, error)
	// check, if set, runs before each new attempt after a concurrent edit;
	// an error stops the write.
	check func(ctx context.Context) error
}

// write applies spec to its flag through the flags service: read, build,
// put with the read revision as the expectation, again on a concurrent
// edit. A configuration already as wanted appends no revision.
func (e *engine) write(ctx context.Context, spec writeSpec) (Write, error) {
	w := Write{Flag: spec.flag}
	if spec.retry {
		rev, before, found, err := e.findTagged(ctx, spec.env, spec.flag, spec.id, spec.after)
		if err != nil {
			return w, err
		}
		if found {
			w.Revision, w.Before, w.Note = rev, before, fmt.Sprintf("written in revision %d before a restart", rev)
			return w, nil
		}
	}
	ctx = solstice.WithActor(ctx, spec.actor)
	const attempts = 5
	for attempt := range attempts {
		if attempt > 0 && spec.check != nil {
			if err := spec.check(ctx); err != nil {
				return w, err
			}
		}
		fc, err := e.flags.GetConfig(ctx, spec.env, spec.flag)
		if err != nil {
			return w, fmt.Errorf("read %s in %s: %w", spec.flag, spec.env, err)
		}
		before := fc.Config
		w.Before, w.BeforeRevision = &before, fc.Revision
		next, err := spec.build(cloneConfig(fc.Config))
		if err != nil {
			return w, err
		}
		if sameConfig(next, fc.Config) {
			w.Note = "already in force"
			return w, nil
		}
		rev, err := e.flags.PutConfig(ctx, spec.env, spec.flag, next, fc.Revision, spec.message+" ["+spec.id+"]")
		if solstice.IsKind(err, solstice.KindPreconditionFailed) {
			continue
		}
		if err != nil {
			return w, fmt.Errorf("write %s in %s: %w", spec.flag, spec.env, err)
		}
		if len(rev.Diff) > 0 {
			w.Revision = rev.Number
		}
		return w, nil
	}
	return w, solstice.Errorf(solstice.KindConflict, "%s in %s was changed %d times while the change was being written", spec.flag, spec.env, attempts)
}

// findTagged looks, among env's revisions after `after`, for one tagged
// with id that changed flag, and returns its number and the flag's
// configuration before it.
func (e *engine) findTagged(ctx context.Context, env, flag, id string, after int64) (int64, *flags.Config, bool, error) {
	const page = 100
	var before int64
	for {
		revs, err := e.flags.ListRevisions(ctx, env, flags.RevisionFilter{BeforeNumber: before, Limit: page})
		if err != nil {
			return 0, nil, false, fmt.Errorf("look for the revisions of change %s: %w", id, err)
		}
		for _, r := range revs {
			if r.Number <= after {
				return 0, nil, false, nil
			}
			if !strings.Contains(r.Message, "["+id+"]") {
				continue
			}
			for _, c := range r.Diff {
				if c.Kind != flags.KindFlag || c.Key != flag {
					continue
				}
				var st flags.FlagState
				if c.Before != nil {
					if err := json.Unmarshal(c.Before, &st); err != nil {
						return 0, nil, false, fmt.Errorf("decode revision %d of %s: %w", r.Number, env, err)
					}
				}
				return r.Number, &st.Config, true, nil
			}
		}
		if len(revs) < page {
			return 0, nil, false, nil
		}
		before = revs[len(revs)-1].Number
	}
}

func (e *engine) lateNote(late time.Duration) string {
	if late > e.lateAfter && late > 0 {
		return fmt.Sprintf(" (applied %s late)", late.Round(time.Second))
	}
	return ""
}

func audit(now time.Time, actor solstice.Actor, action, env, resource string, details any) solstice.AuditEntry {
	a := solstice.AuditEntry{Time: now.UTC(), Actor: actor, Action: action, Environment: env, Resource: resource}
	if details != nil {
		if b, err := json.Marshal(details); err == nil {
			a.Details = b
		}
	}
	return a
}

// ---- plans ----

// input gathers what Decide needs about p.
func (e *engine) input(ctx context.Context, p Plan, now time.Time) (Input, error) {
	in := Input{Now: now, Guardrails: []GuardrailStatus{}}
	if e.guards != nil {
		defs, err := e.guards.ListGuardrails(ctx, p.Environment, p.Flag)
		if err != nil && !solstice.IsKind(err, solstice.KindNotFound) {
			return in, fmt.Errorf("read the guardrails of %s in %s: %w", p.Flag, p.Environment, err)
		}
		for _, d := range defs {
			g := GuardrailStatus{Key: d.Key, Action: d.Action, Phase: guardrails.PhaseCollecting, Reason: "no data yet"}
			if g.Action == "" {
				g.Action = guardrails.ActionRollback
			}
			st, err := e.guards.State(ctx, d.Ref)
			switch {
			case err == nil:
				g.Phase, g.Reason, g.Test = st.Phase, st.Reason, st.Test
			case !solstice.IsKind(err, solstice.KindNotFound):
				return in, fmt.Errorf("read the state of guardrail %s: %w", d.Ref, err)
			}
			in.Guardrails = append(in.Guardrails, g)
		}
	}
	if p.Gates.MinSample > 0 && p.Status == StatusRunning && e.sample != nil {
		s, err := e.sample.Sample(ctx, p, p.StepStarted)
		if err != nil {
			in.SampleError = err.Error()
		} else {
			in.Sample = &s
		}
	}
	return in, nil
}

// startable says why p cannot start now, or returns nil: a guardrail of
// its flag is tripped, or another plan of the flag is under way.
func (e *engine) startable(ctx context.Context, p Plan, now time.Time) error {
	in, err := e.input(ctx, p, now)
	if err != nil {
		return err
	}
	for _, g := range in.Guardrails {
		if g.Phase == guardrails.PhaseTripped {
			return solstice.Errorf(solstice.KindConflict, "rollout %s cannot start: guardrail %s of %s is tripped; resume it first", p.ID, g.Key, p.Flag)
		}
	}
	others, err := e.store.ListPlans(ctx, PlanFilter{Environment: p.Environment, Flag: p.Flag, Active: true})
	if err != nil {
		return err
	}
	for _, o := range others {
		if o.ID != p.ID && (o.Status == StatusRunning || o.Status == StatusPaused) {
			return solstice.Errorf(solstice.KindConflict, "rollout %s cannot start: rollout %s of %s is %s", p.ID, o.ID, p.Flag, o.Status)
		}
	}
	return nil
}

// commit stores next in place of p (compare-and-swap on p's version) and,
// when next has a pending change, applies it. A transition that ends an
// experiment carries its decision (see conclude). A lost race returns the
// store's KindPreconditionFailed error.
func (e *engine) commit(ctx context.Context, p, next Plan, entry solstice.AuditEntry) (Plan, error) {
	next, err := e.conclude(ctx, p, next)
	if err != nil {
		return p, err
	}
	stored, err := e.store.PutPlan(ctx, next, p.Version, []solstice.AuditEntry{entry})
	if err != nil {
		return p, err
	}
	if stored.Pending == nil {
		return stored, nil
	}
	return e.applyPending(ctx, stored, false)
}

func pct(w int) string { return fmt.Sprintf("%g%%", float64(w)/100) }

// applyPending writes p's pending change and records that it is done. With
// retry, it first looks for a revision written for it before a restart.
// It returns the plan as stored afterwards; a transient failure leaves the
// change pending (and is returned), to be retried once its claim is stale.
func (e *engine) applyPending(ctx context.Context, p Plan, retry bool) (Plan, error) {
	pd := *p.Pending
	reason := ""
	if n := len(p.History); n > 0 {
		reason = p.History[n-1].Reason
	}
	spec := writeSpec{env: p.Environment, flag: p.Flag, id: pd.ID, actor: p.Actor(), after: pd.Head, retry: retry,
		check: func(ctx context.Context) error {
			cur, err := e.store.GetPlan(ctx, p.Environment, p.ID)
			if err != nil {
				return err
			}
			if cur.Pending == nil || cur.Pending.ID != pd.ID || cur.Pending.ClaimedBy != pd.ClaimedBy {
				return errSuperseded
			}
			return nil
		}}
	switch pd.Kind {
	case PendingRollback:
		spec.message = fmt.Sprintf("Rollout %s rolled back: %s", p.ID, reason)
		spec.build = func(cur flags.Config) (flags.Config, error) {
			c, _ := RolledBackConfig(p, cur)
			return c, nil
		}
	default:
		s := p.Steps[pd.Step]
		where := ""
		if s.Segment != "" {
			where = " in segment " + s.Segment
		}
		spec.message = fmt.Sprintf("Rollout %s: step %d of %d, treatment %s and control %s%s (%s)",
			p.ID, pd.Step+1, len(p.Steps), pct(s.Weight), pct(ControlWeight(s.Weight)), where, reason)
		if n := len(p.History); n > 0 {
			spec.message += e.lateNote(time.Duration(p.History[n-1].Late))
		}
		spec.build = func(cur flags.Config) (flags.Config, error) { return StepConfig(p, cur, pd.Step), nil }
	}
	w, err := e.write(ctx, spec)
	if errors.Is(err, errSuperseded) {
		return e.store.GetPlan(ctx, p.Environment, p.ID)
	}
	if transient(err) {
		return p, err
	}
	now := e.clock.Now().UTC()
	details := map[string]any{"change": pd.ID, "kind": pd.Kind, "step": pd.Step + 1, "revision": w.Revision}
	if w.Note != "" {
		details["note"] = w.Note
	}
	var failure error
	for attempt := 0; ; attempt++ {
		next := p.finish(w.Revision, "")
		action := "rollout.apply"
		if err != nil {
			failure = err
			details["error"] = solstice.ErrorMessage(err)
			action = "rollout.apply_failed"
			if pd.Kind == PendingStep && next.Status == StatusRunning {
				next, _ = next.Pause(now, p.Actor(), fmt.Sprintf("step %d could not be applied: %s", pd.Step+1, solstice.ErrorMessage(err)))
			} else {
				next.Reason = fmt.Sprintf("%s; the change could not be written (%s): serve the baseline by hand", next.Reason, solstice.ErrorMessage(err))
			}
		}
		stored, perr := e.store.PutPlan(ctx, next, p.Version, []solstice.AuditEntry{audit(now, p.Actor(), action, p.Environment, "rollout/"+p.ID, details)})
		if perr == nil {
			if failure == nil && pd.Kind == PendingStep {
				e.restartTests(ctx, stored)
			}
			return stored, failure
		}
		if !solstice.IsKind(perr, solstice.KindPreconditionFailed) || attempt >= 3 {
			return p, perr
		}
		// Someone changed the plan meanwhile (a person paused it, another
		// scheduler took the claim over): record the write on the newest
		// version if the change is still this one.
		cur, gerr := e.store.GetPlan(ctx, p.Environment, p.ID)
		if gerr != nil {
			return p, gerr
		}
		if cur.Pending == nil || cur.Pending.ID != pd.ID {
			return cur, nil
		}
		p = cur
	}
}

// ---- experiments ----

// conclude returns next with its experiment decision when next ends an
// experiment (and prev had not ended): the decision is computed here, once,
// and stored in the same write as the transition, whose compare-and-swap
// on the plan's version lets exactly one of several schedulers (or a
// scheduler and a person) make it. The store never replaces a stored
// decision.
//
// A rollback never waits for the evidence: when it cannot be read, the
// decision (roll_back, whatever the evidence) says so. Any other ending
// returns the error, to be retried, rather than store a decision made
// without the evidence.
func (e *engine) conclude(ctx context.Context, prev, next Plan) (Plan, error) {
	if !next.Experiment || !next.Status.Terminal() || prev.Status.Terminal() || next.ExperimentDecision != nil {
		return next, nil
	}
	in, err := e.experimentInput(ctx, next)
	if err != nil {
		if next.Status != StatusRolledBack {
			return prev, fmt.Errorf("read the evidence of experiment %s: %w", next.ID, err)
		}
		in.Error = solstice.ErrorMessage(err)
	}
	d := DecideExperiment(next, in)
	next.ExperimentDecision = &d
	return next, nil
}

// experimentInput reads every guardrail of p's flag as it stands now, at
// p's end. It returns the error of listing them and transient errors of
// reading one; others are kept in that guardrail's report.
func (e *engine) experimentInput(ctx context.Context, p Plan) (ExperimentInput, error) {
	var in ExperimentInput
	if e.guards == nil {
		return in, nil
	}
	defs, err := e.guards.ListGuardrails(ctx, p.Environment, p.Flag)
	if solstice.IsKind(err, solstice.KindNotFound) {
		return in, nil
	}
	if err != nil {
		return in, fmt.Errorf("read the guardrails of %s in %s: %w", p.Flag, p.Environment, err)
	}
	for _, d := range defs {
		r := GuardrailReport{Definition: d}
		if e.evidence == nil {
			st, err := e.guards.State(ctx, d.Ref)
			switch {
			case err == nil:
				r.State = &st
			case transient(err):
				return in, fmt.Errorf("read the state of guardrail %s: %w", d.Ref, err)
			}
			r.Error = "no evidence source is configured: the counts are unknown"
			in.Guardrails = append(in.Guardrails, r)
			continue
		}
		det, err := e.evidence.Status(ctx, d.Ref)
		switch {
		case err == nil:
			r.State, r.Verdict = &det.State, &det.Verdict
		case transient(err):
			return in, fmt.Errorf("evaluate guardrail %s: %w", d.Ref, err)
		default:
			r.Error = solstice.ErrorMessage(err)
		}
		r.Incidents, err = e.evidence.Incidents(ctx, guardrails.IncidentFilter{Environment: p.Environment, Flag: p.Flag, Guardrail: d.Key, Limit: 100})
		if err != nil {
			return in, fmt.Errorf("list the incidents of guardrail %s: %w", d.Ref, err)
		}
		in.Guardrails = append(in.Guardrails, r)
	}
	return in, nil
}

// restartTests starts a new test on new data for every guardrail of p's
// flag that is not tripped, counting from the start of p's current step:
// a step changes the population, so evidence from the previous step does
// not carry over (a trip latches and stays). It is idempotent per step and
// best effort: failures are logged and the guardrail job keeps testing.
func (e *engine) restartTests(ctx context.Context, p Plan) {
	if e.guards == nil {
		return
	}
	defs, err := e.guards.ListGuardrails(ctx, p.Environment, p.Flag)
	if err != nil {
		if !solstice.IsKind(err, solstice.KindNotFound) {
			e.log.Warn("rollout: cannot restart guardrail tests", "plan", p.ID, "err", err)
		}
		return
	}
	since := p.StepStarted
	reason := fmt.Sprintf("rollout %s step %d started: a new test on new data", p.ID, p.Step+1)
	for _, d := range defs {
		if err := e.restartTest(ctx, d.Ref, since, reason); err != nil {
			e.log.Warn("rollout: cannot restart guardrail test", "guardrail", d.String(), "err", err)
		}
	}
}

// restartTest moves guardrail ref to a new test counting data from since,
// unless it is tripped (the latch), has an incident pending, or already
// counts from since or later.
func (e *engine) restartTest(ctx context.Context, ref guardrails.Ref, since time.Time, reason string) error {
	for attempt := 0; ; attempt++ {
		st, err := e.guards.State(ctx, ref)
		var old int64
		switch {
		case solstice.IsKind(err, solstice.KindNotFound):
			st = guardrails.NewState(ref, since)
		case err != nil:
			return err
		case st.Phase == guardrails.PhaseTripped || st.Pending != nil || !st.TestStarted.Before(since):
			return nil
		default:
			if st.Phase != guardrails.PhaseCollecting {
				if err := guardrails.Transition(st.Phase, guardrails.PhaseCollecting); err != nil {
					return err
				}
			}
			old = st.Version
			st.Test++
		}
		next := st
		next.Phase, next.TestStarted, next.Since, next.Reason, next.Version = guardrails.PhaseCollecting, since, since, reason, old+1
		err = e.guards.SwapState(ctx, old, next)
		if !solstice.IsKind(err, solstice.KindConflict) || attempt >= 3 {
			return err
		}
	}
}

// tickPlan moves one plan if it is due: a pending change whose claim is
// stale is taken over, a scheduled plan starts at its time, a running plan
// advances, completes, pauses or rolls back as Decide says.
func (e *engine) tickPlan(ctx context.Context, p Plan, now time.Time) error {
	if p.Pending != nil {
		if p.Pending.ClaimedBy != e.instance && !p.Pending.ClaimedAt.Before(now.Add(-e.claim)) {
			return nil // another scheduler is on it
		}
		next := p
		pd := *p.Pending
		pd.ClaimedBy, pd.ClaimedAt = e.instance, now
		next.Pending = &pd
		stored, err := e.store.PutPlan(ctx, next, p.Version, nil)
		if solstice.IsKind(err, solstice.KindPreconditionFailed) {
			return nil
		}
		if err != nil {
			return err
		}
		_, err = e.applyPending(ctx, stored, true)
		return err
	}
	head, err := e.head(ctx, p.Environment)
	if err != nil {
		return err
	}
	var next Plan
	var entry solstice.AuditEntry
	switch p.Status {
	case StatusScheduled:
		if p.StartAt == nil || p.StartAt.After(now) {
			return nil
		}
		late := now.Sub(*p.StartAt)
		if err := e.startable(ctx, p, now); err != nil {
			if transient(err) {
				return err
			}
			next, err = p.Cancel(now, p.Actor(), "could not start at its time: "+solstice.ErrorMessage(err))
			if err != nil {
				return err
			}
			entry = audit(now, p.Actor(), "rollout.cancel", p.Environment, "rollout/"+p.ID, map[string]any{"reason": next.Reason})
			break
		}
		next, err = p.Begin(now, p.Actor(), "its start time came"+e.lateNote(late), late, head, e.instance)
		if err != nil {
			return err
		}
		entry = audit(now, p.Actor(), "rollout.start", p.Environment, "rollout/"+p.ID, lateDetails(*p.StartAt, now))
	case StatusRunning, StatusPaused:
		in, err := e.input(ctx, p, now)
		if err != nil {
			return err
		}
		d := Decide(p, in)
		switch d.Action {
		case ActAdvance, ActComplete:
			late := now.Sub(d.Due)
			next, err = p.Advance(now, p.Actor(), d.Reason, late, head, e.instance)
			action := "rollout.advance"
			if d.Action == ActComplete {
				action = "rollout.complete"
			}
			entry = audit(now, p.Actor(), action, p.Environment, "rollout/"+p.ID, lateDetails(d.Due, now))
		case ActRollBack:
			next, err = p.RollBack(now, p.Actor(), d.Reason, head, e.instance)
			entry = audit(now, p.Actor(), "rollout.roll_back", p.Environment, "rollout/"+p.ID, map[string]any{"reason": d.Reason})
		case ActPause:
			next, err = p.Pause(now, p.Actor(), d.Reason)
			entry = audit(now, p.Actor(), "rollout.pause", p.Environment, "rollout/"+p.ID, map[string]any{"reason": d.Reason})
		default:
			return nil
		}
		if err != nil {
			return err
		}
	default:
		return nil
	}
	_, err = e.commit(ctx, p, next, entry)
	if solstice.IsKind(err, solstice.KindPreconditionFailed) {
		return nil // another scheduler (or a person) moved it first
	}
	return err
}

func lateDetails(due, now time.Time) map[string]any {
	late := max(now.Sub(due), 0)
	return map[string]any{"due": due.UTC(), "applied_at": now.UTC(), "late": Duration(late), "late_seconds": late.Seconds()}
}

// ---- events ----

// tickEvent applies the due changes of one event, in order: its phases that
// have started, then its end. A change claimed by another scheduler stops
// the event's turn (its later changes wait for it).
func (e *engine) tickEvent(ctx context.Context, ev Event, now time.Time) error {
	times, err := ev.Times()
	if err != nil {
		return err
	}
	recs, err := e.store.ListChanges(ctx, RecordFilter{Environment: ev.Environment, EventUID: ev.UID})
	if err != nil {
		return err
	}
	for i, ph := range ev.Phases {
		due := times.Phases[i]
		if !due.Before(times.Close) {
			break // the event ended (was cancelled) before this phase
		}
		if due.After(now) {
			return nil
		}
		id := PhaseChangeID(ev, ph.Name)
		if r, ok := findRecord(recs, id); ok && r.Status != StatusClaimed {
			continue
		}
		// Catching up on an event that is already over: its phases would
		// only flash on and off; the end still applies its end state.
		skip := !times.Close.After(now) && !anyApplied(recs)
		rec, won, err := e.claimChange(ctx, ev, id, KindPhaseStart, ph.Name, due, now)
		if err != nil || !won {
			return err
		}
		if skip {
			rec, err = e.finishChange(ctx, ev, rec, StatusSkipped, nil, "the event was over when the scheduler came to it: the phase was not applied", now)
		} else {
			rec, err = e.applyPhase(ctx, ev, i, rec, recs, now)
		}
		if err != nil {
			return err
		}
		recs = append(recs, rec)
	}
	if times.Close.After(now) {
		return nil
	}
	id := EndChangeID(ev)
	if r, ok := findRecord(recs, id); ok && r.Status != StatusClaimed {
		return nil
	}
	rec, won, err := e.claimChange(ctx, ev, id, KindEventEnd, "", times.Close, now)
	if err != nil || !won {
		return err
	}
	_, err = e.applyEnd(ctx, ev, rec, recs, now)
	return err
}

// findRecord returns the newest record of id in recs.
func findRecord(recs []Record, id string) (Record, bool) {
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].ID == id {
			return recs[i], true
		}
	}
	return Record{}, false
}

// anyApplied reports whether any phase of recs was applied (or is being).
func anyApplied(recs []Record) bool {
	return slices.ContainsFunc(recs, func(r Record) bool {
		return r.Kind == KindPhaseStart && (r.Status == StatusDone || r.Status == StatusFailed || r.Status == StatusClaimed)
	})
}

func (e *engine) claimChange(ctx context.Context, ev Event, id string, kind RecordKind, phase string, due, now time.Time) (Record, bool, error) {
	head, err := e.head(ctx, ev.Environment)
	if err != nil {
		return Record{}, false, err
	}
	r := Record{ID: id, Environment: ev.Environment, EventUID: ev.UID, Event: ev.Key, Kind: kind, Phase: phase, Due: due,
		Status: StatusClaimed, ClaimedBy: e.instance, ClaimedAt: now, Head: head}
	return e.store.ClaimChange(ctx, r, now.Add(-e.claim))
}

func (e *engine) finishChange(ctx context.Context, ev Event, r Record, status RecordStatus, writes []Write, outcome string, now time.Time) (Record, error) {
	r.Status, r.Writes, r.Outcome, r.AppliedAt = status, writes, outcome, now.UTC()
	r.Late = Duration(max(now.Sub(r.Due), 0))
	action := "event.phase_start"
	if r.Kind == KindEventEnd {
		action = "event.end"
	}
	details := lateDetails(r.Due, now)
	details["change"], details["status"], details["outcome"] = r.ID, status, outcome
	var revs []int64
	for _, w := range writes {
		if w.Revision > 0 {
			revs = append(revs, w.Revision)
		}
	}
	details["revisions"] = revs
	stored, err := e.store.FinishChange(ctx, r, []solstice.AuditEntry{audit(now, ev.Actor(), action, ev.Environment, "event/"+ev.Key, details)})
	if solstice.IsKind(err, solstice.KindConflict) {
		// Our claim went stale and another scheduler took the change over:
		// it finds what we wrote by its tag and records it.
		e.log.Warn("rollout: lost the claim of a change while applying it", "change", r.ID)
		return r, nil
	}
	return stored, err
}

// capturedBefore returns, per flag, its configuration before the event
// first changed it, from the event's phase records in phase order.
func capturedBefore(ev Event, recs []Record) map[string]*flags.Config {
	out := map[string]*flags.Config{}
	for _, ph := range ev.Phases {
		r, ok := findRecord(recs, PhaseChangeID(ev, ph.Name))
		if !ok || r.Status == StatusSkipped {
			continue
		}
		for _, w := range r.Writes {
			if _, seen := out[w.Flag]; !seen && w.Before != nil {
				out[w.Flag] = w.Before
			}
		}
	}
	return out
}

type flagChanges struct {
	flag    string
	changes []Change
}

// groupByFlag groups changes by flag, in the order of each flag's first
// change.
func groupByFlag(cs []Change) []flagChanges {
	var out []flagChanges
	for _, c := range cs {
		i := slices.IndexFunc(out, func(g flagChanges) bool { return g.flag == c.Flag })
		if i < 0 {
			out = append(out, flagChanges{flag: c.Flag})
			i = len(out) - 1
		}
		out[i].changes = append(out[i].changes, c)
	}
	return out
}

// applyPhase applies phase i of ev and finishes its record.
func (e *engine) applyPhase(ctx context.Context, ev Event, i int, rec Record, recs []Record, now time.Time) (Record, error) {
	ph := ev.Phases[i]
	late := now.Sub(rec.Due)
	captured := capturedBefore(ev, recs)
	var writes []Write
	var failures []string
	for _, g := range groupByFlag(ph.Changes) {
		var plain, starts []Change
		for _, c := range g.changes {
			if c.Rollout != "" {
				starts = append(starts, c)
			} else {
				plain = append(plain, c)
			}
		}
		var w Write
		var err error
		if len(plain) > 0 {
			w, err = e.write(ctx, writeSpec{
				env: ev.Environment, flag: g.flag, id: rec.ID, actor: ev.Actor(), after: rec.Head, retry: rec.Attempt > 1,
				message: fmt.Sprintf("Event %s: phase %s starts%s", ev.Name, ph.Name, e.lateNote(late)),
				build: func(cur flags.Config) (flags.Config, error) {
					for _, c := range plain {
						var err error
						if cur, err = applyChange(cur, c); err != nil {
							return cur, err
						}
					}
					return cur, nil
				},
			})
		} else {
			w.Flag = g.flag
			var fc flags.FlagConfig
			if fc, err = e.flags.GetConfig(ctx, ev.Environment, g.flag); err == nil {
				w.Before, w.BeforeRevision = &fc.Config, fc.Revision
			}
		}
		if transient(err) {
			return rec, err
		}
		if err != nil {
			w.Error = solstice.ErrorMessage(err)
			failures = append(failures, g.flag+": "+w.Error)
		}
		if _, seen := captured[g.flag]; !seen && w.Before != nil {
			if base := g.changes[0].BaseRevision; base > 0 && w.BeforeRevision > 0 && base != w.BeforeRevision {
				w.Note = strings.TrimPrefix(w.Note+fmt.Sprintf("; changed since it was scheduled (revision %d then, %d now): applied on top of the current configuration", base, w.BeforeRevision), "; ")
			}
			captured[g.flag] = w.Before
		}
		for _, c := range starts {
			note, err := e.startForEvent(ctx, ev, ph, c, now, late)
			if transient(err) {
				return rec, err
			}
			if err != nil {
				w.Error = strings.TrimPrefix(w.Error+"; "+solstice.ErrorMessage(err), "; ")
				failures = append(failures, g.flag+": "+solstice.ErrorMessage(err))
			} else {
				w.Note = strings.TrimPrefix(w.Note+"; "+note, "; ")
			}
		}
		writes = append(writes, w)
	}
	status, outcome := StatusDone, fmt.Sprintf("phase %s started: %d flags changed", ph.Name, len(writes))
	if len(failures) > 0 {
		status, outcome = StatusFailed, fmt.Sprintf("phase %s started with failures: %s", ph.Name, strings.Join(failures, "; "))
	}
	if n := e.lateNote(late); n != "" {
		outcome += n
	}
	return e.finishChange(ctx, ev, rec, status, writes, outcome, now)
}

// startForEvent starts the plan a phase's change names, unless this event
// started it already.
func (e *engine) startForEvent(ctx context.Context, ev Event, ph Phase, c Change, now time.Time, late time.Duration) (string, error) {
	for attempt := 0; ; attempt++ {
		p, err := e.store.GetPlan(ctx, ev.Environment, c.Rollout)
		if err != nil {
			return "", err
		}
		if p.Flag != c.Flag {
			return "", solstice.Errorf(solstice.KindInvalid, "rollout %s is of flag %s, not %s", p.ID, p.Flag, c.Flag)
		}
		if slices.ContainsFunc(p.History, func(h HistoryEntry) bool { return h.Actor == ev.Actor().Name && h.To == StatusRunning }) {
			return fmt.Sprintf("rollout %s already started by this event", p.ID), nil
		}
		if p.Status != StatusDraft && p.Status != StatusScheduled {
			return "", solstice.Errorf(solstice.KindConflict, "rollout %s is %s: it cannot be started", p.ID, p.Status)
		}
		if err := e.startable(ctx, p, now); err != nil {
			return "", err
		}
		head, err := e.head(ctx, ev.Environment)
		if err != nil {
			return "", err
		}
		next, err := p.Begin(now, ev.Actor(), fmt.Sprintf("started by event %s, phase %s", ev.Key, ph.Name), late, head, e.instance)
		if err != nil {
			return "", err
		}
		stored, err := e.commit(ctx, p, next, audit(now, ev.Actor(), "rollout.start", ev.Environment, "rollout/"+p.ID, map[string]any{"event": ev.Key, "phase": ph.Name}))
		if solstice.IsKind(err, solstice.KindPreconditionFailed) && attempt < 3 {
			continue
		}
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("rollout %s started (step 1: %s)", p.ID, pct(stored.Steps[0].Weight)), nil
	}
}

// applyEnd ends ev: it cancels the plans it started that are still under
// way, sets back what its applied phases changed, applies its end state,
// and finishes the record (which closes the event).
func (e *engine) applyEnd(ctx context.Context, ev Event, rec Record, recs []Record, now time.Time) (Record, error) {
	applied := map[string]bool{}
	for _, ph := range ev.Phases {
		if r, ok := findRecord(recs, PhaseChangeID(ev, ph.Name)); ok && (r.Status == StatusDone || r.Status == StatusFailed) {
			applied[ph.Name] = true
		}
	}
	if len(applied) == 0 && ev.CancelledAt != nil {
		return e.finishChange(ctx, ev, rec, StatusSkipped, nil, "the event was cancelled before it started: nothing to end", now)
	}
	var failures []string
	for _, id := range ev.Plans() {
		if err := e.cancelForEvent(ctx, ev, id, now); err != nil {
			if transient(err) {
				return rec, err
			}
			failures = append(failures, solstice.ErrorMessage(err))
		}
	}
	touched := map[string]*fields{}
	for _, ph := range ev.Phases {
		if !applied[ph.Name] {
			continue
		}
		for _, c := range ph.Changes {
			if touched[c.Flag] == nil {
				touched[c.Flag] = &fields{}
			}
			touched[c.Flag].add(c)
		}
	}
	before := capturedBefore(ev, recs)
	var names []string
	for f := range touched {
		names = append(names, f)
	}
	for _, c := range ev.EndState {
		names = append(names, c.Flag)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	var writes []Write
	for _, flag := range names {
		w, err := e.write(ctx, writeSpec{
			env: ev.Environment, flag: flag, id: rec.ID, actor: ev.Actor(), after: rec.Head, retry: rec.Attempt > 1,
			message: fmt.Sprintf("Event %s ended%s", ev.Name, e.lateNote(now.Sub(rec.Due))),
			build: func(cur flags.Config) (flags.Config, error) {
				return endConfig(ev, flag, cur, before[flag], touched[flag])
			},
		})
		if transient(err) {
			return rec, err
		}
		if err != nil {
			w.Error = solstice.ErrorMessage(err)
			failures = append(failures, flag+": "+w.Error)
		}
		writes = append(writes, w)
	}
	status, outcome := StatusDone, fmt.Sprintf("the event ended: %d flags set back or to their end state", len(writes))
	if len(failures) > 0 {
		status, outcome = StatusFailed, "the event ended with failures: "+strings.Join(failures, "; ")
	}
	return e.finishChange(ctx, ev, rec, status, writes, outcome+e.lateNote(now.Sub(rec.Due)), now)
}

// endConfig returns flag's configuration once ev ends: cur with the fields
// the event's applied phases touched set back to before, then the event's
// end state for the flag applied.
func endConfig(ev Event, flag string, cur flags.Config, before *flags.Config, touched *fields) (flags.Config, error) {
	out := cur
	if before != nil && touched != nil {
		out = restore(cur, *before, *touched)
	}
	for _, c := range ev.EndState {
		if c.Flag != flag {
			continue
		}
		var err error
		if out, err = applyChange(out, c); err != nil {
			return cur, err
		}
	}
	return out, nil
}

// cancelForEvent cancels plan id if it is not finished (the event's end
// sets its flag back).
func (e *engine) cancelForEvent(ctx context.Context, ev Event, id string, now time.Time) error {
	for attempt := 0; ; attempt++ {
		p, err := e.store.GetPlan(ctx, ev.Environment, id)
		if solstice.IsKind(err, solstice.KindNotFound) || err == nil && p.Status.Terminal() {
			return nil
		}
		if err != nil {
			return err
		}
		reason := fmt.Sprintf("event %s ended", ev.Key)
		if p.Status == StatusDraft || p.Status == StatusScheduled {
			reason = fmt.Sprintf("event %s ended before the plan started", ev.Key)
		}
		next, err := p.Cancel(now, ev.Actor(), reason)
		if err != nil {
			return err
		}
		if next, err = e.conclude(ctx, p, next); err != nil {
			return err
		}
		_, err = e.store.PutPlan(ctx, next, p.Version, []solstice.AuditEntry{audit(now, ev.Actor(), "rollout.cancel", ev.Environment, "rollout/"+id, map[string]any{"event": ev.Key})})
		if solstice.IsKind(err, solstice.KindPreconditionFailed) && attempt < 3 {
			continue
		}
		return err
	}
}
