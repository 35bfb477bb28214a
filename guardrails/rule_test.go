package guardrails

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
)

func validRule() Rule {
	return Rule{
		Ref:       Ref{Environment: "production", Flag: "winter-drops", Key: "reject-rate"},
		Metric:    RejectRate(),
		Treatment: "on", Control: "off",
		Comparison: RelativeToControl(0.1),
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(*Rule)
		fields []string // pointers of the expected field errors; nil for valid
	}{
		{"reject rate relative", func(*Rule) {}, nil},
		{"reject rate ceiling without control", func(r *Rule) { r.Comparison, r.Control = AbsoluteCeiling(0.05), "" }, nil},
		{"retention", func(r *Rule) { r.Metric, r.Comparison = D1Retention(), RelativeToControl(0.01) }, nil},
		{"counter ratio", func(r *Rule) { r.Metric, r.Tau = CounterRatio("match_failed", "match_started"), 0.01 }, nil},
		{"every option", func(r *Rule) {
			r.Alpha, r.Tau, r.MinSample, r.DesignEffect, r.SessionVariance = 0.01, 0.004, 500, 1.3, true
			r.Action, r.HoldTimeout, r.MissingAfter = ActionPause, time.Hour, 5*time.Minute
		}, nil},

		{"bad keys", func(r *Rule) { r.Environment, r.Flag, r.Key, r.Treatment = "", "Winter", "-x", "a b" },
			[]string{"/environment", "/flag", "/key", "/treatment"}},
		{"relative needs control", func(r *Rule) { r.Control = "" }, []string{"/control"}},
		{"retention needs control", func(r *Rule) { r.Metric, r.Control = D1Retention(), "" }, []string{"/control"}},
		{"control is treatment", func(r *Rule) { r.Control = "on" }, []string{"/control"}},
		{"unknown metric", func(r *Rule) { r.Metric = Metric{Kind: "latency"} }, []string{"/metric/kind"}},
		{"counter ratio without names or tau", func(r *Rule) { r.Metric = CounterRatio("", "Bad Name") },
			[]string{"/metric/numerator", "/metric/denominator", "/tau"}},
		{"counter ratio of one counter", func(r *Rule) { r.Metric, r.Tau = CounterRatio("x", "x"), 0.01 }, []string{"/metric/denominator"}},
		{"numerator on reject rate", func(r *Rule) { r.Metric.Numerator = "x" }, []string{"/metric/numerator"}},
		{"unknown comparison", func(r *Rule) { r.Comparison = Comparison{Kind: "within"} }, []string{"/comparison/kind"}},
		{"negative margin", func(r *Rule) { r.Comparison.Margin = -0.1 }, []string{"/comparison/margin"}},
		{"retention margin is absolute", func(r *Rule) { r.Metric, r.Comparison = D1Retention(), RelativeToControl(1) }, []string{"/comparison/margin"}},
		{"ceiling on retention", func(r *Rule) { r.Metric, r.Comparison = D1Retention(), AbsoluteCeiling(0.3) }, []string{"/comparison/kind"}},
		{"ceiling out of range", func(r *Rule) { r.Comparison = AbsoluteCeiling(0.96) }, []string{"/comparison/ceiling"}},
		{"ceiling with a margin", func(r *Rule) { r.Comparison = Comparison{Kind: KindAbsoluteCeiling, Ceiling: 0.1, Margin: 0.1} }, []string{"/comparison/margin"}},
		{"margin with a ceiling", func(r *Rule) { r.Comparison.Ceiling = 0.1 }, []string{"/comparison/ceiling"}},
		{"alpha", func(r *Rule) { r.Alpha = 1 }, []string{"/alpha"}},
		{"alpha NaN", func(r *Rule) { r.Alpha = math.NaN() }, []string{"/alpha"}},
		{"tau", func(r *Rule) { r.Tau = -0.005 }, []string{"/tau"}},
		{"tau above 1", func(r *Rule) { r.Tau = 2 }, []string{"/tau"}},
		{"min sample", func(r *Rule) { r.MinSample = -1 }, []string{"/min_sample"}},
		{"design effect below 1", func(r *Rule) { r.DesignEffect = 0.5 }, []string{"/design_effect"}},
		{"design effect on retention", func(r *Rule) {
			r.Metric, r.DesignEffect, r.SessionVariance = D1Retention(), 2, true
		}, []string{"/session_variance", "/design_effect"}},
		{"action", func(r *Rule) { r.Action = "explode" }, []string{"/action"}},
		{"durations", func(r *Rule) { r.HoldTimeout, r.MissingAfter = -time.Second, -time.Second }, []string{"/hold_timeout", "/missing_after"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := validRule()
			tc.edit(&r)
			err := r.Validate()
			if tc.fields == nil {
				if err != nil {
					t.Fatalf("Validate: %v, want nil", err)
				}
				return
			}
			if !solstice.IsKind(err, solstice.KindInvalid) {
				t.Fatalf("Validate: %v, want a KindInvalid error", err)
			}
			var got []string
			for _, f := range solstice.ErrorFields(err) {
				got = append(got, f.Pointer)
			}
			if diff := cmp.Diff(tc.fields, got); diff != "" {
				t.Errorf("field pointers (-want +got):\n%s\nerror: %v", diff, err)
			}
		})
	}
}

func TestValidateRules(t *testing.T) {
	a, b := validRule(), validRule()
	b.Tau = -1
	err := ValidateRules([]Rule{a, b})
	var got []string
	for _, f := range solstice.ErrorFields(err) {
		got = append(got, f.Pointer)
	}
	if diff := cmp.Diff([]string{"/1/tau", "/1/key"}, got); diff != "" {
		t.Errorf("field pointers (-want +got):\n%s", diff)
	}
	b = validRule()
	b.Key = "retention"
	if err := ValidateRules([]Rule{a, b}); err != nil {
		t.Errorf("two distinct rules: %v", err)
	}
}

func TestWithDefaults(t *testing.T) {
	got := Rule{Metric: D1Retention()}.WithDefaults()
	want := Rule{Metric: D1Retention(), Alpha: 0.05, Tau: 0.02, MinSample: 100, DesignEffect: 1,
		Action: ActionRollback, HoldTimeout: DefaultHoldTimeout, MissingAfter: DefaultMissingAfter}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if got := (Rule{Metric: RejectRate()}).WithDefaults().Tau; got != 0.005 {
		t.Errorf("reject rate τ = %g, want 0.005", got)
	}
	if got := (Rule{Metric: CounterRatio("a", "b")}).WithDefaults().Tau; got != 0 {
		t.Errorf("counter ratio τ = %g, want 0 (required)", got)
	}
}
