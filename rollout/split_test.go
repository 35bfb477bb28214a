package rollout_test

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/rollout"
)

func TestStepSplit(t *testing.T) {
	p := testPlan()
	for _, tc := range []struct {
		w    int
		want []flags.Weight
	}{
		{1, []flags.Weight{{Variant: "festival", Weight: 1}, {Variant: "baseline", Weight: 9998}, {Variant: "control", Weight: 1}}},
		{500, []flags.Weight{{Variant: "festival", Weight: 500}, {Variant: "baseline", Weight: 9000}, {Variant: "control", Weight: 500}}},
		{5000, []flags.Weight{{Variant: "festival", Weight: 5000}, {Variant: "control", Weight: 5000}}},
		{7500, []flags.Weight{{Variant: "festival", Weight: 7500}, {Variant: "control", Weight: 2500}}},
		{10000, []flags.Weight{{Variant: "festival", Weight: 10000}}},
	} {
		s := rollout.StepSplit(p, tc.w)
		if diff := cmp.Diff(tc.want, s.Weights); diff != "" {
			t.Errorf("StepSplit(%d) weights (-want +got):\n%s", tc.w, diff)
		}
		if s.Salt != "winter-ramp" || s.BucketBy != "" {
			t.Errorf("StepSplit(%d) salt %q, bucket by %q; want the plan's ID and the default", tc.w, s.Salt, s.BucketBy)
		}
	}
}

// festivalSet is an environment with the winter-festival flag as cfg and a
// "beta" segment.
func festivalSet(cfg flags.Config) flags.Set {
	return flags.Set{Environment: "production", Revision: 1,
		Flags:    []flags.FlagState{{Key: "winter-festival", Type: flags.TypeObject, Config: cfg}},
		Segments: []flags.Segment{{Key: "beta", MembersAttribute: "tier", Members: []string{"beta"}}}}
}

func festivalConfig() flags.Config {
	return flags.Config{
		Variants: []flags.Variant{
			{Key: "baseline", Value: json.RawMessage(`{"festival":false}`)},
			{Key: "control", Value: json.RawMessage(`{"festival":false}`)},
			{Key: "festival", Value: json.RawMessage(`{"festival":true,"xp":2}`)},
		},
		DefaultVariant: "baseline", OffVariant: "baseline",
	}
}

// arms evaluates the flag for n players and returns each one's variant.
func arms(t *testing.T, cfg flags.Config, n int, ctx func(i int) flags.Context) []string {
	t.Helper()
	c, err := flags.Compile(festivalSet(cfg))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, n)
	for i := range out {
		out[i] = flags.Evaluate(c, "winter-festival", ctx(i)).Variant
	}
	return out
}

func player(i int) flags.Context {
	return flags.Context{flags.TargetingKey: fmt.Sprintf("player-%d", i)}
}

// TestRampIsMonotonic evaluates 20,000 players at every step of a ramp with
// the real compiler and evaluator: nobody ever leaves the treatment, the
// control group only grows while it can keep the treatment's size (and
// then only loses players to the treatment), and the arms have the sizes
// the weights promise.
func TestRampIsMonotonic(t *testing.T) {
	const n = 20000
	p := testPlan()
	p.Steps = nil
	for _, w := range []int{1, 100, 500, 1000, 2500, 4000, 5000, 6000, 7500, 9900, 10000} {
		p.Steps = append(p.Steps, rollout.Step{Weight: w})
	}
	prev := make([]string, n)
	for i := range prev {
		prev[i] = "baseline"
	}
	cfg := festivalConfig()
	for i, s := range p.Steps {
		cfg = rollout.StepConfig(p, cfg, i)
		got := arms(t, cfg, n, player)
		count := map[string]int{}
		for j, v := range got {
			count[v]++
			switch {
			case prev[j] == "festival" && v != "festival":
				t.Fatalf("step %d (%d bp): player-%d left the treatment for %s", i+1, s.Weight, j, v)
			case prev[j] == "control" && v == "baseline":
				t.Fatalf("step %d (%d bp): player-%d left the control group for the baseline", i+1, s.Weight, j)
			case prev[j] == "control" && v == "festival" && s.Weight <= rollout.Space/2:
				t.Fatalf("step %d (%d bp): player-%d moved from control to treatment while the control group can still match it", i+1, s.Weight, j)
			}
		}
		for arm, w := range map[string]int{"festival": s.Weight, "control": rollout.ControlWeight(s.Weight)} {
			want := float64(n) * float64(w) / rollout.Space
			if tol := 5*math.Sqrt(want) + 2; math.Abs(float64(count[arm])-want) > tol {
				t.Errorf("step %d (%d bp): %d players in %s, want %.0f ± %.0f", i+1, s.Weight, count[arm], arm, want, tol)
			}
		}
		prev = got
	}
}

// TestNaiveLayoutIsNotMonotonic shows what the layout of StepSplit avoids:
// with the variants declared treatment, control, baseline, growing the
// treatment moves players from the control group into it and from the
// baseline into the control group.
func TestNaiveLayoutIsNotMonotonic(t *testing.T) {
	const n = 5000
	naive := func(w int) flags.Config {
		c := festivalConfig()
		c.Enabled = true
		c.Split = &flags.Split{Salt: "winter-ramp", Weights: []flags.Weight{{Variant: "festival", Weight: w}, {Variant: "control", Weight: w}, {Variant: "baseline", Weight: rollout.Space - 2*w}}}
		return c
	}
	a, b := arms(t, naive(500), n, player), arms(t, naive(2500), n, player)
	moved := 0
	for i := range a {
		if a[i] == "control" && b[i] == "festival" {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("the naive layout kept every control player out of the treatment; the layout test above proves nothing")
	}
}

func TestSegmentStepsThenEveryone(t *testing.T) {
	const n = 8000
	p := testPlan()
	p.Steps = []rollout.Step{{Weight: 1000, Segment: "beta"}, {Weight: 2500, Segment: "beta"}, {Weight: 2500}}
	ctx := func(i int) flags.Context {
		c := player(i)
		if i%2 == 0 {
			c["tier"] = "beta"
		}
		return c
	}
	base := festivalConfig()
	base.Rules = []flags.Rule{{ID: "qa", Conditions: []flags.Condition{{Attribute: "tier", Op: flags.OpEquals, Value: json.RawMessage(`"qa"`)}}, Variant: "festival"}}

	cfg := rollout.StepConfig(p, base, 0)
	if len(cfg.Rules) != 2 || cfg.Rules[0].ID != "qa" || cfg.Rules[1].ID != rollout.RuleID(p.ID) || cfg.Split != nil || !cfg.Enabled {
		t.Fatalf("segment step config = %+v; want the flag's rule first, then the plan's, no default split", cfg)
	}
	prev := arms(t, cfg, n, ctx)
	for i, v := range prev {
		if i%2 == 1 && v != "baseline" {
			t.Fatalf("player-%d, outside the segment, got %s", i, v)
		}
	}
	for step := 1; step < len(p.Steps); step++ {
		cfg = rollout.StepConfig(p, cfg, step)
		got := arms(t, cfg, n, ctx)
		for i := range got {
			if prev[i] == "festival" && got[i] != "festival" {
				t.Fatalf("step %d: player-%d left the treatment", step+1, i)
			}
		}
		prev = got
	}
	if len(cfg.Rules) != 1 || cfg.Split == nil {
		t.Errorf("after the segment was dropped: rules %+v, split %+v; want only the flag's rule and a default split", cfg.Rules, cfg.Split)
	}
}

func TestRolledBackConfig(t *testing.T) {
	p := testPlan()
	p.Step = 1
	cfg := rollout.StepConfig(p, festivalConfig(), 1)
	rb, changed := rollout.RolledBackConfig(p, cfg)
	if !changed {
		t.Fatal("rolling back a config that serves the treatment changed nothing")
	}
	for i, v := range arms(t, rb, 3000, player) {
		if v != "baseline" {
			t.Fatalf("after the rollback player-%d gets %s, want baseline", i, v)
		}
	}
	if again, changed := rollout.RolledBackConfig(p, rb); changed || !cmp.Equal(again, rb) {
		t.Errorf("rolling back twice changed the config again")
	}
	// A guardrail's own rollback (control to everyone) leaves nothing to do.
	byGuardrail := cfg
	byGuardrail.Split, byGuardrail.DefaultVariant = nil, "control"
	if _, changed := rollout.RolledBackConfig(p, byGuardrail); changed {
		t.Errorf("rolling back after the guardrail's rollback wants another change")
	}
}

func TestServesVariant(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c *flags.Config)
		want bool
	}{
		{"disabled, off is baseline", func(c *flags.Config) {}, false},
		{"disabled, off is festival", func(c *flags.Config) { c.OffVariant = "festival" }, true},
		{"enabled, default", func(c *flags.Config) { c.Enabled, c.DefaultVariant = true, "festival" }, true},
		{"enabled, split", func(c *flags.Config) {
			c.Enabled, c.Split = true, &flags.Split{Weights: []flags.Weight{{Variant: "festival", Weight: 1}, {Variant: "baseline", Weight: 9}}}
		}, true},
		{"enabled, split weight 0", func(c *flags.Config) {
			c.Enabled, c.Split = true, &flags.Split{Weights: []flags.Weight{{Variant: "festival", Weight: 0}, {Variant: "baseline", Weight: 9}}}
		}, false},
		{"enabled, rule", func(c *flags.Config) { c.Enabled, c.Rules = true, []flags.Rule{{Variant: "festival"}} }, true},
	} {
		c := festivalConfig()
		tc.edit(&c)
		if got := rollout.ServesVariant(c, "festival"); got != tc.want {
			t.Errorf("%s: ServesVariant = %v, want %v", tc.name, got, tc.want)
		}
	}
}
