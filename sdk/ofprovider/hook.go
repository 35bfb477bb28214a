package ofprovider

import (
	"context"
	"slices"

	"github.com/open-feature/go-sdk/openfeature"

	"github.com/solsticehq/solstice/sdk"
)

// Hook is an OpenFeature hook that records exposures into an
// sdk.Reporter: after each successful evaluation whose reason is one of
// its reasons (default SPLIT), the evaluation context's targeting key is
// recorded as exposed to the flag's variant (sdk.Reporter.Exposed).
// Evaluations that failed, that served no variant, or whose context has no
// targeting key record nothing.
//
// NOTE: by default only SPLIT counts as an exposure. The guardrails
// compare a split's arms and test their exposures against the split's
// shares (sample-ratio mismatch): players a rule targets into a variant
// (TARGETING_MATCH), or who get it because the flag is off or no split
// applies (DISABLED, DEFAULT, STATIC), were not randomized, and would bias
// both. ExposeReasons widens it for other uses of the data.
type Hook struct {
	openfeature.UnimplementedHook
	reporter *sdk.Reporter
	reasons  []openfeature.Reason
}

var _ openfeature.Hook = (*Hook)(nil)

// HookOption configures a Hook.
type HookOption func(*Hook)

// ExposeReasons sets the evaluation reasons that count as an exposure
// (default SPLIT only).
func ExposeReasons(reasons ...openfeature.Reason) HookOption {
	return func(h *Hook) { h.reasons = slices.Clone(reasons) }
}

// NewHook returns a hook recording exposures into r. Add it to the
// provider (WithReporter does), to an OpenFeature client, or globally.
func NewHook(r *sdk.Reporter, opts ...HookOption) *Hook {
	h := &Hook{reporter: r, reasons: []openfeature.Reason{openfeature.SplitReason}}
	for _, o := range opts {
		o(h)
	}
	return h
}

// After records the exposure of a successful evaluation. It returns nil:
// recording never fails an evaluation.
func (h *Hook) After(_ context.Context, hc openfeature.HookContext, d openfeature.InterfaceEvaluationDetails, _ openfeature.HookHints) error {
	if d.ErrorCode != "" || d.Variant == "" || !slices.Contains(h.reasons, d.Reason) {
		return nil
	}
	if player := hc.EvaluationContext().TargetingKey(); player != "" {
		h.reporter.Exposed(d.FlagKey, d.Variant, player)
	}
	return nil
}
