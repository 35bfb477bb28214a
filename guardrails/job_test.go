package guardrails

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
)

// memStates is an in-memory StateStore with the compare-and-swap contract.
type memStates struct {
	mu     sync.Mutex
	states map[Ref]State
	swaps  int
}

var _ StateStore = (*memStates)(nil)

func newMemStates() *memStates { return &memStates{states: map[Ref]State{}} }

func (m *memStates) State(_ context.Context, ref Ref) (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.states[ref]
	if !ok {
		return State{}, solstice.Errorf(solstice.KindNotFound, "no state for %s", ref)
	}
	return st, nil
}

func (m *memStates) SwapState(_ context.Context, old int64, next State) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.states[next.Guardrail].Version != old {
		return solstice.Errorf(solstice.KindConflict, "state of %s is at version %d, not %d", next.Guardrail, m.states[next.Guardrail].Version, old)
	}
	if next.Version != old+1 {
		return fmt.Errorf("version %d after %d", next.Version, old)
	}
	m.states[next.Guardrail] = next
	m.swaps++
	return nil
}

// fakeSource serves counters per rule, over windows: each added window of
// counts is stamped with its time, and Counters sums those after since.
type fakeSource struct {
	mu      sync.Mutex
	windows map[Ref][]window
	err     error
	// gate, if set, is waited on by every Counters call (to line up
	// racing jobs).
	gate func()
}

type window struct {
	at        time.Time
	nT, xT    int64
	nC, xC    int64
	expT, exp int64
}

var _ CounterSource = (*fakeSource)(nil)

func newFakeSource() *fakeSource { return &fakeSource{windows: map[Ref][]window{}} }

func (f *fakeSource) add(ref Ref, at time.Time, nT, xT, nC, xC int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.windows[ref] = append(f.windows[ref], window{at: at, nT: nT, xT: xT, nC: nC, xC: xC, expT: nT / 5, exp: nC / 5})
}

func (f *fakeSource) addExposures(ref Ref, at time.Time, expT, expC int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.windows[ref] = append(f.windows[ref], window{at: at, expT: expT, exp: expC})
}

func (f *fakeSource) Counters(_ context.Context, r Rule, since time.Time) (Counters, error) {
	if f.gate != nil {
		f.gate()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return Counters{}, f.err
	}
	c := Counters{Since: since, TreatmentShare: 0.5}
	if ws := f.windows[r.Ref]; since.IsZero() && len(ws) > 0 {
		c.Since = ws[0].at.Add(-time.Minute) // the start of the first window
	}
	for _, w := range f.windows[r.Ref] {
		if !w.at.After(since) {
			continue
		}
		c.Watermark = w.at
		c.Treatment.Actions += w.nT
		c.Treatment.Rejects += w.xT
		c.Control.Actions += w.nC
		c.Control.Rejects += w.xC
		c.Treatment.Exposures += w.expT
		c.Control.Exposures += w.exp
		if w.nT > 0 {
			c.Treatment.LastMetric = w.at
		}
		if w.nC > 0 {
			c.Control.LastMetric = w.at
		}
		if w.expT > 0 {
			c.Treatment.LastExposure = w.at
		}
		if w.exp > 0 {
			c.Control.LastExposure = w.at
		}
	}
	return c, nil
}

// recorder is an Actions that records incidents, and can fail.
type recorder struct {
	mu        sync.Mutex
	incidents []Incident
	fail      int // fail this many calls first
}

var _ Actions = (*recorder)(nil)

func (a *recorder) Apply(_ context.Context, inc Incident) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail > 0 {
		a.fail--
		return errors.New("flags service unavailable")
	}
	a.incidents = append(a.incidents, inc)
	return nil
}

func (a *recorder) events() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, inc := range a.incidents {
		s := string(inc.Event)
		if inc.Action != "" {
			s += ":" + string(inc.Action)
		}
		out = append(out, s)
	}
	return out
}

type staticRules []Rule

func (s staticRules) Rules(context.Context) ([]Rule, error) { return s, nil }

type fixture struct {
	rule    Rule
	src     *fakeSource
	states  *memStates
	actions *recorder
	job     *Job
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{rule: rule(RejectRate(), RelativeToControl(0)), src: newFakeSource(), states: newMemStates(), actions: &recorder{}}
	f.job = NewJob(staticRules{f.rule}, f.src, f.states, f.actions)
	return f
}

func (f *fixture) tick(t *testing.T, at time.Time) {
	t.Helper()
	if err := f.job.Tick(context.Background(), at); err != nil {
		t.Fatalf("Tick at %s: %v", at, err)
	}
}

func (f *fixture) state(t *testing.T) State {
	t.Helper()
	st, err := f.states.State(context.Background(), f.rule.Ref)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestJobTripsOnceAndLatches(t *testing.T) {
	f := newFixture(t)
	ref := f.rule.Ref
	at := t0
	f.src.add(ref, at, 50, 1, 50, 1)
	f.tick(t, at)
	if _, err := f.states.State(context.Background(), ref); !solstice.IsKind(err, solstice.KindNotFound) {
		t.Errorf("collecting with no change stored a state: %v", err)
	}
	at = at.Add(time.Minute)
	f.src.add(ref, at, 5000, 100, 5000, 100)
	f.tick(t, at)
	if st := f.state(t); st.Phase != PhaseMonitoring {
		t.Fatalf("phase %s, want monitoring", st.Phase)
	}
	// Harm arrives.
	for i := range 5 {
		at = at.Add(time.Minute)
		f.src.add(ref, at, 5000, 250, 5000, 100)
		f.tick(t, at)
		if i == 0 && f.state(t).Phase != PhaseTripped {
			t.Fatalf("phase %s after harm, want tripped", f.state(t).Phase)
		}
	}
	if got := f.actions.events(); !equal(got, []string{"trip:rollback"}) {
		t.Errorf("incidents %v, want exactly one rollback", got)
	}
	st := f.state(t)
	if st.Pending != nil || st.Last == nil || st.Last.Verdict == nil || st.Last.Verdict.Evidence.LogE < st.Last.Verdict.Evidence.Threshold {
		t.Errorf("tripped state %+v: want the incident done and its evidence kept", st)
	}
	// Healthy data later does not unlatch it.
	for range 3 {
		at = at.Add(time.Minute)
		f.src.add(ref, at, 1_000_000, 10000, 1_000_000, 20000)
		f.tick(t, at)
	}
	if st := f.state(t); st.Phase != PhaseTripped || len(f.actions.events()) != 1 {
		t.Errorf("after healthy data: %s with incidents %v; want still tripped, one incident", st.Phase, f.actions.events())
	}
}

func TestJobResumeStartsAFreshTest(t *testing.T) {
	f := newFixture(t)
	ref := f.rule.Ref
	ctx := context.Background()
	alice := solstice.Actor{Name: "alice", Kind: "user"}

	if _, err := f.job.Resume(ctx, ref, alice, t0); !solstice.IsKind(err, solstice.KindNotFound) {
		t.Errorf("resume of an unknown guardrail: %v, want KindNotFound", err)
	}
	at := t0.Add(time.Minute)
	f.src.add(ref, at, 10000, 600, 10000, 200)
	f.tick(t, at)
	if f.state(t).Phase != PhaseTripped {
		t.Fatalf("phase %s, want tripped", f.state(t).Phase)
	}

	resumeAt := at.Add(time.Hour)
	st, err := f.job.Resume(ctx, ref, alice, resumeAt)
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != PhaseCollecting || st.Test != 2 || !st.TestStarted.Equal(resumeAt) || st.Pending != nil {
		t.Fatalf("resumed state %+v", st)
	}
	if _, err := f.job.Resume(ctx, ref, alice, resumeAt); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("second resume: %v, want KindConflict", err)
	}

	// The old harmful data does not count: a little healthy new data
	// keeps the new test going.
	at = resumeAt.Add(time.Minute)
	f.src.add(ref, at, 2000, 40, 2000, 40)
	f.tick(t, at)
	if st := f.state(t); st.Phase != PhaseMonitoring || st.Test != 2 {
		t.Fatalf("after resume and healthy data: %s in test %d, want monitoring in test 2", st.Phase, st.Test)
	}
	// New harm trips the new test, once.
	at = at.Add(time.Minute)
	f.src.add(ref, at, 10000, 600, 10000, 200)
	f.tick(t, at)
	f.tick(t, at.Add(time.Minute))
	if got := f.actions.events(); !equal(got, []string{"trip:rollback", "resume", "trip:rollback"}) {
		t.Errorf("incidents %v", got)
	}
	if last := f.actions.incidents[2]; last.Test != 2 || last.ID == f.actions.incidents[0].ID {
		t.Errorf("second trip %+v: want test 2 with its own ID", last)
	}
}

func TestJobHoldsThenFailsSafe(t *testing.T) {
	f := newFixture(t)
	ref := f.rule.Ref
	at := t0.Add(time.Minute)
	// Harmful data, but the treatment gets 60% of the exposures of a
	// 50/50 split: hold, do not roll back.
	f.src.add(ref, at, 10000, 600, 10000, 200)
	f.src.addExposures(ref, at, 3000, 0)
	f.tick(t, at)
	if st := f.state(t); st.Phase != PhaseHeld {
		t.Fatalf("phase %s, want held", st.Phase)
	}
	if got := f.actions.events(); !equal(got, []string{"hold"}) {
		t.Fatalf("incidents %v, want one hold", got)
	}
	// Still broken, within the timeout: nothing more.
	for i := 1; i <= 11; i++ {
		f.src.add(ref, at.Add(time.Duration(i)*10*time.Minute), 100, 2, 100, 2)
		f.tick(t, at.Add(time.Duration(i)*10*time.Minute))
	}
	if got := f.actions.events(); !equal(got, []string{"hold"}) {
		t.Fatalf("incidents %v within the timeout, want one hold", got)
	}
	// Past the timeout (2 h by default): fail safe with the rule's action.
	end := at.Add(DefaultHoldTimeout + time.Minute)
	f.src.add(ref, end, 100, 2, 100, 2)
	f.tick(t, end)
	if got := f.actions.events(); !equal(got, []string{"hold", "fail_safe:rollback"}) {
		t.Errorf("incidents %v, want hold then a fail-safe rollback", got)
	}
	if st := f.state(t); st.Phase != PhaseTripped {
		t.Errorf("phase %s, want tripped", st.Phase)
	}
}

func TestJobMissingMetricHoldIsReleased(t *testing.T) {
	f := newFixture(t)
	ref := f.rule.Ref
	at := t0.Add(time.Minute)
	f.src.add(ref, at, 5000, 100, 5000, 100)
	f.tick(t, at)
	// Exposures go on, actions stop arriving in the treatment.
	for i := 1; i <= 4; i++ {
		w := at.Add(time.Duration(i) * 10 * time.Minute)
		f.src.mu.Lock()
		f.src.windows[ref] = append(f.src.windows[ref], window{at: w, nC: 500, xC: 10, expT: 100, exp: 100})
		f.src.mu.Unlock()
		f.tick(t, w)
	}
	if st := f.state(t); st.Phase != PhaseHeld || st.Last.Verdict.Hold != HoldMetricMissing {
		t.Fatalf("phase %s (%s), want held for a missing metric", st.Phase, st.Reason)
	}
	// The metric comes back.
	w := at.Add(50 * time.Minute)
	f.src.add(ref, w, 500, 10, 500, 10)
	f.tick(t, w)
	if st := f.state(t); st.Phase != PhaseMonitoring {
		t.Errorf("phase %s, want monitoring", st.Phase)
	}
	if got := f.actions.events(); !equal(got, []string{"hold", "release"}) {
		t.Errorf("incidents %v, want hold and release", got)
	}
}

func TestJobCounterFailures(t *testing.T) {
	f := newFixture(t)
	ref := f.rule.Ref
	f.src.add(ref, t0, 5000, 100, 5000, 100)
	f.tick(t, t0)
	f.src.err = errors.New("database is down")
	if err := f.job.Tick(context.Background(), t0.Add(time.Minute)); err == nil {
		t.Error("Tick hid a counter failure")
	}
	if err := f.job.Tick(context.Background(), t0.Add(20*time.Minute)); err == nil {
		t.Error("Tick hid a counter failure")
	}
	if st := f.state(t); st.Phase != PhaseMonitoring {
		t.Errorf("after 20 min of failures: %s, want monitoring (too early to hold)", st.Phase)
	}
	_ = f.job.Tick(context.Background(), t0.Add(32*time.Minute))
	if st := f.state(t); st.Phase != PhaseHeld || st.Last.Verdict.Hold != HoldNoCounters {
		t.Errorf("after 31 min of failures: %s, want held", st.Phase)
	}
	f.src.err = nil
	f.src.add(ref, t0.Add(33*time.Minute), 100, 2, 100, 2)
	f.tick(t, t0.Add(33*time.Minute))
	if st := f.state(t); st.Phase != PhaseMonitoring {
		t.Errorf("after recovery: %s, want monitoring", st.Phase)
	}
}

func TestJobRetriesFailedActions(t *testing.T) {
	f := newFixture(t)
	ref := f.rule.Ref
	f.actions.fail = 1
	at := t0.Add(time.Minute)
	f.src.add(ref, at, 10000, 600, 10000, 200)
	if err := f.job.Tick(context.Background(), at); err == nil {
		t.Fatal("Tick hid the failed rollback")
	}
	st := f.state(t)
	if st.Phase != PhaseTripped || st.Pending == nil {
		t.Fatalf("state %s with pending %v, want tripped with the rollback pending", st.Phase, st.Pending)
	}
	// Within the claim timeout the claimant is left alone.
	f.tick(t, at.Add(30*time.Second))
	if len(f.actions.events()) != 0 {
		t.Fatalf("retried within the claim timeout: %v", f.actions.events())
	}
	f.tick(t, at.Add(2*time.Minute))
	f.tick(t, at.Add(3*time.Minute))
	if got := f.actions.events(); !equal(got, []string{"trip:rollback"}) {
		t.Errorf("incidents %v, want the rollback once", got)
	}
	if st := f.state(t); st.Pending != nil {
		t.Errorf("still pending: %+v", st.Pending)
	}
}

// TestJobsRaceToOneRollback runs two jobs on one state store, lined up so
// that both read the state before either writes: exactly one rollback
// happens, however often it is tried.
func TestJobsRaceToOneRollback(t *testing.T) {
	for round := range 50 {
		r := rule(RejectRate(), RelativeToControl(0))
		src, states, actions := newFakeSource(), newMemStates(), &recorder{}
		at := t0.Add(time.Minute)
		src.add(r.Ref, at, 10000, 600, 10000, 200)
		var arrived sync.WaitGroup
		arrived.Add(2)
		release := make(chan struct{})
		var once sync.Once
		src.gate = func() {
			once.Do(func() { go func() { arrived.Wait(); close(release) }() })
			arrived.Done()
			<-release
		}
		a := NewJob(staticRules{r}, src, states, actions)
		b := NewJob(staticRules{r}, src, states, actions)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, j := range []*Job{a, b} {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = j.Tick(context.Background(), at) }()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		src.gate = nil
		// Later ticks of both change nothing.
		for _, j := range []*Job{a, b, a} {
			if err := j.Tick(context.Background(), at.Add(5*time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		if got := actions.events(); !equal(got, []string{"trip:rollback"}) {
			t.Fatalf("round %d: incidents %v, want exactly one rollback", round, got)
		}
	}
}

func TestJobInvalidRule(t *testing.T) {
	f := newFixture(t)
	bad := f.rule
	bad.Key, bad.Tau = "bad", -1
	f.job = NewJob(staticRules{f.rule, bad}, f.src, f.states, f.actions)
	f.src.add(f.rule.Ref, t0, 10000, 600, 10000, 200)
	err := f.job.Tick(context.Background(), t0)
	if !solstice.IsKind(err, solstice.KindInvalid) {
		t.Errorf("Tick: %v, want the invalid rule reported", err)
	}
	// The valid sibling is still evaluated, with half the flag's α.
	st := f.state(t)
	if st.Phase != PhaseTripped || st.Last.Verdict.Evidence.Alpha != 0.025 {
		t.Errorf("the valid rule: %s with α %g, want tripped with α 0.025", st.Phase, st.Last.Verdict.Evidence.Alpha)
	}
}

func TestJobReports(t *testing.T) {
	f := newFixture(t)
	f.src.add(f.rule.Ref, t0, 10000, 200, 10000, 200)
	reps, err := f.job.Reports(context.Background(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 || reps[0].State.Phase != PhaseCollecting || reps[0].Verdict.Status != StatusHealthy || reps[0].Verdict.Reason == "" {
		t.Errorf("reports %+v", reps)
	}
	if _, err := f.states.State(context.Background(), f.rule.Ref); !solstice.IsKind(err, solstice.KindNotFound) {
		t.Error("Reports stored a state")
	}
}

func TestJobRun(t *testing.T) {
	f := newFixture(t)
	f.src.add(f.rule.Ref, t0, 10000, 600, 10000, 200)
	f.job = NewJob(staticRules{f.rule}, f.src, f.states, f.actions,
		WithInterval(time.Millisecond), WithClock(solstice.ClockFunc(func() time.Time { return t0 })))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.job.Run(ctx) }()
	deadline := time.After(10 * time.Second)
	for len(f.actions.events()) == 0 {
		select {
		case <-deadline:
			t.Fatal("Run never tripped the guardrail")
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if got := f.actions.events(); !equal(got, []string{"trip:rollback"}) {
		t.Errorf("incidents %v", got)
	}
}

func TestJobMetricNeverArrives(t *testing.T) {
	f := newFixture(t)
	ref := f.rule.Ref
	for i := range 5 {
		at := t0.Add(time.Duration(i) * 10 * time.Minute)
		f.src.addExposures(ref, at, 100, 100)
		f.tick(t, at)
	}
	if st := f.state(t); st.Phase != PhaseHeld || st.Last.Verdict.Hold != HoldMetricMissing {
		t.Errorf("exposures for 40 min and no actions: %s (%s), want held", st.Phase, st.Reason)
	}
}
