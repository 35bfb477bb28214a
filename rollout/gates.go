package rollout

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/solsticehq/solstice/guardrails"
)

// GuardrailStatus is one guardrail of a plan's flag as a gate sees it.
type GuardrailStatus struct {
	Key    string            `json:"key"`
	Phase  guardrails.Phase  `json:"phase"`
	Action guardrails.Action `json:"action"`
	Reason string            `json:"reason,omitempty"`
	Test   int               `json:"test,omitempty"`
}

// Input is what Decide needs besides the plan: the time, the guardrails of
// the plan's flag (all of them, not only the required ones), and the size
// of the arms since the step started (nil when unknown).
type Input struct {
	Now        time.Time         `json:"now"`
	Guardrails []GuardrailStatus `json:"guardrails"`
	Sample     *Sample           `json:"sample,omitempty"`
	// SampleError says why Sample is unknown, for the gate's detail.
	SampleError string `json:"sample_error,omitempty"`
}

// Action is what Decide says to do with a plan.
type Action string

// Actions.
const (
	ActWait     Action = "wait"      // stay at the current step
	ActAdvance  Action = "advance"   // apply the next step
	ActComplete Action = "complete"  // the last step's gates passed
	ActRollBack Action = "roll_back" // a guardrail tripped with action rollback
	ActPause    Action = "pause"     // a guardrail tripped with action pause
)

// Gate names.
const (
	GateDuration   = "duration"
	GateGuardrails = "guardrails"
	GateSample     = "sample"
	GateApproval   = "approval"
	GateManual     = "manual"
)

// Gate is one condition of advancing and whether it holds.
type Gate struct {
	Name   string `json:"name"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail"`
}

// Decision is what to do with a running plan now, and why: every gate with
// its state, so that people can see where a ramp stands.
type Decision struct {
	Action Action `json:"action"`
	Reason string `json:"reason"`
	Gates  []Gate `json:"gates"`
	// Due is when the current step's minimum duration ends.
	Due time.Time `json:"due,omitzero"`
}

// Decide says what to do with plan p given in. Only a running or paused
// plan without a pending change moves: a guardrail of its flag that tripped
// rolls it back (action rollback) or pauses a running plan (action pause;
// action notify only blocks it); otherwise a running plan advances, or
// completes after its last step, once every gate passes:
//
//   - duration: the step has lasted its minimum duration;
//   - guardrails: no guardrail of the flag is held or tripped, and every
//     guardrail the plan requires is monitoring (its test of the step has
//     its minimum sample; a guardrail with no state yet is collecting);
//   - sample: each arm has the plan's minimum sample;
//   - approval: a person approved the step, if it asks for that;
//   - manual: the plan is not manual (a manual plan only waits).
//
// It cannot fail.
func Decide(p Plan, in Input) Decision {
	if p.Status != StatusRunning && p.Status != StatusPaused {
		return Decision{Action: ActWait, Reason: fmt.Sprintf("the plan is %s", p.Status)}
	}
	if p.Pending != nil {
		return Decision{Action: ActWait, Reason: fmt.Sprintf("its change %s is being applied", p.Pending.ID)}
	}
	step, ok := p.Current()
	if !ok {
		return Decision{Action: ActWait, Reason: fmt.Sprintf("the plan has no step %d", p.Step+1)}
	}
	for _, g := range in.Guardrails {
		if g.Phase != guardrails.PhaseTripped {
			continue
		}
		why := fmt.Sprintf("guardrail %s tripped", g.Key)
		if g.Reason != "" {
			why += ": " + g.Reason
		}
		switch g.Action {
		case guardrails.ActionPause:
			if p.Status == StatusRunning {
				return Decision{Action: ActPause, Reason: why}
			}
		case guardrails.ActionNotify:
			// The guardrail only alerts; the ramp must still not grow.
		default:
			return Decision{Action: ActRollBack, Reason: why}
		}
	}
	if p.Status == StatusPaused {
		return Decision{Action: ActWait, Reason: "the plan is paused"}
	}

	d := Decision{Due: p.StepStarted.Add(time.Duration(step.MinDuration))}
	gate := func(name string, passed bool, format string, args ...any) {
		d.Gates = append(d.Gates, Gate{Name: name, Passed: passed, Detail: fmt.Sprintf(format, args...)})
	}
	if left := d.Due.Sub(in.Now); left > 0 {
		gate(GateDuration, false, "%s of the step's %s left", left.Round(time.Second), step.MinDuration)
	} else {
		gate(GateDuration, true, "the step has lasted %s (at least %s)", in.Now.Sub(p.StepStarted).Round(time.Second), step.MinDuration)
	}

	var problems []string
	for _, g := range in.Guardrails {
		switch g.Phase {
		case guardrails.PhaseTripped:
			problems = append(problems, fmt.Sprintf("%s tripped and only alerts (action %s); resume it to go on", g.Key, g.Action))
		case guardrails.PhaseHeld:
			problems = append(problems, fmt.Sprintf("%s is held: %s", g.Key, g.Reason))
		}
	}
	for _, key := range p.Gates.Guardrails {
		i := slices.IndexFunc(in.Guardrails, func(g GuardrailStatus) bool { return g.Key == key })
		switch {
		case i < 0:
			problems = append(problems, fmt.Sprintf("%s is required but not defined", key))
		case in.Guardrails[i].Phase == guardrails.PhaseCollecting:
			problems = append(problems, fmt.Sprintf("%s is still collecting", key))
		}
	}
	if len(problems) > 0 {
		gate(GateGuardrails, false, "%s", strings.Join(problems, "; "))
	} else {
		gate(GateGuardrails, true, "%d guardrails healthy, %d required monitoring", len(in.Guardrails), len(p.Gates.Guardrails))
	}

	if need := p.Gates.MinSample; need > 0 {
		switch {
		case in.Sample == nil && in.SampleError != "":
			gate(GateSample, false, "the sample is unknown: %s", in.SampleError)
		case in.Sample == nil:
			gate(GateSample, false, "the sample is unknown: no sample source is configured")
		case in.Sample.Treatment < need || in.Sample.Control < need:
			gate(GateSample, false, "treatment %d, control %d exposures; each arm needs %d", in.Sample.Treatment, in.Sample.Control, need)
		default:
			gate(GateSample, true, "treatment %d, control %d exposures (at least %d each)", in.Sample.Treatment, in.Sample.Control, need)
		}
	}
	if step.Approval {
		if i := slices.IndexFunc(p.Approvals, func(a Approval) bool { return a.Step == p.Step }); i >= 0 {
			gate(GateApproval, true, "approved by %s", p.Approvals[i].By)
		} else {
			gate(GateApproval, false, "waiting for a person's approval")
		}
	}
	if p.Manual {
		gate(GateManual, false, "a manual plan advances only when a person says so")
	}

	var failing []string
	for _, g := range d.Gates {
		if !g.Passed {
			failing = append(failing, g.Name+": "+g.Detail)
		}
	}
	switch {
	case len(failing) > 0:
		d.Action, d.Reason = ActWait, strings.Join(failing, "; ")
	case p.Step+1 >= len(p.Steps):
		d.Action, d.Reason = ActComplete, "every gate of the last step passed"
	default:
		d.Action, d.Reason = ActAdvance, fmt.Sprintf("every gate of step %d passed", p.Step+1)
	}
	return d
}

// Blocking returns the reason a person may not advance p by hand now, or
// "": a guardrail of its flag that is held or tripped. A manual advance
// overrides the duration, sample and approval gates, never a guardrail.
func Blocking(in Input) string {
	var out []string
	for _, g := range in.Guardrails {
		if g.Phase == guardrails.PhaseHeld || g.Phase == guardrails.PhaseTripped {
			out = append(out, fmt.Sprintf("guardrail %s is %s (%s)", g.Key, g.Phase, g.Reason))
		}
	}
	return strings.Join(out, "; ")
}
