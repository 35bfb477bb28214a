package guardrails

import (
	"context"
	"fmt"
	"slices"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/webhook"
)

// Responder carries out incidents (it implements Actions): a trip or
// fail-safe whose action is a rollback appends a revision that serves the
// control variant to everyone, through the same flags service as any edit,
// so the snapshot is republished at once; then the incident is recorded
// with its outcome and the webhook messages that announce it, in one
// transaction.
type Responder struct {
	store     Store
	flags     *flags.Service
	endpoints []string
	kick      func()
}

// ResponderOption configures a Responder.
type ResponderOption func(*Responder)

// WithWebhooks announces every incident to the named webhook endpoints and
// calls kick (if not nil) after queueing their messages, to wake the
// dispatcher.
func WithWebhooks(endpoints []string, kick func()) ResponderOption {
	return func(r *Responder) { r.endpoints, r.kick = slices.Clone(endpoints), kick }
}

// NewResponder returns a Responder that records incidents in store and
// rolls flags back through fl.
func NewResponder(store Store, fl *flags.Service, opts ...ResponderOption) *Responder {
	r := &Responder{store: store, flags: fl}
	for _, o := range opts {
		o(r)
	}
	return r
}

var _ Actions = (*Responder)(nil)

// Apply implements Actions. It does nothing for an incident already
// recorded; a rollback already in force appends no second revision, so a
// retry after a failure between the two steps is harmless, and of two jobs
// that race on one incident exactly one revision results. It returns the
// flags service's or the store's errors.
func (r *Responder) Apply(ctx context.Context, inc Incident) error {
	if _, err := r.store.Incident(ctx, inc.ID); err == nil {
		return nil
	} else if !solstice.IsKind(err, solstice.KindNotFound) {
		return fmt.Errorf("look up incident %s: %w", inc.ID, err)
	}
	rec := Record{Incident: inc}
	switch {
	case (inc.Event == EventTrip || inc.Event == EventFailSafe) && inc.Action == ActionRollback:
		rev, outcome, err := r.rollback(ctx, inc)
		if err != nil {
			return err
		}
		rec.Revision, rec.Outcome = rev, outcome
	default:
		rec.Outcome = outcomeOf(inc)
	}
	announce := func(rec Record) ([]webhook.Message, error) {
		msgs := make([]webhook.Message, 0, len(r.endpoints))
		for _, ep := range r.endpoints {
			m, err := webhook.NewMessage(rec.ID+"@"+ep, ep, "guardrail."+string(rec.Event), rec, rec.RecordedAt)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, m)
		}
		return msgs, nil
	}
	if _, created, err := r.store.RecordIncident(ctx, rec, announce); err != nil {
		return fmt.Errorf("record incident %s: %w", inc.ID, err)
	} else if created && len(r.endpoints) > 0 && r.kick != nil {
		r.kick()
	}
	return nil
}

// outcomeOf says what an incident that changes no flag means.
func outcomeOf(inc Incident) string {
	g := inc.Guardrail
	switch inc.Event {
	case EventTrip, EventFailSafe:
		switch inc.Action {
		case ActionPause:
			return fmt.Sprintf("the rollout of %s in %s is paused until a person resumes guardrail %s", g.Flag, g.Environment, g.Key)
		default:
			return fmt.Sprintf("owners notified; %s in %s is unchanged (the guardrail's action is notify)", g.Flag, g.Environment)
		}
	case EventHold:
		return fmt.Sprintf("the rollout of %s in %s holds at its current step while the data cannot be trusted", g.Flag, g.Environment)
	case EventRelease:
		return fmt.Sprintf("the hold on %s in %s is lifted: the data can be trusted again", g.Flag, g.Environment)
	case EventResume:
		return fmt.Sprintf("guardrail %s of %s in %s resumed: test %d starts on new data", g.Key, g.Flag, g.Environment, inc.Test)
	}
	return string(inc.Event)
}

// rollback serves the rule's control variant to everyone, or, for a rule
// without one, turns the flag off (its off variant). It returns the
// revision it appended (0 when the rollback was already in force) and the
// outcome.
func (r *Responder) rollback(ctx context.Context, inc Incident) (int64, string, error) {
	g := inc.Guardrail
	def, err := r.store.GetGuardrail(ctx, g)
	if err != nil {
		return 0, "", fmt.Errorf("roll back %s: read guardrail: %w", g, err)
	}
	ctx = solstice.WithActor(ctx, solstice.System("guardrail:"+g.Key))
	metric := def.Metric.String()
	if inc.Verdict != nil && inc.Verdict.Evidence.Metric != "" {
		metric = inc.Verdict.Evidence.Metric
	}
	// A concurrent edit makes PutConfig fail its precondition: read again
	// and retry a few times.
	for attempt := 0; ; attempt++ {
		fc, err := r.flags.GetConfig(ctx, g.Environment, g.Flag)
		if err != nil {
			return 0, "", fmt.Errorf("roll back %s: %w", g, err)
		}
		cfg, how := RolledBack(fc.Config, def.Control)
		msg := fmt.Sprintf("Guardrail %s rolled %s back (%s): %s", g.Key, g.Flag, metric, inc.Reason)
		if inc.Event == EventFailSafe {
			msg = fmt.Sprintf("Guardrail %s rolled %s back to fail safe: %s", g.Key, g.Flag, inc.Reason)
		}
		rev, err := r.flags.PutConfig(ctx, g.Environment, g.Flag, cfg, fc.Revision, msg)
		if solstice.IsKind(err, solstice.KindPreconditionFailed) && attempt < 3 {
			continue
		}
		if err != nil {
			return 0, "", fmt.Errorf("roll back %s: %w", g, err)
		}
		if len(rev.Diff) == 0 {
			return 0, fmt.Sprintf("%s in %s already %s", g.Flag, g.Environment, how), nil
		}
		return rev.Number, fmt.Sprintf("rolled %s in %s back in revision %d: %s", g.Flag, g.Environment, rev.Number, how), nil
	}
}

// RolledBack returns c rolled back: every context served control (no
// rules, no split, control as the default), or, without a control
// variant, the flag turned off so that everyone gets its off variant. It
// also says which, for people.
func RolledBack(c flags.Config, control string) (flags.Config, string) {
	out := c
	out.Variants = slices.Clone(c.Variants)
	if control == "" {
		out.Enabled = false
		return out, fmt.Sprintf("turned off: everyone gets the off variant %q", c.OffVariant)
	}
	out.Rules, out.Split, out.DefaultVariant = nil, nil, control
	if !c.Enabled {
		return out, fmt.Sprintf("serves %q to everyone once enabled (the flag is off)", control)
	}
	return out, fmt.Sprintf("serves the control variant %q to everyone", control)
}
