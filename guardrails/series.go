package guardrails

import (
	"context"
	"fmt"
	"time"

	"github.com/solsticehq/solstice"
)

// Series sizes.
const (
	// DefaultSeriesPoints is how many points a series has unless asked
	// for another number.
	DefaultSeriesPoints = 60
	// MaxSeriesPoints bounds the points of a series: each point is one
	// more range of counters to sum.
	MaxSeriesPoints = 500
	// seriesIncidents is how many incidents a series lists at most.
	seriesIncidents = 200
)

// CounterHistory is a CounterSource that can also cut a guardrail's
// counters before the watermark, for charts of a test over time. It is
// optional: Service.Series draws only the current point from a source
// without it.
type CounterHistory interface {
	// CountersAt returns r's counters over the data after since, as
	// CounterSource.Counters does, cut at each of the times at (in
	// ascending order) instead of at the watermark alone: the counters at
	// at[i] count only the data before at[i] (rounded down to the
	// source's resolution) and before the watermark, and their Watermark
	// is that cut. It returns one Counters per time, in the same order.
	CountersAt(ctx context.Context, r Rule, since time.Time, at []time.Time) ([]Counters, error)
}

// SeriesOptions configure Service.Series.
type SeriesOptions struct {
	// Points is the number of points (0: DefaultSeriesPoints; at most
	// MaxSeriesPoints). A test shorter than Points minutes has one point
	// per minute.
	Points int
}

// Series is a guardrail's current test over time, for charts: the
// counters of each arm, the metric's rates, the estimated effect with its
// always-valid confidence sequence and p-value at points evenly spaced
// from the start of the test's data to the watermark, evaluated as the job
// evaluates them; the guardrail's incidents, to mark when it acted; and
// its current state and verdict, as Status reports them.
type Series struct {
	Definition Definition `json:"definition"`
	State      State      `json:"state"`
	// Verdict is the verdict evaluated now, as Status returns it.
	Verdict Verdict `json:"verdict"`
	// Since and Watermark are the start and the end of the current test's
	// counted data (zero times before there is any).
	Since     time.Time `json:"since"`
	Watermark time.Time `json:"watermark"`
	// Points are the test's cumulative counters and their evaluation at
	// the cuts, oldest first; the last one is at the watermark. There are
	// none before a time window is complete.
	Points []SeriesPoint `json:"points"`
	// Incidents are the guardrail's incidents (of every test; the latest
	// seriesIncidents), newest first.
	Incidents []Record `json:"incidents"`
}

// SeriesPoint is one cut of a test's counters and its evaluation.
type SeriesPoint struct {
	// Time is the cut: the point counts the data from the series' Since
	// to Time.
	Time time.Time `json:"time"`
	// Status and Hold are what the job would have decided had the data
	// ended at Time. A data-late hold, which depends on when the job
	// looks, shows only in the series' current verdict.
	Status Status     `json:"status"`
	Hold   HoldReason `json:"hold,omitempty"`
	// Treatment and Control are the arms' counts and the metric's rate.
	Treatment ArmSample `json:"treatment"`
	Control   ArmSample `json:"control"`
	// Effect is the estimated harm beyond the margin or ceiling (see
	// Evidence.Effect), Lower and Upper its confidence sequence, LogE
	// and PValue the test's evidence. Estimated is false while the
	// counts carry no information (no trials in an arm, no variance):
	// Lower and Upper then span every possible effect.
	Estimated bool    `json:"estimated"`
	Effect    float64 `json:"effect"`
	Lower     float64 `json:"lower"`
	Upper     float64 `json:"upper"`
	LogE      float64 `json:"log_e"`
	PValue    float64 `json:"p_value"`
	// Limit is the treatment rate at the margin or the ceiling: for a
	// comparison with the control of a rate where lower is better
	// (1+margin)·(control rate), the highest it tolerates; for D1
	// retention (control rate) − margin, the lowest; for a ceiling, the
	// ceiling. It is absent while the control has no trials.
	Limit *float64 `json:"limit,omitempty"`
}

// Series returns the current test of the guardrail ref over time (see
// Series). It cuts the counters at the points through the job's
// CounterSource when that is a CounterHistory (or WithShares around one),
// and draws only the current point otherwise. Counters that cannot be
// read now show as a hold, with no points, as in Status.
//
// Errors: KindInvalid for a number of points out of range; KindNotFound
// for an unknown guardrail; the errors of reading its state, its
// incidents and its history of counters.
func (s *Service) Series(ctx context.Context, ref Ref, opts SeriesOptions) (Series, error) {
	n := opts.Points
	if n == 0 {
		n = DefaultSeriesPoints
	}
	if n < 1 || n > MaxSeriesPoints {
		return Series{}, solstice.Invalid("invalid series", solstice.FieldError{Pointer: "/points",
			Message: fmt.Sprintf("must be from 1 to %d, got %d", MaxSeriesPoints, opts.Points)})
	}
	d, err := s.store.GetGuardrail(ctx, ref)
	if err != nil {
		return Series{}, err
	}
	out, err := s.job.series(ctx, ref, s.clock.Now(), n)
	if err != nil {
		return Series{}, err
	}
	out.Definition = d
	incs, err := s.store.ListIncidents(ctx, IncidentFilter{Environment: ref.Environment, Flag: ref.Flag, Guardrail: ref.Key, Limit: seriesIncidents})
	if err != nil {
		return Series{}, fmt.Errorf("series of guardrail %s: list incidents: %w", ref, err)
	}
	if incs == nil {
		incs = []Record{}
	}
	out.Incidents = incs
	return out, nil
}

// series evaluates the current test of ref at n cuts up to the watermark,
// and now, as Report does. It returns KindNotFound for a guardrail the job
// does not watch.
func (j *Job) series(ctx context.Context, ref Ref, now time.Time, n int) (Series, error) {
	r, alpha, st, err := j.find(ctx, ref, now)
	if err != nil {
		return Series{}, err
	}
	out := Series{State: st, Points: []SeriesPoint{}}
	c, cerr := j.counters.Counters(ctx, r, st.TestStarted)
	out.Verdict = evaluate(r, alpha, c, cerr == nil, now, true)
	if cerr != nil {
		return out, nil // a hold, as Status shows it
	}
	out.Since, out.Watermark = c.Since, c.Watermark
	cuts := seriesCuts(c.Since, c.Watermark, n)
	if len(cuts) == 0 {
		return out, nil
	}
	history := []Counters{c}
	if at, ok := historyOf(j.counters); ok {
		if history, err = at(ctx, r, st.TestStarted, cuts); err != nil {
			return Series{}, fmt.Errorf("series of guardrail %s: read counters: %w", ref, err)
		}
	}
	var last time.Time
	for _, hc := range history {
		if !hc.Watermark.After(last) {
			continue // a cut the source rounded onto the one before
		}
		last = hc.Watermark
		out.Points = append(out.Points, seriesPoint(r, alpha, hc))
	}
	return out, nil
}

// seriesCuts returns up to n times evenly spaced after since, the last at
// watermark, on whole minutes after since (counters are kept per minute):
// a span shorter than n minutes gets a cut per minute. It returns none
// when there is no data or no span.
func seriesCuts(since, watermark time.Time, n int) []time.Time {
	if since.IsZero() || watermark.IsZero() || !watermark.After(since) {
		return nil
	}
	minutes := int64(watermark.Sub(since) / time.Minute)
	if minutes < 1 {
		return []time.Time{watermark}
	}
	n = int(min(int64(n), minutes))
	out := make([]time.Time, 0, n)
	for i := 1; i < n; i++ {
		m := (int64(i)*minutes + int64(n) - 1) / int64(n) // ⌈i·minutes/n⌉
		out = append(out, since.Add(time.Duration(m)*time.Minute))
	}
	return append(out, watermark)
}

// seriesPoint evaluates counters c as the job would have had the data
// ended at their watermark.
func seriesPoint(r Rule, alpha float64, c Counters) SeriesPoint {
	at := c.Watermark
	v := evaluate(r, alpha, c, true, at, true)
	if v.Status == StatusHold && v.Hold != HoldInconsistent {
		// NOTE: a hold decides nothing, so evaluate stops before the
		// estimate; the chart still shows what the counts say, with the
		// point marked held. The estimate is the decision's own code.
		rd := r.WithDefaults()
		s, _ := sampleOf(rd, c)
		est := v
		if rd.Comparison.Kind == KindAbsoluteCeiling {
			est = decideCeiling(est, rd, s, true)
		} else {
			est = decideRelative(est, rd, s, true)
		}
		v.Evidence = est.Evidence
	}
	ev := v.Evidence
	p := SeriesPoint{
		Time: at, Status: v.Status, Hold: v.Hold, Treatment: ev.Treatment, Control: ev.Control,
		Effect: ev.Effect, Lower: ev.Lower, Upper: ev.Upper, LogE: ev.LogE, PValue: ev.PValue,
	}
	// The relative test's bounds exist when its variance does; the
	// ceiling's are exact from the first trial on.
	p.Estimated = ev.Variance > 0
	if r.Comparison.Kind == KindAbsoluteCeiling {
		p.Estimated = ev.Treatment.N > 0
		limit := r.Comparison.Ceiling
		p.Limit = &limit
	} else if ev.Control.N > 0 {
		limit := (1 + r.Comparison.Margin) * ev.Control.Rate
		if r.Metric.Kind == KindD1Retention {
			limit = ev.Control.Rate - r.Comparison.Margin
		}
		p.Limit = &limit
	}
	return p
}

// countersAt reads counters cut at several times.
type countersAt func(ctx context.Context, r Rule, since time.Time, at []time.Time) ([]Counters, error)

// historyOf returns src's CountersAt, looking through WithShares (which
// then fills in the treatment share, as its Counters does), and whether
// src has one.
func historyOf(src CounterSource) (countersAt, bool) {
	switch s := src.(type) {
	case CounterHistory:
		return s.CountersAt, true
	case Shares:
		inner, ok := historyOf(s.src)
		if !ok {
			return nil, false
		}
		return func(ctx context.Context, r Rule, since time.Time, at []time.Time) ([]Counters, error) {
			cs, err := inner(ctx, r, since, at)
			if err != nil {
				return nil, err
			}
			fc, err := s.flags.GetConfig(ctx, r.Environment, r.Flag)
			if err != nil {
				return nil, fmt.Errorf("read the split of %s/%s: %w", r.Environment, r.Flag, err)
			}
			share := SplitShare(fc.Config, r.Treatment, r.Control)
			for i := range cs {
				if cs[i].TreatmentShare == 0 {
					cs[i].TreatmentShare = share
				}
			}
			return cs, nil
		}, true
	}
	return nil, false
}
