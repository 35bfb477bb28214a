package telemetry

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
)

// Counters returns the cumulative counters of flag's treatment and control
// variants in env (control may be empty: its arm is then zero) over the
// minutes from since (rounded up to a whole minute; the zero time: from the
// first data) to the watermark at now. Both arms are cut at the same
// watermark. LastMetric is the newest window with actions: the input of
// the reject rate (Source sets it for the rule's metric).
//
// Retention counts the players first exposed from since on whose 48 h
// window closed before the watermark, and those of them active in
// [t+24h, t+48h) of their first exposure t, to the minute.
//
// TreatmentShare is 0 (unknown): telemetry does not know the split in force.
//
// Errors: KindInvalid for an invalid key; KindInternal when the store fails.
func (s *Service) Counters(ctx context.Context, env, flag, treatment, control string, since, now time.Time) (guardrails.Counters, error) {
	r, err := s.report(ctx, env, flag, treatment, control, since, now)
	if err != nil {
		return guardrails.Counters{}, err
	}
	c := r.counters
	c.Treatment.LastMetric = r.treatment.LastAction.end()
	c.Control.LastMetric = r.control.LastAction.end()
	return c, nil
}

// RejectReasons returns the rejected actions of flag's variant in env by
// reason code, over the minutes from since (the zero time: all data) to
// the watermark at now: what a chart of a variant's rejects shows.
//
// Errors: KindInvalid for an invalid key; KindInternal when the store fails.
func (s *Service) RejectReasons(ctx context.Context, env, flag, variant string, since, now time.Time) (map[string]int64, error) {
	for _, k := range []string{env, flag, variant} {
		if !flags.ValidKey(k) {
			return nil, solstice.Invalid("invalid reject reasons query", solstice.FieldError{Pointer: "/", Message: fmt.Sprintf("%q %s", k, keyRule)})
		}
	}
	wm, _, err := s.watermark(ctx, env, now)
	if err != nil || wm == 0 {
		return map[string]int64{}, err
	}
	var from Minute
	if !since.IsZero() {
		from = ceilMinute(since)
	}
	r, err := s.store.RejectReasons(ctx, env, flag, variant, from, wm)
	if err != nil {
		return nil, fmt.Errorf("sum the reject reasons of %s/%s/%s: %w", env, flag, variant, err)
	}
	return r, nil
}

// Source is the service seen as the guardrails' CounterSource.
type Source struct{ s *Service }

var _ guardrails.CounterSource = Source{}

// Source returns the service as a guardrails.CounterSource, reading the
// service's clock.
func (s *Service) Source() Source { return Source{s} }

// Counters implements guardrails.CounterSource: Service.Counters for the
// rule's environment, flag and variants, with LastMetric the newest window
// in which the rule's metric grew: actions for the reject rate, the
// denominator for a counter ratio, and for D1 retention the newest activity
// of the environment (activity is reported per player, not per variant, so
// both arms share it).
func (src Source) Counters(ctx context.Context, r guardrails.Rule, since time.Time) (guardrails.Counters, error) {
	rep, err := src.s.report(ctx, r.Environment, r.Flag, r.Treatment, r.Control, since, src.s.clock.Now())
	if err != nil {
		return guardrails.Counters{}, err
	}
	c := rep.counters
	for _, a := range []struct {
		arm  *guardrails.Arm
		sums Sums
	}{{&c.Treatment, rep.treatment}, {&c.Control, rep.control}} {
		switch r.Metric.Kind {
		case guardrails.KindCounterRatio:
			a.arm.LastMetric = a.sums.LastCustom[r.Metric.Denominator].end()
		case guardrails.KindD1Retention:
			a.arm.LastMetric = rep.lastActivity.end()
		default:
			a.arm.LastMetric = a.sums.LastAction.end()
		}
	}
	return c, nil
}

var _ guardrails.CounterHistory = Source{}

// CountersAt implements guardrails.CounterHistory: the counters that
// Counters returns, cut at each of the times at (rounded down to the
// minute, and not past the watermark), for charts of a test over time.
// The minutes between two cuts are summed once and added up, so a series
// costs about as much as one Counters call plus one Store.Sums per cut.
// LastMetric is chosen as Counters chooses it, among the data before each
// cut. The counters at the watermark are those Counters returns.
//
// Errors: KindInvalid for invalid keys or times out of order; KindInternal
// when the store fails.
func (src Source) CountersAt(ctx context.Context, r guardrails.Rule, since time.Time, at []time.Time) ([]guardrails.Counters, error) {
	s := src.s
	env, flag := r.Environment, r.Flag
	if err := checkQuery(env, flag, r.Treatment, r.Control); err != nil {
		return nil, err
	}
	for i := 1; i < len(at); i++ {
		if at[i].Before(at[i-1]) {
			return nil, solstice.Invalid("invalid counters query", solstice.FieldError{Pointer: fmt.Sprintf("/at/%d", i), Message: "must not be before the time before it"})
		}
	}
	now := s.clock.Now()
	var from Minute
	start := since
	if !since.IsZero() {
		from = ceilMinute(since)
		start = from.Time()
	}
	out := make([]guardrails.Counters, len(at))
	for i := range out {
		out[i].Since = start
	}
	wm, reporting, err := s.watermark(ctx, env, now)
	if err != nil {
		return nil, err
	}
	if wm == 0 {
		return out, nil
	}
	type armState struct {
		arm      func(c *guardrails.Counters) *guardrails.Arm
		variant  string
		sums     Sums                 // of the minutes [from, prev)
		retained guardrails.Retention // of the players first exposed before closed
		closed   Minute
	}
	arms := []*armState{
		{arm: func(c *guardrails.Counters) *guardrails.Arm { return &c.Treatment }, variant: r.Treatment},
		{arm: func(c *guardrails.Counters) *guardrails.Arm { return &c.Control }, variant: r.Control},
	}
	variants := []string{r.Treatment}
	if r.Control != "" {
		variants = append(variants, r.Control)
	}
	prev := from
	for i, t := range at {
		cut := max(min(MinuteOf(t), wm), prev)
		if cut > prev {
			sums, err := s.store.Sums(ctx, env, flag, variants, prev, cut)
			if err != nil {
				return nil, fmt.Errorf("sum the counters of %s/%s: %w", env, flag, err)
			}
			for _, a := range arms {
				if a.variant != "" {
					addSums(&a.sums, sums[a.variant])
				}
			}
			prev = cut
		}
		c := &out[i]
		c.Watermark = cut.Time()
		if since.IsZero() {
			var first Minute
			for _, a := range arms {
				if f := a.sums.First; f != 0 && (first == 0 || f < first) {
					first = f
				}
			}
			if first != 0 {
				c.Since = first.Time()
			}
		}
		var lastActivity Minute
		for _, sv := range reporting.Servers {
			if sv.LastActivity < cut {
				lastActivity = max(lastActivity, sv.LastActivity)
			}
		}
		// A player first exposed in minute t is closed when t+48h ≤ cut.
		closedBefore := cut - Minute(guardrails.RetentionWindow/time.Minute) + 1
		for _, a := range arms {
			if a.variant == "" {
				continue
			}
			sums := a.sums
			sums.Custom = maps.Clone(a.sums.Custom)
			dst := a.arm(c)
			*dst = arm(sums)
			if lo := max(a.sums.First, a.closed); a.sums.First != 0 && lo < closedBefore {
				got, err := s.retention(ctx, dayKey{env: env, flag: flag, variant: a.variant}, lo, closedBefore, now)
				if err != nil {
					return nil, err
				}
				a.retained.Closed += got.Closed
				a.retained.Retained += got.Retained
				a.closed = closedBefore
			}
			dst.Retention = a.retained
			switch r.Metric.Kind {
			case guardrails.KindCounterRatio:
				dst.LastMetric = a.sums.LastCustom[r.Metric.Denominator].end()
			case guardrails.KindD1Retention:
				dst.LastMetric = lastActivity.end()
			default:
				dst.LastMetric = a.sums.LastAction.end()
			}
		}
	}
	return out, nil
}

// addSums adds the sums s of later minutes to dst.
func addSums(dst *Sums, s Sums) {
	dst.Accepted += s.Accepted
	dst.Rejected += s.Rejected
	dst.Exposures += s.Exposures
	dst.Sessions.Sessions += s.Sessions.Sessions
	dst.Sessions.N += s.Sessions.N
	dst.Sessions.X += s.Sessions.X
	dst.Sessions.NN += s.Sessions.NN
	dst.Sessions.XX += s.Sessions.XX
	dst.Sessions.NX += s.Sessions.NX
	if s.First != 0 && (dst.First == 0 || s.First < dst.First) {
		dst.First = s.First
	}
	dst.LastExposure = max(dst.LastExposure, s.LastExposure)
	dst.LastAction = max(dst.LastAction, s.LastAction)
	for name, v := range s.Custom {
		if dst.Custom == nil {
			dst.Custom, dst.LastCustom = map[string]int64{}, map[string]Minute{}
		}
		dst.Custom[name] += v
	}
	for name, m := range s.LastCustom {
		if dst.LastCustom == nil {
			dst.LastCustom = map[string]Minute{}
		}
		dst.LastCustom[name] = max(dst.LastCustom[name], m)
	}
}

// end returns the end of minute m, or the zero time for none.
func (m Minute) end() time.Time {
	if m == 0 {
		return time.Time{}
	}
	return (m + 1).Time()
}

// report is a Counters answer with what LastMetric may be chosen from.
type report struct {
	counters           guardrails.Counters
	treatment, control Sums
	lastActivity       Minute
}

// checkQuery returns a KindInvalid error for invalid keys of a counters
// query.
func checkQuery(env, flag, treatment, control string) error {
	var fields []solstice.FieldError
	for _, f := range []struct{ name, v string }{{"environment", env}, {"flag", flag}, {"treatment", treatment}} {
		if !flags.ValidKey(f.v) {
			fields = append(fields, solstice.FieldError{Pointer: "/" + f.name, Message: keyRule})
		}
	}
	if control != "" && (!flags.ValidKey(control) || control == treatment) {
		fields = append(fields, solstice.FieldError{Pointer: "/control", Message: keyRule + ", other than the treatment"})
	}
	if len(fields) > 0 {
		return solstice.Invalid("invalid counters query", fields...)
	}
	return nil
}

func (s *Service) report(ctx context.Context, env, flag, treatment, control string, since, now time.Time) (report, error) {
	if err := checkQuery(env, flag, treatment, control); err != nil {
		return report{}, err
	}

	rep := report{counters: guardrails.Counters{Since: since}}
	if !since.IsZero() {
		rep.counters.Since = ceilMinute(since).Time()
	}
	wm, reporting, err := s.watermark(ctx, env, now)
	if err != nil || wm == 0 {
		return rep, err
	}
	rep.counters.Watermark = wm.Time()
	var from Minute
	if !since.IsZero() {
		from = ceilMinute(since)
	}
	variants := []string{treatment}
	if control != "" {
		variants = append(variants, control)
	}
	sums, err := s.store.Sums(ctx, env, flag, variants, from, wm)
	if err != nil {
		return report{}, fmt.Errorf("sum the counters of %s/%s: %w", env, flag, err)
	}
	rep.treatment, rep.control = sums[treatment], sums[control]
	if since.IsZero() {
		// A first test counts from the first data of either arm.
		first := rep.treatment.First
		if f := rep.control.First; f != 0 && (first == 0 || f < first) {
			first = f
		}
		from = first
		if first != 0 {
			rep.counters.Since = first.Time()
		}
	}
	// A player first exposed in minute t is closed when t+48h ≤ watermark.
	closedBefore := wm - Minute(guardrails.RetentionWindow/time.Minute) + 1
	for _, a := range []struct {
		arm     *guardrails.Arm
		variant string
		sums    Sums
	}{{&rep.counters.Treatment, treatment, rep.treatment}, {&rep.counters.Control, control, rep.control}} {
		if a.variant == "" {
			continue
		}
		*a.arm = arm(a.sums)
		lo := max(from, a.sums.First)
		if a.sums.First == 0 || lo >= closedBefore {
			continue
		}
		a.arm.Retention, err = s.retention(ctx, dayKey{env: env, flag: flag, variant: a.variant}, lo, closedBefore, now)
		if err != nil {
			return report{}, err
		}
	}
	for _, sv := range reporting.Servers {
		if sv.LastActivity < wm {
			rep.lastActivity = max(rep.lastActivity, sv.LastActivity)
		}
	}
	return rep, nil
}

// arm converts a variant's sums.
func arm(s Sums) guardrails.Arm {
	a := guardrails.Arm{
		Exposures: s.Exposures,
		Actions:   s.Accepted + s.Rejected,
		Rejects:   s.Rejected,
		Sessions: guardrails.SessionSums{
			Sessions: s.Sessions.Sessions, N: s.Sessions.N, X: s.Sessions.X,
			NN: s.Sessions.NN, XX: s.Sessions.XX, NX: s.Sessions.NX,
		},
		LastExposure: s.LastExposure.end(),
	}
	if len(s.Custom) > 0 {
		a.Custom = s.Custom
	}
	return a
}

// retention counts D1 retention of the players first exposed to k's variant
// in the minutes [lo, hi), day by day. The answer for a whole day that no
// data can change any more (its activity is older than MaxAge) is kept in
// memory and not computed again.
func (s *Service) retention(ctx context.Context, k dayKey, lo, hi Minute, now time.Time) (guardrails.Retention, error) {
	var total guardrails.Retention
	for d := lo.Day(); d <= (hi - 1).Day(); d++ {
		dayStart, dayEnd := Minute(d*minutesPerDay), Minute((d+1)*minutesPerDay)
		from, to := max(lo, dayStart), min(hi, dayEnd)
		// Exposures of day d arrive until its end + MaxAge, the activity
		// that decides them (days d+1 and d+2) until d+3 + MaxAge.
		final := from == dayStart && to == dayEnd &&
			!now.Before(Minute((d+3)*minutesPerDay).Time().Add(MaxAge+finalMargin))
		k.day = d
		if final {
			s.cacheMu.Lock()
			r, ok := s.retained[k]
			s.cacheMu.Unlock()
			if ok {
				total.Closed += r.Closed
				total.Retained += r.Retained
				continue
			}
		}
		r, err := s.retentionOfDay(ctx, k, from, to)
		if err != nil {
			return guardrails.Retention{}, err
		}
		if final {
			s.cacheMu.Lock()
			if len(s.retained) >= maxCachedDays {
				clear(s.retained)
			}
			s.retained[k] = r
			s.cacheMu.Unlock()
		}
		total.Closed += r.Closed
		total.Retained += r.Retained
	}
	return total, nil
}

// retentionOfDay counts the players first exposed in [from, to), minutes
// of day k.day, and those of them retained: a player first exposed in
// minute t of the day (0 to 1439) is retained if active in [t+24h, t+48h),
// that is, if their last activity of the next day is at minute t or later,
// or their first activity of the day after is before minute t.
func (s *Service) retentionOfDay(ctx context.Context, k dayKey, from, to Minute) (guardrails.Retention, error) {
	cohort, err := s.store.Cohort(ctx, k.env, k.flag, k.variant, from, to)
	if err != nil {
		return guardrails.Retention{}, fmt.Errorf("read the cohort of %s/%s/%s on day %d: %w", k.env, k.flag, k.variant, k.day, err)
	}
	if len(cohort) == 0 {
		return guardrails.Retention{}, nil
	}
	players := make([]uint32, len(cohort))
	for i, e := range cohort {
		players[i] = e.Player
	}
	slices.Sort(players)
	players = slices.Compact(players)
	active, err := s.store.ActiveDays(ctx, k.env, []int64{k.day + 1, k.day + 2}, players)
	if err != nil {
		return guardrails.Retention{}, fmt.Errorf("read the activity of %s after day %d: %w", k.env, k.day, err)
	}
	type days struct {
		next, after *PlayerDay
	}
	byPlayer := make(map[uint32]days, len(active))
	for i := range active {
		a := &active[i]
		d := byPlayer[a.Player]
		if a.Day == k.day+1 {
			d.next = a
		} else {
			d.after = a
		}
		byPlayer[a.Player] = d
	}
	r := guardrails.Retention{Closed: int64(len(cohort))}
	for _, e := range cohort {
		t := int16(int64(e.Minute) - k.day*minutesPerDay) //nolint:gosec // a minute of day k.day, 0 to 1439
		d := byPlayer[e.Player]
		if (d.next != nil && d.next.Last >= t) || (d.after != nil && d.after.First < t) {
			r.Retained++
		}
	}
	return r, nil
}
