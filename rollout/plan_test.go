package rollout_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/rollout"
)

// TestTransitionTable checks every pair of statuses against the legal
// transitions, written out here independently of the package's table.
func TestTransitionTable(t *testing.T) {
	legal := map[string]bool{
		"draft→scheduled": true, "draft→running": true, "draft→cancelled": true,
		"scheduled→draft": true, "scheduled→running": true, "scheduled→cancelled": true,
		"running→running": true, "running→paused": true, "running→completed": true, "running→rolled_back": true, "running→cancelled": true,
		"paused→running": true, "paused→rolled_back": true, "paused→cancelled": true,
	}
	if len(rollout.Statuses) != 7 {
		t.Fatalf("%d statuses, want 7: update this test's table", len(rollout.Statuses))
	}
	n := 0
	for _, from := range rollout.Statuses {
		for _, to := range rollout.Statuses {
			name := string(from) + "→" + string(to)
			err := rollout.Transition(from, to)
			reason := rollout.TransitionReason(from, to)
			if legal[name] {
				n++
				if err != nil || reason == "" {
					t.Errorf("Transition(%s) = %v with reason %q; want legal with a reason", name, err, reason)
				}
				continue
			}
			if got := solstice.ErrorKind(err); got != solstice.KindConflict {
				t.Errorf("Transition(%s) kind = %q (%v), want %q", name, got, err, solstice.KindConflict)
				continue
			}
			msg := solstice.ErrorMessage(err)
			if !strings.Contains(msg, fmt.Sprintf("%s → %s", from, to)) || !strings.Contains(msg, ": ") {
				t.Errorf("Transition(%s) = %q; want it to name the transition and say why", name, msg)
			}
			if reason != "" {
				t.Errorf("TransitionReason(%s) = %q for an illegal transition", name, reason)
			}
		}
	}
	if n != len(legal) {
		t.Errorf("%d legal transitions found, want %d", n, len(legal))
	}
	for _, tc := range []struct{ from, to rollout.Status }{{"", rollout.StatusRunning}, {rollout.StatusDraft, "done"}} {
		if err := rollout.Transition(tc.from, tc.to); !solstice.IsKind(err, solstice.KindConflict) || !strings.Contains(err.Error(), "unknown status") {
			t.Errorf("Transition(%q, %q) = %v, want a conflict naming the unknown status", tc.from, tc.to, err)
		}
	}
	for _, s := range rollout.Statuses {
		terminal := s == rollout.StatusCompleted || s == rollout.StatusRolledBack || s == rollout.StatusCancelled
		if s.Terminal() != terminal {
			t.Errorf("%s.Terminal() = %v, want %v", s, s.Terminal(), terminal)
		}
	}
}

func testPlan() rollout.Plan {
	return rollout.Plan{
		ID: "winter-ramp", Environment: "production", Flag: "winter-festival",
		Treatment: "festival", Control: "control", Baseline: "baseline",
		Steps: []rollout.Step{
			{Weight: 500, MinDuration: rollout.Duration(24 * time.Hour)},
			{Weight: 2500, MinDuration: rollout.Duration(24 * time.Hour), Approval: true},
			{Weight: 10000, MinDuration: rollout.Duration(24 * time.Hour)},
		},
		Gates:  rollout.Gates{Guardrails: []string{"reject-rate"}, MinSample: 100},
		Status: rollout.StatusDraft, Step: -1,
	}
}

func TestValidatePlan(t *testing.T) {
	if err := rollout.ValidatePlan(testPlan()); err != nil {
		t.Fatalf("ValidatePlan(valid) = %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(p *rollout.Plan)
		want []string // pointers
	}{
		{"bad id", func(p *rollout.Plan) { p.ID = "Winter Ramp" }, []string{"/id"}},
		{"id too long for its rule", func(p *rollout.Plan) { p.ID = strings.Repeat("a", 101) }, []string{"/id"}},
		{"no flag", func(p *rollout.Plan) { p.Flag = "" }, []string{"/flag"}},
		{"same variant twice", func(p *rollout.Plan) { p.Control = "baseline" }, []string{"/baseline"}},
		{"no steps", func(p *rollout.Plan) { p.Steps = nil }, []string{"/steps"}},
		{"weight 0", func(p *rollout.Plan) { p.Steps[0].Weight = 0 }, []string{"/steps/0/weight"}},
		{"weight over 100%", func(p *rollout.Plan) { p.Steps[2].Weight = 10001 }, []string{"/steps/2/weight"}},
		{"decreasing", func(p *rollout.Plan) { p.Steps[1].Weight = 400 }, []string{"/steps/1/weight"}},
		{"negative duration", func(p *rollout.Plan) { p.Steps[1].MinDuration = -1 }, []string{"/steps/1/min_duration"}},
		{"segment after everyone", func(p *rollout.Plan) { p.Steps[2].Segment = "beta" }, []string{"/steps/2/segment"}},
		{"segment changed", func(p *rollout.Plan) {
			p.Steps[0].Segment, p.Steps[1].Segment = "beta", "vip"
		}, []string{"/steps/1/segment"}},
		{"guardrail twice", func(p *rollout.Plan) { p.Gates.Guardrails = []string{"a", "a"} }, []string{"/gates/guardrails/1"}},
		{"negative sample", func(p *rollout.Plan) { p.Gates.MinSample = -1 }, []string{"/gates/min_sample"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPlan()
			tc.edit(&p)
			err := rollout.ValidatePlan(p)
			if !solstice.IsKind(err, solstice.KindInvalid) {
				t.Fatalf("ValidatePlan = %v, want invalid", err)
			}
			var got []string
			for _, f := range solstice.ErrorFields(err) {
				got = append(got, f.Pointer)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("pointers (-want +got):\n%s", diff)
			}
		})
	}
	// Narrowing is refused, widening a segment to everyone is fine.
	p := testPlan()
	p.Steps[0].Segment, p.Steps[1].Segment = "beta", "beta"
	if err := rollout.ValidatePlan(p); err != nil {
		t.Errorf("segment then everyone: %v", err)
	}
}

func TestPlanLifecycle(t *testing.T) {
	t0 := time.Date(2026, 12, 18, 17, 0, 0, 0, time.UTC)
	alice := solstice.Actor{Name: "alice", Kind: "user"}
	p := testPlan()

	if _, err := p.Resume(t0, alice, 7, "s1"); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("Resume of a draft = %v, want a conflict (a plan that never ran has no step to start over)", err)
	}
	run, err := p.Begin(t0, alice, "started by alice", 0, 7, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != rollout.StatusRunning || run.Step != 0 || !run.StepStarted.Equal(t0) || run.Pending == nil ||
		run.Pending.Kind != rollout.PendingStep || run.Pending.Head != 7 || run.Pending.ID != "plan/production/winter-ramp/1" {
		t.Fatalf("Begin = %+v (pending %+v)", run, run.Pending)
	}
	if _, err := run.Advance(t0, alice, "", 0, 7, "s1"); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("Advance with a pending change = %v, want a conflict", err)
	}
	run.Pending, run.Version = nil, 2

	t1 := t0.Add(24 * time.Hour)
	two, err := run.Advance(t1, alice, "gates passed", time.Minute, 8, "s1")
	if err != nil || two.Step != 1 || !two.StepStarted.Equal(t1) || two.Pending.ID != "plan/production/winter-ramp/3" {
		t.Fatalf("Advance = %+v, %v", two, err)
	}
	h := two.History[len(two.History)-1]
	if h.From != rollout.StatusRunning || h.To != rollout.StatusRunning || h.Step != 1 || h.Weight != 2500 || h.Late != rollout.Duration(time.Minute) {
		t.Errorf("history entry of the advance = %+v", h)
	}
	two.Pending = nil

	if _, err := two.Approve(0, t1, alice); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("Approve of another step = %v, want a conflict", err)
	}
	approved, err := two.Approve(1, t1, alice)
	if err != nil || !approved.Approved(1) {
		t.Fatalf("Approve = %v, approved %v", err, approved.Approved(1))
	}
	if _, err := approved.Approve(1, t1, alice); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("second approval = %v, want a conflict", err)
	}

	paused, err := approved.Pause(t1, alice, "looking at the charts")
	if err != nil || paused.Status != rollout.StatusPaused {
		t.Fatalf("Pause = %+v, %v", paused, err)
	}
	if _, err := paused.Pause(t1, alice, ""); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("Pause of a paused plan = %v, want a conflict", err)
	}
	t2 := t1.Add(time.Hour)
	resumed, err := paused.Resume(t2, alice, 9, "s1")
	if err != nil || resumed.Status != rollout.StatusRunning || !resumed.StepStarted.Equal(t2) || resumed.Pending == nil || resumed.Step != 1 {
		t.Fatalf("Resume = %+v, %v", resumed, err)
	}
	resumed.Pending = nil
	last, err := resumed.Advance(t2, alice, "", 0, 9, "s1")
	if err != nil || last.Step != 2 {
		t.Fatalf("Advance to the last step = %+v, %v", last, err)
	}
	last.Pending = nil
	done, err := last.Advance(t2, alice, "every gate passed", 0, 9, "s1")
	if err != nil || done.Status != rollout.StatusCompleted || done.Pending != nil {
		t.Fatalf("Advance past the last step = %+v, %v; want completed with nothing to write", done, err)
	}
	if _, err := done.RollBack(t2, alice, "", 9, "s1"); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("RollBack of a completed plan = %v, want a conflict", err)
	}

	rb, err := last.RollBack(t2, alice, "guardrail reject-rate tripped", 9, "s1")
	if err != nil || rb.Status != rollout.StatusRolledBack || rb.Pending == nil || rb.Pending.Kind != rollout.PendingRollback {
		t.Fatalf("RollBack = %+v, %v", rb, err)
	}
	if _, err := p.RollBack(t2, alice, "", 9, "s1"); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("RollBack of a draft = %v, want a conflict", err)
	}
	c, err := rb.Cancel(t2, alice, "")
	if err == nil {
		t.Errorf("Cancel of a rolled back plan = %+v, want a conflict", c)
	}
	sch, err := p.Schedule(t2, t0, alice)
	if err != nil || sch.Status != rollout.StatusScheduled || !sch.StartAt.Equal(t2) {
		t.Fatalf("Schedule = %+v, %v", sch, err)
	}
	back, err := sch.Unschedule(t0, alice)
	if err != nil || back.Status != rollout.StatusDraft || back.StartAt != nil {
		t.Fatalf("Unschedule = %+v, %v", back, err)
	}
}
