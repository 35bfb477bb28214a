package guardrails

import (
	"fmt"
	"math"
	"time"
)

// Status is the outcome of one evaluation of a guardrail.
type Status string

// Statuses.
const (
	// StatusCollecting: too little data to decide (under MinSample, no
	// closed retention cohort yet, too few sessions). A ceiling may still
	// trip: it needs no minimum.
	StatusCollecting Status = "collecting"
	// StatusHealthy: the test runs and has not established harm; the
	// rollout may continue.
	StatusHealthy Status = "healthy"
	// StatusRegression: harm is established; the rule's Action is due.
	StatusRegression Status = "regression"
	// StatusHold: the data cannot be trusted (see HoldReason); the rollout
	// holds and the owners are alerted instead of a decision.
	StatusHold Status = "hold"
	// StatusInvalid: the rule itself is invalid; nothing is decided.
	StatusInvalid Status = "invalid"
)

// HoldReason says why the data cannot be trusted.
type HoldReason string

// Hold reasons.
const (
	HoldNoCounters    HoldReason = "no_counters"           // the source had nothing for the guardrail
	HoldInconsistent  HoldReason = "inconsistent_counters" // negative counts, more rejects than actions…
	HoldDataLate      HoldReason = "data_late"             // the watermark lags the clock by more than MissingAfter
	HoldMetricMissing HoldReason = "metric_missing"        // exposures continue, the metric stopped arriving
	HoldSampleRatio   HoldReason = "sample_ratio_mismatch" // the arms' exposures contradict the split
)

// Verdict is the outcome of evaluating one guardrail at one time, with the
// evidence behind it.
type Verdict struct {
	Guardrail Ref        `json:"guardrail"`
	Status    Status     `json:"status"`
	Hold      HoldReason `json:"hold,omitempty"`   // with StatusHold
	Action    Action     `json:"action,omitempty"` // with StatusRegression: what the rule asks for
	Reason    string     `json:"reason"`           // one sentence for people
	Time      time.Time  `json:"time"`
	Watermark time.Time  `json:"watermark"`
	Evidence  Evidence   `json:"evidence"`
}

// Evidence is what a verdict rests on. Rates and effects are proportions
// (0.02 is 2%).
type Evidence struct {
	Metric     string     `json:"metric"`
	Comparison Comparison `json:"comparison"`
	Treatment  ArmSample  `json:"treatment"`
	Control    ArmSample  `json:"control"`
	// Effect is the estimated harm beyond the allowed margin: for a
	// relative comparison pT − (1+m)·pC, for D1Retention pC − pT − m, for
	// a ceiling pT − c. Harm is positive.
	Effect float64 `json:"effect"`
	// Variance is V of the effect, design effect included (for a ceiling,
	// the binomial variance of pT, shown for reference only).
	Variance     float64 `json:"variance"`
	DesignEffect float64 `json:"design_effect"`
	Tau          float64 `json:"tau,omitempty"`
	// LogE is ln Λ of the mixture test, or the log e-value of the ceiling;
	// Threshold is ln(1/Alpha), and the guardrail trips when LogE reaches
	// it (with MinSample met for a relative comparison).
	LogE      float64 `json:"log_e"`
	Threshold float64 `json:"threshold"`
	// Alpha is this guardrail's share of its flag's α.
	Alpha float64 `json:"alpha"`
	// PValue is the always-valid p-value min(1, 1/Λ).
	PValue float64 `json:"p_value"`
	// Lower and Upper bound the effect: a confidence sequence, each bound
	// valid at every time with probability at least 1 − Alpha (the pair
	// with 1 − 2·Alpha). Lower ≥ 0 exactly when the test has reached its
	// threshold. Before there is data they span every possible effect.
	Lower float64 `json:"lower"`
	Upper float64 `json:"upper"`
	// SRMLogE is the log Bayes factor of the sample-ratio-mismatch test,
	// SRMThreshold its ln(1/SRMAlpha); SRMChecked is false when the
	// expected share was unknown, there were no exposures, or the rule
	// has no control variant.
	SRMLogE      float64 `json:"srm_log_e"`
	SRMThreshold float64 `json:"srm_threshold"`
	SRMChecked   bool    `json:"srm_checked"`
}

// ArmSample is one arm's share of the evidence: trials n (actions, the
// denominator, closed players), events x (rejects, the numerator, retained
// players) and their rate.
type ArmSample struct {
	Exposures int64   `json:"exposures"`
	N         int64   `json:"n"`
	X         int64   `json:"x"`
	Rate      float64 `json:"rate"`
}

// Evaluate decides every rule at now from its counters (keyed by the
// rule's Ref; counters missing for a rule hold it). The α of each flag in
// an environment is split evenly (Bonferroni) over all its rules in rules,
// whatever their state, so rules must list every guardrail of the flags
// concerned. Evaluate is pure and deterministic; the verdicts come in the
// order of rules. An invalid rule gets StatusInvalid; Evaluate returns no
// error.
func Evaluate(rules []Rule, counters map[Ref]Counters, now time.Time) []Verdict {
	alphas := splitAlpha(rules)
	out := make([]Verdict, len(rules))
	for i, r := range rules {
		c, ok := counters[r.Ref]
		out[i] = evaluate(r, alphas[i], c, ok, now, true)
	}
	return out
}

// splitAlpha returns each rule's share of its flag's α: its own Alpha (or
// the default) divided by the number of rules of the same flag and
// environment. The union bound keeps the chance of any false trip of the
// flag within the largest Alpha among its rules.
func splitAlpha(rules []Rule) []float64 {
	type flagRef struct{ env, flag string }
	n := make(map[flagRef]int, len(rules))
	for _, r := range rules {
		n[flagRef{r.Environment, r.Flag}]++
	}
	out := make([]float64, len(rules))
	for i, r := range rules {
		a := r.Alpha
		if a == 0 {
			a = DefaultAlpha
		}
		out[i] = a / float64(n[flagRef{r.Environment, r.Flag}])
	}
	return out
}

// evaluate decides one rule with its share alpha of the flag's α. Without
// full it leaves out what only people read, the reason and the confidence
// sequence, which cost more than the decision; the job asks for them when
// the verdict changes the state.
func evaluate(r Rule, alpha float64, c Counters, ok bool, now time.Time, full bool) Verdict {
	v := Verdict{Guardrail: r.Ref, Time: now, Watermark: c.Watermark}
	if err := r.Validate(); err != nil {
		v.Status, v.Reason = StatusInvalid, err.Error()
		return v
	}
	r = r.WithDefaults()
	ev := &v.Evidence
	ev.Metric, ev.Comparison, ev.Alpha, ev.Tau = r.Metric.String(), r.Comparison, alpha, r.Tau
	ev.Threshold = -math.Log(alpha)
	ev.SRMThreshold = -math.Log(SRMAlpha)
	ev.DesignEffect = r.DesignEffect
	ev.PValue = 1
	ev.Lower, ev.Upper = effectRange(r)

	hold := func(h HoldReason, format string, args ...any) Verdict {
		v.Status, v.Hold = StatusHold, h
		if full {
			v.Reason = fmt.Sprintf(format, args...)
		}
		return v
	}
	if !ok {
		return hold(HoldNoCounters, "no counters for the guardrail")
	}
	s, problem := sampleOf(r, c)
	ev.Treatment, ev.Control = s.t, s.c
	if problem != "" {
		return hold(HoldInconsistent, "inconsistent counters: %s", problem)
	}
	if c.Watermark.IsZero() {
		v.Status, v.Reason = StatusCollecting, "no complete time window yet"
		return v
	}

	// Data quality first: a regression measured on broken data is no
	// evidence, so a hold wins over a trip.
	if lag := now.Sub(c.Watermark); lag > r.MissingAfter {
		return hold(HoldDataLate, "the data is %s late: not every reporting server has delivered since %s",
			lag.Round(time.Second), c.Watermark.UTC().Format(time.RFC3339))
	}
	if r.Control != "" && c.TreatmentShare > 0 && c.TreatmentShare < 1 && c.Treatment.Exposures+c.Control.Exposures > 0 {
		ev.SRMChecked = true
		ev.SRMLogE = srmLogE(c.Treatment.Exposures, c.Control.Exposures, c.TreatmentShare)
		if ev.SRMLogE >= ev.SRMThreshold {
			total := float64(c.Treatment.Exposures + c.Control.Exposures)
			return hold(HoldSampleRatio, "sample ratio mismatch: %d treatment and %d control exposures (%.2f%% treatment) where the split expects %.2f%%",
				c.Treatment.Exposures, c.Control.Exposures, 100*float64(c.Treatment.Exposures)/total, 100*c.TreatmentShare)
		}
	}
	if arm, gap := metricGap(r, c); gap > r.MissingAfter {
		return hold(HoldMetricMissing, "%s exposures continue but its %s has not arrived for %s",
			arm, r.Metric, gap.Round(time.Second))
	}

	if r.Comparison.Kind == KindAbsoluteCeiling {
		return decideCeiling(v, r, s, full)
	}
	return decideRelative(v, r, s, full)
}

// sample is one evaluation's counts.
type sample struct {
	t, c         ArmSample
	sessT, sessC SessionSums
}

// sampleOf extracts the rule's metric from the counters, or says why the
// counters make no sense.
func sampleOf(r Rule, c Counters) (sample, string) {
	var s sample
	arm := func(a Arm) ArmSample {
		out := ArmSample{Exposures: a.Exposures}
		switch r.Metric.Kind {
		case KindRejectRate:
			out.N, out.X = a.Actions, a.Rejects
		case KindCounterRatio:
			out.N, out.X = a.Custom[r.Metric.Denominator], a.Custom[r.Metric.Numerator]
		case KindD1Retention:
			out.N, out.X = a.Retention.Closed, a.Retention.Retained
		}
		if out.N > 0 {
			out.Rate = float64(out.X) / float64(out.N)
		}
		return out
	}
	s.t, s.c = arm(c.Treatment), arm(c.Control)
	s.sessT, s.sessC = c.Treatment.Sessions, c.Control.Sessions
	for _, a := range []struct {
		name string
		s    ArmSample
		sess SessionSums
	}{{"treatment", s.t, s.sessT}, {"control", s.c, s.sessC}} {
		switch {
		case a.s.Exposures < 0 || a.s.N < 0 || a.s.X < 0:
			return s, a.name + " has negative counts"
		case a.s.X > a.s.N:
			return s, fmt.Sprintf("%s counts more events (%d) than trials (%d)", a.name, a.s.X, a.s.N)
		case a.sess.Sessions < 0 || a.sess.N < 0 || a.sess.X < 0 || a.sess.X > a.sess.N ||
			!(a.sess.NN >= 0 && a.sess.XX >= 0 && a.sess.NX >= 0):
			return s, a.name + " has inconsistent per-session sums"
		}
	}
	if c.TreatmentShare < 0 || c.TreatmentShare >= 1 || math.IsNaN(c.TreatmentShare) {
		return s, fmt.Sprintf("treatment share %g is not in [0, 1)", c.TreatmentShare)
	}
	return s, ""
}

// metricGap returns the arm whose metric lags its exposures most, and by
// how much. For D1 retention the metric cannot arrive before the first
// cohort closes, RetentionWindow after the data starts.
func metricGap(r Rule, c Counters) (string, time.Duration) {
	var worst string
	var gap time.Duration
	expected := c.Since
	if r.Metric.Kind == KindD1Retention && !c.Since.IsZero() {
		expected = c.Since.Add(RetentionWindow)
	}
	for _, a := range []struct {
		name string
		arm  Arm
	}{{"treatment", c.Treatment}, {"control", c.Control}} {
		if a.arm.LastExposure.IsZero() {
			continue
		}
		last := a.arm.LastMetric
		if last.Before(expected) {
			last = expected
		}
		if last.IsZero() {
			continue // neither the metric nor the start of the data is known
		}
		if d := a.arm.LastExposure.Sub(last); d > gap {
			worst, gap = a.name, d
		}
	}
	return worst, gap
}

// decideRelative runs the mixture test of the treatment against the
// control.
func decideRelative(v Verdict, r Rule, s sample, full bool) Verdict {
	ev := &v.Evidence
	nT, nC := s.t.N, s.c.N
	if r.SessionVariance {
		if s.sessT.Sessions < MinSessions || s.sessC.Sessions < MinSessions {
			v.Status = StatusCollecting
			v.Reason = fmt.Sprintf("estimating the design effect needs %d sessions in each arm", MinSessions)
			return v
		}
		// An arm without events (or with nothing else) has no spread to
		// measure; the configured design effect stands for it.
		if phi, ok := armDesignEffect(s.sessT); ok {
			ev.DesignEffect = max(ev.DesignEffect, phi)
		}
		if phi, ok := armDesignEffect(s.sessC); ok {
			ev.DesignEffect = max(ev.DesignEffect, phi)
		}
	}
	if nT == 0 || nC == 0 {
		v.Status = StatusCollecting
		if r.Metric.Kind == KindD1Retention {
			v.Reason = "no player's 48 h retention window has closed yet in both arms"
		} else {
			v.Reason = "no trials in one of the arms yet"
		}
		return v
	}
	pT, pC := s.t.Rate, s.c.Rate
	pbar := float64(s.t.X+s.c.X) / float64(nT+nC)
	k, phi := 1+r.Comparison.Margin, ev.DesignEffect
	d := pT - k*pC
	if r.Metric.Kind == KindD1Retention {
		k, phi = 1, 1
		d = pC - pT - r.Comparison.Margin
	}
	fT, fC := float64(nT), float64(nC)
	pooled := pbar * (1 - pbar) * (1/fT + k*k/fC)
	unpooled := pT*(1-pT)/fT + k*k*pC*(1-pC)/fC
	variance := phi * max(pooled, unpooled)
	ev.Effect, ev.Variance = d, variance
	ev.LogE = mixtureLogE(d, variance, r.Tau)
	ev.PValue = min(1, math.Exp(-ev.LogE))
	switch {
	case nT < r.MinSample || nC < r.MinSample:
		v.Status = StatusCollecting
	case ev.LogE >= ev.Threshold:
		v.Status, v.Action = StatusRegression, r.Action
	default:
		v.Status = StatusHealthy
	}
	if !full {
		return v
	}
	if z := mixtureRadius(variance, r.Tau, ev.Threshold); !math.IsInf(z, 1) {
		lo, hi := effectRange(r)
		ev.Lower, ev.Upper = max(lo, d-z), min(hi, d+z)
	}
	what := fmt.Sprintf("treatment rate %.3g%% vs control %.3g%%", 100*pT, 100*pC)
	if m := r.Comparison.Margin; m != 0 && r.Metric.Kind != KindD1Retention {
		what += fmt.Sprintf(" (allowed up to %.3g%%)", 100*k*pC)
	}
	if r.Metric.Kind == KindD1Retention {
		what = fmt.Sprintf("treatment D1 retention %.3g%% vs control %.3g%%", 100*pT, 100*pC)
		if m := r.Comparison.Margin; m != 0 {
			what += fmt.Sprintf(" (allowed down to %.3g%%)", 100*(pC-m))
		}
	}
	switch v.Status {
	case StatusCollecting:
		v.Reason = fmt.Sprintf("%s; %d and %d trials, %d needed in each arm before deciding", what, nT, nC, r.MinSample)
	case StatusRegression:
		v.Reason = fmt.Sprintf("%s: harm beyond the margin is established (ln Λ %.2f ≥ %.2f)", what, ev.LogE, ev.Threshold)
	default:
		v.Reason = fmt.Sprintf("%s: no harm established (ln Λ %.2f < %.2f)", what, ev.LogE, ev.Threshold)
	}
	return v
}

// decideCeiling runs the exact e-value test of the treatment's rate
// against the ceiling.
func decideCeiling(v Verdict, r Rule, s sample, full bool) Verdict {
	ev := &v.Evidence
	c := r.Comparison.Ceiling
	n, x := s.t.N, s.t.X
	if n == 0 {
		v.Status, v.Reason = StatusCollecting, "no treatment trials yet"
		return v
	}
	p := s.t.Rate
	ev.Effect, ev.Variance = p-c, p*(1-p)/float64(n)
	ev.LogE = ceilingLogE(x, n, c)
	ev.PValue = min(1, math.Exp(-ev.LogE))
	switch {
	case ev.LogE >= ev.Threshold:
		v.Status, v.Action = StatusRegression, r.Action
	case n < r.MinSample:
		v.Status = StatusCollecting
	default:
		v.Status = StatusHealthy
	}
	if !full {
		return v
	}
	lo, hi := ceilingBounds(x, n, ev.Threshold)
	ev.Lower, ev.Upper = lo-c, hi-c
	what := fmt.Sprintf("treatment rate %.3g%% (%d of %d) against a ceiling of %.3g%%", 100*p, x, n, 100*c)
	switch v.Status {
	case StatusRegression:
		v.Reason = fmt.Sprintf("%s: the ceiling is exceeded (ln E %.2f ≥ %.2f)", what, ev.LogE, ev.Threshold)
	case StatusCollecting:
		v.Reason = fmt.Sprintf("%s; %d of %d trials", what, n, r.MinSample)
	default:
		v.Reason = fmt.Sprintf("%s: not exceeded (ln E %.2f < %.2f)", what, ev.LogE, ev.Threshold)
	}
	return v
}

// effectRange returns the smallest and largest effect the rule's metric
// and comparison allow: the confidence sequence before any data.
func effectRange(r Rule) (lo, hi float64) {
	switch {
	case r.Comparison.Kind == KindAbsoluteCeiling:
		return -r.Comparison.Ceiling, 1 - r.Comparison.Ceiling
	case r.Metric.Kind == KindD1Retention:
		return -1 - r.Comparison.Margin, 1 - r.Comparison.Margin
	default:
		return -(1 + r.Comparison.Margin), 1
	}
}
