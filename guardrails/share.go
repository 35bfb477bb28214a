package guardrails

import (
	"context"
	"fmt"
	"time"

	"github.com/solsticehq/solstice/flags"
)

// SplitShare returns the share of the treatment among the exposures of
// both arms that c's splits promise: wT/(wT+wC) when every split that
// assigns either variant assigns them in the same ratio and no rule serves
// either of them outright. It returns 0 (unknown: the sample-ratio check is
// skipped) otherwise, for instance when a rule serves the treatment to a
// segment, which adds treatment exposures that no split predicts.
func SplitShare(c flags.Config, treatment, control string) float64 {
	if treatment == "" || control == "" {
		return 0
	}
	share := -1.0
	add := func(s *flags.Split) bool {
		if s == nil {
			return true
		}
		var t, k int
		for _, w := range s.Weights {
			switch w.Variant {
			case treatment:
				t += w.Weight
			case control:
				k += w.Weight
			}
		}
		if t+k == 0 {
			return true
		}
		x := float64(t) / float64(t+k)
		if share >= 0 && x != share {
			return false
		}
		share = x
		return true
	}
	for _, r := range c.Rules {
		if r.Variant == treatment || r.Variant == control || !add(r.Split) {
			return 0
		}
	}
	if c.Split == nil && (c.DefaultVariant == treatment || c.DefaultVariant == control) {
		return 0 // served to whoever no rule matched, in no ratio
	}
	if !add(c.Split) || share <= 0 || share >= 1 {
		return 0
	}
	return share
}

// Shares is a CounterSource that fills in the treatment share of the
// split in force from the flag's current configuration. The share of
// earlier splits is not kept: a rollout whose control group grows with its
// treatment (as rollout plans do) keeps the share constant.
type Shares struct {
	src   CounterSource
	flags *flags.Service
}

// WithShares returns src with TreatmentShare taken from fl.
func WithShares(src CounterSource, fl *flags.Service) Shares { return Shares{src: src, flags: fl} }

var _ CounterSource = Shares{}

// Counters implements CounterSource. It returns src's errors, and the
// flags service's when the configuration cannot be read.
func (s Shares) Counters(ctx context.Context, r Rule, since time.Time) (Counters, error) {
	c, err := s.src.Counters(ctx, r, since)
	if err != nil || c.TreatmentShare != 0 {
		return c, err
	}
	fc, err := s.flags.GetConfig(ctx, r.Environment, r.Flag)
	if err != nil {
		return c, fmt.Errorf("read the split of %s/%s: %w", r.Environment, r.Flag, err)
	}
	c.TreatmentShare = SplitShare(fc.Config, r.Treatment, r.Control)
	return c, nil
}
