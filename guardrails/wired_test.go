package guardrails_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/store/storetest"
)

// The tests in this file wire the guardrails to a real store and flags
// service, as solstice serve does.

var t0 = time.Date(2026, 12, 20, 10, 0, 0, 0, time.UTC)

// counters is a CounterSource with settable counters for every rule.
type counters struct {
	mu sync.Mutex
	c  guardrails.Counters
}

func (s *counters) set(c guardrails.Counters) { s.mu.Lock(); s.c = c; s.mu.Unlock() }

func (s *counters) Counters(_ context.Context, _ guardrails.Rule, since time.Time) (guardrails.Counters, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.c
	if c.Since.Before(since) {
		c.Since = since
	}
	return c, nil
}

// harmful are counters where the treatment's reject rate (6%) is three
// times the control's (2%), with a 50/50 split.
func harmful(now time.Time) guardrails.Counters {
	return guardrails.Counters{
		Since: t0, Watermark: now, TreatmentShare: 0.5,
		Treatment: guardrails.Arm{Exposures: 1000, Actions: 5000, Rejects: 300, LastExposure: now, LastMetric: now},
		Control:   guardrails.Arm{Exposures: 1000, Actions: 5000, Rejects: 100, LastExposure: now, LastMetric: now},
	}
}

func healthy(now time.Time) guardrails.Counters {
	c := harmful(now)
	c.Treatment.Rejects = 100
	return c
}

type rig struct {
	db      *store.DB
	flags   *flags.Service
	src     *counters
	service *guardrails.Service
	job     *guardrails.Job
	now     time.Time
	ref     guardrails.Ref
	kicks   int
}

func (r *rig) clock() solstice.Clock { return solstice.ClockFunc(func() time.Time { return r.now }) }

var editor = solstice.Actor{Name: "alice", Kind: "user"}

// newRig creates a flag "festival" in production with variants on and off
// split 50/50, and a reject-rate guardrail on it, with a webhook endpoint.
func newRig(t *testing.T, db *store.DB) *rig {
	t.Helper()
	r := &rig{db: db, src: &counters{}, now: t0,
		ref: guardrails.Ref{Environment: "production", Flag: "festival", Key: "reject-rate"}}
	ctx := solstice.WithActor(t.Context(), editor)
	r.flags = flags.NewService(db)
	if err := r.flags.EnsureDefaultEnvironments(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.flags.CreateFlag(ctx, flags.NewFlag{Key: "festival", Name: "Festival", Type: flags.TypeBoolean}); err != nil {
		t.Fatal(err)
	}
	fc, err := r.flags.GetConfig(ctx, "production", "festival")
	if err != nil {
		t.Fatal(err)
	}
	cfg := fc.Config
	cfg.Enabled = true
	cfg.Split = &flags.Split{Weights: []flags.Weight{{Variant: "on", Weight: 5000}, {Variant: "off", Weight: 5000}}}
	if _, err := r.flags.PutConfig(ctx, "production", "festival", cfg, fc.Revision, "Roll out to half"); err != nil {
		t.Fatal(err)
	}
	r.job = r.newJob()
	r.service = guardrails.NewService(db, r.flags, r.job)
	rule := guardrails.Rule{Ref: r.ref, Metric: guardrails.RejectRate(), Comparison: guardrails.RelativeToControl(0.1),
		Treatment: "on", Control: "off"}
	if _, err := r.service.Put(ctx, rule, 0); err != nil {
		t.Fatal(err)
	}
	return r
}

// newJob returns another job over the same database, as a second replica
// runs.
func (r *rig) newJob() *guardrails.Job {
	resp := guardrails.NewResponder(r.db, r.flags, guardrails.WithWebhooks([]string{"ops"}, func() { r.kicks++ }))
	return guardrails.NewJob(r.db, guardrails.WithShares(r.src, r.flags), r.db, resp, guardrails.WithClock(r.clock()))
}

// guardrailRevisions returns the revisions of production authored by a
// guardrail.
func (r *rig) guardrailRevisions(t *testing.T) []flags.Revision {
	t.Helper()
	revs, err := r.flags.ListRevisions(t.Context(), "production", flags.RevisionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var out []flags.Revision
	for _, rev := range revs {
		if strings.HasPrefix(rev.Author, "guardrail:") {
			out = append(out, rev)
		}
	}
	return out
}

func TestTripRollsBackOnce(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, db *store.DB) {
		r := newRig(t, db)
		ctx := t.Context()
		r.src.set(healthy(r.now))
		if err := r.job.Tick(ctx, r.now); err != nil {
			t.Fatal(err)
		}
		if revs := r.guardrailRevisions(t); len(revs) != 0 {
			t.Fatalf("healthy counters rolled back: %+v", revs)
		}

		r.now = r.now.Add(time.Minute)
		r.src.set(harmful(r.now))
		if err := r.job.Tick(ctx, r.now); err != nil {
			t.Fatal(err)
		}
		revs := r.guardrailRevisions(t)
		if len(revs) != 1 {
			t.Fatalf("got %d guardrail revisions, want 1", len(revs))
		}
		rev := revs[0]
		if rev.Author != "guardrail:reject-rate" || !strings.Contains(rev.Message, "reject_rate") {
			t.Errorf("revision by %q, message %q: want the guardrail as author and the metric named", rev.Author, rev.Message)
		}
		fc, err := r.flags.GetConfig(ctx, "production", "festival")
		if err != nil {
			t.Fatal(err)
		}
		if fc.Config.Split != nil || fc.Config.DefaultVariant != "off" || !fc.Config.Enabled {
			t.Errorf("after the rollback the config is %+v; want control (off) for everyone", fc.Config)
		}
		for _, key := range []string{"p1", "p2", "p3", "p4", "p5"} {
			res, err := r.flags.Evaluate(ctx, "production", "festival", flags.Context{flags.TargetingKey: key})
			if err != nil || res.Variant != "off" {
				t.Errorf("player %s gets %q (%v), want off", key, res.Variant, err)
			}
		}

		incs, err := r.service.Incidents(ctx, guardrails.IncidentFilter{Environment: "production"})
		if err != nil {
			t.Fatal(err)
		}
		if len(incs) != 1 || incs[0].Event != guardrails.EventTrip || incs[0].Revision != rev.Number {
			t.Fatalf("incidents %+v; want one trip naming revision %d", incs, rev.Number)
		}
		ev := incs[0].Verdict.Evidence
		if ev.Treatment.X != 300 || ev.Control.X != 100 || ev.LogE < ev.Threshold || ev.Variance <= 0 {
			t.Errorf("incident evidence %+v; want the counters, a variance and log e over the threshold", ev)
		}
		if r.kicks != 1 {
			t.Errorf("the webhook dispatcher was woken %d times, want 1", r.kicks)
		}
		msgs, err := db.Claim(ctx, r.now.Add(time.Second), time.Minute, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 1 || msgs[0].Event != "guardrail.trip" || msgs[0].Endpoint != "ops" {
			t.Fatalf("outbox %+v; want one guardrail.trip message for ops", msgs)
		}
		var body struct {
			Type string            `json:"type"`
			Data guardrails.Record `json:"data"`
		}
		if err := json.Unmarshal(msgs[0].Payload, &body); err != nil || body.Type != "guardrail.trip" || body.Data.Number != incs[0].Number {
			t.Errorf("webhook payload %s (%v); want the incident record", msgs[0].Payload, err)
		}

		// The latch: harm or not, nothing more happens.
		for range 3 {
			r.now = r.now.Add(time.Minute)
			if err := r.job.Tick(ctx, r.now); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(r.guardrailRevisions(t)); n != 1 {
			t.Errorf("%d guardrail revisions after more ticks, want 1", n)
		}
	})
}

// TestTwoJobsRollBackOnce races two jobs, as two control-plane replicas on
// one database run them: exactly one rollback revision and one incident.
func TestTwoJobsRollBackOnce(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, db *store.DB) {
		r := newRig(t, db)
		jobs := []*guardrails.Job{r.job, r.newJob(), r.newJob()}
		r.now = r.now.Add(time.Minute)
		r.src.set(harmful(r.now))
		var wg sync.WaitGroup
		for _, j := range jobs {
			wg.Go(func() {
				for range 3 {
					if err := j.Tick(t.Context(), r.now); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		if revs := r.guardrailRevisions(t); len(revs) != 1 {
			t.Errorf("%d rollback revisions, want exactly 1: %+v", len(revs), revs)
		}
		incs, err := r.service.Incidents(t.Context(), guardrails.IncidentFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(incs) != 1 {
			t.Errorf("%d incidents, want 1: %+v", len(incs), incs)
		}
	})
}

// TestApplyIsIdempotent carries one incident out twice, as a job does that
// retries after failing to record it: one revision, one record.
func TestApplyIsIdempotent(t *testing.T) {
	r := newRig(t, storetest.Open(t))
	resp := guardrails.NewResponder(r.db, r.flags)
	inc := guardrails.Incident{ID: "production/festival/reject-rate/test-1/2-trip", Guardrail: r.ref,
		Event: guardrails.EventTrip, Action: guardrails.ActionRollback, Test: 1, Time: r.now, Reason: "harm"}
	for range 2 {
		if err := resp.Apply(t.Context(), inc); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(r.guardrailRevisions(t)); n != 1 {
		t.Errorf("%d revisions, want 1", n)
	}
	// A record lost after the rollback: the retry finds the rollback in
	// force and appends nothing.
	inc2 := inc
	inc2.ID += "-again"
	if err := resp.Apply(t.Context(), inc2); err != nil {
		t.Fatal(err)
	}
	if n := len(r.guardrailRevisions(t)); n != 1 {
		t.Errorf("%d revisions after a second incident on a rolled-back flag, want 1", n)
	}
	rec, err := r.db.Incident(t.Context(), inc2.ID)
	if err != nil || rec.Revision != 0 || !strings.Contains(rec.Outcome, "already") {
		t.Errorf("second record %+v, %v; want no revision and an outcome that says it was already rolled back", rec, err)
	}
}

func TestServicePutValidates(t *testing.T) {
	r := newRig(t, storetest.Open(t))
	ctx := solstice.WithActor(t.Context(), editor)
	rule := guardrails.Rule{Ref: guardrails.Ref{Environment: "production", Flag: "festival", Key: "second"},
		Metric: guardrails.RejectRate(), Comparison: guardrails.RelativeToControl(0.1), Treatment: "blue", Control: "off", Tau: 2}
	_, err := r.service.Put(ctx, rule, 0)
	if !solstice.IsKind(err, solstice.KindInvalid) || !hasPointer(err, "/tau") {
		t.Errorf("Put(tau 2) = %v; want invalid at /tau", err)
	}
	rule.Tau = 0
	_, err = r.service.Put(ctx, rule, 0)
	if !solstice.IsKind(err, solstice.KindInvalid) || !hasPointer(err, "/treatment") {
		t.Errorf("Put(unknown treatment) = %v; want invalid at /treatment", err)
	}
	rule.Treatment = "on"
	rule.Flag = "nope"
	if _, err := r.service.Put(ctx, rule, 0); !solstice.IsKind(err, solstice.KindNotFound) {
		t.Errorf("Put(unknown flag) = %v; want not found", err)
	}
	rule.Flag = "festival"
	d, err := r.service.Put(ctx, rule, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != 1 || d.Tau != guardrails.DefaultRejectRateTau || d.Action != guardrails.ActionRollback {
		t.Errorf("stored %+v; want version 1 with the defaults filled in", d)
	}
	if _, err := r.service.Put(ctx, rule, 0); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("creating it again = %v; want conflict", err)
	}
	if _, err := r.service.Put(ctx, rule, 7); !solstice.IsKind(err, solstice.KindPreconditionFailed) {
		t.Errorf("stale expect = %v; want precondition failed", err)
	}
	audit, err := r.flags.Store().ListAudit(ctx, solstice.AuditFilter{Resource: "guardrail/festival/second"})
	if err != nil || len(audit) != 1 || audit[0].Action != "guardrail.create" || audit[0].Actor.Name != "alice" {
		t.Errorf("audit %+v, %v; want one guardrail.create by alice", audit, err)
	}
}

// TestChangingADefinitionRestartsTheTest: τ, α and the margin are fixed
// before a test starts, so a new definition means a new test.
func TestChangingADefinitionRestartsTheTest(t *testing.T) {
	r := newRig(t, storetest.Open(t))
	ctx := solstice.WithActor(t.Context(), editor)
	r.src.set(healthy(r.now))
	if err := r.job.Tick(ctx, r.now); err != nil {
		t.Fatal(err)
	}
	d, err := r.service.Get(ctx, r.ref)
	if err != nil {
		t.Fatal(err)
	}
	r.now = r.now.Add(time.Hour)
	if d, err = r.service.Put(ctx, d.Rule, d.Version); err != nil {
		t.Fatal(err)
	}
	st, err := r.db.State(ctx, r.ref)
	if err != nil || st.Test != 1 {
		t.Fatalf("an identical definition: state %+v, %v; want test 1 still", st, err)
	}
	d.Comparison.Margin = 0.2
	if _, err := r.service.Put(ctx, d.Rule, d.Version); err != nil {
		t.Fatal(err)
	}
	st, err = r.db.State(ctx, r.ref)
	if err != nil || st.Test != 2 || !st.TestStarted.Equal(r.now) || st.Phase != guardrails.PhaseCollecting {
		t.Errorf("a new margin: state %+v, %v; want test 2 collecting from now", st, err)
	}
}

func TestAckAndResume(t *testing.T) {
	r := newRig(t, storetest.Open(t))
	ctx := solstice.WithActor(t.Context(), editor)
	if _, err := r.service.Resume(ctx, r.ref); err == nil {
		t.Error("resuming a guardrail that never tripped succeeded")
	}
	r.now = r.now.Add(time.Minute)
	r.src.set(harmful(r.now))
	if err := r.job.Tick(ctx, r.now); err != nil {
		t.Fatal(err)
	}
	incs, err := r.service.Incidents(ctx, guardrails.IncidentFilter{Unacked: true})
	if err != nil || len(incs) != 1 {
		t.Fatalf("unacked incidents %+v, %v; want the trip", incs, err)
	}
	n := incs[0].Number
	for range 2 {
		rec, err := r.service.Ack(ctx, n)
		if err != nil || rec.AckedBy == nil || rec.AckedBy.Name != "alice" || rec.AckedAt == nil {
			t.Fatalf("Ack = %+v, %v", rec, err)
		}
	}
	audit, err := r.flags.Store().ListAudit(ctx, solstice.AuditFilter{Action: "incident.ack"})
	if err != nil || len(audit) != 1 {
		t.Errorf("ack audit %+v, %v; want exactly one entry for two acks", audit, err)
	}
	if incs, _ := r.service.Incidents(ctx, guardrails.IncidentFilter{Unacked: true}); len(incs) != 0 {
		t.Errorf("unacked after ack: %+v", incs)
	}

	r.now = r.now.Add(time.Hour)
	st, err := r.service.ResumeIncident(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != guardrails.PhaseCollecting || st.Test != 2 || !st.TestStarted.Equal(r.now) {
		t.Errorf("after resume: %+v; want test 2 collecting from now", st)
	}
	if _, err := r.service.ResumeIncident(ctx, n); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("resuming twice = %v; want conflict", err)
	}
	incs, err = r.service.Incidents(ctx, guardrails.IncidentFilter{Events: []guardrails.Event{guardrails.EventResume}})
	if err != nil || len(incs) != 1 || incs[0].Actor.Name != "alice" {
		t.Errorf("resume incidents %+v, %v; want one by alice", incs, err)
	}
}

func hasPointer(err error, pointer string) bool {
	for _, f := range solstice.ErrorFields(err) {
		if f.Pointer == pointer {
			return true
		}
	}
	return false
}
