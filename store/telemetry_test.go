package store_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/time/rate"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/telemetry"
)

// The telemetry store is exercised through telemetry.Service, which builds
// the Writes it stores; these tests check what the store must guarantee on
// both databases: atomic, exactly-once batches under concurrency, first
// exposures counted once, dense player ids, merged activity, a watermark
// that only grows.

// tnow is the telemetry clock of these tests: data is from the minutes
// before it.
var tnow = time.Date(2025, 12, 21, 10, 30, 20, 0, time.UTC)

func telemetryService(db *store.DB) *telemetry.Service {
	return telemetry.New(db, telemetry.WithClock(solstice.ClockFunc(func() time.Time { return tnow })),
		telemetry.WithRateLimit(rate.Inf, 0))
}

// tbatch is a batch of server srv: for each variant of flags f0…f(nflags-1)
// one window at 10:29 with 10 accepted and 1 rejected action, exposing
// players.
func tbatch(id, srv string, nflags int, players ...string) telemetry.Batch {
	b := telemetry.Batch{BatchID: id, ServerID: srv, Through: "2025-12-21T10:30:00Z"}
	for f := range nflags {
		for _, v := range []string{"on", "off"} {
			w := telemetry.Window{Start: "2025-12-21T10:29:00Z", Flag: fmt.Sprintf("f%d", f), Variant: v,
				Accepted: 10, Rejected: map[string]int64{"cooldown": 1},
				Sessions: &telemetry.Sessions{Count: 1, Actions: 11, Rejects: 1, ActionsSquared: 121, RejectsSquared: 1, ActionsRejects: 11}}
			for _, p := range players {
				w.Exposures = append(w.Exposures, telemetry.PlayerEvent{Player: p + "-" + v, At: "2025-12-21T10:29:30Z"})
			}
			b.Windows = append(b.Windows, w)
		}
	}
	return b
}

func players(n int) []string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = fmt.Sprintf("player-%05d", i)
	}
	return ps
}

func TestTelemetryIngestAndSums(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		createEnv(t, db, "production")
		ctx := t.Context()
		s := telemetryService(db)
		b := tbatch("b-1", "gs-1", 2, "a", "b")
		b.Windows[0].Custom = map[string]int64{"matchmaking": 7}
		b.Windows[0].Rejected["anti-cheat:speed"] = 4
		b.Activity = []telemetry.PlayerEvent{{Player: "a-on", At: "2025-12-21T10:29:59Z"}}
		r, err := s.Ingest(ctx, "production", b)
		if err != nil {
			t.Fatal(err)
		}
		if r.Duplicate || r.NewExposures != 8 {
			t.Errorf("Ingest = %+v, want 8 new exposures (2 players × 2 flags × 2 variants)", r)
		}
		m := telemetry.MinuteOf(time.Date(2025, 12, 21, 10, 29, 0, 0, time.UTC))
		sums, err := db.Sums(ctx, "production", "f0", []string{"on", "off", "none"}, m, m+1)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]telemetry.Sums{
			"on": {Accepted: 10, Rejected: 5, Exposures: 2,
				Sessions: telemetry.SessionSums{Sessions: 1, N: 11, X: 1, NN: 121, XX: 1, NX: 11},
				Custom:   map[string]int64{"matchmaking": 7}, LastCustom: map[string]telemetry.Minute{"matchmaking": m},
				First: m, LastExposure: m, LastAction: m},
			"off": {Accepted: 10, Rejected: 1, Exposures: 2,
				Sessions: telemetry.SessionSums{Sessions: 1, N: 11, X: 1, NN: 121, XX: 1, NX: 11},
				First:    m, LastExposure: m, LastAction: m},
		}
		if diff := cmp.Diff(want, sums); diff != "" {
			t.Errorf("Sums (-want +got):\n%s", diff)
		}
		if got, _ := db.Sums(ctx, "production", "f0", []string{"on"}, m+1, m+10); len(got) != 0 {
			t.Errorf("Sums after the data = %+v, want none", got)
		}
		reasons, err := db.RejectReasons(ctx, "production", "f0", "on", m, m+1)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]int64{"cooldown": 1, "anti-cheat:speed": 4}, reasons); diff != "" {
			t.Errorf("RejectReasons (-want +got):\n%s", diff)
		}
		cohort, err := db.Cohort(ctx, "production", "f1", "off", m, m+1)
		if err != nil {
			t.Fatal(err)
		}
		if len(cohort) != 2 || cohort[0].Minute != m || cohort[1].Minute != m || cohort[0].Player == cohort[1].Player {
			t.Errorf("Cohort(f1/off) = %+v, want two players first exposed at %d", cohort, m)
		}

		// The repeat changes nothing; the same id with other content is a
		// conflict.
		if r, err := s.Ingest(ctx, "production", b); err != nil || !r.Duplicate {
			t.Errorf("repeat: %+v, %v; want a duplicate", r, err)
		}
		b.Windows[3].Accepted++
		_, err = s.Ingest(ctx, "production", b)
		wantKind(t, err, solstice.KindConflict)
		again, _ := db.Sums(ctx, "production", "f0", []string{"on", "off", "none"}, m, m+1)
		if diff := cmp.Diff(want, again); diff != "" {
			t.Errorf("Sums after a repeat and a conflict (-want +got):\n%s", diff)
		}

		_, err = s.Ingest(ctx, "nowhere", tbatch("b-1", "gs-1", 1))
		wantKind(t, err, solstice.KindNotFound)
	})
}

func TestTelemetryConcurrentBatches(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		createEnv(t, db, "production")
		ctx := t.Context()
		// Two services, as two replicas of the control plane would, each
		// grouping its own batches into transactions; the two copies of a
		// batch go to different ones.
		services := []*telemetry.Service{telemetryService(db), telemetryService(db)}
		// Eight servers report the same flags, minute and new players at
		// once, each batch twice: the counters add up every batch once, and
		// each player is first exposed once.
		const servers = 8
		ps := players(30)
		type outcome struct {
			r   telemetry.Result
			err error
		}
		out := make([]outcome, 2*servers)
		var wg sync.WaitGroup
		for i := range 2 * servers {
			wg.Go(func() {
				mine := slices.Clone(ps)
				slices.Reverse(mine[:3*(i%servers)]) // in different orders; a repeat in the same
				r, err := services[i/servers].Ingest(ctx, "production", tbatch(fmt.Sprintf("b-%d", i%servers), fmt.Sprintf("gs-%d", i%servers), 5, mine...))
				out[i] = outcome{r, err}
			})
		}
		wg.Wait()
		var fresh, dups int64
		for i, o := range out {
			if o.err != nil {
				t.Fatalf("batch %d: %v", i, o.err)
			}
			fresh += o.r.NewExposures
			if o.r.Duplicate {
				dups++
			}
		}
		if dups != servers || fresh != 30*5*2 {
			t.Errorf("%d duplicates and %d new exposures, want %d and %d", dups, fresh, servers, 30*5*2)
		}
		m := telemetry.MinuteOf(time.Date(2025, 12, 21, 10, 29, 0, 0, time.UTC))
		for f := range 5 {
			sums, err := db.Sums(ctx, "production", fmt.Sprintf("f%d", f), []string{"on", "off"}, m, m+1)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range []string{"on", "off"} {
				if got := sums[v]; got.Accepted != 10*servers || got.Rejected != servers || got.Exposures != 30 || got.Sessions.NN != 121*servers {
					t.Errorf("f%d/%s: %+v, want every server's counters once and 30 exposures", f, v, got)
				}
			}
		}
	})
}

func TestTelemetryPlayerIDsStayDense(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		createEnv(t, db, "production")
		ctx := t.Context()
		s := telemetryService(db)
		m := telemetry.MinuteOf(time.Date(2025, 12, 21, 10, 29, 0, 0, time.UTC))
		// Batches that only see known players must not use up ids (on
		// PostgreSQL, a conflicting insert would burn a sequence value).
		for i := range 5 {
			b := tbatch(fmt.Sprintf("b-%d", i), "gs-1", 1, "a", "b")
			b.Activity = []telemetry.PlayerEvent{{Player: "a-on", At: "2025-12-21T10:29:00Z"}, {Player: "a-off", At: "2025-12-21T10:29:00Z"}}
			if _, err := s.Ingest(ctx, "production", b); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Ingest(ctx, "production", tbatch("b-new", "gs-1", 1, "c")); err != nil {
			t.Fatal(err)
		}
		cohort, err := db.Cohort(ctx, "production", "f0", "on", m, m+1)
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint32
		for _, e := range cohort {
			ids = append(ids, e.Player)
		}
		slices.Sort(ids)
		// Ids 1–4 went to a-on, a-off, b-on, b-off; c-off and c-on are 5, 6.
		if len(ids) != 3 || ids[2] > 6 {
			t.Errorf("f0/on cohort ids = %v, want three ids, none above 6", ids)
		}
	})
}

func TestTelemetrySeenSetsSpanChunks(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		createEnv(t, db, "production")
		ctx := t.Context()
		s := telemetryService(db)
		// 70,000 players get ids through their activity, so that exposed
		// players fall in two chunks of 65,536 ids.
		const n = 70_000
		for i := 0; i < n; i += telemetry.MaxPlayerEvents {
			b := telemetry.Batch{BatchID: fmt.Sprintf("act-%d", i), ServerID: "gs-1"}
			for p := i; p < min(n, i+telemetry.MaxPlayerEvents); p++ {
				b.Activity = append(b.Activity, telemetry.PlayerEvent{Player: fmt.Sprintf("p%d", p), At: "2025-12-21T10:29:00Z"})
			}
			if _, err := s.Ingest(ctx, "production", b); err != nil {
				t.Fatal(err)
			}
		}
		expose := func(id string, ps ...string) telemetry.Result {
			t.Helper()
			b := telemetry.Batch{BatchID: id, ServerID: "gs-1", Windows: []telemetry.Window{{Start: "2025-12-21T10:29:00Z", Flag: "f", Variant: "on"}}}
			for _, p := range ps {
				b.Windows[0].Exposures = append(b.Windows[0].Exposures, telemetry.PlayerEvent{Player: p, At: "2025-12-21T10:29:00Z"})
			}
			r, err := s.Ingest(ctx, "production", b)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		if r := expose("e-1", "p5", "p69999", "p65540"); r.NewExposures != 3 {
			t.Errorf("first exposures = %d, want 3", r.NewExposures)
		}
		if r := expose("e-2", "p69999", "p5", "p65540", "p65541"); r.NewExposures != 1 {
			t.Errorf("second batch: %d new exposures, want 1 (p65541)", r.NewExposures)
		}
		m := telemetry.MinuteOf(time.Date(2025, 12, 21, 10, 29, 0, 0, time.UTC))
		cohort, err := db.Cohort(ctx, "production", "f", "on", m, m+1)
		if err != nil {
			t.Fatal(err)
		}
		chunks := map[uint32]int{}
		for _, e := range cohort {
			chunks[e.Player>>16]++
		}
		if len(cohort) != 4 || len(chunks) != 2 {
			t.Errorf("cohort = %v, want 4 players in 2 chunks", cohort)
		}
	})
}

func TestTelemetryActivityMerges(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		createEnv(t, db, "production")
		ctx := t.Context()
		s := telemetryService(db)
		send := func(id string, times ...string) {
			t.Helper()
			b := telemetry.Batch{BatchID: id, ServerID: "gs-" + id}
			for _, at := range times {
				b.Activity = append(b.Activity, telemetry.PlayerEvent{Player: "p", At: at})
			}
			if _, err := s.Ingest(ctx, "production", b); err != nil {
				t.Fatal(err)
			}
		}
		send("1", "2025-12-21T10:00:00Z", "2025-12-21T10:05:00Z", "2025-12-20T23:59:59Z")
		send("2", "2025-12-21T09:15:10Z")
		send("3", "2025-12-21T10:02:00Z", "2025-12-21T10:29:00Z")
		b := tbatch("4", "gs-4", 1, "p") // gives "p-on" an id; "p" has one already
		b.Activity = []telemetry.PlayerEvent{{Player: "p", At: "2025-12-21T10:10:00Z"}}
		if _, err := s.Ingest(ctx, "production", b); err != nil {
			t.Fatal(err)
		}
		m := telemetry.MinuteOf(time.Date(2025, 12, 21, 10, 29, 0, 0, time.UTC))
		cohort, _ := db.Cohort(ctx, "production", "f0", "on", m, m+1)
		day := m.Day()
		// Player "p" has the first id: its activity came first.
		got, err := db.ActiveDays(ctx, "production", []int64{day - 1, day, day + 1}, []uint32{1, cohort[0].Player})
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(got, func(a, b telemetry.PlayerDay) int { return int(a.Day - b.Day) })
		want := []telemetry.PlayerDay{
			{Player: 1, Day: day - 1, First: 23*60 + 59, Last: 23*60 + 59},
			{Player: 1, Day: day, First: 9*60 + 15, Last: 10*60 + 29},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ActiveDays (-want +got):\n%s", diff)
		}
	})
}

func TestTelemetryWatermarkOnlyGrows(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		createEnv(t, db, "production")
		ctx := t.Context()
		for _, tc := range []struct{ advance, want telemetry.Minute }{{100, 100}, {90, 100}, {130, 130}} {
			got, err := db.AdvanceWatermark(ctx, "production", tc.advance)
			if err != nil || got != tc.want {
				t.Errorf("AdvanceWatermark(%d) = %d, %v; want %d", tc.advance, got, err, tc.want)
			}
		}
		r, err := db.Reporting(ctx, "production")
		if err != nil || r.Watermark != 130 || len(r.Servers) != 0 {
			t.Errorf("Reporting = %+v, %v; want watermark 130, no servers", r, err)
		}
		_, err = db.AdvanceWatermark(ctx, "nowhere", 5)
		wantKind(t, err, solstice.KindNotFound)

		// A server's end only grows, whatever order its batches arrive in.
		s := telemetryService(db)
		for i, through := range []string{"2025-12-21T10:20:00Z", "2025-12-21T10:10:00Z"} {
			b := telemetry.Batch{BatchID: fmt.Sprint(i), ServerID: "gs-1", SnapshotVersion: int64(7 + i), Through: through}
			if _, err := s.Ingest(ctx, "production", b); err != nil {
				t.Fatal(err)
			}
		}
		r, err = db.Reporting(ctx, "production")
		if err != nil {
			t.Fatal(err)
		}
		want := []telemetry.Server{{ID: "gs-1", Through: telemetry.MinuteOf(time.Date(2025, 12, 21, 10, 20, 0, 0, time.UTC)),
			SnapshotVersion: 8, LastSeen: tnow}}
		if diff := cmp.Diff(want, r.Servers); diff != "" {
			t.Errorf("servers (-want +got):\n%s", diff)
		}
	})
}

func TestTelemetryRejectsMalformedWrites(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		out := db.Ingest(context.Background(), []telemetry.Write{{Environment: "production", BatchID: "x", ServerID: "s"}})
		if len(out) != 1 {
			t.Fatalf("Ingest of one write = %d outcomes", len(out))
		}
		wantKind(t, out[0].Err, solstice.KindInvalid)
	})
}

// gwrite is a Write of batch id in production at tnow, whose digest depends
// on content: one window of f/on at 10:29 with accepted actions, exposing
// players.
func gwrite(id, content string, accepted int64, players ...string) telemetry.Write {
	m := telemetry.MinuteOf(time.Date(2025, 12, 21, 10, 29, 0, 0, time.UTC))
	sum := sha256.Sum256([]byte(id + "/" + content))
	w := telemetry.Write{Environment: "production", BatchID: id, Digest: sum[:], ServerID: "gs-1", ReceivedAt: tnow, Through: m + 1,
		Counters: []telemetry.CounterDelta{{Flag: "f", Variant: "on", Minute: m, Accepted: accepted}}}
	for _, p := range players {
		w.Exposures = append(w.Exposures, telemetry.Exposure{Flag: "f", Variant: "on", Player: p, Minute: m})
	}
	return w
}

func TestTelemetryGroupOutcomes(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		createEnv(t, db, "production")
		ctx := t.Context()
		stored := gwrite("g-0", "a", 1, "p0")
		if out := db.Ingest(ctx, []telemetry.Write{stored}); out[0].Err != nil || out[0].NewExposures != 1 {
			t.Fatalf("first write: %+v", out[0])
		}
		unknown := gwrite("g-9", "a", 100, "p9")
		unknown.Environment = "nowhere"
		group := []telemetry.Write{
			gwrite("g-1", "a", 10, "p1"),                // stored
			gwrite("g-1", "a", 10, "p1"),                // the same batch again, in the same group: a duplicate
			gwrite("g-1", "b", 20, "p1"),                // the same id, other content: a conflict
			gwrite("g-2", "a", 30, "p1", "p2"),          // p1 was exposed by g-1 first
			gwrite("g-0", "a", 1, "p0"),                 // stored before: a duplicate
			gwrite("g-0", "b", 1, "p0"),                 // stored before with other content: a conflict
			unknown,                                     // fails alone, the others are stored
			{Environment: "production", BatchID: "g-8"}, // malformed
			gwrite("g-3", "a", 40, "p0", "p3"),          // p0 exposed before
		}
		out := db.Ingest(ctx, group)
		if len(out) != len(group) {
			t.Fatalf("%d outcomes for %d writes", len(out), len(group))
		}
		type outcome struct {
			Duplicate    bool
			NewExposures int64
			Kind         solstice.Kind
		}
		var got []outcome
		for _, o := range out {
			got = append(got, outcome{o.Duplicate, o.NewExposures, solstice.ErrorKind(o.Err)})
		}
		want := []outcome{{false, 1, ""}, {true, 0, ""}, {false, 0, solstice.KindConflict}, {false, 1, ""}, {true, 0, ""},
			{false, 0, solstice.KindConflict}, {false, 0, solstice.KindNotFound}, {false, 0, solstice.KindInvalid}, {false, 1, ""}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("outcomes (-want +got):\n%s", diff)
		}
		if len(out[0].Players) != 1 || len(out[3].Players) != 2 || out[3].Players["p1"] != out[0].Players["p1"] {
			t.Errorf("player ids: %v and %v, want p1 once in each, with one id", out[0].Players, out[3].Players)
		}

		m := telemetry.MinuteOf(time.Date(2025, 12, 21, 10, 29, 0, 0, time.UTC))
		sums, err := db.Sums(ctx, "production", "f", []string{"on"}, m, m+1)
		if err != nil {
			t.Fatal(err)
		}
		if got := sums["on"]; got.Accepted != 1+10+30+40 || got.Exposures != 4 {
			t.Errorf("sums = %+v, want 81 accepted (g-0, g-1, g-2, g-3) and 4 exposures (p0 to p3)", got)
		}
		cohort, err := db.Cohort(ctx, "production", "f", "on", m, m+1)
		if err != nil || len(cohort) != 4 {
			t.Errorf("cohort = %v, %v; want 4 players", cohort, err)
		}
		// The conflicting batch did not take the id: the content of g-1
		// is a's.
		again := db.Ingest(ctx, []telemetry.Write{gwrite("g-1", "a", 10, "p1"), gwrite("g-9", "a", 100, "p9")})
		if !again[0].Duplicate || again[0].Err != nil || again[1].Err != nil || again[1].Duplicate {
			t.Errorf("g-1 and g-9 again: %+v, want a duplicate and a new batch", again)
		}
	})
}

func TestTelemetryRecentSetsFold(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		createEnv(t, db, "production")
		ctx := t.Context()
		// 3,000 players get consecutive ids through their activity; the odd
		// ones are then exposed, 250 at a time, so that the recent bitmaps
		// (no runs to compress) fold into their sets every few batches.
		s := telemetryService(db)
		act := telemetry.Batch{BatchID: "act", ServerID: "gs-1"}
		for p := range 3000 {
			act.Activity = append(act.Activity, telemetry.PlayerEvent{Player: fmt.Sprintf("p%04d", p), At: "2025-12-21T10:29:00Z"})
		}
		if _, err := s.Ingest(ctx, "production", act); err != nil {
			t.Fatal(err)
		}
		expose := func(s *telemetry.Service, id string, ps []string) int64 {
			t.Helper()
			b := telemetry.Batch{BatchID: id, ServerID: "gs-1", Windows: []telemetry.Window{{Start: "2025-12-21T10:29:00Z", Flag: "f", Variant: "on"}}}
			for _, p := range ps {
				b.Windows[0].Exposures = append(b.Windows[0].Exposures, telemetry.PlayerEvent{Player: p, At: "2025-12-21T10:29:10Z"})
			}
			r, err := s.Ingest(ctx, "production", b)
			if err != nil {
				t.Fatal(err)
			}
			return r.NewExposures
		}
		var odd []string
		for p := 1; p < 3000; p += 2 {
			odd = append(odd, fmt.Sprintf("p%04d", p))
		}
		var fresh int64
		for i := 0; i < len(odd); i += 250 {
			// Each batch repeats the previous one's players: they count once.
			fresh += expose(s, fmt.Sprintf("e-%d", i), odd[max(0, i-250):min(len(odd), i+250)])
		}
		if fresh != int64(len(odd)) {
			t.Errorf("%d first exposures, want %d", fresh, len(odd))
		}
		// A service that remembers nothing (another process) finds every
		// player exposed, in the sets and in the recent bitmaps.
		if n := expose(telemetryService(db), "again", odd); n != 0 {
			t.Errorf("exposing them all again: %d first exposures, want 0", n)
		}
		m := telemetry.MinuteOf(time.Date(2025, 12, 21, 10, 29, 0, 0, time.UTC))
		cohort, err := db.Cohort(ctx, "production", "f", "on", m, m+1)
		if err != nil || len(cohort) != len(odd) {
			t.Errorf("cohort of %d players, %v; want %d", len(cohort), err, len(odd))
		}
		sums, err := db.Sums(ctx, "production", "f", []string{"on"}, m, m+1)
		if err != nil || sums["on"].Exposures != int64(len(odd)) {
			t.Errorf("exposures counted: %+v, %v; want %d", sums["on"], err, len(odd))
		}
	})
}

func TestTelemetryPlayerIDsStayDenseAcrossProcesses(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		createEnv(t, db, "production")
		ctx := t.Context()
		m := telemetry.MinuteOf(time.Date(2025, 12, 21, 10, 29, 0, 0, time.UTC))
		// A second service knows none of the ids that the first assigned,
		// as after a restart or on another replica: looking them up must
		// not use up ids. The keys are any UTF-8, quotes and backslashes
		// included.
		for i, s := range []*telemetry.Service{telemetryService(db), telemetryService(db), telemetryService(db)} {
			b := tbatch(fmt.Sprintf("b-%d", i), "gs-1", 1, "a\t\"\\", "b é")
			b.Windows = b.Windows[:1] // f0/on
			if i == 2 {
				b.Windows[0].Exposures = append(b.Windows[0].Exposures, telemetry.PlayerEvent{Player: "c-on", At: "2025-12-21T10:29:30Z"})
			}
			r, err := s.Ingest(ctx, "production", b)
			if err != nil {
				t.Fatal(err)
			}
			if want := []int64{2, 0, 1}[i]; r.NewExposures != want {
				t.Errorf("batch %d: %d new exposures, want %d", i, r.NewExposures, want)
			}
		}
		cohort, err := db.Cohort(ctx, "production", "f0", "on", m, m+1)
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint32
		for _, e := range cohort {
			ids = append(ids, e.Player)
		}
		slices.Sort(ids)
		if diff := cmp.Diff([]uint32{1, 2, 3}, ids); diff != "" {
			t.Errorf("cohort ids (-want +got):\n%s", diff)
		}
	})
}
