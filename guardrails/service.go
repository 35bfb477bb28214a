package guardrails

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
)

// Service is what the API and the UI call: it defines, lists and inspects
// guardrails, and acknowledges and resumes their incidents. Every write is
// validated, audited and attributed to the context's actor.
type Service struct {
	store Store
	flags *flags.Service
	job   *Job
	clock solstice.Clock
}

// NewService returns the service over store, checking variants against fl
// and evaluating status and resuming through job.
func NewService(store Store, fl *flags.Service, job *Job) *Service {
	return &Service{store: store, flags: fl, job: job, clock: job.clock}
}

// Detail is a guardrail's definition with its report: its stored state and
// a verdict evaluated now (counters, estimate, always-valid p-value and
// confidence sequence in the verdict's evidence).
type Detail struct {
	Definition Definition `json:"definition"`
	State      State      `json:"state"`
	Verdict    Verdict    `json:"verdict"`
}

// Put creates the guardrail r (expect 0) or replaces it (expect its
// version). The rule is stored with its defaults filled in, so that what
// it tests is explicit. Replacing the definition of a guardrail that is
// not tripped starts a new test on new data: τ, α and the margin are fixed
// before a test starts. A tripped guardrail stays tripped.
//
// Errors: KindInvalid with field errors for an invalid rule or variants the
// flag does not have in the environment; KindNotFound for an unknown
// environment or flag; KindConflict when creating an existing guardrail;
// KindPreconditionFailed for a stale expect; the store's errors.
func (s *Service) Put(ctx context.Context, r Rule, expect int64) (Definition, error) {
	r = r.WithDefaults()
	if err := r.Validate(); err != nil {
		return Definition{}, err
	}
	fc, err := s.flags.GetConfig(ctx, r.Environment, r.Flag)
	if err != nil {
		return Definition{}, err
	}
	keys := make([]string, len(fc.Config.Variants))
	for i, v := range fc.Config.Variants {
		keys[i] = v.Key
	}
	var fields []solstice.FieldError
	for _, f := range []struct{ pointer, key string }{{"/treatment", r.Treatment}, {"/control", r.Control}} {
		if f.key != "" && !slices.Contains(keys, f.key) {
			fields = append(fields, solstice.FieldError{Pointer: f.pointer,
				Message: fmt.Sprintf("%q is not a variant of %s in %s (variants: %v)", f.key, r.Flag, r.Environment, keys)})
		}
	}
	if len(fields) > 0 {
		return Definition{}, solstice.Invalid("invalid guardrail", fields...)
	}
	action := "guardrail.create"
	var old Definition
	if expect != 0 {
		action = "guardrail.update"
		if old, err = s.store.GetGuardrail(ctx, r.Ref); err != nil && !solstice.IsKind(err, solstice.KindNotFound) {
			return Definition{}, err
		}
	}
	d, err := s.store.PutGuardrail(ctx, r, expect, s.audit(ctx, action, r.Ref, r))
	if err != nil {
		return Definition{}, err
	}
	if old.Version != 0 && old.Rule != d.Rule {
		if err := s.restart(ctx, r.Ref, "the definition changed"); err != nil {
			return d, err
		}
	}
	return d, nil
}

// restart starts a new test of ref on data after now, unless it has none
// yet or is tripped (the latch).
func (s *Service) restart(ctx context.Context, ref Ref, why string) error {
	st, err := s.store.State(ctx, ref)
	if solstice.IsKind(err, solstice.KindNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restart guardrail %s: %w", ref, err)
	}
	if st.Phase == PhaseTripped || st.Pending != nil {
		return nil
	}
	now := s.clock.Now()
	next := st
	next.Version++
	next.Phase, next.Test, next.TestStarted, next.Since = PhaseCollecting, st.Test+1, now, now
	next.Reason = fmt.Sprintf("%s: test %d starts on new data", why, next.Test)
	if err := s.store.SwapState(ctx, st.Version, next); err != nil {
		return fmt.Errorf("restart guardrail %s: %w", ref, err)
	}
	return nil
}

// Delete removes the guardrail ref if its version is expect; its incidents
// stay. Errors: KindNotFound, KindPreconditionFailed, the store's.
func (s *Service) Delete(ctx context.Context, ref Ref, expect int64) error {
	return s.store.DeleteGuardrail(ctx, ref, expect, s.audit(ctx, "guardrail.delete", ref, nil))
}

// Get returns the definition of ref (KindNotFound if none).
func (s *Service) Get(ctx context.Context, ref Ref) (Definition, error) {
	return s.store.GetGuardrail(ctx, ref)
}

// List returns the guardrails of env (and flag, unless it is ""). It
// returns KindNotFound for an unknown environment.
func (s *Service) List(ctx context.Context, env, flag string) ([]Definition, error) {
	if _, err := s.flags.Store().GetEnvironment(ctx, env); err != nil {
		return nil, err
	}
	return s.store.ListGuardrails(ctx, env, flag)
}

// Status evaluates ref now without changing anything. It returns
// KindNotFound for an unknown guardrail and the errors of reading its
// state; counters that cannot be read show as a hold.
func (s *Service) Status(ctx context.Context, ref Ref) (Detail, error) {
	d, err := s.store.GetGuardrail(ctx, ref)
	if err != nil {
		return Detail{}, err
	}
	rep, err := s.job.Report(ctx, ref, s.clock.Now())
	if err != nil && rep.Rule.Key == "" {
		return Detail{}, err
	}
	return Detail{Definition: d, State: rep.State, Verdict: rep.Verdict}, nil
}

// Resume resumes the tripped guardrail ref for the context's actor: a new
// test starts on data after now. Errors: KindNotFound for a guardrail that
// never tripped, KindConflict when it is not tripped or its action is still
// pending, the store's.
func (s *Service) Resume(ctx context.Context, ref Ref) (State, error) {
	if _, err := s.store.GetGuardrail(ctx, ref); err != nil {
		return State{}, err
	}
	return s.job.Resume(ctx, ref, solstice.ActorFrom(ctx), s.clock.Now())
}

// Incidents lists incidents, newest first.
func (s *Service) Incidents(ctx context.Context, f IncidentFilter) ([]Record, error) {
	return s.store.ListIncidents(ctx, f)
}

// Incident returns incident number n (KindNotFound if none).
func (s *Service) Incident(ctx context.Context, n int64) (Record, error) {
	return s.store.GetIncident(ctx, n)
}

// Ack records that the context's actor acknowledged incident n. A second
// acknowledgement changes nothing. Errors: KindNotFound, the store's.
func (s *Service) Ack(ctx context.Context, n int64) (Record, error) {
	rec, err := s.store.GetIncident(ctx, n)
	if err != nil {
		return Record{}, err
	}
	if rec.AckedAt != nil {
		return rec, nil
	}
	by := solstice.ActorFrom(ctx)
	return s.store.AckIncident(ctx, n, by, s.clock.Now(),
		s.audit(ctx, "incident.ack", rec.Guardrail, map[string]any{"number": n, "id": rec.ID}))
}

// ResumeIncident resumes the guardrail of incident n (see Resume).
func (s *Service) ResumeIncident(ctx context.Context, n int64) (State, error) {
	rec, err := s.store.GetIncident(ctx, n)
	if err != nil {
		return State{}, err
	}
	return s.Resume(ctx, rec.Guardrail)
}

func (s *Service) audit(ctx context.Context, action string, ref Ref, details any) solstice.AuditEntry {
	e := solstice.AuditEntry{
		Time: s.clock.Now(), Actor: solstice.ActorFrom(ctx), Action: action,
		Environment: ref.Environment, Resource: "guardrail/" + ref.Flag + "/" + ref.Key,
	}
	if details != nil {
		if b, err := json.Marshal(details); err == nil {
			e.Details = b
		}
	}
	return e
}

// Report evaluates the guardrail ref at now without changing anything, as
// Reports does for all. It returns KindNotFound for an unknown guardrail;
// counters that cannot be read show as a hold, with their error returned
// beside the report.
func (j *Job) Report(ctx context.Context, ref Ref, now time.Time) (Report, error) {
	r, alpha, st, err := j.find(ctx, ref, now)
	if err != nil {
		return Report{}, err
	}
	c, cerr := j.counters.Counters(ctx, r, st.TestStarted)
	if cerr != nil {
		cerr = fmt.Errorf("guardrail %s: read counters: %w", r.Ref, cerr)
	}
	return Report{Rule: r, State: st, Verdict: evaluate(r, alpha, c, cerr == nil, now, true)}, cerr
}

// find returns the rule of the guardrail ref, its share of the flag's α
// and its state at now. It returns KindNotFound for a guardrail the job
// does not watch.
func (j *Job) find(ctx context.Context, ref Ref, now time.Time) (Rule, float64, State, error) {
	rules, err := j.rules.Rules(ctx)
	if err != nil {
		return Rule{}, 0, State{}, fmt.Errorf("list guardrails: %w", err)
	}
	alphas := splitAlpha(rules)
	for i, r := range rules {
		if r.Ref != ref {
			continue
		}
		st, err := j.load(ctx, r.Ref, now)
		return r, alphas[i], st, err
	}
	return Rule{}, 0, State{}, solstice.Errorf(solstice.KindNotFound, "guardrail %s not found", ref)
}
