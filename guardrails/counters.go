package guardrails

import "time"

// Counters are one guardrail's telemetry: cumulative counts per arm over
// the data of the current test, cut at a watermark. A CounterSource
// produces them; Evaluate reads them.
type Counters struct {
	// Since is the start of the counted data: the since of the request
	// (see CounterSource) or, when that is the zero time, the start of the
	// first window with data. A metric that never arrives counts as
	// missing from Since on.
	Since time.Time `json:"since"`
	// Watermark is the end of the counted data: only time windows that
	// every reporting server has delivered are counted, so that a late
	// server cannot make an arm look better or worse than it is. The zero
	// time means that no window is complete yet.
	Watermark time.Time `json:"watermark"`
	// TreatmentShare is the expected share of the treatment among the
	// exposures of both arms under the split(s) in force over the counted
	// data (0.5 for a 50/50 split; for a ramp, the exposure-weighted mean
	// of the shares). It drives the sample-ratio-mismatch check; 0 means
	// unknown, and the check is skipped (the evidence says so).
	TreatmentShare float64 `json:"treatment_share"`

	Treatment Arm `json:"treatment"`
	Control   Arm `json:"control"`
}

// Arm holds one variant's cumulative counters.
type Arm struct {
	// Exposures counts the units assigned to the variant: players (or
	// sessions) first exposed, not flag evaluations, which a treatment can
	// change by changing behaviour. The sample-ratio-mismatch check tests
	// them against the split.
	Exposures int64 `json:"exposures"`
	// Actions and Rejects are the player actions the game server judged,
	// and those of them it rejected: the RejectRate metric.
	Actions int64 `json:"actions"`
	Rejects int64 `json:"rejects"`
	// Custom holds the custom counters by name: the CounterRatio metric
	// divides two of them.
	Custom map[string]int64 `json:"custom,omitempty"`
	// Sessions holds the per-session sums of the guardrail's metric (for
	// RejectRate: actions and rejects per session), from which Evaluate
	// estimates the design effect when the rule asks for session variance.
	Sessions SessionSums `json:"sessions"`
	// Retention counts the players whose first exposure was at least
	// RetentionWindow before the watermark (their 48 h window has closed),
	// and those of them who came back on their second day.
	Retention Retention `json:"retention"`

	// LastExposure and LastMetric are the ends of the newest windows (up
	// to the watermark) in which the arm's exposures, and the input of the
	// guardrail's metric, grew: for RejectRate, actions; for CounterRatio,
	// the denominator; for D1Retention, returning players. They reveal a
	// metric that stopped arriving while exposures continue. The zero time
	// means never.
	LastExposure time.Time `json:"last_exposure"`
	LastMetric   time.Time `json:"last_metric"`
}

// SessionSums are one arm's sums over sessions of the metric's
// denominator n (actions) and numerator x (rejects) per session.
type SessionSums struct {
	Sessions int64   `json:"sessions"`
	N        int64   `json:"n"`  // Σ n
	X        int64   `json:"x"`  // Σ x
	NN       float64 `json:"nn"` // Σ n²
	XX       float64 `json:"xx"` // Σ x²
	NX       float64 `json:"nx"` // Σ n·x
}

// Retention counts D1 retention over closed cohorts.
type Retention struct {
	Closed   int64 `json:"closed"`   // players whose 48 h window has closed
	Retained int64 `json:"retained"` // of them, those who returned on day 1
}
