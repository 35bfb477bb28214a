package guardrails

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice/flags"
)

func TestSplitShare(t *testing.T) {
	split := func(ws ...flags.Weight) *flags.Split { return &flags.Split{Weights: ws} }
	w := func(v string, n int) flags.Weight { return flags.Weight{Variant: v, Weight: n} }
	for _, tc := range []struct {
		name string
		c    flags.Config
		want float64
	}{
		{"50/50 default split", flags.Config{Split: split(w("on", 50), w("off", 50))}, 0.5},
		{"ramp with an equal control and a baseline", flags.Config{Split: split(w("on", 500), w("off", 500), w("base", 9000))}, 0.5},
		{"20/80", flags.Config{Split: split(w("on", 20), w("off", 80))}, 0.2},
		{"the same ratio in a rule and the default", flags.Config{
			Rules: []flags.Rule{{Split: split(w("on", 1), w("off", 1))}},
			Split: split(w("on", 5), w("off", 5), w("base", 90))}, 0.5},
		{"different ratios", flags.Config{
			Rules: []flags.Rule{{Split: split(w("on", 1), w("off", 3))}},
			Split: split(w("on", 1), w("off", 1))}, 0},
		{"a rule serves the treatment outright", flags.Config{
			Rules: []flags.Rule{{Variant: "on"}},
			Split: split(w("on", 1), w("off", 1))}, 0},
		{"control is the default after the rules", flags.Config{
			Rules:          []flags.Rule{{Split: split(w("on", 1), w("off", 1))}},
			DefaultVariant: "off"}, 0},
		{"no split", flags.Config{DefaultVariant: "on"}, 0},
		{"only the treatment", flags.Config{Split: split(w("on", 100))}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SplitShare(tc.c, "on", "off"); got != tc.want {
				t.Errorf("SplitShare = %g, want %g", got, tc.want)
			}
		})
	}
	if got := SplitShare(flags.Config{Split: split(w("on", 1), w("off", 1))}, "on", ""); got != 0 {
		t.Errorf("without a control: %g, want 0", got)
	}
}

func TestRolledBack(t *testing.T) {
	c := flags.Config{
		Enabled: true, DefaultVariant: "base", OffVariant: "off",
		Variants: []flags.Variant{{Key: "on"}, {Key: "off"}, {Key: "base"}},
		Rules:    []flags.Rule{{Variant: "on"}},
		Split:    &flags.Split{Weights: []flags.Weight{{Variant: "on", Weight: 1}, {Variant: "off", Weight: 1}}},
	}
	got, how := RolledBack(c, "off")
	want := flags.Config{Enabled: true, DefaultVariant: "off", OffVariant: "off", Variants: c.Variants}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RolledBack to control (-want +got):\n%s", diff)
	}
	if how != `serves the control variant "off" to everyone` {
		t.Errorf("how = %q", how)
	}
	if c.Split == nil || len(c.Rules) != 1 {
		t.Error("RolledBack changed its input")
	}
	got, how = RolledBack(c, "")
	if got.Enabled || got.Split == nil || len(got.Rules) != 1 {
		t.Errorf("without a control: want the flag turned off and nothing else changed, got %+v", got)
	}
	if how != `turned off: everyone gets the off variant "off"` {
		t.Errorf("how = %q", how)
	}
}

func TestDefinitionJSON(t *testing.T) {
	d := Definition{
		Rule: Rule{Ref: Ref{Environment: "production", Flag: "f", Key: "g"}, Metric: RejectRate(), Comparison: RelativeToControl(0.1),
			Treatment: "on", Control: "off", HoldTimeout: 2 * time.Hour},
		Version: 3, CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), UpdatedAt: time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC),
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"version":3`, `"created_at":"2026-01-02T03:04:05Z"`, `"hold_timeout":"2h0m0s"`, `"key":"g"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	var got Definition
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(d, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if err := json.Unmarshal([]byte(`{"key":"g","colour":"red"}`), &got); err == nil {
		t.Error("an unknown field was accepted")
	}
}
