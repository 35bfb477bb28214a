package guardrails

import (
	"fmt"
	"time"

	"github.com/solsticehq/solstice"
)

// Phase is where a guardrail's test stands.
type Phase string

// Phases. A new guardrail starts collecting.
const (
	PhaseCollecting Phase = "collecting" // too little data to decide
	PhaseMonitoring Phase = "monitoring" // the test runs; the rollout may continue
	PhaseHeld       Phase = "held"       // the data cannot be trusted; the rollout holds
	PhaseTripped    Phase = "tripped"    // the action was taken; latched until a person resumes
)

// Phases lists every phase, in the order of the transition table.
var Phases = []Phase{PhaseCollecting, PhaseMonitoring, PhaseHeld, PhaseTripped}

// transitions is the table of legal phase changes, with what each means.
// Anything not listed is refused by Transition.
var transitions = map[[2]Phase]string{
	{PhaseCollecting, PhaseMonitoring}: "the minimum sample is reached",
	{PhaseMonitoring, PhaseCollecting}: "the minimum sample was raised",
	{PhaseCollecting, PhaseHeld}:       "the data cannot be trusted",
	{PhaseMonitoring, PhaseHeld}:       "the data cannot be trusted",
	{PhaseHeld, PhaseCollecting}:       "the data can be trusted again",
	{PhaseHeld, PhaseMonitoring}:       "the data can be trusted again",
	{PhaseCollecting, PhaseTripped}:    "harm is established (a ceiling needs no minimum sample)",
	{PhaseMonitoring, PhaseTripped}:    "harm is established",
	{PhaseHeld, PhaseTripped}:          "the hold outlasted its timeout and fails safe, or harm is established on data trusted again",
	{PhaseTripped, PhaseCollecting}:    "a person resumed the guardrail; a new test starts on new data",
}

// Transition reports whether a guardrail may move from one phase to
// another. It returns nil for a legal transition and a KindConflict
// *solstice.Error saying why for any other, including staying in the same
// phase (which is no transition) and leaving tripped for anything but
// collecting (the latch: only Resume does that).
func Transition(from, to Phase) error {
	if _, ok := transitions[[2]Phase{from, to}]; ok {
		return nil
	}
	switch {
	case !knownPhase(from) || !knownPhase(to):
		return solstice.Errorf(solstice.KindConflict, "illegal guardrail transition %q → %q: unknown phase", from, to)
	case from == to:
		return solstice.Errorf(solstice.KindConflict, "illegal guardrail transition %s → %s: it is already %s", from, to, to)
	case from == PhaseTripped:
		return solstice.Errorf(solstice.KindConflict, "illegal guardrail transition %s → %s: a tripped guardrail stays tripped until a person resumes it, which starts a new test", from, to)
	default:
		return solstice.Errorf(solstice.KindConflict, "illegal guardrail transition %s → %s", from, to)
	}
}

// TransitionReason returns what the legal transition from → to means, or
// "" for an illegal one.
func TransitionReason(from, to Phase) string { return transitions[[2]Phase{from, to}] }

func knownPhase(p Phase) bool {
	for _, q := range Phases {
		if p == q {
			return true
		}
	}
	return false
}

// Event is what an incident records.
type Event string

// Events.
const (
	EventTrip     Event = "trip"      // harm established: the rule's action is due
	EventFailSafe Event = "fail_safe" // a hold outlasted its timeout: the rule's action is due
	EventHold     Event = "hold"      // the data cannot be trusted: hold the rollout and alert
	EventRelease  Event = "release"   // the data can be trusted again: lift the hold
	EventResume   Event = "resume"    // a person resumed a tripped guardrail
)

// Incident is something a guardrail did that the world must hear about or
// act on: Actions.Apply carries it out and records it.
type Incident struct {
	// ID is unique per incident and stable across retries: Actions.Apply
	// must do nothing the second time it sees an ID.
	ID        string `json:"id"`
	Guardrail Ref    `json:"guardrail"`
	Event     Event  `json:"event"`
	// Action is the rule's action with EventTrip and EventFailSafe, and
	// empty otherwise. A trip also ends any hold of the rollout.
	Action Action         `json:"action,omitempty"`
	Test   int            `json:"test"`
	Time   time.Time      `json:"time"`
	Actor  solstice.Actor `json:"actor"`
	Reason string         `json:"reason"`
	// Verdict is the evaluation that caused the incident (none for
	// EventResume).
	Verdict *Verdict `json:"verdict,omitempty"`
}

// State is a guardrail's stored state: its phase in the current test.
type State struct {
	Guardrail Ref   `json:"guardrail"`
	Phase     Phase `json:"phase"`
	// Version counts the stored writes (0: never stored); StateStore
	// compares it to swap states atomically.
	Version int64 `json:"version"`
	// Test numbers the tests: 1 for the first, one more per resume.
	Test int `json:"test"`
	// TestStarted is the start of the data the current test counts: the
	// zero time for the first test (all data), the moment of the resume
	// for the next ones.
	TestStarted time.Time `json:"test_started"`
	// Since is when the phase was entered; Reason says why.
	Since  time.Time `json:"since"`
	Reason string    `json:"reason"`
	// Last is the incident of the latest trip, hold, fail-safe or resume.
	Last *Incident `json:"last,omitempty"`
	// Pending is an incident not yet carried out by Actions, claimed at
	// ClaimedAt by the job that is carrying it out.
	Pending   *Incident `json:"pending,omitempty"`
	ClaimedAt time.Time `json:"claimed_at"`
}

// NewState returns the state of a guardrail never seen before: collecting
// in test 1, over all data, as of now.
func NewState(ref Ref, now time.Time) State {
	return State{Guardrail: ref, Phase: PhaseCollecting, Test: 1, Since: now, Reason: "new guardrail"}
}

// jobActor is the actor of the incidents the job raises.
var jobActor = solstice.System("guardrails")

// Step returns the state that follows st when the rule's latest verdict is
// v, and whether it differs from st. A tripped state does not move
// (the latch). A state with a pending incident must have it carried out
// first.
//
// It returns a KindInvalid error for a verdict of an invalid rule and a
// KindConflict error for a pending incident or a transition the table
// refuses.
func Step(st State, r Rule, v Verdict) (State, bool, error) {
	if st.Phase == PhaseTripped {
		return st, false, nil
	}
	if st.Pending != nil {
		return st, false, solstice.Errorf(solstice.KindConflict, "guardrail %s: incident %s is still pending", st.Guardrail, st.Pending.ID)
	}
	r = r.WithDefaults()
	var to Phase
	var ev Event
	switch v.Status {
	case StatusInvalid:
		return st, false, solstice.Errorf(solstice.KindInvalid, "guardrail %s: %s", st.Guardrail, v.Reason)
	case StatusCollecting:
		to = PhaseCollecting
	case StatusHealthy:
		to = PhaseMonitoring
	case StatusRegression:
		to, ev = PhaseTripped, EventTrip
	case StatusHold:
		to, ev = PhaseHeld, EventHold
	default:
		return st, false, solstice.Errorf(solstice.KindInvalid, "guardrail %s: unknown verdict status %q", st.Guardrail, v.Status)
	}
	if st.Phase == PhaseHeld && to != PhaseHeld && srmUnresolved(st, v) {
		to, ev = PhaseHeld, EventHold
	}
	if st.Phase == PhaseHeld && to == PhaseHeld && v.Time.Sub(st.Since) >= r.HoldTimeout {
		to, ev = PhaseTripped, EventFailSafe
	}
	if to == st.Phase {
		return st, false, nil
	}
	if err := Transition(st.Phase, to); err != nil {
		return st, false, err
	}
	if st.Phase == PhaseHeld && ev == "" {
		ev = EventRelease
	}
	next := st
	next.Phase, next.Since, next.Version = to, v.Time, st.Version+1
	next.Reason = v.Reason
	if ev != "" {
		verdict := v // a copy, so that v itself stays on the stack
		inc := &Incident{
			ID:        incidentID(st.Guardrail, st.Test, next.Version, ev),
			Guardrail: st.Guardrail, Event: ev, Test: st.Test, Time: v.Time,
			Actor: jobActor, Reason: v.Reason, Verdict: &verdict,
		}
		switch ev {
		case EventTrip:
			inc.Action = r.Action
		case EventFailSafe:
			inc.Action = r.Action
			inc.Reason = fmt.Sprintf("fail safe: the data has not been trustworthy for %s (%s)", v.Time.Sub(st.Since).Round(time.Second), v.Reason)
			next.Reason = inc.Reason
		}
		next.Pending, next.ClaimedAt = inc, v.Time
		if ev != EventRelease {
			next.Last = inc
		}
	}
	return next, true, nil
}

// Resume returns the state of a tripped guardrail that a person resumes at
// now: collecting in a new test that counts only data after now. It
// returns a KindConflict error when st is not tripped, or when its action
// has not been carried out yet.
func Resume(st State, by solstice.Actor, now time.Time) (State, error) {
	if st.Phase != PhaseTripped {
		return st, solstice.Errorf(solstice.KindConflict, "guardrail %s is %s, not tripped: there is nothing to resume", st.Guardrail, st.Phase)
	}
	if st.Pending != nil {
		return st, solstice.Errorf(solstice.KindConflict, "guardrail %s: its %s has not been carried out yet; resume after it is", st.Guardrail, st.Pending.Event)
	}
	if err := Transition(st.Phase, PhaseCollecting); err != nil {
		return st, err
	}
	next := st
	next.Phase, next.Version = PhaseCollecting, st.Version+1
	next.Test, next.TestStarted, next.Since = st.Test+1, now, now
	next.Reason = fmt.Sprintf("resumed by %s: test %d starts on new data", by.Name, next.Test)
	inc := &Incident{
		ID:        incidentID(st.Guardrail, next.Test, next.Version, EventResume),
		Guardrail: st.Guardrail, Event: EventResume, Test: next.Test, Time: now,
		Actor: by, Reason: next.Reason,
	}
	next.Pending, next.ClaimedAt, next.Last = inc, now, inc
	return next, nil
}

// srmUnresolved reports whether st is held for a sample-ratio mismatch
// whose evidence, in v, has not yet fallen SRMRelease below the threshold
// of the test. The hysteresis keeps a borderline mismatch from holding and
// releasing the rollout every few minutes, which would alert each time and
// restart the hold's timeout each time.
func srmUnresolved(st State, v Verdict) bool {
	held := st.Last != nil && st.Last.Event == EventHold && st.Last.Verdict != nil && st.Last.Verdict.Hold == HoldSampleRatio
	return held && v.Evidence.SRMChecked && v.Evidence.SRMLogE >= v.Evidence.SRMThreshold-SRMRelease
}

func incidentID(ref Ref, test int, version int64, ev Event) string {
	return fmt.Sprintf("%s/test-%d/%d-%s", ref, test, version, ev)
}
