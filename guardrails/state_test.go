package guardrails

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
)

// TestTransitionTable checks every pair of phases: the legal ones, and
// nothing else, are allowed.
func TestTransitionTable(t *testing.T) {
	legal := map[[2]Phase]bool{
		{PhaseCollecting, PhaseMonitoring}: true,
		{PhaseCollecting, PhaseHeld}:       true,
		{PhaseCollecting, PhaseTripped}:    true,
		{PhaseMonitoring, PhaseCollecting}: true,
		{PhaseMonitoring, PhaseHeld}:       true,
		{PhaseMonitoring, PhaseTripped}:    true,
		{PhaseHeld, PhaseCollecting}:       true,
		{PhaseHeld, PhaseMonitoring}:       true,
		{PhaseHeld, PhaseTripped}:          true,
		{PhaseTripped, PhaseCollecting}:    true, // Resume only
	}
	phases := append(slices.Clone(Phases), "bogus")
	for _, from := range phases {
		for _, to := range phases {
			err := Transition(from, to)
			switch {
			case legal[[2]Phase{from, to}] && err != nil:
				t.Errorf("%s → %s: %v, want allowed", from, to, err)
			case !legal[[2]Phase{from, to}] && !solstice.IsKind(err, solstice.KindConflict):
				t.Errorf("%s → %s: %v, want a KindConflict refusal", from, to, err)
			case err != nil && !strings.Contains(err.Error(), string(from)+" → "+string(to)) && !strings.Contains(err.Error(), "unknown"):
				t.Errorf("%s → %s: the refusal %q does not name the transition", from, to, err)
			}
			if (TransitionReason(from, to) != "") != legal[[2]Phase{from, to}] {
				t.Errorf("%s → %s: reason %q", from, to, TransitionReason(from, to))
			}
		}
	}
	if err := Transition(PhaseTripped, PhaseMonitoring); err == nil || !strings.Contains(err.Error(), "until a person resumes") {
		t.Errorf("leaving tripped: %v, want the latch explained", err)
	}
}

func verdict(s Status) Verdict {
	v := Verdict{Guardrail: validRule().Ref, Status: s, Time: now, Reason: "because"}
	switch s {
	case StatusRegression:
		v.Action = ActionRollback
	case StatusHold:
		v.Hold = HoldSampleRatio
	}
	return v
}

func TestStep(t *testing.T) {
	r := validRule()
	base := NewState(r.Ref, t0)
	at := func(p Phase) State { s := base; s.Phase, s.Version = p, 3; return s }

	for _, tc := range []struct {
		name    string
		from    State
		v       Verdict
		to      Phase
		changed bool
		event   Event
		action  Action
	}{
		{"collecting stays", at(PhaseCollecting), verdict(StatusCollecting), PhaseCollecting, false, "", ""},
		{"collecting to monitoring", at(PhaseCollecting), verdict(StatusHealthy), PhaseMonitoring, true, "", ""},
		{"monitoring stays", at(PhaseMonitoring), verdict(StatusHealthy), PhaseMonitoring, false, "", ""},
		{"monitoring trips", at(PhaseMonitoring), verdict(StatusRegression), PhaseTripped, true, EventTrip, ActionRollback},
		{"collecting trips (a ceiling)", at(PhaseCollecting), verdict(StatusRegression), PhaseTripped, true, EventTrip, ActionRollback},
		{"monitoring holds", at(PhaseMonitoring), verdict(StatusHold), PhaseHeld, true, EventHold, ""},
		{"held is released", at(PhaseHeld), verdict(StatusHealthy), PhaseMonitoring, true, EventRelease, ""},
		{"held is released to collecting", at(PhaseHeld), verdict(StatusCollecting), PhaseCollecting, true, EventRelease, ""},
		{"held trips on trusted data", at(PhaseHeld), verdict(StatusRegression), PhaseTripped, true, EventTrip, ActionRollback},
		{"tripped stays tripped when healthy", at(PhaseTripped), verdict(StatusHealthy), PhaseTripped, false, "", ""},
		{"tripped stays tripped on a second regression", at(PhaseTripped), verdict(StatusRegression), PhaseTripped, false, "", ""},
		{"tripped stays tripped on a hold", at(PhaseTripped), verdict(StatusHold), PhaseTripped, false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, changed, err := Step(tc.from, r, tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if next.Phase != tc.to || changed != tc.changed {
				t.Fatalf("%s (changed %v), want %s (changed %v)", next.Phase, changed, tc.to, tc.changed)
			}
			if !changed {
				if next != tc.from {
					t.Errorf("unchanged state differs: %+v", next)
				}
				return
			}
			if next.Version != tc.from.Version+1 || next.Since != now {
				t.Errorf("version %d since %s, want %d since %s", next.Version, next.Since, tc.from.Version+1, now)
			}
			switch {
			case tc.event == "" && next.Pending != nil:
				t.Errorf("incident %+v, want none", next.Pending)
			case tc.event != "" && (next.Pending == nil || next.Pending.Event != tc.event || next.Pending.Action != tc.action):
				t.Errorf("incident %+v, want %s %q", next.Pending, tc.event, tc.action)
			case tc.event != "" && next.Pending.Verdict == nil:
				t.Error("the incident carries no evidence")
			}
		})
	}
}

func TestStepHoldTimeout(t *testing.T) {
	r := validRule()
	r.Action, r.HoldTimeout = ActionPause, time.Hour
	held := NewState(r.Ref, t0)
	held.Phase, held.Since = PhaseHeld, now

	v := verdict(StatusHold)
	v.Time = now.Add(59 * time.Minute)
	if _, changed, _ := Step(held, r, v); changed {
		t.Error("a hold failed safe before its timeout")
	}
	v.Time = now.Add(time.Hour)
	next, changed, err := Step(held, r, v)
	if err != nil || !changed || next.Phase != PhaseTripped {
		t.Fatalf("at the timeout: %s, %v, %v; want tripped", next.Phase, changed, err)
	}
	if inc := next.Pending; inc.Event != EventFailSafe || inc.Action != ActionPause || !strings.Contains(inc.Reason, "fail safe") {
		t.Errorf("incident %+v, want a fail-safe pause", inc)
	}
}

func TestStepRefusals(t *testing.T) {
	r := validRule()
	st := NewState(r.Ref, t0)
	if _, _, err := Step(st, r, verdict(StatusInvalid)); !solstice.IsKind(err, solstice.KindInvalid) {
		t.Errorf("invalid verdict: %v, want KindInvalid", err)
	}
	if _, _, err := Step(st, r, Verdict{Status: "weird"}); !solstice.IsKind(err, solstice.KindInvalid) {
		t.Errorf("unknown status: %v, want KindInvalid", err)
	}
	st.Pending = &Incident{ID: "x"}
	if _, _, err := Step(st, r, verdict(StatusRegression)); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("pending incident: %v, want KindConflict", err)
	}
}

func TestResume(t *testing.T) {
	r := validRule()
	alice := solstice.Actor{Name: "alice", Kind: "user"}
	st := NewState(r.Ref, t0)
	if _, err := Resume(st, alice, now); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("resume collecting: %v, want KindConflict", err)
	}
	tripped, _, _ := Step(st, r, verdict(StatusRegression))
	if _, err := Resume(tripped, alice, now); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("resume before the rollback is done: %v, want KindConflict", err)
	}
	tripped.Pending = nil
	later := now.Add(time.Hour)
	next, err := Resume(tripped, alice, later)
	if err != nil {
		t.Fatal(err)
	}
	if next.Phase != PhaseCollecting || next.Test != 2 || next.TestStarted != later || next.Version != tripped.Version+1 {
		t.Errorf("resumed: %+v, want collecting in test 2 from %s", next, later)
	}
	if inc := next.Pending; inc == nil || inc.Event != EventResume || inc.Actor != alice {
		t.Errorf("incident %+v, want a resume by alice", inc)
	}
}

// TestStepSampleRatioHysteresis checks that a sample-ratio hold is not
// released while the mismatch evidence stays near its threshold, and that
// its timeout runs on meanwhile.
func TestStepSampleRatioHysteresis(t *testing.T) {
	r := validRule()
	held := NewState(r.Ref, t0)
	hold := verdict(StatusHold)
	held.Phase, held.Since = PhaseHeld, now
	held.Last = &Incident{Event: EventHold, Verdict: &hold}

	healthy := func(srm float64, at time.Time) Verdict {
		v := verdict(StatusHealthy)
		v.Time = at
		v.Evidence.SRMChecked, v.Evidence.SRMThreshold, v.Evidence.SRMLogE = true, 6.9, srm
		return v
	}
	if _, changed, err := Step(held, r, healthy(6.0, now.Add(time.Minute))); err != nil || changed {
		t.Errorf("ln BF 6.0 against 6.9: changed %v (%v), want still held", changed, err)
	}
	next, changed, err := Step(held, r, healthy(4.0, now.Add(time.Minute)))
	if err != nil || !changed || next.Phase != PhaseMonitoring || next.Pending.Event != EventRelease {
		t.Errorf("ln BF 4.0 against 6.9: %s, want released", next.Phase)
	}
	next, _, _ = Step(held, r, healthy(6.0, now.Add(DefaultHoldTimeout)))
	if next.Phase != PhaseTripped || next.Pending.Event != EventFailSafe {
		t.Errorf("borderline for the whole timeout: %s, want a fail-safe trip", next.Phase)
	}
	// Another hold reason is released as soon as the data is clean.
	hold.Hold = HoldMetricMissing
	if next, _, _ := Step(held, r, healthy(6.0, now.Add(time.Minute))); next.Phase != PhaseMonitoring {
		t.Errorf("missing metric back: %s, want released", next.Phase)
	}
}
