package rollout

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
)

// Service is what the API, the UI and the CLI call: it defines plans and
// events, moves plans along their transitions for people, and answers the
// calendar and the preview. Every write is validated, audited, attributed
// to the context's actor (solstice.ActorFrom) and stored with optimistic
// concurrency: expect is the version the caller last read (0 to create,
// flags.AnyVersion to skip the check). A plan's change of the flag is
// written at once, through the same runner as the Scheduler's.
type Service struct {
	e *engine
}

// NewService returns the service over store, fl and guards (which may be
// nil when no guardrails are kept). The options are the Scheduler's; the
// instance name should be the process's scheduler's.
func NewService(store Store, fl Flags, guards Guardrails, opts ...Option) *Service {
	return &Service{e: newEngine(store, fl, guards, opts)}
}

// ---- plans ----

// PutPlan creates plan p (expect 0) or replaces its definition (expect its
// version). Only a draft or scheduled plan may be replaced; its runtime
// fields (status, step, history...) are kept as stored, and a new plan
// starts as a draft. The flag must exist in the environment with the
// plan's three variants, the control serving the same value as the
// baseline; the steps' segments and the required guardrails must exist.
//
// Errors: KindInvalid with field errors; KindNotFound for an unknown
// environment or flag; KindConflict when creating an existing plan or
// replacing one that has started; KindPreconditionFailed for a stale
// expect; the store's errors.
func (s *Service) PutPlan(ctx context.Context, p Plan, expect int64) (Plan, error) {
	if err := ValidatePlan(p); err != nil {
		return Plan{}, err
	}
	fc, err := s.e.flags.GetConfig(ctx, p.Environment, p.Flag)
	if err != nil {
		return Plan{}, err
	}
	if err := s.checkPlanRefs(ctx, p, fc); err != nil {
		return Plan{}, err
	}
	action := "rollout.create"
	if expect == 0 {
		p.Status, p.Step, p.StartAt, p.StepStarted, p.Approvals, p.Reason, p.Revision, p.Pending, p.History, p.ExperimentDecision =
			StatusDraft, -1, nil, time.Time{}, nil, "", 0, nil, nil, nil
	} else {
		action = "rollout.update"
		old, err := s.e.store.GetPlan(ctx, p.Environment, p.ID)
		if err != nil {
			return Plan{}, err
		}
		if expect != flags.AnyVersion && old.Version != expect {
			return Plan{}, stale("rollout "+p.ID, old.Version, expect)
		}
		if old.Status != StatusDraft && old.Status != StatusScheduled {
			return Plan{}, solstice.Errorf(solstice.KindConflict, "rollout %s is %s: only a draft or scheduled plan can be edited", p.ID, old.Status)
		}
		if old.Flag != p.Flag {
			return Plan{}, solstice.Invalid("invalid rollout plan", solstice.FieldError{Pointer: "/flag", Message: fmt.Sprintf("a plan's flag cannot change (it is %s)", old.Flag)})
		}
		def := p
		p = old
		p.Description, p.Treatment, p.Control, p.Baseline = def.Description, def.Treatment, def.Control, def.Baseline
		p.BucketBy, p.Salt, p.Steps, p.Gates, p.Manual, p.Experiment = def.BucketBy, def.Salt, def.Steps, def.Gates, def.Manual, def.Experiment
		expect = old.Version
	}
	now := s.e.clock.Now().UTC()
	return s.e.store.PutPlan(ctx, p, expect, []solstice.AuditEntry{audit(now, solstice.ActorFrom(ctx), action, p.Environment, "rollout/"+p.ID, p)})
}

// checkPlanRefs checks what p refers to against the flag's configuration
// fc, its segments and its guardrails.
func (s *Service) checkPlanRefs(ctx context.Context, p Plan, fc flags.FlagConfig) error {
	var fs []solstice.FieldError
	values := map[string]json.RawMessage{}
	keys := make([]string, len(fc.Config.Variants))
	for i, v := range fc.Config.Variants {
		keys[i] = v.Key
		if c, err := flags.Canonical(v.Value); err == nil {
			values[v.Key] = c
		}
	}
	for _, v := range []struct{ ptr, key string }{{"/treatment", p.Treatment}, {"/control", p.Control}, {"/baseline", p.Baseline}} {
		if !slices.Contains(keys, v.key) {
			fs = append(fs, solstice.FieldError{Pointer: v.ptr, Message: fmt.Sprintf("%q is not a variant of %s in %s (variants: %s)", v.key, p.Flag, p.Environment, strings.Join(keys, ", "))})
		}
	}
	if c, b := values[p.Control], values[p.Baseline]; c != nil && b != nil && !bytes.Equal(c, b) {
		fs = append(fs, solstice.FieldError{Pointer: "/control", Message: fmt.Sprintf("%q serves %s but the baseline %q serves %s: a control group gets the baseline's value under a variant of its own", p.Control, c, p.Baseline, b)})
	}
	set, err := s.e.flags.Set(ctx, p.Environment)
	if err != nil {
		return err
	}
	for i, st := range p.Steps {
		if st.Segment != "" && !slices.ContainsFunc(set.Segments, func(sg flags.Segment) bool { return sg.Key == st.Segment }) {
			fs = append(fs, solstice.FieldError{Pointer: fmt.Sprintf("/steps/%d/segment", i), Message: fmt.Sprintf("no segment %q in %s", st.Segment, p.Environment)})
		}
	}
	if len(p.Gates.Guardrails) > 0 {
		var defined []string
		if s.e.guards != nil {
			defs, err := s.e.guards.ListGuardrails(ctx, p.Environment, p.Flag)
			if err != nil && !solstice.IsKind(err, solstice.KindNotFound) {
				return err
			}
			for _, d := range defs {
				defined = append(defined, d.Key)
			}
		}
		for i, g := range p.Gates.Guardrails {
			if !slices.Contains(defined, g) {
				fs = append(fs, solstice.FieldError{Pointer: fmt.Sprintf("/gates/guardrails/%d", i), Message: fmt.Sprintf("%s has no guardrail %q in %s", p.Flag, g, p.Environment)})
			}
		}
	}
	if len(fs) > 0 {
		return solstice.Invalid(fmt.Sprintf("invalid rollout plan %q", p.ID), fs...)
	}
	return nil
}

func stale(what string, have, expect int64) error {
	return solstice.Errorf(solstice.KindPreconditionFailed, "%s is at version %d, not %d: reload and retry", what, have, expect)
}

// GetPlan returns one plan, or KindNotFound.
func (s *Service) GetPlan(ctx context.Context, env, id string) (Plan, error) {
	return s.e.store.GetPlan(ctx, env, id)
}

// ListPlans returns the plans f selects. It returns the store's errors.
func (s *Service) ListPlans(ctx context.Context, f PlanFilter) ([]Plan, error) {
	return s.e.store.ListPlans(ctx, f)
}

// DeletePlan removes a plan that is not under way (a draft or a finished
// plan). It returns KindNotFound, KindPreconditionFailed, or KindConflict
// for a plan that is scheduled, running or paused.
func (s *Service) DeletePlan(ctx context.Context, env, id string, expect int64) error {
	p, err := s.e.store.GetPlan(ctx, env, id)
	if err != nil {
		return err
	}
	if expect != flags.AnyVersion && p.Version != expect {
		return stale("rollout "+id, p.Version, expect)
	}
	if p.Status.Active() || p.Pending != nil {
		return solstice.Errorf(solstice.KindConflict, "rollout %s is %s: cancel or abort it before deleting it", id, p.Status)
	}
	return s.e.store.DeletePlan(ctx, env, id, p.Version, audit(s.e.clock.Now(), solstice.ActorFrom(ctx), "rollout.delete", env, "rollout/"+id, nil))
}

// op runs one person's transition of a plan: load, check expect, compute
// the next plan with f, store it with an audit entry (compare-and-swap)
// and apply the change it implies.
func (s *Service) op(ctx context.Context, env, id string, expect int64, action string, details any, f func(p Plan, now time.Time, head int64) (Plan, error)) (Plan, error) {
	p, err := s.e.store.GetPlan(ctx, env, id)
	if err != nil {
		return Plan{}, err
	}
	if expect != flags.AnyVersion && p.Version != expect {
		return p, stale("rollout "+id, p.Version, expect)
	}
	now := s.e.clock.Now().UTC()
	head, err := s.e.head(ctx, env)
	if err != nil {
		return p, err
	}
	next, err := f(p, now, head)
	if err != nil {
		return p, err
	}
	return s.e.commit(ctx, p, next, audit(now, solstice.ActorFrom(ctx), action, env, "rollout/"+id, details))
}

// Schedule schedules a draft plan to start at at (in the future). It
// returns KindInvalid for a time in the past, KindConflict unless the plan
// is a draft, and op's errors (KindNotFound, KindPreconditionFailed).
func (s *Service) Schedule(ctx context.Context, env, id string, at time.Time, expect int64) (Plan, error) {
	if !at.After(s.e.clock.Now()) {
		return Plan{}, solstice.Invalid("invalid start time", solstice.FieldError{Pointer: "/start_at", Message: "must be in the future"})
	}
	return s.op(ctx, env, id, expect, "rollout.schedule", map[string]time.Time{"start_at": at.UTC()}, func(p Plan, now time.Time, _ int64) (Plan, error) {
		return p.Schedule(at, now, solstice.ActorFrom(ctx))
	})
}

// Unschedule moves a scheduled plan back to draft. It returns KindConflict
// unless the plan is scheduled.
func (s *Service) Unschedule(ctx context.Context, env, id string, expect int64) (Plan, error) {
	return s.op(ctx, env, id, expect, "rollout.unschedule", nil, func(p Plan, now time.Time, _ int64) (Plan, error) {
		return p.Unschedule(now, solstice.ActorFrom(ctx))
	})
}

// Start starts a draft or scheduled plan now: its first step is applied
// as a revision. It returns KindConflict when the plan is not a draft or
// scheduled, when a guardrail of its flag is tripped or another plan of
// the flag is under way; KindInvalid when the step cannot be applied (the
// plan is then paused); op's errors.
func (s *Service) Start(ctx context.Context, env, id string, expect int64) (Plan, error) {
	by := solstice.ActorFrom(ctx)
	return s.op(ctx, env, id, expect, "rollout.start", nil, func(p Plan, now time.Time, head int64) (Plan, error) {
		if err := Transition(p.Status, StatusRunning); err != nil || p.Status == StatusRunning {
			return p, solstice.Errorf(solstice.KindConflict, "rollout %s is %s: only a draft or scheduled plan can start", id, p.Status)
		}
		if err := s.e.startable(ctx, p, now); err != nil {
			return p, err
		}
		return p.Begin(now, by, "started by "+by.Name, 0, head, s.e.instance)
	})
}

// Advance moves a running plan to its next step now (or completes it after
// its last step), overriding the duration, sample and approval gates, never
// the guardrails: it returns KindConflict while a guardrail of the flag is
// held or tripped, or when the plan is not running; op's errors.
func (s *Service) Advance(ctx context.Context, env, id string, expect int64) (Plan, error) {
	by := solstice.ActorFrom(ctx)
	return s.op(ctx, env, id, expect, "rollout.advance", map[string]bool{"manual": true}, func(p Plan, now time.Time, head int64) (Plan, error) {
		if p.Status != StatusRunning {
			return p, solstice.Errorf(solstice.KindConflict, "rollout %s is %s: only a running plan advances", id, p.Status)
		}
		in, err := s.e.input(ctx, p, now)
		if err != nil {
			return p, err
		}
		if why := Blocking(in); why != "" {
			return p, solstice.Errorf(solstice.KindConflict, "rollout %s cannot advance: %s", id, why)
		}
		return p.Advance(now, by, "advanced by "+by.Name, 0, head, s.e.instance)
	})
}

// Approve records the context's actor's approval of step (0-based) of a
// running or paused plan. It returns KindConflict when the plan is not at
// that step, the step asks for no approval or is approved already; op's
// errors.
func (s *Service) Approve(ctx context.Context, env, id string, step int, expect int64) (Plan, error) {
	by := solstice.ActorFrom(ctx)
	return s.op(ctx, env, id, expect, "rollout.approve", map[string]int{"step": step + 1}, func(p Plan, now time.Time, _ int64) (Plan, error) {
		return p.Approve(step, now, by)
	})
}

// Pause pauses a running plan where it is. It returns KindConflict unless
// the plan is running; op's errors.
func (s *Service) Pause(ctx context.Context, env, id, reason string, expect int64) (Plan, error) {
	by := solstice.ActorFrom(ctx)
	return s.op(ctx, env, id, expect, "rollout.pause", map[string]string{"reason": reason}, func(p Plan, now time.Time, _ int64) (Plan, error) {
		return p.Pause(now, by, withReason("paused by "+by.Name, reason))
	})
}

// Resume resumes a paused plan: its current step starts over and is
// applied again, and its guardrails start new tests. It returns
// KindConflict unless the plan is paused, or while a guardrail of its flag
// is tripped (resume the guardrail first); op's errors.
func (s *Service) Resume(ctx context.Context, env, id string, expect int64) (Plan, error) {
	by := solstice.ActorFrom(ctx)
	return s.op(ctx, env, id, expect, "rollout.resume", nil, func(p Plan, now time.Time, head int64) (Plan, error) {
		if p.Status == StatusPaused {
			in, err := s.e.input(ctx, p, now)
			if err != nil {
				return p, err
			}
			for _, g := range in.Guardrails {
				if g.Phase == guardrails.PhaseTripped {
					return p, solstice.Errorf(solstice.KindConflict, "rollout %s cannot resume: guardrail %s is tripped; resume the guardrail first", id, g.Key)
				}
			}
		}
		return p.Resume(now, by, head, s.e.instance)
	})
}

// Abort ends a plan for good: a running or paused plan is rolled back (its
// audience served the baseline, as a revision), a draft or scheduled one
// is cancelled. It returns KindConflict for a finished plan; op's errors.
func (s *Service) Abort(ctx context.Context, env, id, reason string, expect int64) (Plan, error) {
	by := solstice.ActorFrom(ctx)
	return s.op(ctx, env, id, expect, "rollout.abort", map[string]string{"reason": reason}, func(p Plan, now time.Time, head int64) (Plan, error) {
		why := withReason("aborted by "+by.Name, reason)
		if p.Status == StatusDraft || p.Status == StatusScheduled {
			return p.Cancel(now, by, why)
		}
		return p.RollBack(now, by, why, head, s.e.instance)
	})
}

func withReason(what, reason string) string {
	if reason = strings.TrimSpace(reason); reason != "" {
		return what + ": " + reason
	}
	return what
}

// PlanStatus is a plan with where its ramp stands: what the scheduler
// would decide now, gate by gate.
type PlanStatus struct {
	Plan     Plan     `json:"plan"`
	Decision Decision `json:"decision"`
	Input    Input    `json:"input"`
}

// Status returns plan id of env with its decision as of now. It returns
// KindNotFound, and the errors of reading guardrails.
func (s *Service) Status(ctx context.Context, env, id string) (PlanStatus, error) {
	p, err := s.e.store.GetPlan(ctx, env, id)
	if err != nil {
		return PlanStatus{}, err
	}
	now := s.e.clock.Now().UTC()
	in, err := s.e.input(ctx, p, now)
	if err != nil {
		return PlanStatus{}, err
	}
	return PlanStatus{Plan: p, Decision: Decide(p, in), Input: in}, nil
}

// Decision returns the decision of experiment id of env, written when it
// ended. It returns KindNotFound for an unknown plan, a plan that is not an
// experiment, or one that has not ended yet (each with its own message),
// and the store's errors.
func (s *Service) Decision(ctx context.Context, env, id string) (ExperimentDecision, error) {
	p, err := s.e.store.GetPlan(ctx, env, id)
	if err != nil {
		return ExperimentDecision{}, err
	}
	switch {
	case !p.Experiment:
		return ExperimentDecision{}, solstice.Errorf(solstice.KindNotFound, "rollout %s is not an experiment: only a plan created with \"experiment\": true gets a decision", id)
	case !p.Status.Terminal():
		return ExperimentDecision{}, solstice.Errorf(solstice.KindNotFound, "experiment %s is %s: its decision is written when it ends (completed, rolled back or cancelled)", id, p.Status)
	case p.ExperimentDecision == nil:
		return ExperimentDecision{}, solstice.Errorf(solstice.KindNotFound, "experiment %s ended (%s) without a decision", id, p.Status)
	}
	return *p.ExperimentDecision, nil
}

// ---- events ----

// PutEvent creates event ev (expect 0) or replaces it (expect its
// version). It fills in the UID of a new event and the BaseRevision of
// every change that has none with the flag's current revision, checks
// every reference (flags, variants, plans) and then the conflicts (see
// DetectConflicts). Phases that have started cannot change, nor can the
// start of an event that has; an event that has ended cannot change.
//
// Errors: KindInvalid with field errors; KindNotFound for an unknown
// environment; KindConflict with the conflicts as field errors, or for a
// change to what has started; KindPreconditionFailed for a stale expect;
// the store's errors.
func (s *Service) PutEvent(ctx context.Context, ev Event, expect int64) (Event, error) {
	ev, applied, err := s.prepareEvent(ctx, ev, expect)
	if err != nil {
		return Event{}, err
	}
	cs, err := s.conflicts(ctx, ev, applied)
	if err != nil {
		return Event{}, err
	}
	if err := ConflictError(fmt.Sprintf("event %q", ev.Key), cs); err != nil {
		return Event{}, err
	}
	action := "event.create"
	if expect != 0 {
		action = "event.update"
	}
	now := s.e.clock.Now().UTC()
	return s.e.store.PutEvent(ctx, ev, expect, []solstice.AuditEntry{audit(now, solstice.ActorFrom(ctx), action, ev.Environment, "event/"+ev.Key, ev)})
}

// CheckEvent returns the conflicts PutEvent would report for ev, without
// saving it. It returns PutEvent's errors other than the conflicts.
func (s *Service) CheckEvent(ctx context.Context, ev Event, expect int64) ([]Conflict, error) {
	ev, applied, err := s.prepareEvent(ctx, ev, expect)
	if err != nil {
		return nil, err
	}
	return s.conflicts(ctx, ev, applied)
}

// prepareEvent validates ev, merges it with the stored event and fills in
// what the service assigns. It returns the phases already applied.
func (s *Service) prepareEvent(ctx context.Context, ev Event, expect int64) (Event, map[string]bool, error) {
	if err := ValidateEvent(ev); err != nil {
		return ev, nil, err
	}
	if _, err := s.e.head(ctx, ev.Environment); err != nil {
		return ev, nil, err
	}
	applied := map[string]bool{}
	if expect == 0 {
		ev.UID = strings.ToLower(rand.Text()[:16])
		ev.CancelledAt, ev.CancelledBy = nil, ""
	} else {
		old, err := s.e.store.GetEvent(ctx, ev.Environment, ev.Key)
		if err != nil {
			return ev, nil, err
		}
		if expect != flags.AnyVersion && old.Version != expect {
			return ev, nil, stale("event "+ev.Key, old.Version, expect)
		}
		ev.UID, ev.CancelledAt, ev.CancelledBy, ev.CreatedAt = old.UID, old.CancelledAt, old.CancelledBy, old.CreatedAt
		recs, err := s.e.store.ListChanges(ctx, RecordFilter{Environment: ev.Environment, EventUID: old.UID})
		if err != nil {
			return ev, nil, err
		}
		if err := frozen(old, ev, recs, applied); err != nil {
			return ev, nil, err
		}
	}
	if err := s.checkEventRefs(ctx, &ev, applied); err != nil {
		return ev, nil, err
	}
	return ev, applied, nil
}

// frozen refuses changes to what an event has done already, and fills in
// applied with the names of its phases that started.
func frozen(old, ev Event, recs []Record, applied map[string]bool) error {
	if old.CancelledAt != nil {
		return solstice.Errorf(solstice.KindConflict, "event %s was cancelled: it cannot change any more", old.Key)
	}
	if StateOf(old, recs).Status == EventEnded {
		return solstice.Errorf(solstice.KindConflict, "event %s has ended: it cannot change any more", old.Key)
	}
	for _, ph := range old.Phases {
		r, ok := findRecord(recs, PhaseChangeID(old, ph.Name))
		if !ok {
			continue
		}
		applied[ph.Name] = true
		i := slices.IndexFunc(ev.Phases, func(p Phase) bool { return p.Name == ph.Name })
		if i < 0 {
			return solstice.Errorf(solstice.KindConflict, "phase %s of event %s has started (%s): it cannot be removed", ph.Name, old.Key, r.Status)
		}
		a, _ := json.Marshal(ph)
		b, _ := json.Marshal(ev.Phases[i])
		if !bytes.Equal(a, b) {
			return &solstice.Error{Kind: solstice.KindConflict, Message: fmt.Sprintf("phase %s of event %s has started: it cannot change", ph.Name, old.Key),
				Fields: []solstice.FieldError{{Pointer: fmt.Sprintf("/phases/%d", i), Message: "has started: it cannot change"}}}
		}
	}
	if len(applied) > 0 && (old.Start != ev.Start || old.TimeZone != ev.TimeZone) {
		return &solstice.Error{Kind: solstice.KindConflict, Message: fmt.Sprintf("event %s has started: its start and time zone cannot change", old.Key),
			Fields: []solstice.FieldError{{Pointer: "/start", Message: "the event has started"}}}
	}
	return nil
}

// checkEventRefs checks the flags, variants and plans ev's changes name,
// and fills in missing base revisions.
func (s *Service) checkEventRefs(ctx context.Context, ev *Event, applied map[string]bool) error {
	var fs []solstice.FieldError
	set, err := s.e.flags.Set(ctx, ev.Environment)
	if err != nil {
		return err
	}
	segments := map[string]bool{}
	for _, sg := range set.Segments {
		segments[sg.Key] = true
	}
	configs := map[string]flags.FlagConfig{}
	check := func(ptr string, c *Change, phaseApplied bool) {
		fc, ok := configs[c.Flag]
		if !ok {
			var err error
			fc, err = s.e.flags.GetConfig(ctx, ev.Environment, c.Flag)
			if err != nil {
				fs = append(fs, solstice.FieldError{Pointer: ptr + "/flag", Message: solstice.ErrorMessage(err)})
				return
			}
			configs[c.Flag] = fc
		}
		if c.BaseRevision == 0 && !phaseApplied {
			c.BaseRevision = fc.Revision
		}
		if c.Rollout == "" {
			// The change must leave a valid configuration (values of the
			// flag's type and schema, known variants) on the one it follows.
			next, err := applyChange(fc.Config, *c)
			if err == nil {
				err = flags.ValidateConfig(fc.Flag, next, segments)
			}
			for _, fe := range solstice.ErrorFields(err) {
				fs = append(fs, solstice.FieldError{Pointer: ptr, Message: fmt.Sprintf("the configuration of %s would be invalid at %s: %s", c.Flag, fe.Pointer, fe.Message)})
			}
			if err == nil {
				fc.Config = next
				configs[c.Flag] = fc
			}
		}
		if c.Rollout == "" || phaseApplied {
			return
		}
		p, err := s.e.store.GetPlan(ctx, ev.Environment, c.Rollout)
		switch {
		case err != nil:
			fs = append(fs, solstice.FieldError{Pointer: ptr + "/rollout", Message: solstice.ErrorMessage(err)})
		case p.Flag != c.Flag:
			fs = append(fs, solstice.FieldError{Pointer: ptr + "/rollout", Message: fmt.Sprintf("rollout %s is of flag %s, not %s", p.ID, p.Flag, c.Flag)})
		case p.Status != StatusDraft:
			fs = append(fs, solstice.FieldError{Pointer: ptr + "/rollout", Message: fmt.Sprintf("rollout %s is %s: an event starts a draft plan", p.ID, p.Status)})
		}
	}
	for i := range ev.Phases {
		for j := range ev.Phases[i].Changes {
			check(fmt.Sprintf("/phases/%d/changes/%d", i, j), &ev.Phases[i].Changes[j], applied[ev.Phases[i].Name])
		}
	}
	for j := range ev.EndState {
		check(fmt.Sprintf("/end_state/%d", j), &ev.EndState[j], false)
	}
	if len(fs) > 0 {
		return solstice.Invalid(fmt.Sprintf("invalid event %q", ev.Key), fs...)
	}
	return nil
}

// conflicts gathers what DetectConflicts compares ev with.
func (s *Service) conflicts(ctx context.Context, ev Event, applied map[string]bool) ([]Conflict, error) {
	others, err := s.e.store.ListEvents(ctx, EventFilter{Environment: ev.Environment, Open: true})
	if err != nil {
		return nil, err
	}
	plans, err := s.e.store.ListPlans(ctx, PlanFilter{Environment: ev.Environment})
	if err != nil {
		return nil, err
	}
	heads := map[string]FlagHead{}
	for _, f := range ev.Flags() {
		fc, err := s.e.flags.GetConfig(ctx, ev.Environment, f)
		if err != nil {
			return nil, err
		}
		h := FlagHead{Revision: fc.Revision}
		if fc.Revision > 0 {
			rev, err := s.e.flags.GetRevision(ctx, ev.Environment, fc.Revision)
			if err != nil {
				return nil, err
			}
			h.Author = rev.Author
		}
		heads[f] = h
	}
	return DetectConflicts(ConflictInput{Event: ev, Others: others, Flags: heads, Plans: plans, Applied: applied}), nil
}

// GetEvent returns one event, or KindNotFound.
func (s *Service) GetEvent(ctx context.Context, env, key string) (Event, error) {
	return s.e.store.GetEvent(ctx, env, key)
}

// ListEvents returns the events f selects. It returns the store's errors.
func (s *Service) ListEvents(ctx context.Context, f EventFilter) ([]Event, error) {
	return s.e.store.ListEvents(ctx, f)
}

// EventDetail is an event with its state and the records of its changes.
type EventDetail struct {
	Event   Event      `json:"event"`
	State   EventState `json:"state"`
	Records []Record   `json:"records"`
}

// Detail returns event key of env with its state and records. It returns
// KindNotFound and the store's errors.
func (s *Service) Detail(ctx context.Context, env, key string) (EventDetail, error) {
	ev, err := s.e.store.GetEvent(ctx, env, key)
	if err != nil {
		return EventDetail{}, err
	}
	recs, err := s.e.store.ListChanges(ctx, RecordFilter{Environment: env, EventUID: ev.UID})
	if err != nil {
		return EventDetail{}, err
	}
	return EventDetail{Event: ev, State: StateOf(ev, recs), Records: recs}, nil
}

// CancelEvent ends an event now: phases not started never will, and if it
// had started, the scheduler applies its end at its next tick. It returns
// KindConflict for an event that has ended or was cancelled, KindNotFound,
// KindPreconditionFailed.
func (s *Service) CancelEvent(ctx context.Context, env, key string, expect int64) (Event, error) {
	d, err := s.Detail(ctx, env, key)
	if err != nil {
		return Event{}, err
	}
	ev := d.Event
	if expect != flags.AnyVersion && ev.Version != expect {
		return Event{}, stale("event "+key, ev.Version, expect)
	}
	if ev.CancelledAt != nil {
		return Event{}, solstice.Errorf(solstice.KindConflict, "event %s was already cancelled", key)
	}
	if d.State.Status == EventEnded {
		return Event{}, solstice.Errorf(solstice.KindConflict, "event %s has already ended", key)
	}
	now := s.e.clock.Now().UTC()
	by := solstice.ActorFrom(ctx)
	ev.CancelledAt, ev.CancelledBy = &now, by.Name
	return s.e.store.PutEvent(ctx, ev, ev.Version, []solstice.AuditEntry{audit(now, by, "event.cancel", env, "event/"+key, nil)})
}

// DeleteEvent removes an event that is not live: one that has not started,
// has ended or was cancelled before starting. The records of its changes
// stay. It returns KindConflict for a live event (cancel it first),
// KindNotFound, KindPreconditionFailed.
func (s *Service) DeleteEvent(ctx context.Context, env, key string, expect int64) error {
	d, err := s.Detail(ctx, env, key)
	if err != nil {
		return err
	}
	if expect != flags.AnyVersion && d.Event.Version != expect {
		return stale("event "+key, d.Event.Version, expect)
	}
	if d.State.Status == EventLive {
		return solstice.Errorf(solstice.KindConflict, "event %s is live (phase %s): cancel it, and delete it once it has ended", key, d.State.Phase)
	}
	return s.e.store.DeleteEvent(ctx, env, key, d.Event.Version, audit(s.e.clock.Now(), solstice.ActorFrom(ctx), "event.delete", env, "event/"+key, nil))
}

// ---- timeline ----

// Timeline loads everything that decides env's future configuration, as
// of now. It returns KindNotFound for an unknown environment and the
// store's errors.
func (s *Service) Timeline(ctx context.Context, env string) (Timeline, error) {
	set, err := s.e.flags.Set(ctx, env)
	if err != nil {
		return Timeline{}, err
	}
	events, err := s.e.store.ListEvents(ctx, EventFilter{Environment: env})
	if err != nil {
		return Timeline{}, err
	}
	plans, err := s.e.store.ListPlans(ctx, PlanFilter{Environment: env})
	if err != nil {
		return Timeline{}, err
	}
	recs, err := s.e.store.ListChanges(ctx, RecordFilter{Environment: env})
	if err != nil {
		return Timeline{}, err
	}
	return Timeline{Set: set, Now: s.e.clock.Now().UTC(), Events: events, Plans: plans, Records: recs}, nil
}

// MaxCalendarSpan bounds a calendar's [from, to).
const MaxCalendarSpan = 366 * 24 * time.Hour

// Calendar returns env's calendar over [from, to) (see BuildCalendar). It
// returns KindInvalid for an empty or reversed range or one longer than
// MaxCalendarSpan, and Timeline's errors.
func (s *Service) Calendar(ctx context.Context, env string, from, to time.Time) (Calendar, error) {
	switch {
	case !to.After(from):
		return Calendar{}, solstice.Invalid("invalid calendar range", solstice.FieldError{Pointer: "/to", Message: "must be after from"})
	case to.Sub(from) > MaxCalendarSpan:
		return Calendar{}, solstice.Invalid("invalid calendar range", solstice.FieldError{Pointer: "/to", Message: fmt.Sprintf("the range may span at most %s", MaxCalendarSpan)})
	}
	tl, err := s.Timeline(ctx, env)
	if err != nil {
		return Calendar{}, err
	}
	return BuildCalendar(tl, from, to), nil
}

// PreviewSet returns env's flag set as it will be at (see Timeline.At). It
// returns Timeline's and At's errors.
func (s *Service) PreviewSet(ctx context.Context, env string, at time.Time) (flags.Set, error) {
	tl, err := s.Timeline(ctx, env)
	if err != nil {
		return flags.Set{}, err
	}
	return tl.At(at)
}

// Preview evaluates flag for evalCtx as it will be at at: what a player
// gets on day 3. It returns Timeline's and Timeline.Preview's errors.
func (s *Service) Preview(ctx context.Context, env string, at time.Time, flag string, evalCtx flags.Context) (flags.Result, error) {
	tl, err := s.Timeline(ctx, env)
	if err != nil {
		return flags.Result{}, err
	}
	return tl.Preview(at, flag, evalCtx)
}
