package rollout

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/solsticehq/solstice/guardrails"
)

// Outcome is what an experiment's decision recommends.
type Outcome string

// Outcomes.
const (
	// OutcomeShip: the plan completed with every guardrail of its flag
	// healthy on enough sample; the treatment may go to everyone.
	OutcomeShip Outcome = "ship"
	// OutcomeRollBack: a guardrail tripped (harm is established), or the
	// plan was rolled back; the baseline stays.
	OutcomeRollBack Outcome = "roll_back"
	// OutcomeInconclusive: the plan ended without a sample big enough or
	// without a clear result; nothing is established either way.
	OutcomeInconclusive Outcome = "inconclusive"
)

// ExperimentDecision is what Solstice concludes from an experiment once its
// plan ends (completed, rolled back or cancelled): the outcome and why,
// the plan's timeline, and per guardrail of the flag the evidence as it
// stood at the end. It is computed once, by DecideExperiment, stored with
// the transition that ends the plan, and never changed; Memo renders it
// for people.
type ExperimentDecision struct {
	Outcome Outcome `json:"outcome"`
	// Reason says in one sentence why the outcome is what it is.
	Reason string `json:"reason"`

	Environment string `json:"environment"`
	Plan        string `json:"plan"`
	Flag        string `json:"flag"`
	Description string `json:"description,omitempty"`
	Treatment   string `json:"treatment"`
	Control     string `json:"control"`
	Baseline    string `json:"baseline"`
	// Status is the status the plan ended in, and StatusReason the reason
	// it gave.
	Status       Status `json:"status"`
	StatusReason string `json:"status_reason,omitempty"`
	// Steps is the number of steps the plan defined; Step the index of the
	// last step it reached (-1: it never started).
	Steps int `json:"steps"`
	Step  int `json:"step"`
	// StartedAt is when the plan first ran (the zero time: never);
	// EndedAt when it ended.
	StartedAt time.Time `json:"started_at,omitzero"`
	EndedAt   time.Time `json:"ended_at"`
	// Timeline is the plan's history up to its end.
	Timeline []HistoryEntry `json:"timeline"`
	// Guardrails holds the evidence of every guardrail of the flag, in the
	// order of their keys.
	Guardrails []GuardrailEvidence `json:"guardrails"`
	// Error says why the guardrails could not be read at all, if so.
	Error string `json:"error,omitempty"`
}

// GuardrailEvidence is one guardrail's evidence at the end of an
// experiment: its test's counts per arm and rates, the estimated effect
// with its always-valid confidence bounds and p-value, its state, and the
// incidents it raised while the plan ran. Rates and effects are
// proportions (0.02 is 2%).
type GuardrailEvidence struct {
	Key        string                `json:"key"`
	Metric     string                `json:"metric"`
	Comparison guardrails.Comparison `json:"comparison"`
	Action     guardrails.Action     `json:"action"`
	// Required is whether the plan's gates listed the guardrail.
	Required bool `json:"required"`
	// Phase is the guardrail's stored phase; Status and Hold the verdict
	// evaluated at the end; Reason the verdict's sentence (or the phase's,
	// without a verdict).
	Phase  guardrails.Phase      `json:"phase,omitempty"`
	Status guardrails.Status     `json:"status,omitempty"`
	Hold   guardrails.HoldReason `json:"hold,omitempty"`
	Reason string                `json:"reason,omitempty"`
	// Test numbers the guardrail's test the evidence comes from (a new one
	// starts with each step); TestStarted is the start of its data.
	Test        int       `json:"test,omitempty"`
	TestStarted time.Time `json:"test_started,omitzero"`
	// MinSample is the rule's minimum number of trials per arm (nMin), and
	// EnoughSample whether the test reached it: in the treatment, and in
	// the control too when the rule compares with it.
	MinSample    int64 `json:"min_sample"`
	EnoughSample bool  `json:"enough_sample"`
	// Treatment and Control are the arms' exposures, trials (n), events
	// (x) and rates.
	Treatment guardrails.ArmSample `json:"treatment"`
	Control   guardrails.ArmSample `json:"control"`
	// Effect is the estimated harm beyond the rule's allowance (see
	// guardrails.Evidence: positive is harm), and Lower and Upper its
	// always-valid confidence bounds, each valid with probability 1 −
	// Alpha, the pair with 1 − 2·Alpha. PValue is the always-valid
	// p-value of "no harm beyond the allowance".
	Effect float64 `json:"effect"`
	Lower  float64 `json:"lower"`
	Upper  float64 `json:"upper"`
	Alpha  float64 `json:"alpha"`
	PValue float64 `json:"p_value"`
	// Incidents are those the guardrail raised from the plan's start to
	// its end, oldest first.
	Incidents []IncidentSummary `json:"incidents"`
	// Error says why the evidence could not be read; the numbers are then
	// zero.
	Error string `json:"error,omitempty"`
}

// HasEvidence reports whether g carries a verdict's numbers.
func (g GuardrailEvidence) HasEvidence() bool { return g.Status != "" }

// Tripped reports whether g's guardrail established harm: it is tripped,
// or its verdict at the end is a regression.
func (g GuardrailEvidence) Tripped() bool {
	return g.Phase == guardrails.PhaseTripped || g.Status == guardrails.StatusRegression
}

// comparesControl reports whether the rule compares the treatment with the
// control (and so needs the minimum sample in both arms).
func (g GuardrailEvidence) comparesControl() bool {
	return g.Comparison.Kind != guardrails.KindAbsoluteCeiling
}

// IncidentSummary is an incident as a decision cites it.
type IncidentSummary struct {
	// Number is the incident's public number (0: not recorded yet, its
	// action still being carried out).
	Number int64             `json:"number,omitempty"`
	ID     string            `json:"id"`
	Event  guardrails.Event  `json:"event"`
	Action guardrails.Action `json:"action,omitempty"`
	Time   time.Time         `json:"time"`
	Reason string            `json:"reason"`
	// Outcome says what carrying it out did.
	Outcome string `json:"outcome,omitempty"`
}

// GuardrailReport is what DecideExperiment reads about one guardrail of an
// experiment's flag at the plan's end.
type GuardrailReport struct {
	Definition guardrails.Definition
	// State is the guardrail's stored state; nil when unknown.
	State *guardrails.State
	// Verdict is the guardrail evaluated at the end, with its evidence;
	// nil when unknown (see Error).
	Verdict *guardrails.Verdict
	// Incidents are the guardrail's recorded incidents (any order; those
	// outside the plan's run are left out).
	Incidents []guardrails.Record
	// Error says why the verdict is unknown.
	Error string
}

// ExperimentInput is what DecideExperiment needs besides the plan: every
// guardrail of its flag, or why they could not be read.
type ExperimentInput struct {
	Guardrails []GuardrailReport
	Error      string
}

// DecideExperiment returns the decision of experiment p, which has ended,
// given the state of its flag's guardrails at its end:
//
//   - roll_back when a guardrail tripped (its phase is tripped, or its
//     verdict at the end is a regression), or when the plan was rolled
//     back (a guardrail's trip, or a person's abort);
//   - ship when the plan completed, the flag has at least one guardrail,
//     and every one of them is healthy (monitoring, with a healthy
//     verdict) on enough sample: at least its rule's minimum sample nMin
//     (min_sample, default 100) of trials in the treatment, and in the
//     control too when the rule compares with it, counted in its test of
//     the last step;
//   - inconclusive otherwise: cancelled (an event's end, or before it
//     ran), no guardrail, a sample under nMin, a held or collecting
//     guardrail, or evidence that could not be read.
//
// It is pure and cannot fail; a plan that has not ended gets an
// inconclusive decision saying so.
func DecideExperiment(p Plan, in ExperimentInput) ExperimentDecision {
	d := ExperimentDecision{
		Environment: p.Environment, Plan: p.ID, Flag: p.Flag, Description: p.Description,
		Treatment: p.Treatment, Control: p.Control, Baseline: p.Baseline,
		Status: p.Status, StatusReason: p.Reason, Steps: len(p.Steps), Step: p.Step,
		Timeline: slices.Clone(p.History), Guardrails: []GuardrailEvidence{}, Error: in.Error,
	}
	if d.Timeline == nil {
		d.Timeline = []HistoryEntry{}
	}
	for _, h := range p.History {
		if h.To == StatusRunning && d.StartedAt.IsZero() {
			d.StartedAt = h.Time
		}
		if h.To == p.Status {
			d.EndedAt = h.Time
		}
	}
	reports := slices.Clone(in.Guardrails)
	slices.SortFunc(reports, func(a, b GuardrailReport) int { return strings.Compare(a.Definition.Key, b.Definition.Key) })
	for _, r := range reports {
		d.Guardrails = append(d.Guardrails, evidenceOf(p, r, d.StartedAt, d.EndedAt))
	}
	d.Outcome, d.Reason = outcomeOf(p, d)
	return d
}

// evidenceOf extracts one guardrail's evidence from its report.
func evidenceOf(p Plan, r GuardrailReport, start, end time.Time) GuardrailEvidence {
	rule := r.Definition.WithDefaults()
	g := GuardrailEvidence{
		Key: rule.Key, Metric: rule.Metric.String(), Comparison: rule.Comparison, Action: rule.Action,
		Required: slices.Contains(p.Gates.Guardrails, rule.Key), MinSample: rule.MinSample,
		Incidents: []IncidentSummary{}, Error: r.Error,
	}
	if st := r.State; st != nil {
		g.Phase, g.Reason, g.Test, g.TestStarted = st.Phase, st.Reason, st.Test, st.TestStarted
	}
	if v := r.Verdict; v != nil {
		ev := v.Evidence
		g.Status, g.Hold, g.Reason = v.Status, v.Hold, v.Reason
		g.Treatment, g.Control = ev.Treatment, ev.Control
		g.Effect, g.Lower, g.Upper, g.Alpha, g.PValue = ev.Effect, ev.Lower, ev.Upper, ev.Alpha, ev.PValue
		g.EnoughSample = ev.Treatment.N >= rule.MinSample && (!g.comparesControl() || ev.Control.N >= rule.MinSample)
	}
	in := func(t time.Time) bool { return !start.IsZero() && !t.Before(start) && (end.IsZero() || !t.After(end)) }
	for _, rec := range r.Incidents {
		if in(rec.Time) {
			g.Incidents = append(g.Incidents, IncidentSummary{Number: rec.Number, ID: rec.ID, Event: rec.Event, Action: rec.Action,
				Time: rec.Time, Reason: rec.Reason, Outcome: rec.Outcome})
		}
	}
	// An incident whose action is still being carried out is not recorded
	// yet: the state holds it.
	if st := r.State; st != nil {
		for _, inc := range []*guardrails.Incident{st.Pending, st.Last} {
			if inc == nil || inc.Event == guardrails.EventRelease || !in(inc.Time) ||
				slices.ContainsFunc(g.Incidents, func(s IncidentSummary) bool { return s.ID == inc.ID }) {
				continue
			}
			g.Incidents = append(g.Incidents, IncidentSummary{ID: inc.ID, Event: inc.Event, Action: inc.Action, Time: inc.Time,
				Reason: inc.Reason, Outcome: "not carried out yet"})
		}
	}
	slices.SortStableFunc(g.Incidents, func(a, b IncidentSummary) int { return a.Time.Compare(b.Time) })
	return g
}

// outcomeOf decides the outcome of d, whose guardrails are filled in.
func outcomeOf(p Plan, d ExperimentDecision) (Outcome, string) {
	for _, g := range d.Guardrails {
		if g.Tripped() {
			why := fmt.Sprintf("guardrail %s established harm", g.Key)
			if g.Phase == guardrails.PhaseTripped {
				why = fmt.Sprintf("guardrail %s tripped", g.Key)
			}
			if g.Reason != "" {
				why += ": " + g.Reason
			}
			return OutcomeRollBack, why
		}
	}
	switch p.Status {
	case StatusRolledBack:
		return OutcomeRollBack, "the plan was rolled back at step " + stepOf(p) + ": " + p.Reason
	case StatusCancelled:
		if d.StartedAt.IsZero() {
			return OutcomeInconclusive, "the plan was cancelled before it ran, so there is no data: " + p.Reason
		}
		return OutcomeInconclusive, "the plan was cancelled at step " + stepOf(p) + ", before it completed: " + p.Reason
	case StatusCompleted:
	default:
		return OutcomeInconclusive, fmt.Sprintf("the plan is %s: it has not ended", p.Status)
	}
	if d.Error != "" {
		return OutcomeInconclusive, "the guardrails could not be read: " + d.Error
	}
	if len(d.Guardrails) == 0 {
		return OutcomeInconclusive, fmt.Sprintf("no guardrail of %s measured the experiment, so there is no evidence either way", p.Flag)
	}
	var problems []string
	for _, g := range d.Guardrails {
		switch {
		case g.Error != "":
			problems = append(problems, fmt.Sprintf("the evidence of guardrail %s could not be read (%s)", g.Key, g.Error))
		case !g.HasEvidence():
			problems = append(problems, fmt.Sprintf("guardrail %s has no evidence", g.Key))
		case !g.EnoughSample && g.comparesControl():
			problems = append(problems, fmt.Sprintf("guardrail %s counted %d treatment and %d control trials, under the %d its rule needs in each arm",
				g.Key, g.Treatment.N, g.Control.N, g.MinSample))
		case !g.EnoughSample:
			problems = append(problems, fmt.Sprintf("guardrail %s counted %d treatment trials, under the %d its rule needs", g.Key, g.Treatment.N, g.MinSample))
		case g.Phase == guardrails.PhaseHeld || g.Status == guardrails.StatusHold:
			problems = append(problems, fmt.Sprintf("guardrail %s is held, its data not trusted (%s)", g.Key, g.Reason))
		case g.Phase != guardrails.PhaseMonitoring || g.Status != guardrails.StatusHealthy:
			problems = append(problems, fmt.Sprintf("guardrail %s is %s, not healthy (%s)", g.Key, cmp.Or(string(g.Status), string(g.Phase)), g.Reason))
		}
	}
	if len(problems) > 0 {
		return OutcomeInconclusive, "the plan completed, but " + strings.Join(problems, "; ")
	}
	return OutcomeShip, "the plan completed with every guardrail healthy on enough sample: no harm beyond the guardrails' allowances was established"
}

// stepOf returns "k of n" for the plan's current step.
func stepOf(p Plan) string { return fmt.Sprintf("%d of %d", p.Step+1, len(p.Steps)) }
