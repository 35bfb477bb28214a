package rollout_test

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/rollout"
)

var update = flag.Bool("update", false, "rewrite the golden memos in testdata")

// expStart is when the experiments of these tests start.
var expStart = time.Date(2026, 12, 18, 17, 0, 0, 0, time.UTC)

// endedExperiment is a two-step experiment (10%, then 50% in each arm)
// that ran from expStart, advanced a day later, and ended two days after
// that in status end.
func endedExperiment(end rollout.Status, reason string) rollout.Plan {
	p := rollout.Plan{
		ID: "winter-test", Environment: env, Flag: "winter-festival", Description: "Does the festival config hurt rejects?",
		Treatment: "festival", Control: "control", Baseline: "baseline", Experiment: true,
		Steps:  []rollout.Step{{Weight: 1000, MinDuration: rollout.Duration(24 * time.Hour)}, {Weight: 5000, MinDuration: rollout.Duration(48 * time.Hour)}},
		Gates:  rollout.Gates{Guardrails: []string{"reject-rate"}},
		Status: end, Step: 1, Reason: reason,
		History: []rollout.HistoryEntry{
			{Time: expStart, From: rollout.StatusDraft, To: rollout.StatusRunning, Step: 0, Weight: 1000, Actor: "alice", Reason: "started by alice", Revision: 12},
			{Time: expStart.Add(24 * time.Hour), From: rollout.StatusRunning, To: rollout.StatusRunning, Step: 1, Weight: 5000, Actor: "rollout:winter-test", Reason: "every gate of step 1 passed", Revision: 13},
			{Time: expStart.Add(72 * time.Hour), From: rollout.StatusRunning, To: end, Step: 1, Weight: 5000, Actor: "rollout:winter-test", Reason: reason},
		},
	}
	if end == rollout.StatusRolledBack {
		p.History[2].Revision = 14
	}
	return p
}

// expEnd is when endedExperiment ends.
var expEnd = expStart.Add(72 * time.Hour)

func rejectRule(key string) guardrails.Rule {
	return guardrails.Rule{Ref: guardrails.Ref{Environment: env, Flag: "winter-festival", Key: key}, Metric: guardrails.RejectRate(),
		Comparison: guardrails.RelativeToControl(0.1), Treatment: "festival", Control: "control"}.WithDefaults()
}

// armCounts are the counters of both arms of a test: actions (trials) and
// rejects per arm, as many exposures in each.
type armCounts struct{ nT, xT, nC, xC int64 }

func (a armCounts) counters(since, watermark time.Time) guardrails.Counters {
	arm := func(n, x int64) guardrails.Arm {
		return guardrails.Arm{Exposures: n / 10, Actions: n, Rejects: x, LastExposure: watermark, LastMetric: watermark}
	}
	return guardrails.Counters{Since: since, Watermark: watermark, TreatmentShare: 0.5, Treatment: arm(a.nT, a.xT), Control: arm(a.nC, a.xC)}
}

// report is a guardrail's report at the end of endedExperiment: its state
// in phase (test 2, since the second step), and its verdict evaluated by
// the guardrails package on the counts, as the flag's only guardrail.
func report(r guardrails.Rule, phase guardrails.Phase, counts armCounts, incidents ...guardrails.Record) rollout.GuardrailReport {
	return reportAmong([]guardrails.Rule{r}, r, phase, counts, incidents...)
}

// reportAmong is report for r when the flag's guardrails are all, which
// share its α.
func reportAmong(all []guardrails.Rule, r guardrails.Rule, phase guardrails.Phase, counts armCounts, incidents ...guardrails.Record) rollout.GuardrailReport {
	since := expStart.Add(24 * time.Hour)
	counters := map[guardrails.Ref]guardrails.Counters{}
	for _, o := range all {
		counters[o.Ref] = counts.counters(since, expEnd)
	}
	i := slices.IndexFunc(all, func(o guardrails.Rule) bool { return o.Ref == r.Ref })
	v := guardrails.Evaluate(all, counters, expEnd)[i]
	st := guardrails.State{Guardrail: r.Ref, Phase: phase, Test: 2, TestStarted: since, Since: since, Reason: "test 2 of step 2", Version: 5}
	return rollout.GuardrailReport{Definition: guardrails.Definition{Rule: r, Version: 1}, State: &st, Verdict: &v, Incidents: incidents}
}

func tripRecord(number int64, at time.Time) guardrails.Record {
	return guardrails.Record{Number: number, Incident: guardrails.Incident{
		ID: "production/winter-festival/reject-rate/test-2/6-trip", Guardrail: rejectRule("reject-rate").Ref, Event: guardrails.EventTrip,
		Action: guardrails.ActionRollback, Test: 2, Time: at, Reason: "treatment rate 5% vs control 2%: harm beyond the margin is established"},
		Revision: 14, Outcome: `rolled winter-festival in production back in revision 14: serves the control variant "control" to everyone`}
}

var (
	healthy = armCounts{nT: 5000, xT: 105, nC: 5000, xC: 100}
	harmful = armCounts{nT: 5000, xT: 250, nC: 5000, xC: 100}
	small   = armCounts{nT: 80, xT: 2, nC: 75, xC: 1}
)

// decisionCase is an ended experiment, the guardrails at its end, and
// the decision DecideExperiment must take.
type decisionCase struct {
	name      string
	plan      rollout.Plan
	in        rollout.ExperimentInput
	outcome   rollout.Outcome
	reason    string            // in the decision's reason
	enough    map[string]bool   // EnoughSample per guardrail
	incidents map[string]string // incident numbers per guardrail, joined
}

// decisionCases are the experiments DecideExperiment is tried on; the
// golden memos render some of them.
func decisionCases() []decisionCase {
	completed := endedExperiment(rollout.StatusCompleted, "every gate of the last step passed")
	tripped := report(rejectRule("reject-rate"), guardrails.PhaseTripped, harmful, tripRecord(7, expStart.Add(30*time.Hour)), tripRecord(3, expStart.Add(-time.Hour)))
	pending := report(rejectRule("reject-rate"), guardrails.PhaseTripped, harmful)
	unrecorded := tripRecord(0, expStart.Add(71*time.Hour)).Incident
	pending.State.Pending = &unrecorded
	pending.State.Last = pending.State.Pending
	ceiling := rejectRule("ceiling")
	ceiling.Comparison, ceiling.Control = guardrails.AbsoluteCeiling(0.05), ""
	both := []guardrails.Rule{ceiling, rejectRule("reject-rate")}
	neverRan := endedExperiment(rollout.StatusCancelled, "event winter-festival ended before the plan started")
	neverRan.Step, neverRan.History = -1, []rollout.HistoryEntry{{Time: expEnd, From: rollout.StatusDraft, To: rollout.StatusCancelled, Actor: "event:winter-festival", Reason: neverRan.Reason}}
	return []decisionCase{
		{"ship", completed, rollout.ExperimentInput{Guardrails: []rollout.GuardrailReport{report(rejectRule("reject-rate"), guardrails.PhaseMonitoring, healthy)}},
			rollout.OutcomeShip, "every guardrail healthy on enough sample", map[string]bool{"reject-rate": true}, map[string]string{"reject-rate": ""}},
		{"sample under nMin", completed, rollout.ExperimentInput{Guardrails: []rollout.GuardrailReport{report(rejectRule("reject-rate"), guardrails.PhaseCollecting, small)}},
			rollout.OutcomeInconclusive, "counted 80 treatment and 75 control trials, under the 100 its rule needs in each arm", map[string]bool{"reject-rate": false}, map[string]string{"reject-rate": ""}},
		{"ceiling under nMin", completed, rollout.ExperimentInput{Guardrails: []rollout.GuardrailReport{
			reportAmong(both, rejectRule("reject-rate"), guardrails.PhaseMonitoring, healthy), reportAmong(both, ceiling, guardrails.PhaseCollecting, small)}},
			rollout.OutcomeInconclusive, "guardrail ceiling counted 80 treatment trials, under the 100 its rule needs", map[string]bool{"ceiling": false, "reject-rate": true}, map[string]string{"ceiling": "", "reject-rate": ""}},
		{"held", completed, rollout.ExperimentInput{Guardrails: []rollout.GuardrailReport{report(rejectRule("reject-rate"), guardrails.PhaseHeld, healthy)}},
			rollout.OutcomeInconclusive, "guardrail reject-rate is held", map[string]bool{"reject-rate": true}, map[string]string{"reject-rate": ""}},
		{"tripped and rolled back", endedExperiment(rollout.StatusRolledBack, "guardrail reject-rate tripped: treatment rate 5% vs control 2%"),
			rollout.ExperimentInput{Guardrails: []rollout.GuardrailReport{
				reportAmong(both, rejectRule("reject-rate"), guardrails.PhaseTripped, harmful, tripRecord(7, expStart.Add(30*time.Hour)), tripRecord(3, expStart.Add(-time.Hour))),
				reportAmong(both, ceiling, guardrails.PhaseMonitoring, healthy)}},
			rollout.OutcomeRollBack, "guardrail reject-rate tripped: treatment rate 5% vs control 2%", map[string]bool{"ceiling": true, "reject-rate": true}, map[string]string{"ceiling": "", "reject-rate": "7"}},
		{"trip not carried out yet", endedExperiment(rollout.StatusRolledBack, "guardrail reject-rate tripped"), rollout.ExperimentInput{Guardrails: []rollout.GuardrailReport{pending}},
			rollout.OutcomeRollBack, "guardrail reject-rate tripped", map[string]bool{"reject-rate": true}, map[string]string{"reject-rate": "0"}},
		{"aborted by a person", endedExperiment(rollout.StatusRolledBack, "aborted by alice: wrong art"),
			rollout.ExperimentInput{Guardrails: []rollout.GuardrailReport{report(rejectRule("reject-rate"), guardrails.PhaseMonitoring, healthy)}},
			rollout.OutcomeRollBack, "the plan was rolled back at step 2 of 2: aborted by alice: wrong art", map[string]bool{"reject-rate": true}, map[string]string{"reject-rate": ""}},
		{"cancelled by its event", endedExperiment(rollout.StatusCancelled, "event winter-festival ended"),
			rollout.ExperimentInput{Guardrails: []rollout.GuardrailReport{report(rejectRule("reject-rate"), guardrails.PhaseMonitoring, healthy)}},
			rollout.OutcomeInconclusive, "cancelled at step 2 of 2, before it completed: event winter-festival ended", map[string]bool{"reject-rate": true}, map[string]string{"reject-rate": ""}},
		{"cancelled with a tripped guardrail", endedExperiment(rollout.StatusCancelled, "event winter-festival ended"),
			rollout.ExperimentInput{Guardrails: []rollout.GuardrailReport{tripped}},
			rollout.OutcomeRollBack, "guardrail reject-rate tripped", map[string]bool{"reject-rate": true}, map[string]string{"reject-rate": "7"}},
		{"cancelled before it ran", neverRan, rollout.ExperimentInput{Guardrails: []rollout.GuardrailReport{report(rejectRule("reject-rate"), guardrails.PhaseCollecting, armCounts{})}},
			rollout.OutcomeInconclusive, "cancelled before it ran, so there is no data", map[string]bool{"reject-rate": false}, map[string]string{"reject-rate": ""}},
		{"no guardrail", completed, rollout.ExperimentInput{},
			rollout.OutcomeInconclusive, "no guardrail of winter-festival measured the experiment", map[string]bool{}, map[string]string{}},
		{"evidence unreadable", completed, rollout.ExperimentInput{Guardrails: []rollout.GuardrailReport{{Definition: guardrails.Definition{Rule: rejectRule("reject-rate")}, Error: "guardrail not found"}}},
			rollout.OutcomeInconclusive, "the evidence of guardrail reject-rate could not be read (guardrail not found)", map[string]bool{"reject-rate": false}, map[string]string{"reject-rate": ""}},
		{"guardrails unreadable", completed, rollout.ExperimentInput{Error: "database is locked"},
			rollout.OutcomeInconclusive, "the guardrails could not be read: database is locked", map[string]bool{}, map[string]string{}},
	}
}

// TestDecideExperiment checks the outcome and the evidence of experiments
// that ended in every way.
func TestDecideExperiment(t *testing.T) {
	for _, tc := range decisionCases() {
		t.Run(tc.name, func(t *testing.T) {
			d := rollout.DecideExperiment(tc.plan, tc.in)
			if d.Outcome != tc.outcome || !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("outcome %s (%q), want %s saying %q", d.Outcome, d.Reason, tc.outcome, tc.reason)
			}
			enough, incidents := map[string]bool{}, map[string]string{}
			for _, g := range d.Guardrails {
				enough[g.Key] = g.EnoughSample
				var ns []string
				for _, inc := range g.Incidents {
					ns = append(ns, strconv.FormatInt(inc.Number, 10))
				}
				incidents[g.Key] = strings.Join(ns, ",")
			}
			if diff := cmp.Diff(tc.enough, enough); diff != "" {
				t.Errorf("enough sample per guardrail (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.incidents, incidents); diff != "" {
				t.Errorf("incidents per guardrail (-want +got):\n%s", diff)
			}
			wantStart := expStart
			if tc.plan.Step < 0 {
				wantStart = time.Time{}
			}
			if !d.StartedAt.Equal(wantStart) || !d.EndedAt.Equal(expEnd) || d.Status != tc.plan.Status || len(d.Timeline) != len(tc.plan.History) {
				t.Errorf("decision ran %s to %s, %s, %d timeline entries; want %s to %s, %s, %d",
					d.StartedAt, d.EndedAt, d.Status, len(d.Timeline), wantStart, expEnd, tc.plan.Status, len(tc.plan.History))
			}
		})
	}
}

// TestDecideExperimentEvidence pins the numbers a decision carries over
// from the verdict: counts per arm, rates, effect, bounds, p-value.
func TestDecideExperimentEvidence(t *testing.T) {
	r := report(rejectRule("reject-rate"), guardrails.PhaseMonitoring, healthy)
	d := rollout.DecideExperiment(endedExperiment(rollout.StatusCompleted, "done"), rollout.ExperimentInput{Guardrails: []rollout.GuardrailReport{r}})
	if len(d.Guardrails) != 1 {
		t.Fatalf("%d guardrails, want 1", len(d.Guardrails))
	}
	g, ev := d.Guardrails[0], r.Verdict.Evidence
	want := rollout.GuardrailEvidence{
		Key: "reject-rate", Metric: "reject_rate", Comparison: guardrails.RelativeToControl(0.1), Action: guardrails.ActionRollback, Required: true,
		Phase: guardrails.PhaseMonitoring, Status: guardrails.StatusHealthy, Reason: r.Verdict.Reason, Test: 2, TestStarted: expStart.Add(24 * time.Hour),
		MinSample: 100, EnoughSample: true,
		Treatment: guardrails.ArmSample{Exposures: 500, N: 5000, X: 105, Rate: 0.021}, Control: guardrails.ArmSample{Exposures: 500, N: 5000, X: 100, Rate: 0.02},
		Effect: ev.Effect, Lower: ev.Lower, Upper: ev.Upper, Alpha: 0.05, PValue: ev.PValue, Incidents: []rollout.IncidentSummary{},
	}
	if diff := cmp.Diff(want, g); diff != "" {
		t.Errorf("evidence (-want +got):\n%s", diff)
	}
	// The verdict's numbers themselves: 2.1% against 1.1 × 2%.
	if got := ev.Effect; got > -0.0009 || got < -0.0011 {
		t.Errorf("effect %g, want 0.021 − 1.1·0.02 = −0.001", got)
	}
	if !(ev.Lower < ev.Effect && ev.Effect < ev.Upper && ev.Lower < 0 && ev.Upper > 0) || ev.PValue <= 0.05 {
		t.Errorf("bounds [%g, %g], p %g; want an interval around the effect that contains 0 and p > α", ev.Lower, ev.Upper, ev.PValue)
	}
}

// TestValidateExperiment checks that an experiment refuses a step whose
// control group would be smaller than its treatment.
func TestValidateExperiment(t *testing.T) {
	for _, tc := range []struct {
		name       string
		weights    []int
		experiment bool
		want       []string
	}{
		{"equal arms up to half", []int{100, 2500, 5000}, true, nil},
		{"above half", []int{1000, 5001, 10000}, true, []string{"/steps/1/weight", "/steps/2/weight"}},
		{"a plain rollout may reach everyone", []int{1000, 10000}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := endedExperiment(rollout.StatusDraft, "")
			p.Experiment, p.Steps = tc.experiment, nil
			for _, w := range tc.weights {
				p.Steps = append(p.Steps, rollout.Step{Weight: w})
			}
			err := rollout.ValidatePlan(p)
			var got []string
			for _, f := range solstice.ErrorFields(err) {
				got = append(got, f.Pointer)
				if !strings.Contains(f.Message, "equal size") {
					t.Errorf("%s: %q, want it to say why", f.Pointer, f.Message)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("field errors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMemo compares the memos of three decisions with their golden files
// (go test -run TestMemo -update rewrites them).
func TestMemo(t *testing.T) {
	cases := map[string]bool{"ship": true, "tripped and rolled back": true, "sample under nMin": true}
	files := map[string]string{"ship": "memo-ship.md", "tripped and rolled back": "memo-roll-back.md", "sample under nMin": "memo-inconclusive.md"}
	seen := 0
	for _, tc := range decisionCases() {
		if !cases[tc.name] {
			continue
		}
		seen++
		t.Run(tc.name, func(t *testing.T) {
			got := rollout.Memo(rollout.DecideExperiment(tc.plan, tc.in))
			path := filepath.Join("testdata", files[tc.name])
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestMemo -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("memo differs from %s (-want +got):\n%s", path, diff)
			}
		})
	}
	if seen != len(cases) {
		t.Fatalf("%d golden cases found, want %d", seen, len(cases))
	}
}

// TestMemoEscapes checks that text from people cannot break the memo's
// tables.
func TestMemoEscapes(t *testing.T) {
	p := endedExperiment(rollout.StatusRolledBack, "aborted by alice: A|B\nC")
	m := rollout.Memo(rollout.DecideExperiment(p, rollout.ExperimentInput{}))
	for _, line := range strings.Split(m, "\n") {
		if strings.Contains(line, "aborted by alice") && strings.HasPrefix(line, "|") && !strings.Contains(line, `A\|B C`) {
			t.Errorf("table row %q does not escape the reason", line)
		}
	}
}

// experimentCounters is the guardrail job's counter source in the
// end-to-end tests: every test counts the same arms, cut at the clock's
// time.
type experimentCounters struct {
	mu     sync.Mutex
	clock  *fakeClock
	counts armCounts
}

func (c *experimentCounters) set(a armCounts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts = a
}

func (c *experimentCounters) Counters(_ context.Context, _ guardrails.Rule, since time.Time) (guardrails.Counters, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts.counters(since, c.clock.Now()), nil
}

// experimentWorld is a world with a real guardrail job and service over
// counters the test sets, two schedulers reading the evidence through the
// guardrail service, as solstice serve wires them.
type experimentWorld struct {
	*world
	counters *experimentCounters
	job      *guardrails.Job
	scheds   []*rollout.Scheduler
}

func newExperimentWorld(t *testing.T) *experimentWorld {
	clock := &fakeClock{t: expStart.Add(-time.Hour)}
	db := openDB(t, clock)
	w := &experimentWorld{world: newWorld(t, db, clock), counters: &experimentCounters{clock: clock}}
	quiet := slog.New(slog.DiscardHandler)
	w.job = guardrails.NewJob(db, w.counters, db, guardrails.NewResponder(db, w.flags), guardrails.WithClock(clock), guardrails.WithLogger(quiet))
	gsvc := guardrails.NewService(db, w.flags, w.job)
	opts := []rollout.Option{rollout.WithClock(clock), rollout.WithEvidence(gsvc), rollout.WithLogger(quiet)}
	w.svc = rollout.NewService(db, w.flags, db, append(opts, rollout.WithInstance("api"))...)
	for _, name := range []string{"s1", "s2"} {
		w.scheds = append(w.scheds, rollout.NewScheduler(db, w.flags, db, append(opts, rollout.WithInstance(name))...))
	}
	return w
}

// run ticks the guardrail job, then both schedulers at once, every 15
// minutes from the clock's time to until.
func (w *experimentWorld) run(until time.Time) {
	w.t.Helper()
	for at := w.clock.Now(); !at.After(until); at = at.Add(15 * time.Minute) {
		w.clock.Set(at)
		w.must(w.job.Tick(w.ctx, at))
		var wg sync.WaitGroup
		errs := make([]error, len(w.scheds))
		for i, s := range w.scheds {
			wg.Go(func() { errs[i] = s.Tick(w.ctx, at) })
		}
		wg.Wait()
		for _, err := range errs {
			w.must(err)
		}
	}
}

// TestExperimentEndToEnd runs experiments with a real guardrail job and two
// schedulers racing at every tick, and checks the decision each gets, that
// it is written once, and that it does not change afterwards.
func TestExperimentEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		name     string
		counts   armCounts
		required bool
		status   rollout.Status
		outcome  rollout.Outcome
		trips    int
	}{
		{"healthy", healthy, true, rollout.StatusCompleted, rollout.OutcomeShip, 0},
		{"harmful", harmful, true, rollout.StatusRolledBack, rollout.OutcomeRollBack, 1},
		{"too small", small, false, rollout.StatusCompleted, rollout.OutcomeInconclusive, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newExperimentWorld(t)
			w.counters.set(tc.counts)
			p := endedExperiment(rollout.StatusDraft, "")
			p.Status, p.Step, p.Reason, p.History = "", 0, "", nil
			p.Steps = []rollout.Step{{Weight: 1000, MinDuration: rollout.Duration(time.Hour)}, {Weight: 5000, MinDuration: rollout.Duration(2 * time.Hour)}}
			if !tc.required {
				p.Gates = rollout.Gates{}
			}
			_, err := w.svc.PutPlan(w.ctx, p, 0)
			w.must(err)
			_, err = w.svc.Decision(w.ctx, env, p.ID)
			if !solstice.IsKind(err, solstice.KindNotFound) || !strings.Contains(err.Error(), "its decision is written when it ends") {
				t.Errorf("decision of a draft: %v, want not found saying when it comes", err)
			}
			w.clock.Set(expStart)
			_, err = w.svc.Start(w.ctx, env, p.ID, 1)
			w.must(err)
			w.run(expStart.Add(4 * time.Hour))

			got := w.plan(p.ID)
			if got.Status != tc.status {
				t.Fatalf("plan %s (%s), want %s", got.Status, got.Reason, tc.status)
			}
			d, err := w.svc.Decision(w.ctx, env, p.ID)
			w.must(err)
			if d.Outcome != tc.outcome || len(d.Guardrails) != 1 {
				t.Fatalf("decision %s (%s) with %d guardrails, want %s with 1", d.Outcome, d.Reason, len(d.Guardrails), tc.outcome)
			}
			g := d.Guardrails[0]
			if g.Treatment.N != tc.counts.nT || g.Control.N != tc.counts.nC || g.Treatment.X != tc.counts.xT || g.Control.X != tc.counts.xC {
				t.Errorf("evidence counts %+v / %+v, want the counters' %+v", g.Treatment, g.Control, tc.counts)
			}
			trips := 0
			for _, inc := range g.Incidents {
				if inc.Event == guardrails.EventTrip && inc.Number > 0 {
					trips++
				}
			}
			if trips != tc.trips {
				t.Errorf("%d recorded trips in the evidence (%+v), want %d", trips, g.Incidents, tc.trips)
			}
			last := got.History[len(got.History)-1]
			if !d.EndedAt.Equal(last.Time) || d.Status != tc.status {
				t.Errorf("decision ended at %s (%s), want the plan's end at %s (%s)", d.EndedAt, d.Status, last.Time, tc.status)
			}
			ends := 0
			entries, err := w.db.ListAudit(w.ctx, solstice.AuditFilter{Resource: "rollout/" + p.ID})
			w.must(err)
			for _, e := range entries {
				if e.Action == "rollout.complete" || e.Action == "rollout.roll_back" {
					ends++
				}
			}
			if ends != 1 {
				t.Errorf("%d audit entries end the plan, want 1 (two schedulers raced)", ends)
			}

			// Later the numbers change and the schedulers keep ticking:
			// the decision stays the one made at the end.
			w.counters.set(harmful)
			w.run(expStart.Add(6 * time.Hour))
			again, err := w.svc.Decision(w.ctx, env, p.ID)
			w.must(err)
			if diff := cmp.Diff(d, again); diff != "" {
				t.Errorf("decision changed after the end (-first +now):\n%s", diff)
			}
			if m := rollout.Memo(d); !strings.Contains(m, "# Experiment decision: winter-festival, plan winter-test") {
				t.Errorf("memo does not start with its title:\n%s", m)
			}
		})
	}
}

// TestDecisionOfAPlainRollout checks that a plan that is not an experiment
// has no decision, even once it ended.
func TestDecisionOfAPlainRollout(t *testing.T) {
	w := newExperimentWorld(t)
	p := endedExperiment(rollout.StatusDraft, "")
	p.Experiment = false
	_, err := w.svc.PutPlan(w.ctx, p, 0)
	w.must(err)
	w.clock.Set(expStart)
	_, err = w.svc.Start(w.ctx, env, p.ID, 1)
	w.must(err)
	_, err = w.svc.Abort(w.ctx, env, p.ID, "changed our minds", w.plan(p.ID).Version)
	w.must(err)
	if got := w.plan(p.ID); got.Status != rollout.StatusRolledBack || got.ExperimentDecision != nil {
		t.Fatalf("aborted plain plan: %s with decision %+v, want rolled back without one", got.Status, got.ExperimentDecision)
	}
	_, err = w.svc.Decision(w.ctx, env, p.ID)
	if !solstice.IsKind(err, solstice.KindNotFound) || !strings.Contains(err.Error(), "is not an experiment") {
		t.Errorf("decision of a plain plan: %v, want not found saying it is not an experiment", err)
	}
	_, err = w.svc.Decision(w.ctx, env, "nope")
	if !solstice.IsKind(err, solstice.KindNotFound) {
		t.Errorf("decision of an unknown plan: %v, want not found", err)
	}
}
