package guardrails

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

var (
	t0  = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	now = t0.Add(72 * time.Hour)
)

// counters returns clean counters: both arms exposed alike, data up to
// now, and the given trials and events of the rule's metric in each arm.
func counters(r Rule, nT, xT, nC, xC int64) Counters {
	c := Counters{Since: t0, Watermark: now, TreatmentShare: 0.5}
	arm := func(n, x int64) Arm {
		a := Arm{Exposures: 5000, LastExposure: now, LastMetric: now}
		switch r.Metric.Kind {
		case KindRejectRate:
			a.Actions, a.Rejects = n, x
		case KindCounterRatio:
			a.Custom = map[string]int64{r.Metric.Denominator: n, r.Metric.Numerator: x, "unrelated": 7}
		case KindD1Retention:
			a.Retention = Retention{Closed: n, Retained: x}
		}
		return a
	}
	c.Treatment, c.Control = arm(nT, xT), arm(nC, xC)
	return c
}

func rule(m Metric, cmp Comparison) Rule {
	r := validRule()
	r.Metric, r.Comparison = m, cmp
	if m.Kind == KindCounterRatio {
		r.Tau = 0.005
	}
	return r
}

func evaluateOne(r Rule, c Counters) Verdict {
	return Evaluate([]Rule{r}, map[Ref]Counters{r.Ref: c}, now)[0]
}

func TestEvaluateDecisions(t *testing.T) {
	reject := rule(RejectRate(), RelativeToControl(0))
	ratio := rule(CounterRatio("match_failed", "match_started"), RelativeToControl(0))
	retention := rule(D1Retention(), RelativeToControl(0))
	ceiling := rule(RejectRate(), AbsoluteCeiling(0.05))
	ceiling.Control = ""
	ratioCeiling := rule(CounterRatio("match_failed", "match_started"), AbsoluteCeiling(0.05))
	withMargin := func(r Rule, m float64) Rule { r.Comparison.Margin = m; return r }
	withAction := func(r Rule, a Action) Rule { r.Action = a; return r }

	for _, tc := range []struct {
		name   string
		rule   Rule
		c      Counters
		want   Status
		action Action
	}{
		{"reject rate: harmless", reject, counters(reject, 10000, 200, 10000, 200), StatusHealthy, ""},
		{"reject rate: better", reject, counters(reject, 10000, 100, 10000, 300), StatusHealthy, ""},
		{"reject rate: harmful", reject, counters(reject, 10000, 400, 10000, 200), StatusRegression, ActionRollback},
		{"reject rate: harmful, pause", withAction(reject, ActionPause), counters(reject, 10000, 400, 10000, 200), StatusRegression, ActionPause},
		{"reject rate: harmful, notify", withAction(reject, ActionNotify), counters(reject, 10000, 400, 10000, 200), StatusRegression, ActionNotify},
		{"reject rate: glaring harm under the minimum", reject, counters(reject, 90, 50, 90, 1), StatusCollecting, ""},
		{"reject rate: no control trials", reject, counters(reject, 500, 50, 0, 0), StatusCollecting, ""},
		{"reject rate: +10% with no margin", reject, counters(reject, 2_000_000, 44000, 2_000_000, 40000), StatusRegression, ActionRollback},
		{"reject rate: +10% within a 20% margin", withMargin(reject, 0.2), counters(reject, 2_000_000, 44000, 2_000_000, 40000), StatusHealthy, ""},

		{"counter ratio: harmless", ratio, counters(ratio, 10000, 200, 10000, 210), StatusHealthy, ""},
		{"counter ratio: harmful", ratio, counters(ratio, 10000, 400, 10000, 200), StatusRegression, ActionRollback},
		{"counter ratio: small", ratio, counters(ratio, 50, 40, 50, 1), StatusCollecting, ""},

		{"retention: first 48 h", retention, counters(retention, 0, 0, 0, 0), StatusCollecting, ""},
		{"retention: harmless", retention, counters(retention, 10000, 4000, 10000, 4000), StatusHealthy, ""},
		{"retention: better", retention, counters(retention, 10000, 4500, 10000, 4000), StatusHealthy, ""},
		{"retention: −6 pp", retention, counters(retention, 10000, 3400, 10000, 4000), StatusRegression, ActionRollback},
		{"retention: −6 pp within a 7 pp margin", withMargin(retention, 0.07), counters(retention, 10000, 3400, 10000, 4000), StatusHealthy, ""},
		{"retention: small", retention, counters(retention, 50, 5, 50, 40), StatusCollecting, ""},

		{"ceiling: harmless", ceiling, counters(ceiling, 10000, 300, 0, 0), StatusHealthy, ""},
		{"ceiling: harmful", ceiling, counters(ceiling, 10000, 700, 0, 0), StatusRegression, ActionRollback},
		// 6 of 20 against 5%: ln E = 4.197 ≥ ln 20, with no minimum sample.
		{"ceiling: trips without a minimum", ceiling, counters(ceiling, 20, 6, 0, 0), StatusRegression, ActionRollback},
		{"ceiling: undecided under the minimum", ceiling, counters(ceiling, 20, 2, 0, 0), StatusCollecting, ""},
		{"ceiling: no trials", ceiling, counters(ceiling, 0, 0, 0, 0), StatusCollecting, ""},
		{"ceiling: no control, no sample-ratio check", ceiling, func() Counters {
			c := counters(ceiling, 10000, 300, 0, 0)
			c.Control = Arm{}
			return c
		}(), StatusHealthy, ""},
		{"ratio ceiling: harmless", ratioCeiling, counters(ratioCeiling, 10000, 300, 10000, 300), StatusHealthy, ""},
		{"ratio ceiling: harmful", ratioCeiling, counters(ratioCeiling, 10000, 700, 10000, 300), StatusRegression, ActionRollback},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := evaluateOne(tc.rule, tc.c)
			if v.Status != tc.want || v.Action != tc.action {
				t.Fatalf("status %s, action %q, want %s, %q (%s)", v.Status, v.Action, tc.want, tc.action, v.Reason)
			}
			if v.Reason == "" {
				t.Error("no reason")
			}
			ev := v.Evidence
			if v.Status == StatusHealthy || v.Status == StatusRegression {
				// The always-valid p-value, the threshold and the
				// confidence sequence agree with the decision.
				if want := math.Min(1, math.Exp(-ev.LogE)); !near(ev.PValue, want, 1e-12) {
					t.Errorf("p-value %g, want %g", ev.PValue, want)
				}
				if tripped := v.Status == StatusRegression; (ev.PValue <= ev.Alpha) != tripped {
					t.Errorf("p-value %g against α %g disagrees with %s", ev.PValue, ev.Alpha, v.Status)
				}
				if tripped := v.Status == StatusRegression; (ev.Lower >= -1e-9) != tripped {
					t.Errorf("confidence sequence [%g, %g] disagrees with %s", ev.Lower, ev.Upper, v.Status)
				}
				if !(ev.Lower <= ev.Effect && ev.Effect <= ev.Upper) {
					t.Errorf("confidence sequence [%g, %g] misses the estimate %g", ev.Lower, ev.Upper, ev.Effect)
				}
			}
			if _, err := json.Marshal(v); err != nil {
				t.Errorf("the verdict does not encode: %v", err)
			}
		})
	}
}

func TestEvaluateSmallSampleCarriesEvidence(t *testing.T) {
	// Under the minimum the evidence is shown but not acted on.
	r := rule(RejectRate(), RelativeToControl(0))
	r.MinSample = 1000
	v := evaluateOne(r, counters(r, 500, 280, 500, 5))
	if v.Status != StatusCollecting || v.Evidence.LogE < v.Evidence.Threshold {
		t.Errorf("status %s with ln Λ %g, threshold %g: want collecting with ln Λ over the threshold", v.Status, v.Evidence.LogE, v.Evidence.Threshold)
	}
}

func TestSessionVariance(t *testing.T) {
	r := rule(RejectRate(), RelativeToControl(0))
	// 4% vs 3% over 20000 actions each trips with independent actions…
	c := counters(r, 20000, 800, 20000, 600)
	if v := evaluateOne(r, c); v.Status != StatusRegression {
		t.Fatalf("independent actions: %s, want regression (%s)", v.Status, v.Reason)
	}
	// …but not when rejects come in bursts of whole sessions: 200
	// sessions of 100 actions, with all of a session's rejects in a few
	// sessions (4 or 3 sessions of 100% rejects… spread as 8 × 100 and
	// 6 × 100 here).
	r.SessionVariance = true
	clustered := func(sessions, bad int64) SessionSums {
		return SessionSums{Sessions: sessions, N: sessions * 100, X: bad * 100, NN: float64(sessions) * 1e4, XX: float64(bad) * 1e4, NX: float64(bad) * 1e4}
	}
	c.Treatment.Sessions, c.Control.Sessions = clustered(200, 8), clustered(200, 6)
	v := evaluateOne(r, c)
	if v.Status != StatusHealthy || v.Evidence.DesignEffect < 50 {
		t.Errorf("clustered: %s with φ %g, want healthy with φ near 100 (%s)", v.Status, v.Evidence.DesignEffect, v.Reason)
	}
	// Too few sessions to estimate φ: collect.
	c.Treatment.Sessions, c.Control.Sessions = clustered(10, 1), clustered(200, 6)
	if v := evaluateOne(r, c); v.Status != StatusCollecting {
		t.Errorf("10 sessions: %s, want collecting", v.Status)
	}
	// A configured design effect is a floor.
	r.SessionVariance, r.DesignEffect = false, 30
	c = counters(r, 20000, 800, 20000, 600)
	if v := evaluateOne(r, c); v.Status != StatusHealthy || v.Evidence.DesignEffect != 30 {
		t.Errorf("φ = 30: %s with φ %g, want healthy", v.Status, v.Evidence.DesignEffect)
	}
}

func TestAlphaSplit(t *testing.T) {
	a := rule(RejectRate(), RelativeToControl(0))
	// ln Λ = 3.267: over ln 20 = 2.996, under ln 40 = 3.689.
	c := counters(a, 20000, 485, 20000, 400)
	sibling := a
	sibling.Key = "ceiling"
	sibling.Comparison = AbsoluteCeiling(0.5)
	otherFlag, otherEnv := sibling, sibling
	otherFlag.Flag, otherEnv.Environment = "other", "staging"

	for _, tc := range []struct {
		name  string
		rules []Rule
		alpha float64
		want  Status
	}{
		{"alone", []Rule{a}, 0.05, StatusRegression},
		{"with a sibling", []Rule{a, sibling}, 0.025, StatusHealthy},
		{"with another flag's rule", []Rule{a, otherFlag}, 0.05, StatusRegression},
		{"with another environment's rule", []Rule{otherEnv, a}, 0.05, StatusRegression},
		{"with two siblings", []Rule{sibling, a, func() Rule { s := sibling; s.Key = "third"; return s }()}, 0.05 / 3, StatusHealthy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := map[Ref]Counters{}
			for _, r := range tc.rules {
				cs[r.Ref] = counters(r, 20000, 485, 20000, 400)
			}
			cs[a.Ref] = c
			var v Verdict
			for i, got := range Evaluate(tc.rules, cs, now) {
				if tc.rules[i].Ref == a.Ref {
					v = got
				}
			}
			if !near(v.Evidence.Alpha, tc.alpha, 1e-12) || !near(v.Evidence.Threshold, math.Log(1/tc.alpha), 1e-12) {
				t.Errorf("α %g, threshold %g; want %g, %g", v.Evidence.Alpha, v.Evidence.Threshold, tc.alpha, math.Log(1/tc.alpha))
			}
			if v.Status != tc.want {
				t.Errorf("%s, want %s (%s)", v.Status, tc.want, v.Reason)
			}
		})
	}
	// A rule's own α is split too.
	b := a
	b.Alpha = 0.1
	if got := splitAlpha([]Rule{b, sibling}); got[0] != 0.05 || got[1] != 0.025 {
		t.Errorf("splitAlpha = %v, want [0.05 0.025]", got)
	}
}

func TestHolds(t *testing.T) {
	r := rule(RejectRate(), RelativeToControl(0))
	harmful := func() Counters { return counters(r, 10000, 400, 10000, 200) }
	retention := rule(D1Retention(), RelativeToControl(0))

	for _, tc := range []struct {
		name string
		rule Rule
		edit func(*Counters)
		want Status
		hold HoldReason
	}{
		{"clean harm trips", r, func(*Counters) {}, StatusRegression, ""},
		{"sample ratio mismatch holds instead of tripping", r, func(c *Counters) {
			c.Treatment.Exposures, c.Control.Exposures = 6000, 4000
		}, StatusHold, HoldSampleRatio},
		{"the same exposures under a 60/40 split are fine", r, func(c *Counters) {
			c.Treatment.Exposures, c.Control.Exposures, c.TreatmentShare = 6000, 4000, 0.6
		}, StatusRegression, ""},
		{"unknown split: no check", r, func(c *Counters) {
			c.Treatment.Exposures, c.Control.Exposures, c.TreatmentShare = 6000, 4000, 0
		}, StatusRegression, ""},
		{"treatment metric missing", r, func(c *Counters) {
			c.Treatment.LastMetric = now.Add(-31 * time.Minute)
		}, StatusHold, HoldMetricMissing},
		{"control metric missing", r, func(c *Counters) {
			c.Control.LastMetric = time.Time{}
		}, StatusHold, HoldMetricMissing},
		{"metric a little behind", r, func(c *Counters) {
			c.Treatment.LastMetric = now.Add(-29 * time.Minute)
		}, StatusRegression, ""},
		{"metric stopped, and so did exposures", r, func(c *Counters) {
			c.Treatment.LastMetric, c.Treatment.LastExposure = now.Add(-3*time.Hour), now.Add(-3*time.Hour)
		}, StatusRegression, ""},
		{"data late", r, func(c *Counters) { c.Watermark = now.Add(-31 * time.Minute) }, StatusHold, HoldDataLate},
		{"no complete window yet", r, func(c *Counters) { c.Watermark = time.Time{} }, StatusCollecting, ""},
		{"more rejects than actions", r, func(c *Counters) { c.Control.Rejects = c.Control.Actions + 1 }, StatusHold, HoldInconsistent},
		{"negative counts", r, func(c *Counters) { c.Treatment.Exposures = -1 }, StatusHold, HoldInconsistent},
		{"bad share", r, func(c *Counters) { c.TreatmentShare = 1.5 }, StatusHold, HoldInconsistent},
		{"bad session sums", r, func(c *Counters) { c.Treatment.Sessions = SessionSums{Sessions: 2, N: 1, X: 2} }, StatusHold, HoldInconsistent},
		// Retention cannot arrive before the first window closes.
		{"retention: 47 h in, nothing closed", retention, func(c *Counters) {
			*c = counters(retention, 0, 0, 0, 0)
			c.Since, c.Treatment.LastMetric, c.Control.LastMetric = now.Add(-47*time.Hour), time.Time{}, time.Time{}
		}, StatusCollecting, ""},
		{"retention: 49 h in, nothing closed", retention, func(c *Counters) {
			*c = counters(retention, 0, 0, 0, 0)
			c.Since, c.Treatment.LastMetric, c.Control.LastMetric = now.Add(-49*time.Hour), time.Time{}, time.Time{}
		}, StatusHold, HoldMetricMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := harmful()
			tc.edit(&c)
			v := evaluateOne(tc.rule, c)
			if v.Status != tc.want || v.Hold != tc.hold {
				t.Errorf("%s %q, want %s %q (%s)", v.Status, v.Hold, tc.want, tc.hold, v.Reason)
			}
			if v.Status == StatusHold && v.Action != "" {
				t.Errorf("a hold asks for %s", v.Action)
			}
		})
	}

	v := Evaluate([]Rule{r}, map[Ref]Counters{}, now)[0]
	if v.Status != StatusHold || v.Hold != HoldNoCounters {
		t.Errorf("no counters: %s %q, want a hold", v.Status, v.Hold)
	}
	if v := evaluateOne(r, harmful()); !v.Evidence.SRMChecked || v.Evidence.SRMLogE >= 0 {
		t.Errorf("balanced exposures: SRM checked %v with ln BF %g", v.Evidence.SRMChecked, v.Evidence.SRMLogE)
	}
}

func TestEvaluateInvalidRule(t *testing.T) {
	r := rule(RejectRate(), RelativeToControl(-1))
	v := evaluateOne(r, counters(r, 10000, 400, 10000, 200))
	if v.Status != StatusInvalid || v.Action != "" {
		t.Errorf("%s %q, want invalid", v.Status, v.Action)
	}
}

func TestEvaluateIsPure(t *testing.T) {
	r := rule(RejectRate(), RelativeToControl(0))
	c := counters(r, 10000, 400, 10000, 200)
	a := Evaluate([]Rule{r}, map[Ref]Counters{r.Ref: c}, now)
	b := Evaluate([]Rule{r}, map[Ref]Counters{r.Ref: c}, now)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Errorf("two evaluations differ:\n%s\n%s", ja, jb)
	}
	// The cheap evaluation of the job decides the same.
	if fast := evaluate(r, 0.05, c, true, now, false); fast.Status != a[0].Status || fast.Evidence.LogE != a[0].Evidence.LogE {
		t.Errorf("fast evaluation %s, full %s", fast.Status, a[0].Status)
	}
}
