package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/time/rate"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/store/storetest"
	"github.com/solsticehq/solstice/telemetry"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// at parses an RFC 3339 time.
func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// newService returns a service on a fresh SQLite database with the default
// environments, reading c.
func newService(t *testing.T, c *clock, opts ...telemetry.Option) *telemetry.Service {
	t.Helper()
	db := storetest.Open(t)
	if err := flags.NewService(db).EnsureDefaultEnvironments(context.Background()); err != nil {
		t.Fatal(err)
	}
	return telemetry.New(db, append([]telemetry.Option{telemetry.WithClock(c)}, opts...)...)
}

func ingest(t *testing.T, s *telemetry.Service, b telemetry.Batch) telemetry.Result {
	t.Helper()
	r, err := s.Ingest(context.Background(), "production", b)
	if err != nil {
		t.Fatalf("Ingest(%s): %v", b.BatchID, err)
	}
	return r
}

func counters(t *testing.T, s *telemetry.Service, since, now time.Time) guardrails.Counters {
	t.Helper()
	c, err := s.Counters(context.Background(), "production", "winter-drops", "festival", "control", since, now)
	if err != nil {
		t.Fatalf("Counters: %v", err)
	}
	return c
}

func TestIngestCountsABatchOnce(t *testing.T) {
	c := &clock{t: now}
	s := newService(t, c)
	b := validBatch()
	b.Through = "2026-03-01T12:30:00Z"
	if r := ingest(t, s, b); r.Duplicate || r.NewExposures != 2 {
		t.Fatalf("first ingest = %+v, want not a duplicate with 2 new exposures", r)
	}
	want := guardrails.Counters{
		Since:     at("2026-03-01T12:29:00Z"),
		Watermark: at("2026-03-01T12:30:00Z"),
		Treatment: guardrails.Arm{
			Exposures: 2, Actions: 100, Rejects: 10,
			Custom:       map[string]int64{"matchmaking": 5, "failed_matchmaking": 1},
			Sessions:     guardrails.SessionSums{Sessions: 2, N: 30, X: 4, NN: 500, XX: 10, NX: 70},
			LastExposure: at("2026-03-01T12:30:00Z"), LastMetric: at("2026-03-01T12:30:00Z"),
		},
		Control: guardrails.Arm{Actions: 100, LastMetric: at("2026-03-01T12:30:00Z")},
	}
	if diff := cmp.Diff(want, counters(t, s, time.Time{}, now)); diff != "" {
		t.Fatalf("counters after one batch (-want +got):\n%s", diff)
	}

	reasons, err := s.RejectReasons(context.Background(), "production", "winter-drops", "festival", time.Time{}, now)
	if diff := cmp.Diff(map[string]int64{"cooldown": 8, "anti-cheat:speed": 2}, reasons); err != nil || diff != "" {
		t.Errorf("RejectReasons: %v (-want +got):\n%s", err, diff)
	}

	// The same batch again, re-encoded (another time zone, the same
	// instants): acknowledged, not counted.
	again := validBatch()
	again.Through = "2026-03-01T13:30:00+01:00"
	again.Windows[0].Exposures[0].At = "2026-03-01T13:29:10+01:00"
	if r := ingest(t, s, again); !r.Duplicate || r.NewExposures != 0 {
		t.Errorf("repeat = %+v, want a duplicate", r)
	}
	// Another batch under the same id: a conflict, and nothing counted.
	other := validBatch()
	other.Windows[1].Accepted = 101
	_, err = s.Ingest(context.Background(), "production", other)
	if got := solstice.ErrorKind(err); got != solstice.KindConflict {
		t.Errorf("same id, other content: %v (kind %q), want %q", err, got, solstice.KindConflict)
	}
	if diff := cmp.Diff(want, counters(t, s, time.Time{}, now)); diff != "" {
		t.Errorf("counters after a repeat and a conflict (-want +got):\n%s", diff)
	}
}

func TestConcurrentRepeatsCountOnce(t *testing.T) {
	c := &clock{t: now}
	s := newService(t, c)
	b := validBatch()
	b.Through = "2026-03-01T12:30:00Z"
	const n = 8
	results := make([]telemetry.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i], errs[i] = s.Ingest(context.Background(), "production", b) })
	}
	wg.Wait()
	firsts := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("ingest %d: %v", i, errs[i])
		}
		if !results[i].Duplicate {
			firsts++
		}
	}
	if firsts != 1 {
		t.Errorf("%d of %d concurrent ingests of one batch counted it, want 1", firsts, n)
	}
	got := counters(t, s, time.Time{}, now)
	if got.Treatment.Actions != 100 || got.Treatment.Exposures != 2 || got.Control.Actions != 100 {
		t.Errorf("counters after %d concurrent repeats: %+v, want the batch counted once", n, got)
	}
}

func TestInvalidBatchChangesNothing(t *testing.T) {
	c := &clock{t: now}
	s := newService(t, c)
	b := validBatch()
	b.Through = "2026-03-01T12:30:00Z"
	b.Windows[1].Variant = "Control" // one bad window among good ones
	_, err := s.Ingest(context.Background(), "production", b)
	if got := solstice.ErrorKind(err); got != solstice.KindInvalid {
		t.Fatalf("Ingest(invalid) = %v, want %q", err, solstice.KindInvalid)
	}
	if w, err := s.Watermark(context.Background(), "production"); err != nil || !w.IsZero() {
		t.Errorf("watermark after an invalid batch = %v, %v; want none", w, err)
	}
	// Nothing was recorded, not even the batch id: the corrected batch
	// counts.
	b.Windows[1].Variant = "control"
	if r := ingest(t, s, b); r.Duplicate {
		t.Error("the corrected batch was taken for a repeat of the invalid one")
	}
	if got := counters(t, s, time.Time{}, now); got.Control.Actions != 100 {
		t.Errorf("control actions = %d, want 100", got.Control.Actions)
	}
}

// window returns a one-window batch of server srv.
func window(id, srv, start, variant string, accepted int64, exposed ...string) telemetry.Batch {
	w := telemetry.Window{Start: start, Flag: "winter-drops", Variant: variant, Accepted: accepted}
	for _, p := range exposed {
		w.Exposures = append(w.Exposures, telemetry.PlayerEvent{Player: p, At: start})
	}
	return telemetry.Batch{BatchID: id, ServerID: srv, Windows: []telemetry.Window{w}}
}

func TestOutOfOrderWindows(t *testing.T) {
	c := &clock{t: at("2026-03-01T12:10:05Z")}
	s := newService(t, c)
	ingest(t, s, window("b2", "gs-1", "2026-03-01T12:09:00Z", "festival", 5, "p-1"))
	// An older window, and an earlier exposure of a player already seen,
	// arrive late: the window counts, the player's first exposure stays
	// the one recorded first.
	r := ingest(t, s, window("b1", "gs-1", "2026-03-01T12:02:00Z", "festival", 7, "p-1", "p-2"))
	if r.NewExposures != 1 {
		t.Errorf("late batch: %d new exposures, want 1 (p-2; p-1 was exposed already)", r.NewExposures)
	}
	got := counters(t, s, time.Time{}, c.Now())
	if got.Treatment.Actions != 12 || got.Treatment.Exposures != 2 {
		t.Errorf("treatment = %+v, want 12 actions and 2 exposures", got.Treatment)
	}
	if w := at("2026-03-01T12:10:00Z"); !got.Watermark.Equal(w) || !got.Since.Equal(at("2026-03-01T12:02:00Z")) {
		t.Errorf("counted [%v, %v), want [12:02, %v): the late window does not move the server's end back", got.Since, got.Watermark, w)
	}
}

func TestWatermarkWaitsForEveryReportingServer(t *testing.T) {
	c := &clock{t: at("2026-03-01T12:10:30Z")}
	s := newService(t, c)
	ctx := context.Background()
	watermark := func() time.Time {
		t.Helper()
		w, err := s.Watermark(ctx, "production")
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	// Server a has delivered up to 12:10, server b (late) up to 12:05.
	for m := range 10 {
		ingest(t, s, window(fmt.Sprintf("a-%d", m), "gs-a", fmt.Sprintf("2026-03-01T12:%02d:00Z", m), "festival", 1))
	}
	for m := range 5 {
		ingest(t, s, window(fmt.Sprintf("b-%d", m), "gs-b", fmt.Sprintf("2026-03-01T12:%02d:00Z", m), "festival", 10))
	}
	if w := watermark(); !w.Equal(at("2026-03-01T12:05:00Z")) {
		t.Fatalf("watermark = %v, want 12:05, the late server's end", w)
	}
	got := counters(t, s, time.Time{}, c.Now())
	if got.Treatment.Actions != 5*1+5*10 {
		t.Errorf("actions = %d, want 55: only the minutes before 12:05, of both servers", got.Treatment.Actions)
	}

	// b catches up.
	for m := 5; m < 10; m++ {
		ingest(t, s, window(fmt.Sprintf("b-%d", m), "gs-b", fmt.Sprintf("2026-03-01T12:%02d:00Z", m), "festival", 10))
	}
	if w := watermark(); !w.Equal(at("2026-03-01T12:10:00Z")) {
		t.Errorf("watermark after b caught up = %v, want 12:10", w)
	}
	if got := counters(t, s, time.Time{}, c.Now()); got.Treatment.Actions != 110 {
		t.Errorf("actions = %d, want 110", got.Treatment.Actions)
	}

	// b stops reporting; a goes on. After the active period b no longer
	// holds the watermark.
	for m := 10; m < 20; m++ {
		c.set(at(fmt.Sprintf("2026-03-01T12:%02d:30Z", m+1)))
		ingest(t, s, window(fmt.Sprintf("a-%d", m), "gs-a", fmt.Sprintf("2026-03-01T12:%02d:00Z", m), "festival", 1))
		want := at("2026-03-01T12:10:00Z")
		if c.Now().Sub(at("2026-03-01T12:10:30Z")) > telemetry.DefaultActiveServers {
			want = at(fmt.Sprintf("2026-03-01T12:%02d:00Z", m+1))
		}
		if w := watermark(); !w.Equal(want) {
			t.Errorf("at %v: watermark = %v, want %v", c.Now(), w, want)
		}
	}
	// A new server whose first batch is old does not move the watermark
	// back: its data counts as late data.
	ingest(t, s, window("c-0", "gs-c", "2026-03-01T12:03:00Z", "festival", 1000))
	if w := watermark(); !w.Equal(at("2026-03-01T12:20:00Z")) {
		t.Errorf("watermark after a lagging newcomer = %v, want it to stay at 12:20", w)
	}
}

func TestHeartbeatMovesAnIdleServersWatermark(t *testing.T) {
	c := &clock{t: at("2026-03-01T12:10:30Z")}
	s := newService(t, c)
	ingest(t, s, window("a-0", "gs-a", "2026-03-01T12:00:00Z", "festival", 1))
	ingest(t, s, window("b-0", "gs-b", "2026-03-01T12:09:00Z", "festival", 1))
	ingest(t, s, telemetry.Batch{BatchID: "a-hb", ServerID: "gs-a", Through: "2026-03-01T12:10:00Z"})
	if w, _ := s.Watermark(context.Background(), "production"); !w.Equal(at("2026-03-01T12:10:00Z")) {
		t.Errorf("watermark = %v, want 12:10 once the idle server said it has nothing more", w)
	}
}

func TestD1Retention(t *testing.T) {
	c := &clock{}
	s := newService(t, c)
	n := 0
	send := func(b telemetry.Batch) {
		t.Helper()
		n++
		b.BatchID, b.ServerID = fmt.Sprintf("b-%d", n), "gs-1"
		ingest(t, s, b)
	}
	expose := func(when string, variant string, players ...string) {
		t.Helper()
		c.set(at(when).Add(30 * time.Second))
		send(window("", "", at(when).Truncate(time.Minute).Format(time.RFC3339), variant, 0, players...))
	}
	active := func(when string, players ...string) {
		t.Helper()
		c.set(at(when).Add(20 * time.Second))
		b := telemetry.Batch{}
		for _, p := range players {
			b.Activity = append(b.Activity, telemetry.PlayerEvent{Player: p, At: when})
		}
		send(b)
	}
	// Cohort of 2026-03-01 23:50 (t): D1 is [2026-03-02 23:50, 2026-03-03 23:50).
	expose("2026-03-01T23:50:00Z", "festival", "early", "edge-in", "late-in", "edge-out", "same-day", "last-counts", "first-counts")
	expose("2026-03-01T23:50:00Z", "control", "c-1", "c-2")
	expose("2026-03-01T23:51:00Z", "festival", "a-minute-later") // closes a minute later
	active("2026-03-01T23:59:00Z", "same-day")                   // day 0: not a return
	active("2026-03-02T00:05:00Z", "early", "same-day")          // before t+24h
	expose("2026-03-02T00:10:00Z", "festival", "next-cohort")    // cohort of the next day
	active("2026-03-02T05:00:00Z", "last-counts")                // before t+24h...
	active("2026-03-02T23:49:59Z", "early")                      // one minute short
	active("2026-03-02T23:50:00Z", "edge-in", "c-1")             // exactly t+24h
	active("2026-03-02T23:55:00Z", "last-counts")                // ...and in the window: the day's last activity decides
	active("2026-03-03T00:10:00Z", "next-cohort")                // next-cohort's t+24h
	active("2026-03-03T05:00:00Z", "first-counts")               // in the window: the day's first activity decides...
	active("2026-03-03T23:49:00Z", "late-in")                    // the last minute of the window
	active("2026-03-03T23:50:00Z", "edge-out", "first-counts")   // t+48h: too late (first-counts returned at 05:00)
	send(telemetry.Batch{Through: "2026-03-03T23:51:00Z"})       // everything before 23:51 delivered

	// Closed at 23:50 (through 23:51 is ahead of the clock's minute): the
	// 23:50 cohort (t+48h ≤ watermark), not the 23:51 or 00:10 ones.
	got := counters(t, s, time.Time{}, c.Now())
	// Retained: edge-in, late-in, last-counts, first-counts; not early,
	// edge-out, same-day.
	want := guardrails.Retention{Closed: 7, Retained: 4}
	if got.Treatment.Retention != want {
		t.Errorf("treatment retention at %v = %+v, want %+v", got.Watermark, got.Treatment.Retention, want)
	}
	if w := (guardrails.Retention{Closed: 2, Retained: 1}); got.Control.Retention != w {
		t.Errorf("control retention = %+v, want %+v", got.Control.Retention, w)
	}

	// Later, the next day's cohort closes too.
	c.set(at("2026-03-04T00:12:00Z"))
	send(telemetry.Batch{Through: "2026-03-04T00:11:00Z"})
	got = counters(t, s, time.Time{}, c.Now())
	if w := (guardrails.Retention{Closed: 9, Retained: 5}); got.Treatment.Retention != w {
		t.Errorf("treatment retention at %v = %+v, want %+v", got.Watermark, got.Treatment.Retention, w)
	}
	// Only players first exposed from since on count.
	got = counters(t, s, at("2026-03-01T23:50:01Z"), c.Now())
	if w := (guardrails.Retention{Closed: 2, Retained: 1}); got.Treatment.Retention != w {
		t.Errorf("treatment retention since 23:50:01 = %+v, want %+v", got.Treatment.Retention, w)
	}
	// Long after, when no data can change them any more, whole days are
	// answered from memory, the same.
	c.set(at("2026-03-05T00:00:30Z"))
	send(telemetry.Batch{Through: "2026-03-05T00:00:00Z"})
	for range 2 {
		got = counters(t, s, time.Time{}, at("2026-03-09T00:00:00Z"))
		if w := (guardrails.Retention{Closed: 9, Retained: 5}); got.Treatment.Retention != w {
			t.Errorf("final treatment retention = %+v, want %+v", got.Treatment.Retention, w)
		}
		got = counters(t, s, at("2026-03-02T00:00:00Z"), at("2026-03-09T00:00:00Z"))
		if w := (guardrails.Retention{Closed: 1, Retained: 1}); got.Treatment.Retention != w {
			t.Errorf("final treatment retention of March 2 = %+v, want %+v", got.Treatment.Retention, w)
		}
	}
}

func TestSourceChoosesTheMetricsLastWindow(t *testing.T) {
	c := &clock{t: at("2026-03-01T12:10:30Z")}
	s := newService(t, c)
	b := window("b-0", "gs-1", "2026-03-01T12:03:00Z", "festival", 5, "p-1")
	b.Windows[0].Custom = map[string]int64{"matchmaking": 4}
	ingest(t, s, b)
	b = window("b-1", "gs-1", "2026-03-01T12:07:00Z", "festival", 5)
	b.Activity = []telemetry.PlayerEvent{{Player: "p-1", At: "2026-03-01T12:08:10Z"}}
	b.Through = "2026-03-01T12:10:00Z"
	ingest(t, s, b)
	rule := func(m guardrails.Metric) guardrails.Rule {
		return guardrails.Rule{Ref: guardrails.Ref{Environment: "production", Flag: "winter-drops", Key: "g"},
			Metric: m, Treatment: "festival", Control: "control"}
	}
	for _, tc := range []struct {
		metric guardrails.Metric
		want   time.Time
	}{
		{guardrails.RejectRate(), at("2026-03-01T12:08:00Z")},
		{guardrails.CounterRatio("failed_matchmaking", "matchmaking"), at("2026-03-01T12:04:00Z")},
		{guardrails.D1Retention(), at("2026-03-01T12:09:00Z")},
	} {
		got, err := s.Source().Counters(context.Background(), rule(tc.metric), time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if !got.Treatment.LastMetric.Equal(tc.want) || !got.Treatment.LastExposure.Equal(at("2026-03-01T12:04:00Z")) {
			t.Errorf("%s: LastMetric %v, LastExposure %v; want %v, 12:04", tc.metric, got.Treatment.LastMetric, got.Treatment.LastExposure, tc.want)
		}
	}
}

func TestCountersRejectsBadKeys(t *testing.T) {
	s := newService(t, &clock{t: now})
	_, err := s.Counters(context.Background(), "production", "winter-drops", "festival", "festival", time.Time{}, now)
	if fields := solstice.ErrorFields(err); len(fields) != 1 || fields[0].Pointer != "/control" {
		t.Errorf("Counters(treatment = control) = %v, want an error at /control", err)
	}
}

func TestRateLimit(t *testing.T) {
	c := &clock{t: now}
	s := newService(t, c, telemetry.WithRateLimit(2, 3))
	for i := range 3 {
		if err := s.Admit("key-a"); err != nil {
			t.Fatalf("batch %d of a burst of 3: %v", i+1, err)
		}
	}
	err := s.Admit("key-a")
	var rl *telemetry.RateLimitError
	if solstice.ErrorKind(err) != solstice.KindRateLimited || !errors.As(err, &rl) || rl.RetryAfter != 500*time.Millisecond {
		t.Fatalf("4th batch: %v, want rate limited, retry after 500ms", err)
	}
	if err := s.Admit("key-b"); err != nil {
		t.Errorf("another key is limited by key-a's batches: %v", err)
	}
	c.set(now.Add(500 * time.Millisecond))
	if err := s.Admit("key-a"); err != nil {
		t.Errorf("after the wait: %v", err)
	}
	if err := s.Admit("key-a"); err == nil {
		t.Error("a second batch right after the wait was admitted")
	}
	unlimited := newService(t, c, telemetry.WithRateLimit(rate.Inf, 0))
	for range 1000 {
		if err := unlimited.Admit("k"); err != nil {
			t.Fatal(err)
		}
	}
}
