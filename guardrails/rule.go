package guardrails

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
)

// Defaults applied to a Rule's zero fields.
const (
	DefaultAlpha        = 0.05
	DefaultMinSample    = 100
	DefaultHoldTimeout  = 2 * time.Hour
	DefaultMissingAfter = 30 * time.Minute
	// DefaultRejectRateTau is τ for the reject rate: +25% on a 2% base.
	DefaultRejectRateTau = 0.005
	// DefaultRetentionTau is τ for D1 retention: −2 pp on a 40% base
	// is bad, and half that is worth noticing.
	DefaultRetentionTau = 0.02
)

// Fixed parameters of the method.
const (
	// RetentionWindow is how long after a player's first exposure their
	// D1 retention is known: day 1 must be over everywhere on Earth.
	RetentionWindow = 48 * time.Hour
	// SRMAlpha is the false-alarm level of the sample-ratio-mismatch
	// check. A hold is not a rollback, so it does not draw on the flag's
	// α; it is small because a hold that lasts fails safe.
	SRMAlpha = 0.001
	// SRMRelease is the hysteresis of a sample-ratio hold: it is released
	// only once the log Bayes factor is SRMRelease (ln 10) below the
	// threshold, the evidence of a mismatch ten times weaker than what
	// raised the hold.
	SRMRelease = 2.302585092994046
	// SRMConcentration is κ of the sample-ratio-mismatch test's Beta
	// prior: the share's prior standard deviation is √(s(1−s)/(κ+1)),
	// 1.6 points on a 50/50 split, the size of typical assignment bugs.
	SRMConcentration = 1000
	// MinSessions is how many sessions each arm needs before a rule with
	// SessionVariance trusts its estimate of the design effect.
	MinSessions = 20
	// MaxDesignEffect bounds a configured design effect.
	MaxDesignEffect = 100
)

// MetricKind names what a guardrail measures.
type MetricKind string

// Metric kinds.
const (
	// KindRejectRate is rejected actions over actions, per arm; lower is
	// better.
	KindRejectRate MetricKind = "reject_rate"
	// KindD1Retention is the share of players, among those whose 48 h
	// window has closed, who came back on day 1; higher is better.
	KindD1Retention MetricKind = "d1_retention"
	// KindCounterRatio is one custom counter over another, per arm, where
	// the numerator counts a subset of the denominator's events
	// ("failed_matchmaking" over "matchmaking"); lower is better.
	KindCounterRatio MetricKind = "counter_ratio"
)

// Metric is what a guardrail measures. Build one with RejectRate,
// D1Retention or CounterRatio.
type Metric struct {
	Kind        MetricKind `json:"kind"`
	Numerator   string     `json:"numerator,omitempty"`   // KindCounterRatio only
	Denominator string     `json:"denominator,omitempty"` // KindCounterRatio only
}

// RejectRate returns the reject-rate metric.
func RejectRate() Metric { return Metric{Kind: KindRejectRate} }

// D1Retention returns the D1-retention metric.
func D1Retention() Metric { return Metric{Kind: KindD1Retention} }

// CounterRatio returns the metric numerator/denominator of two custom
// counters, where numerator counts a subset of denominator's events.
func CounterRatio(numerator, denominator string) Metric {
	return Metric{Kind: KindCounterRatio, Numerator: numerator, Denominator: denominator}
}

// String returns "reject_rate", "d1_retention" or "num/den".
func (m Metric) String() string {
	if m.Kind == KindCounterRatio {
		return m.Numerator + "/" + m.Denominator
	}
	return string(m.Kind)
}

// ComparisonKind names what a metric is compared with.
type ComparisonKind string

// Comparison kinds.
const (
	// KindRelativeToControl compares the treatment with the control
	// variant, allowing a margin.
	KindRelativeToControl ComparisonKind = "relative_to_control"
	// KindAbsoluteCeiling compares the treatment with a fixed ceiling.
	KindAbsoluteCeiling ComparisonKind = "absolute_ceiling"
)

// Comparison is what the treatment's metric is held to. Build one with
// RelativeToControl or AbsoluteCeiling.
type Comparison struct {
	Kind    ComparisonKind `json:"kind"`
	Margin  float64        `json:"margin,omitempty"`  // KindRelativeToControl only
	Ceiling float64        `json:"ceiling,omitempty"` // KindAbsoluteCeiling only
}

// RelativeToControl returns the comparison with the control variant with
// the given margin. For RejectRate and CounterRatio the margin is
// relative: 0.1 tolerates a treatment rate up to 1.1 times the control's.
// For D1Retention it is absolute, as in the design notes: 0.01 tolerates a
// treatment retention up to 1 percentage point below the control's.
func RelativeToControl(margin float64) Comparison {
	return Comparison{Kind: KindRelativeToControl, Margin: margin}
}

// AbsoluteCeiling returns the comparison with a fixed ceiling on the
// treatment's rate (RejectRate and CounterRatio only).
func AbsoluteCeiling(ceiling float64) Comparison {
	return Comparison{Kind: KindAbsoluteCeiling, Ceiling: ceiling}
}

// Action is what a tripped guardrail does.
type Action string

// Actions.
const (
	// ActionRollback sets the flag back to the control variant for
	// everyone: a new revision, as any revert.
	ActionRollback Action = "rollback"
	// ActionPause freezes the rollout where it is.
	ActionPause Action = "pause"
	// ActionNotify changes nothing and alerts the flag's owners.
	ActionNotify Action = "notify"
)

// Ref names a guardrail: its environment, its flag and its own key.
type Ref struct {
	Environment string `json:"environment"`
	Flag        string `json:"flag"`
	Key         string `json:"key"`
}

// String returns "environment/flag/key".
func (r Ref) String() string { return r.Environment + "/" + r.Flag + "/" + r.Key }

// Rule is one guardrail of a flag in an environment: what it measures,
// what it compares with, how sure it must be, and what it does.
type Rule struct {
	Ref
	Metric     Metric     `json:"metric"`
	Comparison Comparison `json:"comparison"`
	// Treatment and Control are the variant keys compared. Control is
	// required by RelativeToControl and D1Retention; with an
	// AbsoluteCeiling it only serves the sample-ratio-mismatch check.
	Treatment string `json:"treatment"`
	Control   string `json:"control,omitempty"`
	// Alpha is the false-rollback budget of the flag this rule belongs to,
	// split evenly over the flag's rules in the environment (default
	// DefaultAlpha). Rules of one flag should agree on it.
	Alpha float64 `json:"alpha,omitempty"`
	// Tau is the smallest absolute harm that must be caught fast, fixed
	// before the test starts: the scale of the mixing distribution
	// (default DefaultRejectRateTau, or DefaultRetentionTau for
	// D1Retention; required for CounterRatio).
	Tau float64 `json:"tau,omitempty"`
	// MinSample is the number of trials (actions; closed players) each
	// arm needs before a comparison with the control may trip (default
	// DefaultMinSample). An AbsoluteCeiling is exact and may trip earlier.
	MinSample int64 `json:"min_sample,omitempty"`
	// DesignEffect φ ≥ 1 inflates the variance when actions cluster by
	// player or session (0 means 1). With SessionVariance, φ is the larger
	// of DesignEffect and the estimate from per-session sums.
	DesignEffect    float64 `json:"design_effect,omitempty"`
	SessionVariance bool    `json:"session_variance,omitempty"`
	// Action is what a trip does (default ActionRollback).
	Action Action `json:"action,omitempty"`
	// HoldTimeout is how long a data-quality hold may last before the
	// guardrail fails safe by taking its Action (default
	// DefaultHoldTimeout).
	HoldTimeout time.Duration `json:"hold_timeout,omitempty"`
	// MissingAfter is how far the metric may lag the exposures, and the
	// watermark the clock, before the data counts as missing (default
	// DefaultMissingAfter).
	MissingAfter time.Duration `json:"missing_after,omitempty"`
}

// WithDefaults returns r with its zero fields set to their defaults.
func (r Rule) WithDefaults() Rule {
	if r.Alpha == 0 {
		r.Alpha = DefaultAlpha
	}
	if r.Tau == 0 {
		switch r.Metric.Kind {
		case KindRejectRate:
			r.Tau = DefaultRejectRateTau
		case KindD1Retention:
			r.Tau = DefaultRetentionTau
		}
	}
	if r.MinSample == 0 {
		r.MinSample = DefaultMinSample
	}
	if r.DesignEffect == 0 {
		r.DesignEffect = 1
	}
	if r.Action == "" {
		r.Action = ActionRollback
	}
	if r.HoldTimeout == 0 {
		r.HoldTimeout = DefaultHoldTimeout
	}
	if r.MissingAfter == 0 {
		r.MissingAfter = DefaultMissingAfter
	}
	return r
}

// Validate checks r after WithDefaults: keys, a known metric and
// comparison that fit together, 0 < Alpha < 1, 0 < Tau ≤ 1 (absolute, on
// the metric's scale), MinSample ≥ 0, 1 ≤ DesignEffect ≤ MaxDesignEffect,
// a known action and nonnegative durations.
//
// It returns nil or a KindInvalid *solstice.Error listing every problem
// with its JSON pointer into the rule ("/comparison/margin", "/tau"...).
func (r Rule) Validate() error {
	p := &problems{}
	r.validate(p, "")
	return p.err("invalid guardrail")
}

// ValidateRules checks every rule as Validate does, and that no two share
// a Ref. It returns nil or a KindInvalid *solstice.Error whose pointers
// start with the rule's index ("/2/tau").
func ValidateRules(rules []Rule) error {
	p := &problems{}
	seen := make(map[Ref]int, len(rules))
	for i, r := range rules {
		prefix := fmt.Sprintf("/%d", i)
		r.validate(p, prefix)
		if j, dup := seen[r.Ref]; dup {
			p.add(prefix+"/key", "duplicates the guardrail at /%d", j)
		} else {
			seen[r.Ref] = i
		}
	}
	return p.err("invalid guardrails")
}

func (r Rule) validate(p *problems, at string) {
	r = r.WithDefaults()
	for _, f := range []struct{ name, value string }{
		{"environment", r.Environment}, {"flag", r.Flag}, {"key", r.Key}, {"treatment", r.Treatment},
	} {
		if !flags.ValidKey(f.value) {
			p.add(at+"/"+f.name, "%s", keyRule)
		}
	}
	needControl := r.Comparison.Kind == KindRelativeToControl || r.Metric.Kind == KindD1Retention
	switch {
	case r.Control == "" && needControl:
		p.add(at+"/control", "is required to compare with the control variant")
	case r.Control != "" && !flags.ValidKey(r.Control):
		p.add(at+"/control", "%s", keyRule)
	case r.Control != "" && r.Control == r.Treatment:
		p.add(at+"/control", "must differ from the treatment")
	}

	switch r.Metric.Kind {
	case KindRejectRate:
	case KindD1Retention:
		if r.SessionVariance {
			p.add(at+"/session_variance", "does not apply to d1_retention, whose units are players")
		}
		if r.DesignEffect != 1 {
			p.add(at+"/design_effect", "does not apply to d1_retention, whose units are players")
		}
	case KindCounterRatio:
		if !validCounter(r.Metric.Numerator) {
			p.add(at+"/metric/numerator", "%s", counterRule)
		}
		if !validCounter(r.Metric.Denominator) {
			p.add(at+"/metric/denominator", "%s", counterRule)
		} else if r.Metric.Denominator == r.Metric.Numerator {
			p.add(at+"/metric/denominator", "must differ from the numerator")
		}
		if r.Tau == 0 {
			p.add(at+"/tau", "is required for a counter ratio: the smallest absolute harm that must be caught fast")
		}
	default:
		p.add(at+"/metric/kind", "must be one of reject_rate, d1_retention, counter_ratio")
	}
	if r.Metric.Kind != KindCounterRatio && (r.Metric.Numerator != "" || r.Metric.Denominator != "") {
		p.add(at+"/metric/numerator", "applies only to counter_ratio")
	}

	switch c := r.Comparison; c.Kind {
	case KindRelativeToControl:
		limit := 10.0 // relative: up to 11 times the control's rate
		if r.Metric.Kind == KindD1Retention {
			limit = 1 // absolute
		}
		if !(c.Margin >= 0 && c.Margin < limit) {
			p.add(at+"/comparison/margin", "must be at least 0 and less than %g", limit)
		}
		if c.Ceiling != 0 {
			p.add(at+"/comparison/ceiling", "applies only to absolute_ceiling")
		}
	case KindAbsoluteCeiling:
		if r.Metric.Kind == KindD1Retention {
			p.add(at+"/comparison/kind", "d1_retention is compared with the control: use relative_to_control")
		}
		// Above 1/1.05 the e-value has no alternative left on its grid.
		if !(c.Ceiling > 0 && c.Ceiling <= 0.95) {
			p.add(at+"/comparison/ceiling", "must be more than 0 and at most 0.95")
		}
		if c.Margin != 0 {
			p.add(at+"/comparison/margin", "applies only to relative_to_control")
		}
	default:
		p.add(at+"/comparison/kind", "must be one of relative_to_control, absolute_ceiling")
	}

	if !(r.Alpha > 0 && r.Alpha < 1) {
		p.add(at+"/alpha", "must be more than 0 and less than 1")
	}
	if !(r.Tau > 0 && r.Tau <= 1) && r.Tau != 0 {
		p.add(at+"/tau", "must be more than 0 and at most 1 (an absolute difference of rates)")
	}
	if r.MinSample < 0 {
		p.add(at+"/min_sample", "must not be negative")
	}
	if !(r.DesignEffect >= 1 && r.DesignEffect <= MaxDesignEffect) {
		p.add(at+"/design_effect", "must be at least 1 and at most %d", MaxDesignEffect)
	}
	switch r.Action {
	case ActionRollback, ActionPause, ActionNotify:
	default:
		p.add(at+"/action", "must be one of rollback, pause, notify")
	}
	if r.HoldTimeout < 0 {
		p.add(at+"/hold_timeout", "must not be negative")
	}
	if r.MissingAfter < 0 {
		p.add(at+"/missing_after", "must not be negative")
	}
}

// validCounter reports whether s is a custom counter name:
// ^[a-z0-9][a-z0-9._:-]{0,127}$.
func validCounter(s string) bool { return flags.ValidName(s, 128, "._:-") }

const (
	keyRule     = "must be 1 to 128 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
	counterRule = "must be 1 to 128 of a-z, 0-9, '.', '_', ':', '-', starting with a letter or digit"
)

type problems struct{ fields []solstice.FieldError }

func (p *problems) add(pointer, format string, args ...any) {
	p.fields = append(p.fields, solstice.FieldError{Pointer: pointer, Message: fmt.Sprintf(format, args...)})
}

func (p *problems) err(msg string) error {
	if len(p.fields) == 0 {
		return nil
	}
	return solstice.Invalid(msg, p.fields...)
}

// ruleJSON is Rule on the wire: durations as Go duration strings ("2h0m0s").
type ruleJSON struct {
	plainRule
	HoldTimeout  string `json:"hold_timeout,omitempty"`
	MissingAfter string `json:"missing_after,omitempty"`
}

type plainRule Rule

// MarshalJSON writes r with its durations as strings such as "2h0m0s".
func (r Rule) MarshalJSON() ([]byte, error) {
	w := ruleJSON{plainRule: plainRule(r)}
	if r.HoldTimeout != 0 {
		w.HoldTimeout = r.HoldTimeout.String()
	}
	if r.MissingAfter != 0 {
		w.MissingAfter = r.MissingAfter.String()
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads what MarshalJSON writes, strictly: an unknown field
// is an error. It returns a KindInvalid error naming the field of a
// duration that does not parse.
func (r *Rule) UnmarshalJSON(b []byte) error {
	var w ruleJSON
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			// Name the field as it is on the wire, without the embedded
			// structs that carry it ("plainRule.Ref.environment").
			parts := slices.DeleteFunc(strings.Split(te.Field, "."), func(p string) bool { return p == "plainRule" || p == "Ref" })
			te.Field = strings.Join(parts, ".")
		}
		return err
	}
	*r = Rule(w.plainRule)
	for _, d := range []struct {
		name string
		s    string
		to   *time.Duration
	}{{"hold_timeout", w.HoldTimeout, &r.HoldTimeout}, {"missing_after", w.MissingAfter, &r.MissingAfter}} {
		if d.s == "" {
			*d.to = 0
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return solstice.Invalid("invalid guardrail", solstice.FieldError{Pointer: "/" + d.name, Message: fmt.Sprintf("%q is not a duration such as \"30m\" or \"2h\"", d.s)})
		}
		*d.to = v
	}
	return nil
}
