package sdk_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/sdk"
	"github.com/solsticehq/solstice/telemetry"
	"github.com/solsticehq/solstice/web"
)

// t0 is the start of the reporter tests' time: ten seconds into a minute.
var t0 = time.Date(2026, 3, 1, 12, 0, 10, 0, time.UTC)

// manualClock is a clock the test sets.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func newManualClock(t time.Time) *manualClock { return &manualClock{now: t} }

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// sink is a fake POST /v1/telemetry: it reads batches strictly, validates
// them with the control plane's own rules (telemetry.Batch.Validate at the
// test's clock), keeps batch ids as the control plane does (a repeat is a
// duplicate, another body under a used id a conflict), and answers as
// scripted. Any batch that breaks the contract fails the test.
type sink struct {
	t     *testing.T
	srv   *httptest.Server
	clock solstice.Clock
	key   string

	mu       sync.Mutex
	script   []int // statuses to answer first, in order (then 200)
	down     bool  // answer every request 503
	problem  []byte
	requests []sinkRequest
	stored   map[string][]byte // batch id → body
	batches  []telemetry.Batch // stored, in order
}

type sinkRequest struct {
	At     time.Time // wall clock
	ID     string
	Body   []byte
	Status int
}

func (q sinkRequest) String() string {
	return fmt.Sprintf("%s (%d bytes) answered %d", q.ID, len(q.Body), q.Status)
}

func newSink(t *testing.T, clock solstice.Clock) *sink {
	s := &sink{t: t, clock: clock, key: "sol_server_test", stored: map[string][]byte{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.t.Errorf("sink: read: %v", err)
		return
	}
	req := sinkRequest{At: time.Now(), Body: body}
	answer := func(status int, v any) {
		req.Status = status
		s.mu.Lock()
		s.requests = append(s.requests, req)
		s.mu.Unlock()
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/telemetry" || r.Header.Get("Authorization") != "Bearer "+s.key ||
		r.Header.Get("Content-Type") != "application/json" {
		s.t.Errorf("sink: %s %s, Authorization %q, Content-Type %q", r.Method, r.URL, r.Header.Get("Authorization"), r.Header.Get("Content-Type"))
		answer(http.StatusBadRequest, nil)
		return
	}
	if len(body) > telemetry.MaxBatchBytes {
		answer(http.StatusRequestEntityTooLarge, map[string]any{"detail": "too large"})
		return
	}
	var b telemetry.Batch
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		s.t.Errorf("sink: the reporter sent something that is not a batch: %v\n%s", err, body)
		answer(http.StatusBadRequest, nil)
		return
	}
	req.ID = b.BatchID
	s.mu.Lock()
	status, problem := 0, s.problem
	if s.down {
		status = http.StatusServiceUnavailable
	} else if len(s.script) > 0 {
		status, s.script = s.script[0], s.script[1:]
	}
	s.mu.Unlock()
	if status != 0 {
		if problem == nil {
			problem, _ = json.Marshal(map[string]any{"title": http.StatusText(status), "status": status})
		}
		var v any
		json.Unmarshal(problem, &v)
		answer(status, v)
		return
	}
	if err := b.Validate(s.clock.Now()); err != nil {
		s.t.Errorf("sink: the reporter sent an invalid batch: %v %v", err, solstice.ErrorFields(err))
		answer(http.StatusUnprocessableEntity, nil)
		return
	}
	s.mu.Lock()
	prev, dup := s.stored[b.BatchID]
	if !dup {
		s.stored[b.BatchID] = body
		s.batches = append(s.batches, b)
	}
	s.mu.Unlock()
	if dup && !bytes.Equal(prev, body) {
		s.t.Errorf("sink: batch id %s reused with other content", b.BatchID)
		answer(http.StatusConflict, nil)
		return
	}
	answer(http.StatusOK, map[string]any{"batch_id": b.BatchID, "duplicate": dup})
}

func (s *sink) setScript(statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = statuses
}

func (s *sink) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

func (s *sink) storedBatches() []telemetry.Batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.batches)
}

func (s *sink) allRequests() []sinkRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// reporterClient is a client whose only use is to carry a reporter's
// configuration: it never polls.
func reporterClient(t testing.TB, baseURL, key string, clock solstice.Clock) *sdk.Client {
	t.Helper()
	c, err := sdk.New(sdk.Config{
		Environment: "production",
		BaseURL:     baseURL,
		ServerKey:   key,
		TrustedKeys: []ed25519.PublicKey{make(ed25519.PublicKey, ed25519.PublicKeySize)},
		ServerID:    "gs-eu-1",
		MinBackoff:  5 * time.Millisecond,
		MaxBackoff:  20 * time.Millisecond,
		Logger:      slog.New(slog.DiscardHandler),
		Clock:       clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newReporter(t testing.TB, c *sdk.Client, opts ...sdk.ReporterOption) *sdk.Reporter {
	t.Helper()
	r, err := sdk.NewReporter(c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sinkReporter is a reporter posting to s.
func sinkReporter(t *testing.T, s *sink, clock solstice.Clock, opts ...sdk.ReporterOption) *sdk.Reporter {
	t.Helper()
	return newReporter(t, reporterClient(t, s.srv.URL, s.key, clock), opts...)
}

// ignoreIDs leaves the generated batch ids and the exact times of events
// out of comparisons of batches.
var ignoreIDs = cmpopts.IgnoreFields(telemetry.Batch{}, "BatchID")

func at(d time.Duration) string { return t0.Add(d).Format(time.RFC3339Nano) }

func TestReporterAggregatesIntoMinuteWindows(t *testing.T) {
	clock := newManualClock(t0)
	s := newSink(t, clock)
	r := sinkReporter(t, s, clock)

	// Minute 12:00.
	r.Exposed("winter", "festival", "p1")
	r.Exposed("winter", "control", "p2")
	r.Exposed("winter", "festival", "p1") // seen: not reported again
	r.Exposed("boss", "hard", "p1")
	r.SessionStart("p1")
	clock.Advance(time.Second)
	r.Accepted("p1")
	r.Accepted("p1")
	r.Rejected("p1", "cooldown")
	r.Rejected("p2", "cooldown")
	r.Rejected("p2", "Cool Down") // invalid: counted as "other"
	r.Accepted("p3")              // exposed to nothing: only active
	r.AcceptedFor("winter", "festival")
	r.CountFor("winter", "control", "matchmaking", 5)
	r.Count("p1", "xp", 100)
	// Minute 12:01: p1's session ends with 4 actions in winter/festival
	// and boss/hard, 1 of them rejected.
	clock.Set(t0.Add(55 * time.Second))
	r.Accepted("p1")
	r.SessionEnd("p1")

	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := []telemetry.Batch{{
		ServerID: "gs-eu-1",
		Through:  "2026-03-01T12:01:00Z",
		Windows: []telemetry.Window{
			{Start: "2026-03-01T12:00:00Z", Flag: "boss", Variant: "hard", Accepted: 2, Rejected: map[string]int64{"cooldown": 1}, Custom: map[string]int64{"xp": 100},
				Exposures: []telemetry.PlayerEvent{{Player: "p1", At: at(0)}}},
			{Start: "2026-03-01T12:00:00Z", Flag: "winter", Variant: "control", Rejected: map[string]int64{"cooldown": 1, "other": 1}, Custom: map[string]int64{"matchmaking": 5},
				Exposures: []telemetry.PlayerEvent{{Player: "p2", At: at(0)}}},
			{Start: "2026-03-01T12:00:00Z", Flag: "winter", Variant: "festival", Accepted: 3, Rejected: map[string]int64{"cooldown": 1}, Custom: map[string]int64{"xp": 100},
				Exposures: []telemetry.PlayerEvent{{Player: "p1", At: at(0)}}},
		},
		Activity: []telemetry.PlayerEvent{{Player: "p1", At: at(0)}, {Player: "p2", At: at(time.Second)}, {Player: "p3", At: at(time.Second)}, {Player: "p1", At: at(55 * time.Second)}},
	}}
	if diff := cmp.Diff(want, s.storedBatches(), ignoreIDs); diff != "" {
		t.Errorf("first flush (-want +got):\n%s", diff)
	}
	st := r.Stats()
	if st.Invalid != 1 || st.LastInvalid == nil || !strings.Contains(st.LastInvalid.Error(), `"Cool Down"`) {
		t.Errorf("invalid = %d (%v), want 1 for the reason code", st.Invalid, st.LastInvalid)
	}

	// Nothing new, same minute: no request.
	before := len(s.allRequests())
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(s.allRequests()); n != before {
		t.Errorf("a flush with nothing new sent %d requests", n-before)
	}

	// 12:02: minute 12:01 with the session sums of p1.
	clock.Set(t0.Add(110 * time.Second))
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	session := &telemetry.Sessions{Count: 1, Actions: 4, Rejects: 1, ActionsSquared: 16, RejectsSquared: 1, ActionsRejects: 4}
	want = append(want, telemetry.Batch{
		ServerID: "gs-eu-1",
		Through:  "2026-03-01T12:02:00Z",
		Windows: []telemetry.Window{
			{Start: "2026-03-01T12:01:00Z", Flag: "boss", Variant: "hard", Accepted: 1, Sessions: session},
			{Start: "2026-03-01T12:01:00Z", Flag: "winter", Variant: "festival", Accepted: 1, Sessions: session},
		},
	})
	if diff := cmp.Diff(want, s.storedBatches(), ignoreIDs); diff != "" {
		t.Errorf("second flush (-want +got):\n%s", diff)
	}

	// Idle in 12:02: nothing; idle in 12:03: a heartbeat moves through.
	clock.Set(t0.Add(140 * time.Second))
	r.Flush(t.Context())
	clock.Set(t0.Add(171 * time.Second))
	r.Flush(t.Context())
	r.Flush(t.Context())
	want = append(want, telemetry.Batch{ServerID: "gs-eu-1", Through: "2026-03-01T12:03:00Z"})
	if diff := cmp.Diff(want, s.storedBatches(), ignoreIDs); diff != "" {
		t.Errorf("heartbeats (-want +got):\n%s", diff)
	}
	if st := r.Stats(); st.Batches != 3 || st.PendingBatches != 0 || st.PendingEvents != 0 || st.PendingWindows != 0 {
		t.Errorf("stats = %+v, want 3 batches and nothing pending", st)
	}
}

func TestReporterReassignmentAndSessions(t *testing.T) {
	clock := newManualClock(t0)
	s := newSink(t, clock)
	r := sinkReporter(t, s, clock)

	r.Exposed("ramp", "control", "p1")
	r.SessionStart("p1")
	r.Accepted("p1")
	r.Rejected("p1", "cooldown")
	// The ramp moves p1 to the treatment mid-session: the session's part
	// in control ends, actions count for the treatment from now on.
	r.Exposed("ramp", "treatment", "p1")
	r.Accepted("p1")
	r.SessionStart("p1") // a new session ends the one under way
	r.Accepted("p1")
	r.Accepted("p1")
	r.SessionEnd("p1")
	r.SessionEnd("p1") // no session under way: only activity
	if err := r.FlushAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := s.storedBatches()
	want := []telemetry.Window{
		{Start: "2026-03-01T12:00:00Z", Flag: "ramp", Variant: "control", Accepted: 1, Rejected: map[string]int64{"cooldown": 1},
			Sessions:  &telemetry.Sessions{Count: 1, Actions: 2, Rejects: 1, ActionsSquared: 4, RejectsSquared: 1, ActionsRejects: 2},
			Exposures: []telemetry.PlayerEvent{{Player: "p1", At: at(0)}}},
		{Start: "2026-03-01T12:00:00Z", Flag: "ramp", Variant: "treatment", Accepted: 3,
			Sessions:  &telemetry.Sessions{Count: 2, Actions: 3, Rejects: 0, ActionsSquared: 1 + 4},
			Exposures: []telemetry.PlayerEvent{{Player: "p1", At: at(0)}}},
	}
	if len(got) != 1 {
		t.Fatalf("got %d batches, want 1", len(got))
	}
	if diff := cmp.Diff(want, got[0].Windows); diff != "" {
		t.Errorf("windows (-want +got):\n%s", diff)
	}
	// FlushAll ships the minute under way: through is its end.
	if got[0].Through != "2026-03-01T12:01:00Z" {
		t.Errorf("through = %q, want the end of the current minute", got[0].Through)
	}
}

func TestReporterInvalidInputIsCountedNotSent(t *testing.T) {
	clock := newManualClock(t0)
	s := newSink(t, clock)
	r := sinkReporter(t, s, clock, sdk.WithMaxPending(0, 0))
	calls := []struct {
		name string
		call func()
		want string
	}{
		{"flag key", func() { r.Exposed("Winter", "festival", "p1") }, `flag key "Winter"`},
		{"variant key", func() { r.AcceptedFor("winter", "") }, `variant key ""`},
		{"empty player", func() { r.Accepted("") }, "player id is empty"},
		{"long player", func() { r.Active(strings.Repeat("x", 129)) }, "129 bytes"},
		{"not UTF-8", func() { r.SessionStart("p\xff") }, "not valid UTF-8"},
		{"NUL in player", func() { r.Accepted("p\x00q") }, "contains NUL"},
		{"counter name", func() { r.CountFor("winter", "festival", "Kills!", 1) }, `counter name "Kills!"`},
		{"negative count", func() { r.CountFor("winter", "festival", "kills", -1) }, "-1 for counter"},
		{"count too large", func() { r.CountFor("winter", "festival", "kills", telemetry.MaxCount+1) }, "outside 0 to"},
	}
	for i, c := range calls {
		c.call()
		st := r.Stats()
		if st.Invalid != int64(i+1) || st.LastInvalid == nil || !strings.Contains(st.LastInvalid.Error(), c.want) ||
			!solstice.IsKind(st.LastInvalid, solstice.KindInvalid) {
			t.Errorf("%s: invalid = %d, last %v; want %d, mentioning %s", c.name, st.Invalid, st.LastInvalid, i+1, c.want)
		}
	}
	// 49 reasons fit a window; the 50th slot is "other", whatever else comes.
	for i := range 52 {
		r.RejectedFor("winter", "festival", fmt.Sprintf("reason-%02d", i))
	}
	if err := r.FlushAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	b := s.storedBatches()
	if len(b) != 1 || len(b[0].Windows) != 1 {
		t.Fatalf("batches = %+v, want one window", b)
	}
	rej := b[0].Windows[0].Rejected
	if len(rej) != telemetry.MaxReasons || rej["other"] != 3 || rej["reason-48"] != 1 {
		t.Errorf("rejected = %v, want 49 reasons and other: 3", rej)
	}
}

func TestNewReporterChecksItsOptions(t *testing.T) {
	clock := newManualClock(t0)
	c := reporterClient(t, "http://127.0.0.1:1", "k", clock)
	tests := []struct {
		name    string
		client  *sdk.Client
		opts    []sdk.ReporterOption
		pointer string
	}{
		{"no client", nil, nil, "/client"},
		{"negative interval", c, []sdk.ReporterOption{sdk.WithFlushInterval(-time.Second)}, "/FlushInterval"},
		{"negative final timeout", c, []sdk.ReporterOption{sdk.WithFinalFlushTimeout(-1)}, "/FinalFlushTimeout"},
		{"backoff min over max", c, []sdk.ReporterOption{sdk.WithRetryBackoff(time.Minute, time.Second)}, "/RetryBackoff/max"},
		{"negative players", c, []sdk.ReporterOption{sdk.WithMaxPlayers(-1)}, "/MaxPlayers"},
		{"negative events", c, []sdk.ReporterOption{sdk.WithMaxPending(-1, 0)}, "/MaxPending/events"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sdk.NewReporter(tc.client, tc.opts...)
			fields := solstice.ErrorFields(err)
			if !solstice.IsKind(err, solstice.KindInvalid) || len(fields) != 1 || fields[0].Pointer != tc.pointer {
				t.Errorf("err = %v (fields %v), want KindInvalid at %s", err, fields, tc.pointer)
			}
		})
	}
	bad, err := sdk.New(sdk.Config{Environment: "production", BaseURL: "http://127.0.0.1:1", ServerKey: "k",
		TrustedKeys: []ed25519.PublicKey{make(ed25519.PublicKey, ed25519.PublicKeySize)}, ServerID: "game server 1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sdk.NewReporter(bad); !solstice.IsKind(err, solstice.KindInvalid) || !strings.Contains(err.Error(), "ServerID") {
		t.Errorf("a server id with spaces: err = %v, want KindInvalid naming ServerID", err)
	}
}

func TestReporterAnswers(t *testing.T) {
	tests := []struct {
		status    int
		transient bool
		kind      solstice.Kind
	}{
		{http.StatusBadRequest, false, solstice.KindInvalid},
		{http.StatusUnauthorized, false, solstice.KindUnauthorized},
		{http.StatusForbidden, false, solstice.KindForbidden},
		{http.StatusNotFound, false, solstice.KindNotFound},
		{http.StatusConflict, false, solstice.KindConflict},
		{http.StatusUnsupportedMediaType, false, solstice.KindInvalid},
		{http.StatusUnprocessableEntity, false, solstice.KindInvalid},
		{http.StatusRequestTimeout, true, solstice.KindInternal},
		{http.StatusTooManyRequests, true, solstice.KindRateLimited},
		{http.StatusInternalServerError, true, solstice.KindInternal},
		{http.StatusBadGateway, true, solstice.KindInternal},
		{http.StatusServiceUnavailable, true, solstice.KindInternal},
	}
	for _, tc := range tests {
		t.Run(statusName(tc.status), func(t *testing.T) {
			clock := newManualClock(t0)
			s := newSink(t, clock)
			s.mu.Lock()
			s.problem = []byte(`{"type": "urn:solstice:problem:x", "title": "T", "status": 0, "detail": "the detail",
				"errors": [{"pointer": "/windows/0/start", "detail": "check the clock"}]}`)
			s.mu.Unlock()
			r := sinkReporter(t, s, clock)
			r.Exposed("winter", "festival", "p1")
			r.Accepted("p1")
			clock.Advance(time.Minute)
			s.setScript(tc.status)

			err := r.Flush(t.Context())
			if !solstice.IsKind(err, tc.kind) || !strings.Contains(err.Error(), "the detail") || !strings.Contains(err.Error(), fmt.Sprint(tc.status)) {
				t.Fatalf("err = %v, want kind %s with the status and the problem's detail", err, tc.kind)
			}
			if f := solstice.ErrorFields(err); len(f) != 1 || f[0] != (solstice.FieldError{Pointer: "/windows/0/start", Message: "check the clock"}) {
				t.Errorf("field errors = %v, want the problem's", f)
			}
			st := r.Stats()
			if tc.transient {
				if st.Failures != 1 || st.Refused != 0 || st.PendingBatches != 1 || st.LastError == nil {
					t.Errorf("stats = %+v, want 1 failure and the batch pending", st)
				}
				// The next flush sends the same batch, which now lands.
				if err := r.Flush(t.Context()); err != nil {
					t.Fatal(err)
				}
				reqs := s.allRequests()
				if len(reqs) != 2 || reqs[0].ID != reqs[1].ID || !bytes.Equal(reqs[0].Body, reqs[1].Body) {
					t.Errorf("the retry did not send the same batch again: %v", reqs)
				}
				if st := r.Stats(); st.Batches != 1 || st.Retries != 1 || st.PendingBatches != 0 || st.LastError != nil {
					t.Errorf("after the retry: %+v", st)
				}
				return
			}
			if st.Refused != 1 || st.Failures != 0 || st.PendingBatches != 0 || st.DroppedWindows != 1 || st.DroppedEvents != 2 ||
				st.LastRefusal == nil || st.PendingEvents != 0 {
				t.Errorf("stats = %+v, want the batch refused and dropped: 1 window, 2 events", st)
			}
			// Refusal does not block what follows.
			r.Accepted("p1")
			clock.Advance(time.Minute)
			if err := r.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			if b := s.storedBatches(); len(b) != 1 || len(b[0].Windows) != 1 || b[0].Windows[0].Accepted != 1 {
				t.Errorf("after a refusal, stored %+v; want the next minute's window", b)
			}
			if st := r.Stats(); st.LastRefusal == nil || st.LastError != nil {
				t.Errorf("after a success: last error %v, last refusal %v; want nil and kept", st.LastError, st.LastRefusal)
			}
		})
	}
}

func statusName(status int) string { return fmt.Sprintf("%d %s", status, http.StatusText(status)) }

func TestReporterBacksOffAndHonoursRetryAfter(t *testing.T) {
	clock := newManualClock(t0)
	s := newSink(t, clock)
	r := sinkReporter(t, s, clock, sdk.WithFlushInterval(10*time.Millisecond), sdk.WithRetryBackoff(10*time.Millisecond, 40*time.Millisecond))
	r.Exposed("winter", "festival", "p1")
	r.Rejected("p1", "cooldown")
	clock.Advance(time.Minute)
	s.setScript(http.StatusServiceUnavailable, http.StatusServiceUnavailable, http.StatusTooManyRequests)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.After(10 * time.Second)
	for r.Stats().Batches == 0 { // acknowledged, not only stored: a cancel would lose the answer
		select {
		case <-deadline:
			t.Fatalf("nothing acknowledged within 10s: %+v", r.Stats())
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}

	reqs := s.allRequests()
	if len(reqs) < 4 {
		t.Fatalf("%d requests, want 4 at least", len(reqs))
	}
	var statuses []int
	for i, q := range reqs[:4] {
		statuses = append(statuses, q.Status)
		if q.ID != reqs[0].ID || !bytes.Equal(q.Body, reqs[0].Body) {
			t.Errorf("attempt %d sent batch %s, want %s again with the same body", i, q.ID, reqs[0].ID)
		}
	}
	if want := []int{503, 503, 429, 200}; !slices.Equal(statuses, want) {
		t.Errorf("statuses = %v, want %v", statuses, want)
	}
	for i := 1; i < 3; i++ {
		if gap := reqs[i].At.Sub(reqs[i-1].At); gap < 10*time.Millisecond {
			t.Errorf("retry %d came %s after the failure, before the minimum backoff", i, gap)
		}
	}
	if gap := reqs[3].At.Sub(reqs[2].At); gap < time.Second {
		t.Errorf("the retry after 429 with Retry-After: 1 came after %s, want 1s at least", gap)
	}
	st := r.Stats()
	if st.Failures != 3 || st.Retries != 3 || st.Duplicates != 0 || st.Refused != 0 || st.LastError != nil {
		t.Errorf("stats = %+v, want 3 failures, 3 retries, delivered", st)
	}
}

func TestReporterSplitsATooLargeBatch(t *testing.T) {
	clock := newManualClock(t0)
	s := newSink(t, clock)
	r := sinkReporter(t, s, clock)
	for i := range 10 {
		r.CountFor("flag", fmt.Sprintf("v%d", i), "kills", int64(i))
	}
	clock.Advance(time.Minute)
	s.setScript(http.StatusRequestEntityTooLarge)
	if err := r.Flush(t.Context()); err != nil {
		t.Fatalf("a 413 is not an error when the halves land: %v", err)
	}
	reqs := s.allRequests()
	if len(reqs) != 3 || reqs[0].Status != 413 || reqs[1].ID == reqs[0].ID || reqs[2].ID == reqs[1].ID {
		t.Fatalf("requests = %v, want 413 then two halves under new ids", reqs)
	}
	var kills []int64
	for _, b := range s.storedBatches() {
		for _, w := range b.Windows {
			kills = append(kills, w.Custom["kills"])
		}
	}
	slices.Sort(kills)
	if want := []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(kills, want) {
		t.Errorf("the halves hold %v, want %v", kills, want)
	}
	if st := r.Stats(); st.Refused != 0 || st.Batches != 2 || st.DroppedWindows != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestReporterSplitsOverTheContractsLimits(t *testing.T) {
	clock := newManualClock(t0)
	s := newSink(t, clock)
	r := sinkReporter(t, s, clock, sdk.WithMaxPending(200_000, 10_000))
	// 14,000 players exposed to one variant and active: 28,000 events, more
	// than 10,000 in one window; the last 2,000 with long ids (escaped in
	// JSON: '<' takes six bytes), more than 1 MiB of them.
	const players = 14_000
	for i := range players {
		p := fmt.Sprintf("p%05d", i)
		if i >= 12_000 {
			p += strings.Repeat("<", 100)
		}
		r.Exposed("winter", "festival", p)
		r.Accepted(p)
	}
	// 1,500 windows: more than one batch holds.
	for i := range 1500 {
		r.CountFor("many", fmt.Sprintf("v%04d", i), "kills", 1)
	}
	clock.Advance(time.Minute)
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	batches := s.storedBatches()
	exposed, active := map[string]bool{}, map[string]bool{}
	var accepted, kills int64
	for i, b := range batches {
		for _, w := range b.Windows {
			accepted += w.Accepted
			kills += w.Custom["kills"]
			for _, e := range w.Exposures {
				exposed[e.Player] = true
			}
		}
		for _, e := range b.Activity {
			active[e.Player] = true
		}
		if last := i == len(batches)-1; last != (b.Through != "") {
			t.Errorf("batch %d of %d has through %q: want it on the last batch only", i, len(batches), b.Through)
		}
	}
	if len(batches) < 5 || len(exposed) != players || len(active) != players || accepted != players || kills != 1500 {
		t.Errorf("%d batches with %d exposed, %d active, %d accepted, %d kills; want at least 5 batches and %d, %d, %d, 1500",
			len(batches), len(exposed), len(active), accepted, kills, players, players, players)
	}
	for _, q := range s.allRequests() {
		if q.Status != http.StatusOK {
			t.Errorf("a request was answered %d: the packer let a batch over the limits", q.Status)
		}
	}
	if last := batches[len(batches)-1].Through; last != "2026-03-01T12:01:00Z" {
		t.Errorf("through = %q", last)
	}
}

func TestReporterStaysBoundedThroughALongOutage(t *testing.T) {
	clock := newManualClock(t0)
	s := newSink(t, clock)
	const maxEvents, maxWindows = 2000, 150
	r := sinkReporter(t, s, clock, sdk.WithMaxPending(maxEvents, maxWindows))
	s.setDown(true)

	// Three hours, 20 new players a minute, each exposed to one of two
	// variants and active: 40 events and 2 windows a minute.
	recorded := 0
	for minute := range 180 {
		for i := range 20 {
			p := fmt.Sprintf("p-%d-%d", minute, i)
			r.Exposed("winter", []string{"festival", "control"}[i%2], p)
			r.Accepted(p)
			recorded += 2
		}
		clock.Advance(time.Minute)
		if err := r.Flush(t.Context()); err == nil {
			t.Fatal("a flush succeeded while the control plane is down")
		}
		if st := r.Stats(); st.PendingEvents > maxEvents || st.PendingWindows > maxWindows {
			t.Fatalf("minute %d: %d events and %d windows pending, over the bounds %d and %d", minute, st.PendingEvents, st.PendingWindows, maxEvents, maxWindows)
		}
	}
	st := r.Stats()
	if st.DroppedEvents == 0 || st.DroppedWindows == 0 || st.PendingBatches == 0 {
		t.Errorf("stats = %+v, want drops and batches pending", st)
	}

	// The control plane returns: what is left lands, the newest data.
	s.setDown(false)
	if err := r.FlushAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	delivered := 0
	first := ""
	for _, b := range s.storedBatches() {
		delivered += len(b.Activity)
		for _, w := range b.Windows {
			delivered += len(w.Exposures)
			if first == "" || w.Start < first {
				first = w.Start
			}
		}
	}
	st = r.Stats()
	if got := delivered + int(st.DroppedEvents) + st.PendingEvents; got != recorded {
		t.Errorf("delivered %d + dropped %d + pending %d = %d, want the %d recorded", delivered, st.DroppedEvents, st.PendingEvents, got, recorded)
	}
	if last := t0.Add(179 * time.Minute).Truncate(time.Minute).Format(time.RFC3339); first >= last || first <= "2026-03-01T12:00:00Z" {
		t.Errorf("the oldest minute delivered is %s: want the oldest data dropped and the newest kept", first)
	}
}

func TestReporterDropsDataTooOldToBeAccepted(t *testing.T) {
	clock := newManualClock(t0)
	s := newSink(t, clock)
	r := sinkReporter(t, s, clock)
	s.setDown(true)
	r.Exposed("winter", "festival", "p1")
	r.Accepted("p1")
	clock.Advance(time.Minute)
	r.Flush(t.Context()) // cut, and fails
	r.AcceptedFor("winter", "control")
	clock.Advance(time.Minute)
	r.Flush(t.Context()) // the first batch is retried; the new window waits

	clock.Advance(telemetry.MaxAge)
	s.setDown(false)
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if st.DroppedWindows != 2 || st.DroppedEvents != 2 || st.Refused != 0 {
		t.Errorf("stats = %+v, want both windows and both events dropped as too old, without a request", st)
	}
	for _, b := range s.storedBatches() {
		if len(b.Windows) > 0 || len(b.Activity) > 0 {
			t.Errorf("sent %+v, older than the control plane accepts", b)
		}
	}
}

func TestReporterConcurrentUse(t *testing.T) {
	clock := newManualClock(t0)
	s := newSink(t, clock)
	r := sinkReporter(t, s, clock, sdk.WithFlushInterval(time.Millisecond))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopTicking := make(chan struct{})
	ticked := make(chan struct{})
	go func() { // time runs: minutes close while players act
		defer close(ticked)
		for {
			select {
			case <-stopTicking:
				return
			case <-time.After(time.Millisecond):
				clock.Advance(3 * time.Second)
			}
		}
	}()

	const workers, actions = 8, 1500
	var wg sync.WaitGroup
	var accepted, rejected atomic.Int64
	for w := range workers {
		wg.Go(func() {
			for i := range actions {
				p := fmt.Sprintf("w%d-p%d", w, i%50)
				r.Exposed("winter", []string{"festival", "control"}[i%2], p)
				switch i % 5 {
				case 0:
					r.SessionStart(p)
				case 1:
					r.Rejected(p, "cooldown")
					rejected.Add(1)
				case 2:
					r.Count(p, "kills", 2)
				case 3:
					r.SessionEnd(p)
				}
				r.Accepted(p)
				accepted.Add(1)
				_ = r.Stats()
			}
		})
	}
	wg.Wait()
	close(stopTicking)
	<-ticked
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	// Every player stays in one variant (i%2 is the parity of i%50), so
	// every action counts once.
	var gotAccepted, gotRejected int64
	for _, b := range s.storedBatches() {
		for _, w := range b.Windows {
			gotAccepted += w.Accepted
			gotRejected += w.Rejected["cooldown"]
		}
	}
	if gotAccepted != accepted.Load() || gotRejected != rejected.Load() {
		t.Errorf("stored %d accepted, %d rejected; recorded %d, %d", gotAccepted, gotRejected, accepted.Load(), rejected.Load())
	}
	if st := r.Stats(); st.Invalid != 0 || st.DroppedEvents != 0 || st.DroppedWindows != 0 || st.PendingEvents != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestRunShipsTheMinuteUnderWayWhenItEnds(t *testing.T) {
	clock := newManualClock(t0)
	s := newSink(t, clock)
	r := sinkReporter(t, s, clock, sdk.WithFlushInterval(time.Hour))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	r.Exposed("winter", "festival", "p1")
	r.Accepted("p1")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	b := s.storedBatches()
	if len(b) != 1 || len(b[0].Windows) != 1 || b[0].Windows[0].Start != "2026-03-01T12:00:00Z" || b[0].Through != "2026-03-01T12:01:00Z" {
		t.Errorf("stored %+v, want the minute under way with through at its end", b)
	}

	// With the control plane down, Run gives up after its final timeout.
	s.setDown(true)
	r2 := sinkReporter(t, s, clock, sdk.WithFlushInterval(time.Hour), sdk.WithFinalFlushTimeout(100*time.Millisecond))
	r2.AcceptedFor("winter", "control")
	ctx, cancel = context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	if err := r2.Run(ctx); !solstice.IsKind(err, solstice.KindInternal) {
		t.Errorf("Run with the control plane down = %v, want its 503", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run took %s to give up, want about the final timeout", d)
	}
}

// TestReporterAgainstTheControlPlane posts to the real ingest endpoint
// (web, telemetry, SQLite). The first answer is lost on the way back: the
// reporter sends the batch again under the same id, the control plane
// acknowledges a duplicate, and the counters count it once.
func TestReporterAgainstTheControlPlane(t *testing.T) {
	cp := newControlPlane(t)
	clock := newManualClock(t0)
	ts := telemetry.New(cp.db, telemetry.WithClock(clock))
	handler := web.New(web.Deps{Flags: cp.flags, Auth: cp.auth, Logger: slog.New(slog.DiscardHandler), Publisher: cp.pub.Load(), Telemetry: ts})

	var lose atomic.Int32 // answers to lose
	var mu sync.Mutex
	var seen []string // batch ids and bodies, in order
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var b telemetry.Batch
		json.Unmarshal(body, &b)
		mu.Lock()
		seen = append(seen, b.BatchID+" "+string(body))
		mu.Unlock()
		req.Body = io.NopCloser(bytes.NewReader(body))
		if lose.Add(-1) >= 0 {
			// The control plane handles the request; its answer is lost.
			handler.ServeHTTP(httptest.NewRecorder(), req)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		handler.ServeHTTP(w, req)
	}))
	t.Cleanup(front.Close)

	cfg := cp.config("production")
	cfg.BaseURL, cfg.Clock = front.URL, clock
	r := newReporter(t, newClient(t, cfg))
	for i := range 10 {
		p := fmt.Sprintf("p%d", i)
		r.Exposed("winter", []string{"festival", "control"}[i%2], p)
		r.Accepted(p)
		r.Accepted(p)
		if i%5 == 0 {
			r.Rejected(p, "cooldown")
		}
	}
	clock.Advance(time.Minute)

	lose.Store(1)
	if err := r.Flush(t.Context()); err == nil {
		t.Fatal("the first flush succeeded although its answer was lost")
	}
	if err := r.Flush(t.Context()); err != nil {
		t.Fatalf("the retry: %v", err)
	}
	mu.Lock()
	if len(seen) != 2 || seen[0] != seen[1] {
		var ids []string
		for _, s := range seen {
			ids = append(ids, strings.Fields(s)[0])
		}
		t.Errorf("the retry sent another batch (or another body): ids %q", ids)
	}
	mu.Unlock()
	st := r.Stats()
	if st.Failures != 1 || st.Retries != 1 || st.Batches != 1 || st.Duplicates != 1 {
		t.Errorf("stats = %+v, want 1 failure, then 1 retry acknowledged as a duplicate", st)
	}

	got, err := ts.Counters(t.Context(), "production", "winter", "festival", "control", time.Time{}, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := guardrails.Counters{
		Since: t0.Truncate(time.Minute), Watermark: t0.Truncate(time.Minute).Add(time.Minute),
		Treatment: guardrails.Arm{Exposures: 5, Actions: 11, Rejects: 1},
		Control:   guardrails.Arm{Exposures: 5, Actions: 11, Rejects: 1},
	}
	opts := cmpopts.IgnoreFields(guardrails.Arm{}, "LastExposure", "LastMetric", "Custom", "Sessions", "Retention")
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
	reasons, err := ts.RejectReasons(t.Context(), "production", "winter", "festival", time.Time{}, clock.Now())
	if err != nil || !cmp.Equal(reasons, map[string]int64{"cooldown": 1}) {
		t.Errorf("reject reasons = %v, %v", reasons, err)
	}
}

func TestReporterAcceptedDoesNotAllocate(t *testing.T) {
	clock := newManualClock(t0)
	r := newReporter(t, reporterClient(t, "http://127.0.0.1:1", "k", clock))
	for _, f := range []string{"winter", "boss", "drops"} {
		r.Exposed(f, "treatment", "p1")
	}
	r.SessionStart("p1")
	r.Rejected("p1", "cooldown")
	r.Count("p1", "kills", 1)
	allocs := testing.AllocsPerRun(1000, func() {
		r.Accepted("p1")
		r.Rejected("p1", "cooldown")
		r.Count("p1", "kills", 1)
		r.Exposed("winter", "treatment", "p1")
		r.AcceptedFor("winter", "treatment")
	})
	if allocs != 0 {
		t.Errorf("recording allocates %.1f times per round, want 0", allocs)
	}
}

// BenchmarkReporterAccepted records one accepted action of one of 10,000
// players, each exposed to three flags, on the wall clock.
//
//	go test -run '^$' -bench Reporter -benchtime=200000x -benchmem ./sdk/
func BenchmarkReporterAccepted(b *testing.B) {
	r := newReporter(b, reporterClient(b, "http://127.0.0.1:1", "k", nil), sdk.WithMaxPending(10_000_000, 0))
	players := make([]string, 10_000)
	for i := range players {
		players[i] = fmt.Sprintf("player-%d", i)
		for _, f := range []string{"winter", "boss", "drops"} {
			r.Exposed(f, []string{"control", "treatment"}[i%2], players[i])
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		r.Accepted(players[i%len(players)])
		i++
	}
}

// BenchmarkReporterAcceptedParallel is BenchmarkReporterAccepted from
// GOMAXPROCS goroutines: the cost of the reporter's one mutex.
func BenchmarkReporterAcceptedParallel(b *testing.B) {
	r := newReporter(b, reporterClient(b, "http://127.0.0.1:1", "k", nil), sdk.WithMaxPending(10_000_000, 0))
	players := make([]string, 10_000)
	for i := range players {
		players[i] = fmt.Sprintf("player-%d", i)
		r.Exposed("winter", []string{"control", "treatment"}[i%2], players[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		i := int(n.Add(1)) * 7919
		for pb.Next() {
			r.Accepted(players[i%len(players)])
			i++
		}
	})
}
