package rollout

import (
	"encoding/json"
	"slices"

	"github.com/solsticehq/solstice/flags"
)

// Space is the total weight of every split a plan writes: weights are
// basis points, and 10000 is everyone.
const Space = 10000

// ControlWeight returns the control group's weight when the treatment has
// weight w: as much as the treatment, up to half the players (min(w,
// Space−w)). Above 50% the control group is whoever is not treated, and
// at 100% there is none.
func ControlWeight(w int) int { return max(0, min(w, Space-w)) }

// StepSplit returns the split of plan p at a treatment weight w.
//
// Bucketing walks a split's variants in declaration order over the total
// weight (see flags.BucketString), so each variant owns one range of
// buckets. The plan's splits always have the same total (Space), salt and
// bucketing attribute, and list the treatment first, the baseline second
// and the control last:
//
//	treatment [0, w)   baseline [w, Space−c)   control [Space−c, Space)
//
// with c = ControlWeight(w). As w grows, the treatment's range grows from
// the bottom and the control's from the top, both only ever gaining
// buckets, so a player in the treatment (or in the control group) at one
// step stays there at every later step, and the two arms always have the
// same size up to 50%. Variants of weight 0 are left out; that moves no
// range.
func StepSplit(p Plan, w int) *flags.Split {
	c := ControlWeight(w)
	s := &flags.Split{BucketBy: p.BucketBy, Salt: p.salt()}
	for _, vw := range []flags.Weight{{Variant: p.Treatment, Weight: w}, {Variant: p.Baseline, Weight: Space - w - c}, {Variant: p.Control, Weight: c}} {
		if vw.Weight > 0 {
			s.Weights = append(s.Weights, vw)
		}
	}
	return s
}

func (p Plan) salt() string {
	if p.Salt != "" {
		return p.Salt
	}
	return p.ID
}

// StepConfig returns cur, the flag's configuration, with step i of plan p
// applied: the flag enabled and the step's split as the default split, or,
// for a step limited to a segment, as the split of the plan's rule (see
// RuleID), placed after the flag's other rules so that their targeting
// still comes first. Everything else in cur is kept. It cannot fail; i
// must be a step of p.
func StepConfig(p Plan, cur flags.Config, i int) flags.Config {
	s := p.Steps[i]
	out := cloneConfig(cur)
	out.Enabled = true
	out.Rules = withoutRule(out.Rules, RuleID(p.ID))
	split := StepSplit(p, s.Weight)
	if s.Segment == "" {
		out.Split = split
		return out
	}
	out.Rules = append(out.Rules, flags.Rule{
		ID:          RuleID(p.ID),
		Description: "Rollout " + p.ID + ": the treatment's share within segment " + s.Segment,
		Conditions:  []flags.Condition{{Op: flags.OpInSegment, Segment: s.Segment}},
		Split:       split,
	})
	return out
}

// RolledBackConfig returns cur with plan p's audience (everyone, or the
// segment of its current step) served the baseline variant, and whether
// that differs from cur. When cur no longer serves the treatment to anyone
// (a guardrail's own rollback got there first), it returns cur and false.
func RolledBackConfig(p Plan, cur flags.Config) (flags.Config, bool) {
	if !ServesVariant(cur, p.Treatment) {
		return cur, false
	}
	out := cloneConfig(cur)
	step, _ := p.Current()
	if step.Segment == "" {
		out.Split = &flags.Split{BucketBy: p.BucketBy, Salt: p.salt(), Weights: []flags.Weight{{Variant: p.Baseline, Weight: Space}}}
		return out, true
	}
	for i := range out.Rules {
		if out.Rules[i].ID == RuleID(p.ID) {
			out.Rules[i].Split, out.Rules[i].Variant = nil, p.Baseline
			return out, true
		}
	}
	// The plan's rule is gone but the treatment is served: withdraw it
	// from the default split as well, as for a plan without a segment.
	out.Split = &flags.Split{BucketBy: p.BucketBy, Salt: p.salt(), Weights: []flags.Weight{{Variant: p.Baseline, Weight: Space}}}
	return out, !sameConfig(out, cur)
}

// ServesVariant reports whether c can serve variant v to anyone: as its off
// variant when disabled; otherwise through a rule, a split with a positive
// weight, or as the default variant when something may fall through to it.
func ServesVariant(c flags.Config, v string) bool {
	if !c.Enabled {
		return c.OffVariant == v
	}
	inSplit := func(s *flags.Split) bool {
		return s != nil && slices.ContainsFunc(s.Weights, func(w flags.Weight) bool { return w.Variant == v && w.Weight > 0 })
	}
	for _, r := range c.Rules {
		if r.Variant == v || inSplit(r.Split) {
			return true
		}
	}
	// A split falls through to the default variant for a context without
	// its bucketing attribute, so the default always counts.
	return inSplit(c.Split) || c.DefaultVariant == v
}

func withoutRule(rules []flags.Rule, id string) []flags.Rule {
	return slices.DeleteFunc(slices.Clone(rules), func(r flags.Rule) bool { return r.ID == id })
}

// cloneConfig returns a deep copy of c.
func cloneConfig(c flags.Config) flags.Config {
	b, err := json.Marshal(c)
	if err != nil {
		return c // unreachable: a Config always marshals
	}
	var out flags.Config
	if err := json.Unmarshal(b, &out); err != nil {
		return c
	}
	return out
}

// sameConfig reports whether a and b are the same configuration, comparing
// their canonical JSON (variant values canonicalized as flags stores them).
func sameConfig(a, b flags.Config) bool {
	ca, errA := canonicalConfig(a)
	cb, errB := canonicalConfig(b)
	return errA == nil && errB == nil && string(ca) == string(cb)
}

func canonicalConfig(c flags.Config) (json.RawMessage, error) {
	c = cloneConfig(c)
	for i, v := range c.Variants {
		if cv, err := flags.Canonical(v.Value); err == nil {
			c.Variants[i].Value = cv
		}
	}
	return flags.CanonicalOf(c)
}
