package rollout_test

import (
	"strings"
	"testing"
	"time"

	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/rollout"
)

func TestDecide(t *testing.T) {
	start := utc(2026, 12, 18, 17, 0)
	running := testPlan()
	running.Status, running.Step, running.StepStarted = rollout.StatusRunning, 0, start
	due := start.Add(24 * time.Hour)
	healthy := []rollout.GuardrailStatus{{Key: "reject-rate", Phase: guardrails.PhaseMonitoring, Action: guardrails.ActionRollback}}
	enough := &rollout.Sample{Treatment: 150, Control: 140}
	with := func(edit func(p *rollout.Plan)) rollout.Plan {
		p := running
		p.Approvals = nil
		edit(&p)
		return p
	}
	for _, tc := range []struct {
		name   string
		plan   rollout.Plan
		in     rollout.Input
		want   rollout.Action
		reason string // a part of the reason
	}{
		{"every gate passes", running, rollout.Input{Now: due, Guardrails: healthy, Sample: enough}, rollout.ActAdvance, "every gate of step 1"},
		{"too early", running, rollout.Input{Now: due.Add(-time.Second), Guardrails: healthy, Sample: enough}, rollout.ActWait, "duration: 1s of the step's 24h0m0s left"},
		{"required guardrail collecting", running, rollout.Input{Now: due, Guardrails: []rollout.GuardrailStatus{{Key: "reject-rate", Phase: guardrails.PhaseCollecting}}, Sample: enough}, rollout.ActWait, "reject-rate is still collecting"},
		{"required guardrail missing", running, rollout.Input{Now: due, Sample: enough}, rollout.ActWait, "reject-rate is required but not defined"},
		{"another guardrail held", running, rollout.Input{Now: due, Guardrails: append(healthy, rollout.GuardrailStatus{Key: "d1", Phase: guardrails.PhaseHeld, Reason: "sample ratio mismatch"}), Sample: enough}, rollout.ActWait, "d1 is held: sample ratio mismatch"},
		{"tripped rolls back", running, rollout.Input{Now: start, Guardrails: []rollout.GuardrailStatus{{Key: "reject-rate", Phase: guardrails.PhaseTripped, Action: guardrails.ActionRollback, Reason: "harm established"}}}, rollout.ActRollBack, "guardrail reject-rate tripped: harm established"},
		{"tripped with pause", running, rollout.Input{Now: start, Guardrails: []rollout.GuardrailStatus{{Key: "reject-rate", Phase: guardrails.PhaseTripped, Action: guardrails.ActionPause}}}, rollout.ActPause, "tripped"},
		{"tripped with notify blocks", running, rollout.Input{Now: due, Guardrails: []rollout.GuardrailStatus{{Key: "reject-rate", Phase: guardrails.PhaseTripped, Action: guardrails.ActionNotify}}, Sample: enough}, rollout.ActWait, "only alerts"},
		{"small sample", running, rollout.Input{Now: due, Guardrails: healthy, Sample: &rollout.Sample{Treatment: 150, Control: 99}}, rollout.ActWait, "each arm needs 100"},
		{"unknown sample", running, rollout.Input{Now: due, Guardrails: healthy, SampleError: "telemetry is down"}, rollout.ActWait, "telemetry is down"},
		{"no sample source", running, rollout.Input{Now: due, Guardrails: healthy}, rollout.ActWait, "no sample source"},
		{"no sample needed", with(func(p *rollout.Plan) { p.Gates.MinSample = 0 }), rollout.Input{Now: due, Guardrails: healthy}, rollout.ActAdvance, "every gate"},
		{"approval missing", with(func(p *rollout.Plan) { p.Step = 1 }), rollout.Input{Now: due, Guardrails: healthy, Sample: enough}, rollout.ActWait, "waiting for a person's approval"},
		{"approved", with(func(p *rollout.Plan) {
			p.Step, p.Approvals = 1, []rollout.Approval{{Step: 1, By: "alice"}}
		}), rollout.Input{Now: due, Guardrails: healthy, Sample: enough}, rollout.ActAdvance, "step 2"},
		{"last step completes", with(func(p *rollout.Plan) { p.Step = 2 }), rollout.Input{Now: due, Guardrails: healthy, Sample: enough}, rollout.ActComplete, "last step"},
		{"manual plan waits", with(func(p *rollout.Plan) { p.Manual = true }), rollout.Input{Now: due, Guardrails: healthy, Sample: enough}, rollout.ActWait, "manual"},
		{"pending change", with(func(p *rollout.Plan) { p.Pending = &rollout.Pending{ID: "x"} }), rollout.Input{Now: due, Guardrails: healthy, Sample: enough}, rollout.ActWait, "being applied"},
		{"paused", with(func(p *rollout.Plan) { p.Status = rollout.StatusPaused }), rollout.Input{Now: due, Guardrails: healthy, Sample: enough}, rollout.ActWait, "paused"},
		{"paused and tripped rolls back", with(func(p *rollout.Plan) { p.Status = rollout.StatusPaused }), rollout.Input{Now: due, Guardrails: []rollout.GuardrailStatus{{Key: "reject-rate", Phase: guardrails.PhaseTripped, Action: guardrails.ActionRollback}}}, rollout.ActRollBack, "tripped"},
		{"paused and tripped with pause waits", with(func(p *rollout.Plan) { p.Status = rollout.StatusPaused }), rollout.Input{Now: due, Guardrails: []rollout.GuardrailStatus{{Key: "reject-rate", Phase: guardrails.PhaseTripped, Action: guardrails.ActionPause}}}, rollout.ActWait, "paused"},
		{"completed", with(func(p *rollout.Plan) { p.Status = rollout.StatusCompleted }), rollout.Input{Now: due, Guardrails: []rollout.GuardrailStatus{{Key: "reject-rate", Phase: guardrails.PhaseTripped}}}, rollout.ActWait, "completed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := rollout.Decide(tc.plan, tc.in)
			if d.Action != tc.want || !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("Decide = %s (%q), want %s with %q", d.Action, d.Reason, tc.want, tc.reason)
			}
		})
	}
	if why := rollout.Blocking(rollout.Input{Guardrails: healthy}); why != "" {
		t.Errorf("Blocking(healthy) = %q", why)
	}
	if why := rollout.Blocking(rollout.Input{Guardrails: []rollout.GuardrailStatus{{Key: "d1", Phase: guardrails.PhaseHeld}}}); !strings.Contains(why, "d1 is held") {
		t.Errorf("Blocking(held) = %q", why)
	}
}
