package guardrails_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/store/storetest"
	"github.com/solsticehq/solstice/telemetry"
	"github.com/solsticehq/solstice/web"
)

// BenchmarkRollbackLatency measures, per op, the time from the start of the
// job's tick that trips a guardrail to a game server's long poll receiving
// the rollback's signed snapshot over HTTP (goal: under 1 s): the decision,
// the rollback revision, the incident record, the snapshot build and
// signature, and the wake-up of the parked poll. SQLite, one flag, one
// guardrail; each op restores the rollout and resumes the guardrail
// first, untimed.
func BenchmarkRollbackLatency(b *testing.B) {
	db := storetest.Open(b)
	quiet := slog.New(slog.DiscardHandler)
	ctx := solstice.WithActor(context.Background(), editor)
	now := t0
	clock := solstice.ClockFunc(func() time.Time { return now })
	var pub *snapshot.Publisher
	fl := flags.NewService(db, flags.OnRevision(func(ctx context.Context, env string, _ flags.Revision) {
		if _, err := pub.Publish(ctx, env); err != nil {
			b.Error(err)
		}
	}))
	if err := fl.EnsureDefaultEnvironments(ctx); err != nil {
		b.Fatal(err)
	}
	pub = snapshot.NewPublisher(fl, db, snapshot.NewKeyring(b.TempDir(), snapshot.WithKeyringLogger(quiet)), snapshot.WithLogger(quiet), snapshot.WithHeads(fl))
	if _, err := fl.CreateFlag(ctx, flags.NewFlag{Key: "festival", Name: "Festival", Type: flags.TypeBoolean}); err != nil {
		b.Fatal(err)
	}
	src := &counters{}
	job := guardrails.NewJob(db, guardrails.WithShares(src, fl), db, guardrails.NewResponder(db, fl), guardrails.WithClock(clock), guardrails.WithLogger(quiet))
	svc := guardrails.NewService(db, fl, job)
	ref := guardrails.Ref{Environment: "production", Flag: "festival", Key: "reject-rate"}
	if _, err := svc.Put(ctx, guardrails.Rule{Ref: ref, Metric: guardrails.RejectRate(), Comparison: guardrails.RelativeToControl(0.1),
		Treatment: "on", Control: "off"}, 0); err != nil {
		b.Fatal(err)
	}
	as := auth.NewService(db, nil)
	key, err := as.Create(ctx, auth.NewToken{Name: "gs", Kind: auth.KindServer, Environment: "production"})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(web.New(web.Deps{Flags: fl, Auth: as, Logger: quiet, Publisher: pub}))
	defer srv.Close()
	if err := pub.Tick(ctx, time.Now()); err != nil {
		b.Fatal(err)
	}

	rollOut := func() {
		fc, err := fl.GetConfig(ctx, "production", "festival")
		if err != nil {
			b.Fatal(err)
		}
		cfg := fc.Config
		cfg.Enabled = true
		cfg.Split = &flags.Split{Weights: []flags.Weight{{Variant: "on", Weight: 1}, {Variant: "off", Weight: 1}}}
		if _, err := fl.PutConfig(ctx, "production", "festival", cfg, fc.Revision, "roll out"); err != nil {
			b.Fatal(err)
		}
	}
	poll := func(etag string, got chan<- error) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/snapshots/production?wait=30s", nil)
		req.Header.Set("Authorization", "Bearer "+key.Secret)
		req.Header.Set("If-None-Match", etag)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("poll answered %s", resp.Status)
			}
		}
		got <- err
	}
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		rollOut()
		if i > 0 {
			if _, err := svc.Resume(ctx, ref); err != nil {
				b.Fatal(err)
			}
		}
		now = now.Add(time.Minute)
		src.set(harmful(now))
		cur, _ := pub.Current("production")
		got := make(chan error, 1)
		go poll(cur.ETag(), got)
		time.Sleep(20 * time.Millisecond) // let the poll park
		b.StartTimer()
		start := time.Now()
		if err := job.Tick(ctx, now); err != nil {
			b.Fatal(err)
		}
		if err := <-got; err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-snapshot")
}

// BenchmarkJobTick measures one tick of the job over 1,000 active
// guardrails (one per flag) on SQLite: reading 1,000 states and counters
// and evaluating them. "memory" reads counters from memory, which shows the
// job's own cost; "telemetry" reads them from the telemetry aggregation of
// the same database, with 10 minutes of data for every flag, as solstice
// serve does.
func BenchmarkJobTick(b *testing.B) {
	const n = 1000
	db := storetest.Open(b)
	quiet := slog.New(slog.DiscardHandler)
	ctx := solstice.WithActor(context.Background(), editor)
	start := time.Now().UTC().Truncate(time.Minute).Add(-15 * time.Minute)
	now := start.Add(11 * time.Minute)
	clock := solstice.ClockFunc(func() time.Time { return now })
	fl := flags.NewService(db)
	if err := fl.EnsureDefaultEnvironments(ctx); err != nil {
		b.Fatal(err)
	}
	job0 := guardrails.NewJob(db, &counters{}, db, guardrails.NewResponder(db, fl), guardrails.WithClock(clock), guardrails.WithLogger(quiet))
	svc := guardrails.NewService(db, fl, job0)
	for i := range n {
		key := "flag-" + strconv.Itoa(i)
		if _, err := fl.CreateFlag(ctx, flags.NewFlag{Key: key, Name: key, Type: flags.TypeBoolean}); err != nil {
			b.Fatal(err)
		}
		if _, err := svc.Put(ctx, guardrails.Rule{Ref: guardrails.Ref{Environment: "production", Flag: key, Key: "reject-rate"},
			Metric: guardrails.RejectRate(), Comparison: guardrails.RelativeToControl(0.1), Treatment: "on", Control: "off"}, 0); err != nil {
			b.Fatal(err)
		}
	}
	tel := telemetry.New(db, telemetry.WithClock(clock))
	for m := range 10 {
		at := start.Add(time.Duration(m) * time.Minute)
		for part := range 2 { // a batch holds at most 1,000 windows
			batch := telemetry.Batch{BatchID: fmt.Sprintf("b-%d-%d", m, part), ServerID: "gs-1", SnapshotVersion: 1}
			for i := part * n / 2; i < (part+1)*n/2; i++ {
				for _, v := range []string{"on", "off"} {
					batch.Windows = append(batch.Windows, telemetry.Window{Start: at.Format(time.RFC3339), Flag: "flag-" + strconv.Itoa(i), Variant: v,
						Accepted: 98, Rejected: map[string]int64{"inventory_full": 2}})
				}
			}
			if _, err := tel.Ingest(ctx, "production", batch); err != nil {
				b.Fatal(err)
			}
		}
	}
	mem := &counters{}
	mem.set(healthy(now))
	for _, tc := range []struct {
		name string
		src  guardrails.CounterSource
	}{{"memory", mem}, {"telemetry", tel.Source()}} {
		b.Run(tc.name, func(b *testing.B) {
			job := guardrails.NewJob(db, tc.src, db, guardrails.NewResponder(db, fl), guardrails.WithClock(clock), guardrails.WithLogger(quiet))
			if err := job.Tick(ctx, now); err != nil { // the first tick stores the states
				b.Fatal(err)
			}
			for b.Loop() {
				if err := job.Tick(ctx, now); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/n, "µs/guardrail")
		})
	}
}
