package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// delivery is one request a receiver got.
type delivery struct {
	ID, Timestamp, Signature, Event, Attempt, ContentType, UserAgent string
	Body                                                             []byte
	Verified                                                         error // Verify under the endpoint's secret
}

// answer is how a receiver answers a request.
type answer struct {
	status int
	header map[string]string
	body   string
	hang   bool // wait until the client gives up
}

// receiver is a webhook endpoint that verifies what it gets with Verify,
// at the time now returns, and answers the n-th request (from 0) with
// respond(n).
type receiver struct {
	srv     *httptest.Server
	secret  string
	now     func() time.Time
	respond func(n int) answer
	arrived chan struct{} // one value per request, when it arrives

	mu  sync.Mutex
	got []delivery
}

func newReceiver(t *testing.T, now func() time.Time, respond func(n int) answer) *receiver {
	t.Helper()
	r := &receiver{secret: specSecret, now: now, respond: respond, arrived: make(chan struct{}, 1000)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Errorf("receiver: read the body: %v", err)
		}
		d := delivery{
			ID: req.Header.Get(HeaderID), Timestamp: req.Header.Get(HeaderTimestamp),
			Signature: req.Header.Get(HeaderSignature), Event: req.Header.Get(HeaderEvent),
			Attempt: req.Header.Get(HeaderAttempt), ContentType: req.Header.Get("Content-Type"),
			UserAgent: req.Header.Get("User-Agent"), Body: body,
			Verified: Verify(r.secret, req.Header, body, r.now()),
		}
		if req.Method != http.MethodPost {
			t.Errorf("receiver: method %s, want POST", req.Method)
		}
		r.mu.Lock()
		n := len(r.got)
		r.got = append(r.got, d)
		r.mu.Unlock()
		r.arrived <- struct{}{}
		a := r.respond(n)
		if a.hang {
			<-req.Context().Done()
			return
		}
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// endpoint returns the receiver as an endpoint named name.
func (r *receiver) endpoint(name string) Endpoint {
	return Endpoint{Name: name, URL: r.srv.URL + "/hooks/solstice", Secret: r.secret}
}

func always(status int) func(int) answer { return func(int) answer { return answer{status: status} } }

// at returns a clock-like function reading *now under mu.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

func noJitter() float64 { return 0 }

func quiet() Option { return WithLogger(slog.New(slog.DiscardHandler)) }

// message returns a queued guardrail message for endpoint.
func message(t *testing.T, id, endpoint string) Message {
	t.Helper()
	m, err := NewMessage(id, endpoint, "guardrail.trip", map[string]string{"flag": "double-xp"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDispatcherDelivers(t *testing.T) {
	clock := &testClock{now: t0}
	rcv := newReceiver(t, clock.Now, always(http.StatusNoContent))
	ob := newFakeOutbox()
	m := message(t, "prod/double-xp/rejects/test-1/2-trip@ops", "ops")
	ob.add(t0, m)
	d := NewDispatcher(ob, []Endpoint{rcv.endpoint("ops")}, quiet())
	if err := d.Tick(t.Context(), t0); err != nil {
		t.Fatal(err)
	}
	want := []delivery{{
		ID: m.ID, Timestamp: strconv.FormatInt(t0.Unix(), 10), Event: "guardrail.trip", Attempt: "1",
		ContentType: "application/json", UserAgent: "solstice-webhooks/1", Body: m.Payload,
	}}
	got := rcv.deliveries()
	if diff := cmp.Diff(want, got, cmpDelivery); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
	if len(got) == 1 && got[0].Verified != nil {
		t.Errorf("the receiver's Verify: %v", got[0].Verified)
	}
	if row := ob.row(m.ID); !row.DeliveredAt.Equal(t0) || row.Attempts != 0 || !row.ClaimedAt.IsZero() {
		t.Errorf("outbox row = delivered at %v, %d failed attempts, claimed at %v; want delivered at %v, 0, not claimed",
			row.DeliveredAt, row.Attempts, row.ClaimedAt, t0)
	}
	// Delivered messages are not claimed again.
	if err := d.Tick(t.Context(), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := len(rcv.deliveries()); n != 1 {
		t.Errorf("%d deliveries after a second Tick, want 1", n)
	}
}

// cmpDelivery compares deliveries without their signature and Verify
// result, which the tests check apart.
var cmpDelivery = cmp.FilterPath(func(p cmp.Path) bool {
	s := p.Last().String()
	return s == ".Signature" || s == ".Verified"
}, cmp.Ignore())

func TestDispatcherRetriesAfter500(t *testing.T) {
	clock := &testClock{now: t0}
	rcv := newReceiver(t, clock.Now, func(n int) answer {
		if n == 0 {
			return answer{status: http.StatusInternalServerError, body: "database\tdown\n"}
		}
		return answer{status: http.StatusOK}
	})
	ob := newFakeOutbox()
	m := message(t, "m1@ops", "ops")
	ob.add(t0, m)
	d := NewDispatcher(ob, []Endpoint{rcv.endpoint("ops")}, quiet(), WithJitter(noJitter))
	if err := d.Tick(t.Context(), t0); err != nil {
		t.Fatal(err)
	}
	row := ob.row(m.ID)
	wantFail := []fakeFailure{{At: t0, Reason: "HTTP 500 Internal Server Error: database down", Next: t0.Add(5 * time.Second)}}
	if diff := cmp.Diff(wantFail, row.Failures); diff != "" {
		t.Fatalf("failures (-want +got):\n%s", diff)
	}
	// Not due before the backoff.
	clock.set(t0.Add(4 * time.Second))
	if err := d.Tick(t.Context(), clock.Now()); err != nil {
		t.Fatal(err)
	}
	if n := len(rcv.deliveries()); n != 1 {
		t.Fatalf("%d requests before the retry is due, want 1", n)
	}
	clock.set(t0.Add(5 * time.Second))
	if err := d.Tick(t.Context(), clock.Now()); err != nil {
		t.Fatal(err)
	}
	got := rcv.deliveries()
	if len(got) != 2 {
		t.Fatalf("%d requests, want 2", len(got))
	}
	if got[0].ID != m.ID || got[1].ID != m.ID {
		t.Errorf("webhook-ids %q and %q, want %q twice", got[0].ID, got[1].ID, m.ID)
	}
	if got[1].Attempt != "2" || got[1].Timestamp != strconv.FormatInt(t0.Unix()+5, 10) {
		t.Errorf("retry: attempt %s at %s, want attempt 2 at %d", got[1].Attempt, got[1].Timestamp, t0.Unix()+5)
	}
	for i, g := range got {
		if g.Verified != nil {
			t.Errorf("request %d: the receiver's Verify: %v", i, g.Verified)
		}
	}
	if row := ob.row(m.ID); !row.DeliveredAt.Equal(t0.Add(5*time.Second)) || row.Attempts != 1 {
		t.Errorf("delivered at %v after %d failures, want at %v after 1", row.DeliveredAt, row.Attempts, t0.Add(5*time.Second))
	}
}

func TestDispatcherRetriesAfterTimeout(t *testing.T) {
	clock := &testClock{now: t0}
	rcv := newReceiver(t, clock.Now, func(n int) answer {
		if n == 0 {
			return answer{hang: true}
		}
		return answer{status: http.StatusOK}
	})
	ob := newFakeOutbox()
	m := message(t, "m1@ops", "ops")
	ob.add(t0, m)
	d := NewDispatcher(ob, []Endpoint{rcv.endpoint("ops")}, quiet(), WithJitter(noJitter),
		WithHTTPClient(&http.Client{Timeout: 100 * time.Millisecond}))
	if err := d.Tick(t.Context(), t0); err != nil {
		t.Fatal(err)
	}
	row := ob.row(m.ID)
	if row.Attempts != 1 || !strings.HasPrefix(row.LastError, "timed out: ") || !row.Next.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("after a timeout: %d attempts, last error %q, next %v; want 1, \"timed out: ...\", %v",
			row.Attempts, row.LastError, row.Next, t0.Add(5*time.Second))
	}
	clock.set(row.Next)
	if err := d.Tick(t.Context(), row.Next); err != nil {
		t.Fatal(err)
	}
	got := rcv.deliveries()
	if len(got) != 2 || got[0].ID != m.ID || got[1].ID != m.ID {
		t.Fatalf("requests %+v, want two with webhook-id %q", got, m.ID)
	}
	if row := ob.row(m.ID); row.DeliveredAt.IsZero() {
		t.Errorf("not delivered by the retry: %+v", row)
	}
}

func TestDispatcherBackoffSchedule(t *testing.T) {
	rcv := newReceiver(t, func() time.Time { return t0 }, always(http.StatusBadGateway))
	ob := newFakeOutbox()
	m := message(t, "m1@ops", "ops")
	ob.add(t0, m)
	d := NewDispatcher(ob, []Endpoint{rcv.endpoint("ops")}, quiet(), WithJitter(func() float64 { return 0.5 }))
	now := t0
	var delays []time.Duration
	for range 100 {
		if err := d.Tick(t.Context(), now); err != nil {
			t.Fatal(err)
		}
		row := ob.row(m.ID)
		if !row.GivenUpAt.IsZero() {
			break
		}
		delays = append(delays, row.Next.Sub(now))
		now = row.Next
	}
	// 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, then 2 h, each 10% longer
	// (jitter 0.5 of at most 20%), the last one cut at the give-up age.
	const h2 = 2*time.Hour + 12*time.Minute
	want := []time.Duration{5500 * time.Millisecond, 33 * time.Second, 2*time.Minute + 12*time.Second, 11 * time.Minute,
		33 * time.Minute, 66 * time.Minute, h2, h2, h2, h2, h2, h2, h2, h2, h2, h2, 7*time.Minute + 9500*time.Millisecond}
	if diff := cmp.Diff(want, delays); diff != "" {
		t.Errorf("delays (-want +got):\n%s", diff)
	}
	row := ob.row(m.ID)
	if !now.Equal(t0.Add(24 * time.Hour)) {
		t.Errorf("last attempt at %v, want at the give-up age %v", now, t0.Add(24*time.Hour))
	}
	if want := "HTTP 502 Bad Gateway; given up: not delivered within 24h0m0s of queueing (18 attempts)"; row.LastError != want || !row.GivenUpAt.Equal(now) {
		t.Errorf("given up at %v with %q, want at %v with %q", row.GivenUpAt, row.LastError, now, want)
	}
	if got := len(rcv.deliveries()); got != 18 || row.Attempts != 18 {
		t.Errorf("%d requests, %d recorded attempts; want 18", got, row.Attempts)
	}
}

func TestDispatcherJitter(t *testing.T) {
	for _, tc := range []struct {
		jitter float64
		want   time.Duration
	}{
		{0, 5 * time.Second},
		{0.25, 5250 * time.Millisecond},
		{0.999, 5999 * time.Millisecond},
		{7, 6 * time.Second},
		{-1, 5 * time.Second},
	} {
		t.Run(fmt.Sprint(tc.jitter), func(t *testing.T) {
			rcv := newReceiver(t, func() time.Time { return t0 }, always(http.StatusInternalServerError))
			ob := newFakeOutbox()
			ob.add(t0, message(t, "m1@ops", "ops"))
			d := NewDispatcher(ob, []Endpoint{rcv.endpoint("ops")}, quiet(), WithJitter(func() float64 { return tc.jitter }))
			if err := d.Tick(t.Context(), t0); err != nil {
				t.Fatal(err)
			}
			if got := ob.row("m1@ops").Next.Sub(t0); got != tc.want {
				t.Errorf("first delay with jitter %v = %v, want %v", tc.jitter, got, tc.want)
			}
		})
	}
}

func TestDispatcherGivesUp(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		attempts int    // attempts when given up; 0: never within 5
		reason   string // the last error
	}{
		{"410 at once", http.StatusGone, 1, "HTTP 410 Gone (the receiver wants no more deliveries: remove the endpoint or fix its URL); given up"},
		{"404 after three", http.StatusNotFound, 3, "HTTP 404 Not Found; given up after 3 attempts"},
		{"400 after three", http.StatusBadRequest, 3, "HTTP 400 Bad Request; given up after 3 attempts"},
		{"401 after three", http.StatusUnauthorized, 3, "HTTP 401 Unauthorized; given up after 3 attempts"},
		{"redirect after three", http.StatusFound, 3, "HTTP 302 Found (redirects are not followed: configure the final URL); given up after 3 attempts"},
		{"408 retried", http.StatusRequestTimeout, 0, "HTTP 408 Request Timeout"},
		{"425 retried", http.StatusTooEarly, 0, "HTTP 425 Too Early"},
		{"429 retried", http.StatusTooManyRequests, 0, "HTTP 429 Too Many Requests"},
		{"503 retried", http.StatusServiceUnavailable, 0, "HTTP 503 Service Unavailable"},
		{"504 retried", http.StatusGatewayTimeout, 0, "HTTP 504 Gateway Timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var redirected int
			target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { redirected++ }))
			defer target.Close()
			rcv := newReceiver(t, func() time.Time { return t0 }, func(int) answer {
				return answer{status: tc.status, header: map[string]string{"Location": target.URL}}
			})
			ob := newFakeOutbox()
			ob.add(t0, message(t, "m1@ops", "ops"))
			client := &http.Client{Timeout: time.Second}
			d := NewDispatcher(ob, []Endpoint{rcv.endpoint("ops")}, quiet(), WithJitter(noJitter), WithHTTPClient(client))
			now := t0
			for range 5 {
				if err := d.Tick(t.Context(), now); err != nil {
					t.Fatal(err)
				}
				if row := ob.row("m1@ops"); row.GivenUpAt.IsZero() {
					now = row.Next
				}
			}
			row := ob.row("m1@ops")
			switch {
			case tc.attempts == 0 && !row.GivenUpAt.IsZero():
				t.Errorf("given up after %d attempts with %q, want retries", row.Attempts, row.LastError)
			case tc.attempts > 0 && (row.GivenUpAt.IsZero() || row.Attempts != tc.attempts):
				t.Errorf("%d attempts, given up at %v; want given up after %d", row.Attempts, row.GivenUpAt, tc.attempts)
			}
			if row.LastError != tc.reason {
				t.Errorf("last error %q, want %q", row.LastError, tc.reason)
			}
			if n := len(rcv.deliveries()); n != row.Attempts {
				t.Errorf("%d requests for %d attempts", n, row.Attempts)
			}
			if redirected != 0 {
				t.Errorf("the redirect was followed %d times", redirected)
			}
			if client.CheckRedirect != nil {
				t.Errorf("WithHTTPClient changed the caller's client")
			}
		})
	}
}

func TestDispatcherRetryAfter(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		retryAfter string
		want       time.Duration // the wait before the next attempt
	}{
		{"429 seconds", 429, "120", 2 * time.Minute},
		{"429 date", 429, t0.Add(10 * time.Minute).Format(http.TimeFormat), 10 * time.Minute},
		{"429 shorter than the backoff", 429, "1", 5 * time.Second},
		{"429 date in the past", 429, t0.Add(-time.Hour).Format(http.TimeFormat), 5 * time.Second},
		{"429 absurd", 429, "31536000", MaxRetryAfter},
		{"429 absurd date", 429, t0.AddDate(1, 0, 0).Format(http.TimeFormat), MaxRetryAfter},
		{"429 garbage", 429, "soon", 5 * time.Second},
		{"429 negative", 429, "-30", 5 * time.Second},
		{"503 seconds", 503, "60", time.Minute},
		{"500 ignores it", 500, "60", 5 * time.Second},
		{"408 ignores it", 408, "60", 5 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rcv := newReceiver(t, func() time.Time { return t0 }, func(int) answer {
				return answer{status: tc.status, header: map[string]string{"Retry-After": tc.retryAfter}}
			})
			ob := newFakeOutbox()
			ob.add(t0, message(t, "m1@ops", "ops"))
			d := NewDispatcher(ob, []Endpoint{rcv.endpoint("ops")}, quiet(), WithJitter(noJitter))
			if err := d.Tick(t.Context(), t0); err != nil {
				t.Fatal(err)
			}
			row := ob.row("m1@ops")
			if got := row.Next.Sub(t0); got != tc.want || !row.GivenUpAt.IsZero() {
				t.Errorf("next attempt after %v (given up at %v), want after %v", got, row.GivenUpAt, tc.want)
			}
		})
	}
}

func TestDispatcherGiveUpByAge(t *testing.T) {
	rcv := newReceiver(t, func() time.Time { return t0 }, always(http.StatusInternalServerError))
	ob := newFakeOutbox()
	ob.add(t0.Add(-25*time.Hour), message(t, "old@ops", "ops"))
	ob.add(t0.Add(-24*time.Hour+2*time.Second), message(t, "nearly@ops", "ops"))
	ob.add(t0.Add(-time.Hour), message(t, "young@ops", "ops"))
	d := NewDispatcher(ob, []Endpoint{rcv.endpoint("ops")}, quiet(), WithJitter(noJitter))
	if err := d.Tick(t.Context(), t0); err != nil {
		t.Fatal(err)
	}
	if n := len(rcv.deliveries()); n != 3 {
		t.Errorf("%d requests, want 3: even a message past the give-up age is attempted once", n)
	}
	old := ob.row("old@ops")
	if want := "HTTP 500 Internal Server Error; given up: not delivered within 24h0m0s of queueing (1 attempts)"; old.LastError != want || !old.GivenUpAt.Equal(t0) {
		t.Errorf("old: given up at %v with %q, want at %v with %q", old.GivenUpAt, old.LastError, t0, want)
	}
	// The backoff (5 s) would pass the give-up age: the last attempt is
	// made at that age.
	if nearly := ob.row("nearly@ops"); !nearly.Next.Equal(t0.Add(2*time.Second)) || !nearly.GivenUpAt.IsZero() {
		t.Errorf("nearly: next %v, given up at %v; want next %v", nearly.Next, nearly.GivenUpAt, t0.Add(2*time.Second))
	}
	if young := ob.row("young@ops"); !young.Next.Equal(t0.Add(5 * time.Second)) {
		t.Errorf("young: next %v, want %v", young.Next, t0.Add(5*time.Second))
	}
	// A shorter give-up age.
	ob2 := newFakeOutbox()
	ob2.add(t0.Add(-2*time.Hour), message(t, "m@ops", "ops"))
	d2 := NewDispatcher(ob2, []Endpoint{rcv.endpoint("ops")}, quiet(), WithGiveUpAfter(time.Hour))
	if err := d2.Tick(t.Context(), t0); err != nil {
		t.Fatal(err)
	}
	if row := ob2.row("m@ops"); !strings.Contains(row.LastError, "not delivered within 1h0m0s") || row.GivenUpAt.IsZero() {
		t.Errorf("with a 1 h give-up age: given up at %v with %q", row.GivenUpAt, row.LastError)
	}
}

func TestDispatcherUnknownEndpoint(t *testing.T) {
	rcv := newReceiver(t, func() time.Time { return t0 }, always(http.StatusOK))
	ob := newFakeOutbox()
	ob.add(t0, message(t, "m1@gone", "gone"), message(t, "m1@ops", "ops"))
	d := NewDispatcher(ob, []Endpoint{rcv.endpoint("ops")}, quiet())
	if err := d.Tick(t.Context(), t0); err != nil {
		t.Fatal(err)
	}
	row := ob.row("m1@gone")
	if want := `endpoint "gone" is not configured; given up`; row.LastError != want || !row.GivenUpAt.Equal(t0) || row.Attempts != 1 {
		t.Errorf("given up at %v after %d attempts with %q, want at %v after 1 with %q", row.GivenUpAt, row.Attempts, row.LastError, t0, want)
	}
	if got := rcv.deliveries(); len(got) != 1 || got[0].ID != "m1@ops" {
		t.Errorf("requests %+v, want only m1@ops", got)
	}
}

func TestDispatcherInvalidEndpoint(t *testing.T) {
	ob := newFakeOutbox()
	ob.add(t0, message(t, "m1@ops", "ops"))
	var logs bytes.Buffer
	bad := Endpoint{Name: "ops", URL: "https://hooks.example.com/T0KEN", Secret: "whsec_not-base64-s3cr3t"}
	d := NewDispatcher(ob, []Endpoint{bad, {Name: "ops", URL: "https://other.example.com/", Secret: specSecret}},
		WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))), WithJitter(noJitter))
	if err := d.Tick(t.Context(), t0); err != nil {
		t.Fatal(err)
	}
	row := ob.row("m1@ops")
	if !strings.HasPrefix(row.LastError, `endpoint "ops" is misconfigured: invalid webhook endpoint "ops" (/secret: the secret starts with whsec_ but the rest is not standard base64)`) ||
		!row.GivenUpAt.IsZero() || !row.Next.Equal(t0.Add(5*time.Second)) {
		t.Errorf("last error %q, next %v, given up at %v; want a retry in 5s saying the endpoint is misconfigured", row.LastError, row.Next, row.GivenUpAt)
	}
	for _, want := range []string{"invalid webhook endpoint", "configured twice"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "s3cr3t") || strings.Contains(logs.String(), "T0KEN") {
		t.Errorf("logs show the secret or the URL:\n%s", logs.String())
	}
}

// TestDispatcherNeverLogsSecrets runs deliveries that succeed and fail in
// every way and looks for the secrets and the URLs' tokens in the logs and
// the recorded errors.
func TestDispatcherNeverLogsSecrets(t *testing.T) {
	rcv := newReceiver(t, func() time.Time { return t0 }, func(n int) answer {
		return answer{status: []int{200, 500, 410, 404}[n%4], body: "no"}
	})
	slow := newReceiver(t, func() time.Time { return t0 }, func(int) answer { return answer{hang: true} })
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	eps := []Endpoint{
		{Name: "ops", URL: rcv.srv.URL + "/hooks/T0KEN-1?key=T0KEN-2", Secret: specSecret + " " + otherSecret},
		{Name: "down", URL: closedURL + "/hooks/T0KEN-3", Secret: specSecret},
		{Name: "slow", URL: slow.srv.URL + "/hooks/T0KEN-4", Secret: specSecret},
	}
	ob := newFakeOutbox()
	var ids []string
	for i, ep := range []string{"ops", "ops", "ops", "ops", "down", "slow", "gone"} {
		id := fmt.Sprintf("m%d@%s", i, ep)
		ids = append(ids, id)
		ob.add(t0, message(t, id, ep))
	}
	var logs bytes.Buffer
	d := NewDispatcher(ob, eps, WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		WithConcurrency(1), WithHTTPClient(&http.Client{Timeout: 200 * time.Millisecond}))
	if err := d.Tick(t.Context(), t0); err != nil {
		t.Fatal(err)
	}
	all := logs.String()
	for _, id := range ids {
		all += "\n" + ob.row(id).LastError
	}
	for _, secret := range []string{"T0KEN", "whsec_", "MfKQ9r8", "c29sc3Rp", "/hooks"} {
		if strings.Contains(all, secret) {
			t.Errorf("%q appears in the logs or errors:\n%s", secret, all)
		}
	}
	for _, want := range []string{"webhook delivered", "webhook delivery failed", "webhook delivery given up", "connection refused", "timed out"} {
		if !strings.Contains(all, want) {
			t.Errorf("logs and errors lack %q:\n%s", want, all)
		}
	}
}

func TestDispatcherLimitsResponseBody(t *testing.T) {
	rcv := newReceiver(t, func() time.Time { return t0 }, func(int) answer {
		return answer{status: 500, body: "é" + strings.Repeat("x\x00", 1<<20)}
	})
	ob := newFakeOutbox()
	ob.add(t0, message(t, "m1@ops", "ops"))
	d := NewDispatcher(ob, []Endpoint{rcv.endpoint("ops")}, quiet())
	if err := d.Tick(t.Context(), t0); err != nil {
		t.Fatal(err)
	}
	reason := ob.row("m1@ops").LastError
	want := "HTTP 500 Internal Server Error: éx" + strings.Repeat(" x", 98) + "…"
	if reason != want {
		t.Errorf("last error %q (%d bytes), want %q", reason, len(reason), want)
	}
}

// TestDispatchersShareAnOutbox has two dispatchers tick at once, again and
// again, over one outbox, with a receiver that answers slowly: each message
// is delivered exactly once.
func TestDispatchersShareAnOutbox(t *testing.T) {
	rcv := newReceiver(t, func() time.Time { return t0 }, func(int) answer {
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
		return answer{status: http.StatusOK}
	})
	ob := newFakeOutbox()
	const n = 60
	for i := range n {
		ob.add(t0.Add(time.Duration(i)*time.Millisecond), message(t, fmt.Sprintf("m%02d@ops", i), "ops"))
	}
	var wg sync.WaitGroup
	for range 2 {
		d := NewDispatcher(ob, []Endpoint{rcv.endpoint("ops")}, quiet(), WithBatchSize(7), WithConcurrency(3))
		wg.Go(func() {
			for i := 0; ob.open() > 0 && i < 1000; i++ {
				if err := d.Tick(t.Context(), t0.Add(time.Duration(i)*time.Millisecond)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	count := map[string]int{}
	for _, g := range rcv.deliveries() {
		count[g.ID]++
	}
	for i := range n {
		id := fmt.Sprintf("m%02d@ops", i)
		if count[id] != 1 || ob.row(id).Deliveries != 1 {
			t.Errorf("%s: %d requests and %d recorded deliveries, want 1", id, count[id], ob.row(id).Deliveries)
		}
	}
	if len(count) != n {
		t.Errorf("%d distinct messages delivered, want %d", len(count), n)
	}
}

func TestDispatcherLeaseCutoff(t *testing.T) {
	rcv := newReceiver(t, func() time.Time { return t0 }, func(int) answer { return answer{hang: true} })
	ob := newFakeOutbox()
	for i := range 3 {
		ob.add(t0, message(t, fmt.Sprintf("m%d@ops", i), "ops"))
	}
	lease := 400 * time.Millisecond
	d := NewDispatcher(ob, []Endpoint{rcv.endpoint("ops")}, quiet(), WithLease(lease), WithConcurrency(1), WithJitter(noJitter))
	if err := d.Tick(t.Context(), t0); err != nil {
		t.Fatal(err)
	}
	first := ob.row("m0@ops")
	if first.Attempts != 1 || !strings.HasPrefix(first.LastError, "no answer before the dispatcher's deadline (half the lease)") {
		t.Errorf("the cut delivery: %d attempts, last error %q", first.Attempts, first.LastError)
	}
	for _, id := range []string{"m1@ops", "m2@ops"} {
		if row := ob.row(id); row.Attempts != 0 || !row.ClaimedAt.Equal(t0) {
			t.Errorf("%s, not started: %d attempts, claimed at %v; want 0, still claimed at %v", id, row.Attempts, row.ClaimedAt, t0)
		}
	}
	if got, _ := ob.Claim(t.Context(), t0.Add(lease-time.Millisecond), lease, 10); len(got) != 0 {
		t.Errorf("claimed %d messages within the lease, want 0", len(got))
	}
	if got, _ := ob.Claim(t.Context(), t0.Add(lease), lease, 10); len(got) != 2 {
		t.Errorf("claimed %d messages once the lease ran out, want the 2 not attempted", len(got))
	}
}

func TestDispatcherShutdownMidDelivery(t *testing.T) {
	rcv := newReceiver(t, func() time.Time { return t0.Add(DefaultLease) }, func(n int) answer {
		if n == 0 {
			return answer{hang: true}
		}
		return answer{status: http.StatusOK}
	})
	ob := newFakeOutbox()
	ob.add(t0, message(t, "m1@ops", "ops"))
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-rcv.arrived; cancel() }()
	a := NewDispatcher(ob, []Endpoint{rcv.endpoint("ops")}, quiet())
	if err := a.Tick(ctx, t0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Tick = %v, want context.Canceled", err)
	}
	if row := ob.row("m1@ops"); row.Attempts != 0 || !row.ClaimedAt.Equal(t0) {
		t.Fatalf("after a shutdown: %d attempts recorded, claimed at %v; want none, claimed at %v", row.Attempts, row.ClaimedAt, t0)
	}
	// Another dispatcher takes it over once the lease runs out.
	b := NewDispatcher(ob, []Endpoint{rcv.endpoint("ops")}, quiet())
	if err := b.Tick(t.Context(), t0.Add(DefaultLease-time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := len(rcv.deliveries()); n != 1 {
		t.Fatalf("%d requests within the lease, want 1", n)
	}
	if err := b.Tick(t.Context(), t0.Add(DefaultLease)); err != nil {
		t.Fatal(err)
	}
	got := rcv.deliveries()
	if len(got) != 2 || got[1].ID != "m1@ops" || got[1].Verified != nil || ob.row("m1@ops").DeliveredAt.IsZero() {
		t.Errorf("after the lease: requests %+v, row %+v; want m1@ops delivered", got, ob.row("m1@ops"))
	}
}

// flakyOutbox fails the calls named in fail.
type flakyOutbox struct {
	*fakeOutbox
	failClaim, failDelivered bool
}

func (o *flakyOutbox) Claim(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Pending, error) {
	if o.failClaim {
		return nil, solstice.Errorf(solstice.KindInternal, "database is locked")
	}
	return o.fakeOutbox.Claim(ctx, now, lease, limit)
}

func (o *flakyOutbox) Delivered(ctx context.Context, id string, at time.Time) error {
	if o.failDelivered {
		return solstice.Errorf(solstice.KindInternal, "database is locked")
	}
	return o.fakeOutbox.Delivered(ctx, id, at)
}

func TestDispatcherOutboxErrors(t *testing.T) {
	rcv := newReceiver(t, func() time.Time { return t0.Add(DefaultLease) }, always(http.StatusOK))
	ob := &flakyOutbox{fakeOutbox: newFakeOutbox(), failClaim: true}
	ob.add(t0, message(t, "m1@ops", "ops"))
	d := NewDispatcher(ob, []Endpoint{rcv.endpoint("ops")}, quiet())
	if err := d.Tick(t.Context(), t0); err == nil || err.Error() != "claim webhook messages: database is locked" {
		t.Errorf("Tick with a failing Claim = %v", err)
	}
	// A delivery whose record fails is sent again after the lease, with
	// the same webhook-id: delivery is at least once.
	ob.failClaim, ob.failDelivered = false, true
	if err := d.Tick(t.Context(), t0); err == nil || err.Error() != "record the delivery of webhook message m1@ops: database is locked" {
		t.Errorf("Tick with a failing Delivered = %v", err)
	}
	ob.failDelivered = false
	if err := d.Tick(t.Context(), t0.Add(DefaultLease)); err != nil {
		t.Fatal(err)
	}
	got := rcv.deliveries()
	if len(got) != 2 || got[0].ID != got[1].ID || ob.row("m1@ops").DeliveredAt.IsZero() {
		t.Errorf("requests %+v, want m1@ops twice, then recorded", got)
	}
}

func TestRunKickAndDrain(t *testing.T) {
	clock := &testClock{now: t0}
	rcv := newReceiver(t, clock.Now, always(http.StatusOK))
	ob := newFakeOutbox()
	for i := range 25 {
		ob.add(t0, message(t, fmt.Sprintf("m%02d@ops", i), "ops"))
	}
	// An interval of an hour: only the start, the backlog and the kick
	// make the deliveries.
	d := NewDispatcher(ob, []Endpoint{rcv.endpoint("ops")}, quiet(), WithClock(clock), WithInterval(time.Hour), WithBatchSize(10))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	wait := func(n int) {
		t.Helper()
		for range n {
			select {
			case <-rcv.arrived:
			case <-time.After(10 * time.Second):
				t.Fatalf("Run delivered %d messages, want %d", len(rcv.deliveries()), n)
			}
		}
	}
	wait(25)
	ob.add(t0, message(t, "late@ops", "ops"))
	d.Kick()
	d.Kick() // merged, never blocks
	wait(1)
	for deadline := time.Now().Add(10 * time.Second); ob.open() > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages not recorded as delivered", ob.open())
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if n := len(rcv.deliveries()); n != 26 {
		t.Errorf("%d requests, want 26", n)
	}
}

func TestOptionsKeepDefaults(t *testing.T) {
	d := NewDispatcher(newFakeOutbox(), nil, WithInterval(0), WithLease(-1), WithBatchSize(0), WithConcurrency(-3),
		WithBackoff(), WithBackoff(time.Second, 0), WithGiveUpAfter(0), WithClientErrorAttempts(0), WithJitter(nil), WithHTTPClient(nil))
	got := []any{d.interval, d.lease, d.batch, d.concurrency, d.backoff, d.giveUp, d.clientErrorAttempts, d.client.Timeout}
	want := []any{DefaultInterval, DefaultLease, DefaultBatchSize, DefaultConcurrency, DefaultBackoff(), DefaultGiveUpAfter, DefaultClientErrorAttempts, DefaultTimeout}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("settings (-want +got):\n%s", diff)
	}
	d = NewDispatcher(newFakeOutbox(), nil, WithBackoff(time.Second, time.Minute), WithClientErrorAttempts(5))
	if diff := cmp.Diff([]time.Duration{time.Second, time.Minute}, d.backoff); diff != "" || d.clientErrorAttempts != 5 {
		t.Errorf("backoff (-want +got):\n%s; client error attempts %d", diff, d.clientErrorAttempts)
	}
}

func TestFakeOutbox(t *testing.T) {
	ob := newFakeOutbox()
	ob.add(t0.Add(time.Second), Message{ID: "b"})
	ob.add(t0, Message{ID: "a"})
	if _, err := ob.Claim(t.Context(), t0, time.Minute, 0); !solstice.IsKind(err, solstice.KindInvalid) {
		t.Errorf("Claim with limit 0 = %v, want a KindInvalid error", err)
	}
	got, _ := ob.Claim(t.Context(), t0.Add(time.Second), time.Minute, 1)
	if len(got) != 1 || got[0].ID != "a" {
		t.Fatalf("Claim = %+v, want the oldest, a", got)
	}
	got, _ = ob.Claim(t.Context(), t0.Add(2*time.Second), time.Minute, 5)
	if len(got) != 1 || got[0].ID != "b" {
		t.Fatalf("second Claim = %+v, want b only (a is claimed)", got)
	}
	if err := ob.Failed(t.Context(), "nope", t0, "x", time.Time{}); !solstice.IsKind(err, solstice.KindNotFound) {
		t.Errorf("Failed of an unknown id = %v, want KindNotFound", err)
	}
	_ = ob.Delivered(t.Context(), "a", t0)
	_ = ob.Delivered(t.Context(), "a", t0.Add(time.Hour))
	_ = ob.Failed(t.Context(), "a", t0, "late", t0.Add(time.Hour))
	if row := ob.row("a"); !row.DeliveredAt.Equal(t0) || row.Attempts != 0 {
		t.Errorf("a: delivered at %v, %d attempts; want the first delivery kept and the late failure ignored", row.DeliveredAt, row.Attempts)
	}
}
