package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/store/storetest"
	"github.com/solsticehq/solstice/telemetry"
	"github.com/solsticehq/solstice/web"
)

// telemetryNow is the telemetry clock of the handler tests.
var telemetryNow = time.Date(2026, 3, 1, 12, 30, 20, 0, time.UTC)

// withTelemetry serves h's control plane again with a telemetry service on
// its database, reading telemetryNow.
func (h *harness) withTelemetry(opts ...telemetry.Option) *telemetry.Service {
	h.t.Helper()
	db, ok := h.flags.Store().(*store.DB)
	if !ok {
		h.t.Fatalf("the harness's flags store is a %T, not a *store.DB", h.flags.Store())
	}
	opts = append([]telemetry.Option{telemetry.WithClock(solstice.ClockFunc(func() time.Time { return telemetryNow }))}, opts...)
	ts := telemetry.New(db, opts...)
	h.srv.Close()
	h.srv = httptest.NewServer(web.New(web.Deps{Flags: h.flags, Auth: h.auth, Logger: slog.New(slog.DiscardHandler), Publisher: h.pub, Telemetry: ts}))
	h.t.Cleanup(h.srv.Close)
	return ts
}

// telemetryBatch is a valid batch at telemetryNow.
func telemetryBatch(id string) map[string]any {
	return map[string]any{
		"batch_id": id, "server_id": "gs-eu-1", "snapshot_version": 3, "through": "2026-03-01T12:30:00Z",
		"windows": []any{
			map[string]any{"start": "2026-03-01T12:29:00Z", "flag": "winter-drops", "variant": "festival",
				"accepted": 95, "rejected": map[string]int64{"cooldown": 5},
				"exposures": []any{map[string]any{"player": "p-1", "at": "2026-03-01T12:29:05Z"}}},
			map[string]any{"start": "2026-03-01T12:29:00Z", "flag": "winter-drops", "variant": "control", "accepted": 98,
				"rejected": map[string]int64{"cooldown": 2}},
		},
		"activity": []any{map[string]any{"player": "p-1", "at": "2026-03-01T12:29:40Z"}},
	}
}

func TestTelemetryAccess(t *testing.T) {
	h := newHarness(t)
	h.withTelemetry()
	prod := h.newServerKey("production")
	tests := []struct {
		name    string
		method  string
		headers []string
		status  int
	}{
		{"no key", "POST", nil, 401},
		{"unknown key", "POST", []string{"Authorization", "Bearer " + auth.ServerPrefix + "nope"}, 401},
		{"admin token", "POST", []string{"Authorization", "Bearer " + h.admin}, 403},
		{"bearer", "POST", []string{"Authorization", "Bearer " + prod}, 200},
		{"X-API-Key", "POST", []string{"X-API-Key", prod}, 200},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.want(h.do(tc.method, "/v1/telemetry", "", telemetryBatch(fmt.Sprint(i)), tc.headers...), tc.status)
			if tc.status >= 400 {
				p := r.problem(t)
				if tc.status == 403 && !strings.Contains(p.Detail, "telemetry takes a server key") {
					t.Errorf("403 detail = %q", p.Detail)
				}
			}
		})
	}
}

func TestTelemetryIngestThroughHTTP(t *testing.T) {
	h := newHarness(t)
	ts := h.withTelemetry()
	prod, staging := h.newServerKey("production"), h.newServerKey("staging")
	post := func(key string, body any, status int) response {
		t.Helper()
		return h.want(h.do("POST", "/v1/telemetry", key, body), status)
	}
	var res telemetry.Result
	post(prod, telemetryBatch("b-1"), 200).json(t, &res)
	if res != (telemetry.Result{BatchID: "b-1", NewExposures: 1}) {
		t.Errorf("first post = %+v", res)
	}
	post(prod, telemetryBatch("b-1"), 200).json(t, &res)
	if !res.Duplicate || res.NewExposures != 0 {
		t.Errorf("repeat = %+v, want a duplicate", res)
	}
	changed := telemetryBatch("b-1")
	changed["snapshot_version"] = 4
	if p := post(prod, changed, 409).problem(t); !strings.Contains(p.Detail, "already received with other content") {
		t.Errorf("409 detail = %q", p.Detail)
	}
	// The environment is the key's: the same batch id is new in staging.
	post(staging, telemetryBatch("b-1"), 200).json(t, &res)
	if res.Duplicate {
		t.Error("a batch of staging was taken for a repeat of production's")
	}

	for _, env := range []string{"production", "staging"} {
		c, err := ts.Counters(context.Background(), env, "winter-drops", "festival", "control", time.Time{}, telemetryNow)
		if err != nil {
			t.Fatal(err)
		}
		if c.Treatment.Actions != 100 || c.Treatment.Rejects != 5 || c.Control.Actions != 100 || c.Treatment.Exposures != 1 {
			t.Errorf("%s counters = %+v, want the batch counted once", env, c)
		}
	}
}

func TestTelemetryRejectsBadBatches(t *testing.T) {
	h := newHarness(t)
	ts := h.withTelemetry()
	key := h.newServerKey("production")
	bad := telemetryBatch("b-1")
	bad["windows"].([]any)[1].(map[string]any)["start"] = "2026-03-01T12:40:00Z"
	bad["activity"].([]any)[0].(map[string]any)["at"] = "2026-02-26T12:00:00Z"
	p := h.want(h.do("POST", "/v1/telemetry", key, bad), 422).problem(t)
	got := map[string]string{}
	for _, f := range p.Errors {
		got[f.Pointer] = f.Detail
	}
	if !strings.Contains(got["/windows/1/start"], "in the future") || !strings.Contains(got["/activity/0/at"], "no longer accepted") || len(got) != 2 {
		t.Errorf("422 errors = %+v, want /windows/1/start in the future and /activity/0/at too old", p.Errors)
	}

	big := telemetryBatch("b-2")
	big["server_id"] = strings.Repeat("x", telemetry.MaxBatchBytes)
	h.want(h.do("POST", "/v1/telemetry", key, big), 413).problem(t)

	unknown := telemetryBatch("b-3")
	unknown["color"] = "blue"
	if p := h.want(h.do("POST", "/v1/telemetry", key, unknown), 400).problem(t); !strings.Contains(p.Detail, "color") {
		t.Errorf("unknown field: %q", p.Detail)
	}
	h.want(h.do("POST", "/v1/telemetry", key, `{"batch_id": "b-4", "windows": [}`), 400).problem(t)
	h.want(h.do("POST", "/v1/telemetry", key, `{"batch_id": 4}`), 400).problem(t)

	// None of it counted, and the rejected batch's id is still free.
	c, err := ts.Counters(context.Background(), "production", "winter-drops", "festival", "control", time.Time{}, telemetryNow)
	if err != nil {
		t.Fatal(err)
	}
	if c.Treatment.Actions != 0 || c.Control.Actions != 0 || !c.Watermark.IsZero() {
		t.Errorf("counters after rejected batches = %+v, want nothing", c)
	}
	var res telemetry.Result
	h.want(h.do("POST", "/v1/telemetry", key, telemetryBatch("b-1")), 200).json(t, &res)
	if res.Duplicate {
		t.Error("the id of a rejected batch was taken for a repeat")
	}
}

// TestTelemetryBodyErrors checks the answers of the streaming decoder
// (decodeJSONStream) to bodies that are not one batch: those of
// decodeJSON, which reads a body whole before decoding it. In particular a
// body over the limit is a 413 whatever its first bytes hold, and nothing
// may follow the batch.
func TestTelemetryBodyErrors(t *testing.T) {
	h := newHarness(t)
	h.withTelemetry()
	key := h.newServerKey("production")
	valid, err := json.Marshal(telemetryBatch("b-1"))
	if err != nil {
		t.Fatal(err)
	}
	overLimit := strings.Repeat(" ", telemetry.MaxBatchBytes)
	tests := []struct {
		name    string
		body    any
		headers []string
		status  int
		typ     string
		detail  string
		pointer string
	}{
		{"empty", "", nil, 400, "urn:solstice:problem:bad-request", "body is empty", ""},
		{"only whitespace", " \n\t ", nil, 400, "urn:solstice:problem:bad-request", "body is empty", ""},
		{"two values", string(valid) + ` {}`, nil, 400, "urn:solstice:problem:bad-request", "more than one JSON value", ""},
		{"truncated", string(valid[:len(valid)-3]), nil, 400, "urn:solstice:problem:bad-request", "unexpected end of input", ""},
		{"malformed", `{"batch_id": "b-1",, }`, nil, 400, "urn:solstice:problem:bad-request", "malformed JSON at byte", ""},
		{"wrong type", `{"batch_id": "b-1", "snapshot_version": "3"}`, nil, 400, "urn:solstice:problem:bad-request", "wrong type", "/snapshot_version"},
		{"unknown field", `{"batch_id": "b-1", "colour": "blue"}`, nil, 400, "urn:solstice:problem:bad-request", `unknown field "colour"`, "/colour"},
		{"not JSON", string(valid), []string{"Content-Type", "text/plain"}, 415, "urn:solstice:problem:unsupported-media-type", "application/json", ""},
		{"a batch, then padding over the limit", string(valid) + overLimit, nil, 413, "urn:solstice:problem:too-large", "over 1048576 bytes", ""},
		{"malformed, then padding over the limit", `{"batch_id": ]` + overLimit, nil, 413, "urn:solstice:problem:too-large", "over 1048576 bytes", ""},
		{"over the limit, without a length", strings.NewReader(string(valid) + overLimit), nil, 413, "urn:solstice:problem:too-large", "over 1048576 bytes", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := h.want(h.do("POST", "/v1/telemetry", key, tc.body, tc.headers...), tc.status).problem(t)
			if p.Type != tc.typ || !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("problem = %s %q, want %s saying %q", p.Type, p.Detail, tc.typ, tc.detail)
			}
			if tc.pointer != "" && (len(p.Errors) != 1 || p.Errors[0].Pointer != tc.pointer) {
				t.Errorf("problem errors = %+v, want one at %s", p.Errors, tc.pointer)
			}
		})
	}
	// The same batch, with whitespace around it, is one batch.
	h.want(h.do("POST", "/v1/telemetry", key, "\n "+string(valid)+"\n\n"), 200)
}

func TestTelemetryRateLimit(t *testing.T) {
	h := newHarness(t)
	h.withTelemetry(telemetry.WithRateLimit(0.5, 2))
	a, b := h.newServerKey("production"), h.newServerKey("production")
	h.want(h.do("POST", "/v1/telemetry", a, telemetryBatch("1")), 200)
	h.want(h.do("POST", "/v1/telemetry", a, telemetryBatch("2")), 200)
	r := h.want(h.do("POST", "/v1/telemetry", a, telemetryBatch("3")), 429)
	if p := r.problem(t); p.Type != "urn:solstice:problem:rate-limited" {
		t.Errorf("429 type = %q", p.Type)
	}
	if got := r.header.Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After = %q, want 2 (seconds, rounded up)", got)
	}
	h.want(h.do("POST", "/v1/telemetry", b, telemetryBatch("3")), 200) // another key has its own bucket
}

// telemetryClients is the number of batches in flight in
// BenchmarkTelemetryIngest: game servers posting at the same time.
//
// NOTE: a throughput is measured at saturation. The bare handler only
// computes, so two requests in flight saturate two cores; Solstice's
// requests also wait for the database (a commit is an fsync), and batches
// that arrive during a commit are stored together in the next one (group
// commit), so it takes more requests in flight to keep the cores busy. A
// fleet provides them: at about a thousand batches a second, with answers
// in tens of milliseconds (a commit, waited for and then shared), some
// fifty are in flight. Both handlers get the same clients; with two,
// Solstice stores each batch in its own transaction.
var telemetryClients = flag.Int("telemetry.clients", 64, "batches in flight in BenchmarkTelemetryIngest")

// BenchmarkTelemetryIngest measures the throughput of POST /v1/telemetry
// against a bare net/http handler that decodes the same JSON into a
// telemetry.Batch and discards it, side by side in one run
// (telemetrySideBySide), each with telemetryClients requests in flight
// (-telemetry.clients changes it). The goal is Solstice at 0.5 or more of
// the bare handler's throughput. Run it with
//
//	go test -run '^$' -bench TelemetryIngest -benchmem ./web/
//
// Each batch is what a busy game server sends every few seconds: 20 flags
// × 2 variants × one minute (accepted, two reject reasons, session sums),
// 200 exposures (a tenth of them players never seen before: their names
// hold the post's sequence number) and 100 activity entries, about 28 KB
// of JSON, under a new batch id each time.
// The real handler runs the whole server: middleware, server-key
// authentication, the rate limiter (set to admit everything), decoding,
// validation and the database transaction (shared by the batches that
// wait together: group commit), on the database of the sub-benchmark. A
// request is answered once its batch is committed, so there is no work
// left behind when the clock stops. batches/s and events/s (windows,
// exposures and activity entries) are Solstice's; ratio is its throughput
// as a fraction of the bare handler's.
func BenchmarkTelemetryIngest(b *testing.B) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		b.Run(dialect, func(b *testing.B) {
			db := storetest.Open(b)
			if dialect == "postgres" {
				db = storetest.OpenPostgres(b)
			}
			quiet := slog.New(slog.DiscardHandler)
			ctx := context.Background()
			fs := flags.NewService(db)
			if err := fs.EnsureDefaultEnvironments(ctx); err != nil {
				b.Fatal(err)
			}
			as := auth.NewService(db, nil)
			key, err := as.Create(ctx, auth.NewToken{Name: "bench", Kind: auth.KindServer, Environment: "production"})
			if err != nil {
				b.Fatal(err)
			}
			srv := web.New(web.Deps{Flags: fs, Auth: as, Logger: quiet, Ready: db.Ping,
				Telemetry: telemetry.New(db, telemetry.WithRateLimit(rate.Inf, 0))})

			batches, events := benchBatches(b, 256, time.Now())
			clients := max(1, *telemetryClients)
			var seq atomic.Int64
			bufs := make([][]byte, clients)
			reqs := make([]*http.Request, clients)
			writers := make([]*discardWriter, clients)
			for w := range clients {
				reqs[w] = httptest.NewRequest(http.MethodPost, "/v1/telemetry", nil)
				reqs[w].Header.Set("Content-Type", "application/json")
				reqs[w].Header.Set("Authorization", "Bearer "+key.Secret)
				writers[w] = &discardWriter{header: http.Header{}}
			}
			call := func(h http.Handler) func(w int) error {
				return func(w int) error {
					i := seq.Add(1)
					batch := batches[int(i)%len(batches)]
					bufs[w] = append(bufs[w][:0], batch.body...)
					// A new batch id each time (12 digits at the start of
					// the body), and new players.
					digits := fmt.Sprintf("%012d", i)
					copy(bufs[w][len(`{"batch_id":"b-`):], digits)
					for _, at := range batch.fresh {
						copy(bufs[w][at:], digits)
					}
					r, rw := reqs[w], writers[w]
					r.Body = io.NopCloser(bytes.NewReader(bufs[w]))
					r.ContentLength = int64(len(bufs[w]))
					rw.reset()
					h.ServeHTTP(rw, r)
					if rw.status != http.StatusOK {
						return fmt.Errorf("status %d", rw.status)
					}
					return nil
				}
			}
			// Warm up: the first batches create the players and rows.
			if _, err := telemetryLoad(2*len(batches), clients, call(srv)); err != nil {
				b.Fatal(err)
			}
			telemetrySideBySide(b, clients, events, call(srv), call(bareTelemetryHandler()))
			b.ReportMetric(float64(len(batches[0].body)), "body-bytes")
		})
	}
}

// telemetrySideBySide makes b.N calls of each of solstice and bare, with
// clients calls in flight, in alternating rounds (so that the machine's
// noise falls on both alike), and reports rates: ns/op, B/op and allocs/op
// are Solstice's per batch, batches/s and events/s its throughput,
// bare-batches/s the bare handler's, ratio the first over the last.
func telemetrySideBySide(b *testing.B, clients, events int, solstice, bare func(client int) error) {
	// NOTE: rounds of at least a few hundred calls: a round starts and
	// ends with fewer calls in flight than clients.
	rounds := max(1, min(10, b.N/200))
	var sol, base loadCost
	b.ResetTimer()
	for r := range rounds {
		n := b.N / rounds
		if r < b.N%rounds {
			n++
		}
		steps := []struct {
			total *loadCost
			call  func(int) error
		}{{&sol, solstice}, {&base, bare}}
		if r%2 == 1 {
			steps[0], steps[1] = steps[1], steps[0]
		}
		for _, step := range steps {
			c, err := telemetryLoad(n, clients, step.call)
			if err != nil {
				b.Fatal(err)
			}
			step.total.add(c)
		}
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(sol.wall.Nanoseconds())/n, "ns/op")
	b.ReportMetric(float64(sol.bytes)/n, "B/op")
	b.ReportMetric(float64(sol.allocs)/n, "allocs/op")
	b.ReportMetric(n/sol.wall.Seconds(), "batches/s")
	b.ReportMetric(n*float64(events)/sol.wall.Seconds(), "events/s")
	b.ReportMetric(n/base.wall.Seconds(), "bare-batches/s")
	b.ReportMetric(base.wall.Seconds()/sol.wall.Seconds(), "ratio")
	b.ReportMetric(float64(clients), "clients")
}

// telemetryLoad makes n calls of call from clients goroutines, each making
// one call at a time, and returns the wall time and heap allocations they
// took, or the first call's error. (runLoad hands out calls 32 at a time,
// which with a few hundred calls leaves most clients idle.)
func telemetryLoad(n, clients int, call func(client int) error) (loadCost, error) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && failed.Load() == nil {
				if err := call(c); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	runtime.ReadMemStats(&after)
	if err := failed.Load(); err != nil {
		return loadCost{}, *err
	}
	return loadCost{wall: wall, allocs: after.Mallocs - before.Mallocs, bytes: after.TotalAlloc - before.TotalAlloc}, nil
}

// bareTelemetryHandler is the baseline: decode the body as the real
// handler does (a json.Decoder on the body as it arrives, limited to
// telemetry.MaxBatchBytes, unknown fields rejected, into a telemetry.Batch)
// and discard it.
func bareTelemetryHandler() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d := json.NewDecoder(http.MaxBytesReader(w, r.Body, telemetry.MaxBatchBytes))
		d.DisallowUnknownFields()
		var b telemetry.Batch
		if err := d.Decode(&b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = fmt.Fprintf(w, `{"batch_id":%q,"duplicate":false,"new_exposures":0}`, b.BatchID)
	}
}

// benchBatch is a batch body of BenchmarkTelemetryIngest.
type benchBatch struct {
	body []byte
	// fresh are the offsets in body of the 12 digits in the names of the
	// players never seen before: each post writes its sequence number
	// there, so that they are new every time.
	fresh []int
}

// benchBatches returns n batch bodies of the minute before now, each
// starting with {"batch_id":"b-000000000000", and the number of events of
// each.
func benchBatches(tb testing.TB, n int, now time.Time) ([]benchBatch, int) {
	tb.Helper()
	start := now.UTC().Truncate(time.Minute).Add(-time.Minute)
	rng := rand.New(rand.NewPCG(1, 2))
	const flagsN, exposures, activity, returning = 20, 200, 100, 5000
	const freshPrefix = `"player":"player-n`
	batches := make([]benchBatch, n)
	events := 0
	for i := range batches {
		b := telemetry.Batch{BatchID: "b-000000000000", ServerID: "gs-" + strconv.Itoa(i%8), SnapshotVersion: 42}
		for f := range flagsN {
			for _, v := range []string{"treatment", "control"} {
				b.Windows = append(b.Windows, telemetry.Window{
					Start: start.Format(time.RFC3339), Flag: fmt.Sprintf("live-event-%02d", f), Variant: v,
					Accepted: 400 + rng.Int64N(100), Rejected: map[string]int64{"cooldown": rng.Int64N(10), "insufficient-funds": rng.Int64N(5)},
					Sessions: &telemetry.Sessions{Count: 3, Actions: 30, Rejects: 3, ActionsSquared: 302, RejectsSquared: 3, ActionsRejects: 29},
				})
			}
		}
		for k := range exposures {
			player := fmt.Sprintf("player-%07d", rng.IntN(returning))
			if k%10 == 0 {
				player = fmt.Sprintf("player-n%012d-%02d", 0, k/10) // new: see benchBatch.fresh
			}
			w := &b.Windows[rng.IntN(len(b.Windows))]
			at := start.Add(time.Duration(rng.IntN(60)) * time.Second)
			w.Exposures = append(w.Exposures, telemetry.PlayerEvent{Player: player, At: at.Format(time.RFC3339)})
		}
		for range activity {
			at := start.Add(time.Duration(rng.IntN(60)) * time.Second)
			b.Activity = append(b.Activity, telemetry.PlayerEvent{Player: fmt.Sprintf("player-%07d", rng.IntN(returning)), At: at.Format(time.RFC3339)})
		}
		if err := b.Validate(now); err != nil {
			tb.Fatalf("benchmark batch: %v", err)
		}
		js, err := json.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		if !bytes.HasPrefix(js, []byte(`{"batch_id":"b-000000000000",`)) {
			tb.Fatalf("batch body starts %s", js[:40])
		}
		batches[i].body = js
		for at := 0; ; {
			j := bytes.Index(js[at:], []byte(freshPrefix))
			if j < 0 {
				break
			}
			at += j + len(freshPrefix)
			batches[i].fresh = append(batches[i].fresh, at)
		}
		if len(batches[i].fresh) != exposures/10 {
			tb.Fatalf("%d new players in a batch, want %d", len(batches[i].fresh), exposures/10)
		}
		events = len(b.Windows) + exposures + activity
	}
	return batches, events
}
