package ofprovider

import (
	"context"
	"math"

	"github.com/open-feature/go-sdk/openfeature"

	"github.com/solsticehq/solstice/sdk"
)

// Tracking event names that Track maps to the reporter's player events.
// Any other name is a custom counter.
const (
	TrackAccepted     = "action.accepted" // one accepted action: sdk.Reporter.Accepted
	TrackRejected     = "action.rejected" // one rejected action, reason in the "reason" attribute: Rejected
	TrackSessionStart = "session.start"   // SessionStart
	TrackSessionEnd   = "session.end"     // SessionEnd
	TrackActive       = "active"          // Active
)

// Attributes of the tracking event details that Track reads.
const (
	// AttrReason holds the reason code of TrackRejected (a string; missing:
	// UnspecifiedReason).
	AttrReason = "reason"
	// AttrFlag and AttrVariant, both strings, name the flag variant an
	// action or counter is for, instead of the variants the targeting key
	// was exposed to (sdk.Reporter.AcceptedFor, RejectedFor, CountFor).
	AttrFlag    = "flag"
	AttrVariant = "variant"
)

// UnspecifiedReason is the reason code of a TrackRejected event without a
// reason attribute.
const UnspecifiedReason = "unspecified"

var _ openfeature.Tracker = (*Provider)(nil)

// WithReporter connects the provider to a telemetry reporter: a Hook
// (NewHook(r, opts...)) records exposures, and Track records actions,
// sessions, activity and custom counters. Without it, Track does nothing.
func WithReporter(r *sdk.Reporter, opts ...HookOption) Option {
	return func(p *Provider) {
		p.reporter = r
		p.hooks = append(p.hooks, NewHook(r, opts...))
	}
}

// Track implements OpenFeature's Tracker: it records the event into the
// reporter of WithReporter, for the player named by the evaluation
// context's targeting key.
//
//	action.accepted  Accepted(player), or AcceptedFor(flag, variant) with the flag and variant attributes
//	action.rejected  Rejected(player, reason), reason from the "reason" attribute (default "unspecified"), or RejectedFor
//	session.start    SessionStart(player)
//	session.end      SessionEnd(player)
//	active           Active(player)
//	anything else    Count(player, name, value), or CountFor: the custom counter named by the event
//
// A custom counter adds the details' value rounded to an integer, or 1
// when the value is 0; the other events ignore it. Invalid input (no
// targeting key, an event name that is not a counter name, a negative
// value) is counted and logged by the reporter (ReporterStats.Invalid).
func (p *Provider) Track(_ context.Context, name string, evalCtx openfeature.EvaluationContext, details openfeature.TrackingEventDetails) {
	r := p.reporter
	if r == nil {
		return
	}
	player := evalCtx.TargetingKey()
	flag, _ := details.Attribute(AttrFlag).(string)
	variant, _ := details.Attribute(AttrVariant).(string)
	explicit := flag != "" || variant != ""
	switch name {
	case TrackAccepted:
		if explicit {
			r.AcceptedFor(flag, variant)
		} else {
			r.Accepted(player)
		}
	case TrackRejected:
		reason, _ := details.Attribute(AttrReason).(string)
		if reason == "" {
			reason = UnspecifiedReason
		}
		if explicit {
			r.RejectedFor(flag, variant, reason)
		} else {
			r.Rejected(player, reason)
		}
	case TrackSessionStart:
		r.SessionStart(player)
	case TrackSessionEnd:
		r.SessionEnd(player)
	case TrackActive:
		r.Active(player)
	default:
		n := countOf(details.Value())
		if explicit {
			r.CountFor(flag, variant, name, n)
		} else {
			r.Count(player, name, n)
		}
	}
}

// countOf turns a tracking value into a counter increment: 0 counts 1
// (OpenFeature's value defaults to 0), others are rounded; NaN and
// infinities become -1, which the reporter refuses as invalid.
func countOf(v float64) int64 {
	switch {
	case v == 0:
		return 1
	case math.IsNaN(v) || math.IsInf(v, 0) || v < math.MinInt64 || v >= math.MaxInt64:
		return -1
	default:
		return int64(math.Round(v))
	}
}
