package guardrails_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/store/storetest"
	"github.com/solsticehq/solstice/telemetry"
)

// over returns a job and a service over the rig's database that read their
// counters from src, through WithShares as solstice serve does.
func (r *rig) over(src guardrails.CounterSource) (*guardrails.Job, *guardrails.Service) {
	job := guardrails.NewJob(r.db, guardrails.WithShares(src, r.flags), r.db, guardrails.NewResponder(r.db, r.flags),
		guardrails.WithClock(r.clock()), guardrails.WithLogger(slog.New(slog.DiscardHandler)))
	return job, guardrails.NewService(r.db, r.flags, job)
}

// exposed returns n players named after the variant and the minute,
// exposed at the window's start.
func exposed(variant string, at time.Time, n int) []telemetry.PlayerEvent {
	out := make([]telemetry.PlayerEvent, n)
	for i := range out {
		out[i] = telemetry.PlayerEvent{Player: fmt.Sprintf("%s-%d-%d", variant, at.Unix(), i), At: at.Format(time.RFC3339)}
	}
	return out
}

// TestSeriesFromTelemetry reports minute by minute to the telemetry
// service, ticking the job after each minute until it rolls the flag back,
// and checks the series against what the job decided: each point counts
// exactly the data before it, the point at the trip's watermark is the
// trip's own evaluation, the last point is Status's, and the rollback is
// among the incidents at its time.
func TestSeriesFromTelemetry(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, db *store.DB) {
		r := newRig(t, db)
		ctx := solstice.WithActor(t.Context(), editor)
		tel := telemetry.New(db, telemetry.WithClock(r.clock()))
		job, svc := r.over(tel.Source())

		// 500 actions a minute in each arm; the control rejects 2%, the
		// treatment 2% for 20 minutes and 8% after that.
		const minutes = 40
		rejects := func(m int) (treatment, control int64) {
			if m < 20 {
				return 10, 10
			}
			return 40, 10
		}
		var trippedAt time.Time
		for m := range minutes {
			at := t0.Add(time.Duration(m) * time.Minute)
			r.now = at.Add(time.Minute + 10*time.Second)
			xT, xC := rejects(m)
			b := telemetry.Batch{BatchID: fmt.Sprint("b-", m), ServerID: "gs-1", SnapshotVersion: 1, Windows: []telemetry.Window{
				{Start: at.Format(time.RFC3339), Flag: "festival", Variant: "on", Accepted: 500 - xT, Rejected: map[string]int64{"cooldown": xT}, Exposures: exposed("on", at, 10)},
				{Start: at.Format(time.RFC3339), Flag: "festival", Variant: "off", Accepted: 500 - xC, Rejected: map[string]int64{"cooldown": xC}, Exposures: exposed("off", at, 10)},
			}}
			if _, err := tel.Ingest(ctx, "production", b); err != nil {
				t.Fatal(err)
			}
			if err := job.Tick(ctx, r.now); err != nil {
				t.Fatal(err)
			}
			if st, err := db.State(ctx, r.ref); err == nil && st.Phase == guardrails.PhaseTripped && trippedAt.IsZero() {
				trippedAt = r.now
			}
		}
		if trippedAt.IsZero() {
			t.Fatal("the job never tripped on a treatment rejecting four times as much")
		}

		s, err := svc.Series(ctx, r.ref, guardrails.SeriesOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !s.Since.Equal(t0) || !s.Watermark.Equal(t0.Add(minutes*time.Minute)) || s.State.Phase != guardrails.PhaseTripped {
			t.Errorf("series since %v, watermark %v, phase %s; want %v, %v, tripped", s.Since, s.Watermark, s.State.Phase, t0, t0.Add(minutes*time.Minute))
		}
		// Fewer minutes than the default 60 points: one point a minute.
		if len(s.Points) != minutes {
			t.Fatalf("%d points, want one per minute: %d", len(s.Points), minutes)
		}
		var sumT, sumC int64
		for i, p := range s.Points {
			xT, xC := rejects(i)
			sumT, sumC = sumT+xT, sumC+xC
			want := []int64{int64(500 * (i + 1)), sumT, int64(500 * (i + 1)), sumC, int64(10 * (i + 1))}
			got := []int64{p.Treatment.N, p.Treatment.X, p.Control.N, p.Control.X, p.Treatment.Exposures}
			if !p.Time.Equal(t0.Add(time.Duration(i+1)*time.Minute)) || !cmp.Equal(got, want) {
				t.Errorf("point %d at %v: n, x, n, x, exposures %v; want at %v %v", i, p.Time, got, t0.Add(time.Duration(i+1)*time.Minute), want)
			}
			if !p.Estimated || p.Limit == nil || *p.Limit != 1.1*p.Control.Rate {
				t.Errorf("point %d: estimated %v, limit %v; want an estimate and the limit 1.1 × %g", i, p.Estimated, p.Limit, p.Control.Rate)
			}
		}

		// The rollback, at the moment the job made it.
		var trip *guardrails.Record
		for i := range s.Incidents {
			if s.Incidents[i].Event == guardrails.EventTrip {
				trip = &s.Incidents[i]
			}
		}
		if trip == nil || !trip.Time.Equal(trippedAt) || trip.Action != guardrails.ActionRollback || trip.Verdict == nil {
			t.Fatalf("incidents %+v; want the rollback at %v", s.Incidents, trippedAt)
		}
		// The point at the watermark the job saw is the job's decision.
		var atTrip *guardrails.SeriesPoint
		for i := range s.Points {
			if s.Points[i].Time.Equal(trip.Verdict.Watermark) {
				atTrip = &s.Points[i]
			}
			if s.Points[i].Time.Before(trip.Verdict.Watermark) && s.Points[i].Status == guardrails.StatusRegression {
				t.Errorf("point %v, before the trip's data, is a regression", s.Points[i].Time)
			}
		}
		ev := trip.Verdict.Evidence
		if atTrip == nil {
			t.Fatalf("no point at the trip's watermark %v", trip.Verdict.Watermark)
		}
		if atTrip.Status != guardrails.StatusRegression || atTrip.Effect != ev.Effect || atTrip.Lower != ev.Lower || atTrip.PValue != ev.PValue || atTrip.Lower < 0 {
			t.Errorf("point at the trip: %+v; want the trip's evidence %+v, with its lower bound at or above 0", *atTrip, ev)
		}

		// The last point is what Status says now.
		d, err := svc.Status(ctx, r.ref)
		if err != nil {
			t.Fatal(err)
		}
		last, now := s.Points[len(s.Points)-1], d.Verdict.Evidence
		got := []any{last.Treatment, last.Control, last.Effect, last.Lower, last.Upper, last.LogE, last.PValue, last.Status}
		want := []any{now.Treatment, now.Control, now.Effect, now.Lower, now.Upper, now.LogE, now.PValue, d.Verdict.Status}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("the last point against Status (-want +got):\n%s", diff)
		}
		if s.Verdict.Evidence != d.Verdict.Evidence {
			t.Errorf("the series' verdict %+v, Status's %+v", s.Verdict.Evidence, d.Verdict.Evidence)
		}

		// Ten points: every fourth minute.
		s, err = svc.Series(ctx, r.ref, guardrails.SeriesOptions{Points: 10})
		if err != nil {
			t.Fatal(err)
		}
		var times []string
		for _, p := range s.Points {
			times = append(times, p.Time.Sub(t0).String())
		}
		wantTimes := []string{"4m0s", "8m0s", "12m0s", "16m0s", "20m0s", "24m0s", "28m0s", "32m0s", "36m0s", "40m0s"}
		if diff := cmp.Diff(wantTimes, times); diff != "" {
			t.Errorf("ten points (-want +got):\n%s", diff)
		}
	})
}

// TestCountersAt checks the telemetry's counters cut in time against the
// same counters read one cut at a time and against Counters, over three
// and a half days of hourly reports with custom counters and D1 retention,
// and counts the retention at two cuts by hand.
func TestCountersAt(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, db *store.DB) {
		r := newRig(t, db)
		ctx := t.Context()
		tel := telemetry.New(db, telemetry.WithClock(r.clock()))
		// Every hour five new players in each arm, at minute 0; 30 hours
		// later (in their day-1 window) players 0, 2 and 4 of off come
		// back, and 0 and 3 of on.
		const hours = 84
		player := func(variant string, h, i int) string { return fmt.Sprintf("%s-%d-%d", variant, h, i) }
		for h := range hours {
			at := t0.Add(time.Duration(h) * time.Hour)
			r.now = at.Add(time.Minute + 10*time.Second)
			b := telemetry.Batch{BatchID: fmt.Sprint("h-", h), ServerID: "gs-1", SnapshotVersion: 1}
			for _, v := range []string{"on", "off"} {
				w := telemetry.Window{Start: at.Format(time.RFC3339), Flag: "festival", Variant: v, Accepted: 90, Rejected: map[string]int64{"cooldown": 2},
					Custom: map[string]int64{"matchmaking": 20, "failed_matchmaking": int64(h % 3)}}
				for i := range 5 {
					w.Exposures = append(w.Exposures, telemetry.PlayerEvent{Player: player(v, h, i), At: at.Format(time.RFC3339)})
					if back := h - 30; back >= 0 && (v == "off" && i%2 == 0 || v == "on" && i%3 == 0) {
						b.Activity = append(b.Activity, telemetry.PlayerEvent{Player: player(v, back, i), At: at.Add(5 * time.Second).Format(time.RFC3339)})
					}
				}
				b.Windows = append(b.Windows, w)
			}
			if _, err := tel.Ingest(ctx, "production", b); err != nil {
				t.Fatal(err)
			}
		}
		wm := t0.Add((hours-1)*time.Hour + time.Minute)
		var cuts []time.Time
		for h := 3; h < hours; h += 3 {
			cuts = append(cuts, t0.Add(time.Duration(h)*time.Hour))
		}
		cuts = append(cuts, wm, wm.Add(time.Hour)) // the last is cut at the watermark
		src := tel.Source()
		base := guardrails.Rule{Ref: r.ref, Treatment: "on", Control: "off"}
		for _, metric := range []guardrails.Metric{guardrails.RejectRate(), guardrails.CounterRatio("failed_matchmaking", "matchmaking"), guardrails.D1Retention()} {
			rule := base
			rule.Metric = metric
			for _, since := range []time.Time{{}, t0.Add(90 * time.Minute)} {
				t.Run(fmt.Sprintf("%s since %v", metric, since.Format(time.Kitchen)), func(t *testing.T) {
					all, err := src.CountersAt(ctx, rule, since, cuts)
					if err != nil {
						t.Fatal(err)
					}
					if len(all) != len(cuts) {
						t.Fatalf("%d counters for %d cuts", len(all), len(cuts))
					}
					for i, at := range cuts {
						one, err := src.CountersAt(ctx, rule, since, []time.Time{at})
						if err != nil {
							t.Fatal(err)
						}
						if diff := cmp.Diff(one[0], all[i]); diff != "" {
							t.Errorf("cut %v: the series against the cut alone (-alone +series):\n%s", at, diff)
						}
					}
					now, err := src.Counters(ctx, rule, since)
					if err != nil {
						t.Fatal(err)
					}
					for _, last := range all[len(all)-2:] {
						if diff := cmp.Diff(now, last); diff != "" {
							t.Errorf("the cut at the watermark against Counters (-Counters +cut):\n%s", diff)
						}
					}
					if !since.IsZero() {
						return
					}
					// At 60 h, players first exposed in hours 0 to 12 are
					// closed; at the watermark, hours 0 to 35.
					at60 := all[60/3-1]
					for _, c := range []struct {
						name string
						got  guardrails.Counters
						want [2]guardrails.Retention
					}{
						{"60 h", at60, [2]guardrails.Retention{{Closed: 65, Retained: 26}, {Closed: 65, Retained: 39}}},
						{"the watermark", all[len(all)-1], [2]guardrails.Retention{{Closed: 180, Retained: 72}, {Closed: 180, Retained: 108}}},
					} {
						if got := [2]guardrails.Retention{c.got.Treatment.Retention, c.got.Control.Retention}; got != c.want {
							t.Errorf("retention at %s: %+v, want %+v", c.name, got, c.want)
						}
					}
					if at60.Treatment.Actions != 92*60 || !at60.Watermark.Equal(t0.Add(60*time.Hour)) || at60.Treatment.Custom["matchmaking"] != 20*60 {
						t.Errorf("at 60 h: %+v; want 60 hours of actions and custom counters, cut at 60 h", at60.Treatment)
					}
				})
			}
		}
		if _, err := src.CountersAt(ctx, base, time.Time{}, []time.Time{wm, t0}); !solstice.IsKind(err, solstice.KindInvalid) {
			t.Errorf("times out of order: %v, want invalid", err)
		}
	})
}

// linear is a CounterSource and CounterHistory whose counters grow
// linearly from since: every minute 100 actions in each arm, 4 rejects in
// the treatment and 2 in the control, and the given exposures.
type linear struct {
	since, watermark time.Time
	exposures        [2]int64 // per minute: treatment, control
	asked            []time.Time
}

func (l *linear) at(t time.Time) guardrails.Counters {
	m := int64(t.Sub(l.since) / time.Minute)
	return guardrails.Counters{Since: l.since, Watermark: t,
		Treatment: guardrails.Arm{Exposures: l.exposures[0] * m, Actions: 100 * m, Rejects: 4 * m, LastExposure: t, LastMetric: t},
		Control:   guardrails.Arm{Exposures: l.exposures[1] * m, Actions: 100 * m, Rejects: 2 * m, LastExposure: t, LastMetric: t},
	}
}

func (l *linear) Counters(context.Context, guardrails.Rule, time.Time) (guardrails.Counters, error) {
	return l.at(l.watermark), nil
}

// withoutHistory is l as a CounterSource only.
type withoutHistory struct{ l *linear }

func (w withoutHistory) Counters(ctx context.Context, r guardrails.Rule, since time.Time) (guardrails.Counters, error) {
	return w.l.Counters(ctx, r, since)
}

func (l *linear) CountersAt(_ context.Context, _ guardrails.Rule, _ time.Time, at []time.Time) ([]guardrails.Counters, error) {
	l.asked = append([]time.Time(nil), at...)
	out := make([]guardrails.Counters, len(at))
	for i, t := range at {
		out[i] = l.at(t)
	}
	return out, nil
}

func TestSeriesPoints(t *testing.T) {
	r := newRig(t, storetest.Open(t))
	ctx := t.Context()
	l := &linear{since: t0, watermark: t0.Add(120 * time.Minute), exposures: [2]int64{10, 10}}
	r.now = l.watermark.Add(time.Minute)
	_, svc := r.over(l)

	tests := []struct {
		points int
		want   []time.Duration // the first cuts after since, then the number of cuts
		n      int
	}{
		{0, []time.Duration{2 * time.Minute, 4 * time.Minute}, 60},
		{7, []time.Duration{18 * time.Minute, 35 * time.Minute, 52 * time.Minute}, 7}, // ⌈120·i/7⌉ minutes
		{500, []time.Duration{time.Minute, 2 * time.Minute}, 120},                     // one a minute at most
	}
	for _, tc := range tests {
		s, err := svc.Series(ctx, r.ref, guardrails.SeriesOptions{Points: tc.points})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Points) != tc.n || len(l.asked) != tc.n || !l.asked[len(l.asked)-1].Equal(l.watermark) {
			t.Fatalf("points %d: %d points from %d cuts ending %v; want %d ending at the watermark", tc.points, len(s.Points), len(l.asked), l.asked[len(l.asked)-1], tc.n)
		}
		for i, d := range tc.want {
			if got := l.asked[i].Sub(t0); got != d {
				t.Errorf("points %d: cut %d at %v after since, want %v", tc.points, i, got, d)
			}
		}
		if p := s.Points[len(s.Points)-1]; p.Treatment.N != 12000 || p.Control.X != 240 || p.Status != guardrails.StatusRegression {
			t.Errorf("points %d: last point %+v; want 12000 actions, 240 control rejects and a regression (4%% against 2%%)", tc.points, p)
		}
	}
	for _, bad := range []int{-1, 501} {
		_, err := svc.Series(ctx, r.ref, guardrails.SeriesOptions{Points: bad})
		if !solstice.IsKind(err, solstice.KindInvalid) || !hasPointer(err, "/points") {
			t.Errorf("points %d: %v; want invalid at /points", bad, err)
		}
	}
	if _, err := svc.Series(ctx, guardrails.Ref{Environment: "production", Flag: "festival", Key: "nope"}, guardrails.SeriesOptions{}); !solstice.IsKind(err, solstice.KindNotFound) {
		t.Errorf("an unknown guardrail: %v; want not found", err)
	}

	// A source that cannot cut in time gives the current point alone.
	_, plain := r.over(withoutHistory{l})
	s, err := plain.Series(ctx, r.ref, guardrails.SeriesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Points) != 1 || !s.Points[0].Time.Equal(l.watermark) || s.Points[0].Treatment.N != 12000 {
		t.Errorf("without history: %+v; want the current point alone", s.Points)
	}

	// Before any complete window: no points.
	l.watermark = time.Time{}
	if s, err = svc.Series(ctx, r.ref, guardrails.SeriesOptions{}); err != nil || len(s.Points) != 0 || s.Points == nil {
		t.Errorf("without data: %+v, %v; want an empty list of points", s.Points, err)
	}
}

// TestSeriesHeldPointsKeepTheirEstimate: a point held for a sample-ratio
// mismatch decides nothing, but still shows what the counts say.
func TestSeriesHeldPointsKeepTheirEstimate(t *testing.T) {
	r := newRig(t, storetest.Open(t))
	l := &linear{since: t0, watermark: t0.Add(30 * time.Minute), exposures: [2]int64{10, 30}}
	r.now = l.watermark
	_, svc := r.over(l)
	s, err := svc.Series(t.Context(), r.ref, guardrails.SeriesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	last := s.Points[len(s.Points)-1]
	// The same counts without the split's share are not checked for a
	// sample-ratio mismatch: that evaluation's evidence is the estimate.
	c := l.at(l.watermark)
	rule, err := svc.Get(t.Context(), r.ref)
	if err != nil {
		t.Fatal(err)
	}
	v := guardrails.Evaluate([]guardrails.Rule{rule.Rule}, map[guardrails.Ref]guardrails.Counters{r.ref: c}, l.watermark)[0]
	if last.Status != guardrails.StatusHold || last.Hold != guardrails.HoldSampleRatio {
		t.Fatalf("last point %s (%s); want held for a sample-ratio mismatch of 10 against 30 exposures a minute", last.Status, last.Hold)
	}
	if !last.Estimated || last.Effect != v.Evidence.Effect || last.Lower != v.Evidence.Lower || last.Upper != v.Evidence.Upper || last.PValue != v.Evidence.PValue {
		t.Errorf("held point %+v; want the estimate %+v", last, v.Evidence)
	}
}

// BenchmarkSeries measures a series of a reject-rate guardrail over a day
// of telemetry (a window a minute per arm) on SQLite: the cost of one
// chart page.
func BenchmarkSeries(b *testing.B) {
	db := storetest.Open(b)
	ctx := solstice.WithActor(b.Context(), editor)
	fl := flags.NewService(db)
	if err := fl.EnsureDefaultEnvironments(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := fl.CreateFlag(ctx, flags.NewFlag{Key: "festival", Name: "Festival", Type: flags.TypeBoolean}); err != nil {
		b.Fatal(err)
	}
	r := &rig{db: db, flags: fl, now: t0.Add(time.Minute), ref: guardrails.Ref{Environment: "production", Flag: "festival", Key: "reject-rate"}}
	start := t0.Add(-24 * time.Hour)
	tel := telemetry.New(db, telemetry.WithClock(r.clock()))
	for h := range 24 {
		batch := telemetry.Batch{BatchID: fmt.Sprint("h-", h), ServerID: "gs-1", SnapshotVersion: 1}
		for m := range 60 {
			at := start.Add(time.Duration(60*h+m) * time.Minute).Format(time.RFC3339)
			for _, v := range []string{"on", "off"} {
				batch.Windows = append(batch.Windows, telemetry.Window{Start: at, Flag: "festival", Variant: v, Accepted: 490, Rejected: map[string]int64{"cooldown": 10}})
			}
		}
		if _, err := tel.Ingest(b.Context(), "production", batch); err != nil {
			b.Fatal(err)
		}
	}
	_, svc := r.over(tel.Source())
	if _, err := svc.Put(ctx, guardrails.Rule{Ref: r.ref, Metric: guardrails.RejectRate(), Comparison: guardrails.RelativeToControl(0.1),
		Treatment: "on", Control: "off"}, 0); err != nil {
		b.Fatal(err)
	}
	for _, points := range []int{60, 500} {
		b.Run(fmt.Sprint("points=", points), func(b *testing.B) {
			for b.Loop() {
				s, err := svc.Series(b.Context(), r.ref, guardrails.SeriesOptions{Points: points})
				if err != nil || len(s.Points) != points {
					b.Fatalf("%d points, %v", len(s.Points), err)
				}
			}
		})
	}
}
