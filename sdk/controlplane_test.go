package sdk_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/sdk"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/store/storetest"
	"github.com/solsticehq/solstice/web"
)

// controlPlane is a real control plane in this process: a migrated SQLite
// store, the flags and auth services, a keyring, a publisher and the web
// server, wired as the binary wires them. Game-server clients reach it
// through front, a test proxy that can take it down, tamper with
// snapshots or replay old ones, and that records every request.
type controlPlane struct {
	t       *testing.T
	db      *store.DB
	flags   *flags.Service
	auth    *auth.Service
	keyring *snapshot.Keyring
	pub     atomic.Pointer[snapshot.Publisher]
	handler atomic.Pointer[web.Server]
	front   *httptest.Server
	viewer  string // an admin token with the viewer role
	keys    atomic.Int32

	mu       sync.Mutex
	mode     frontMode
	mutate   func([]byte) []byte // modeTamper: rewrites a snapshot body
	replay   []byte              // modeReplay: the body served instead
	requests []recorded
	last200  []byte // the last snapshot body served (identity)
}

type frontMode int

const (
	modePass   frontMode = iota // forward to the control plane
	modeDown                    // drop every connection, as a dead host would
	modeTamper                  // forward, and rewrite 200 bodies with mutate
	modeReplay                  // answer 200 with the replay body
)

// recorded is one request the front saw, and how it was answered.
type recorded struct {
	URL             string
	Header          http.Header
	Status          int
	ContentEncoding string
}

func newControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	cp := &controlPlane{t: t, db: storetest.Open(t)}
	cp.flags = flags.NewService(cp.db, flags.OnRevision(func(ctx context.Context, env string, _ flags.Revision) {
		if _, err := cp.pub.Load().Publish(ctx, env); err != nil {
			t.Errorf("publish %s: %v", env, err)
		}
	}))
	cp.keyring = snapshot.NewKeyring(t.TempDir(), snapshot.WithKeyringLogger(slog.New(slog.DiscardHandler)))
	cp.auth = auth.NewService(cp.db, nil)
	ctx := context.Background()
	if err := cp.flags.EnsureDefaultEnvironments(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := cp.auth.Create(ctx, auth.NewToken{Name: "viewer", Kind: auth.KindAdmin, Role: auth.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	cp.viewer = c.Secret
	cp.restart()
	cp.front = httptest.NewServer(http.HandlerFunc(cp.serveFront))
	t.Cleanup(cp.front.Close)
	return cp
}

// restart replaces the publisher and the web server by new ones over the
// same database and keys, as a restarted control plane process would be.
func (cp *controlPlane) restart() {
	pub := snapshot.NewPublisher(cp.flags, cp.db, cp.keyring,
		snapshot.WithLogger(slog.New(slog.DiscardHandler)), snapshot.WithHeads(cp.flags))
	cp.pub.Store(pub)
	cp.handler.Store(web.New(web.Deps{Flags: cp.flags, Auth: cp.auth, Logger: slog.New(slog.DiscardHandler), Publisher: pub}))
}

func (cp *controlPlane) setMode(m frontMode) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.mode = m
}

func (cp *controlPlane) tamper(mutate func([]byte) []byte) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.mode, cp.mutate = modeTamper, mutate
}

func (cp *controlPlane) replayBody(b []byte) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.mode, cp.replay = modeReplay, b
}

func (cp *controlPlane) lastSnapshotBody() []byte {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.last200
}

func (cp *controlPlane) recordedRequests() []recorded {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]recorded(nil), cp.requests...)
}

func (cp *controlPlane) serveFront(w http.ResponseWriter, r *http.Request) {
	cp.mu.Lock()
	mode, mutate, replay := cp.mode, cp.mutate, cp.replay
	cp.mu.Unlock()
	rec := recorded{URL: r.URL.String(), Header: r.Header.Clone()}
	defer func() {
		cp.mu.Lock()
		cp.requests = append(cp.requests, rec)
		cp.mu.Unlock()
	}()
	switch mode {
	case modeDown:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	case modeReplay:
		rec.Status = http.StatusOK
		w.Header().Set("Content-Type", snapshot.EnvelopeContentType)
		w.WriteHeader(http.StatusOK)
		w.Write(replay)
		return
	}
	// Serve through the real handler into a recorder, to see (and, when
	// tampering, rewrite) the answer.
	rr := httptest.NewRecorder()
	cp.handler.Load().ServeHTTP(rr, r)
	res := rr.Result()
	body := rr.Body.Bytes()
	rec.Status, rec.ContentEncoding = res.StatusCode, res.Header.Get("Content-Encoding")
	if res.StatusCode == http.StatusOK {
		plain := body
		if rec.ContentEncoding == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				cp.t.Errorf("front: gzip: %v", err)
				return
			}
			if plain, err = io.ReadAll(zr); err != nil {
				cp.t.Errorf("front: gzip: %v", err)
				return
			}
		}
		cp.mu.Lock()
		cp.last200 = plain
		cp.mu.Unlock()
		if mode == modeTamper {
			body = mutate(bytes.Clone(plain))
			res.Header.Del("Content-Encoding")
			res.Header.Set("Content-Length", strconv.Itoa(len(body)))
		}
	}
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.StatusCode)
	w.Write(body)
}

// serverKey creates a server key for env.
func (cp *controlPlane) serverKey(env string) string {
	cp.t.Helper()
	c, err := cp.auth.Create(context.Background(), auth.NewToken{Name: "gs-" + env + "-" + strconv.Itoa(int(cp.keys.Add(1))), Kind: auth.KindServer, Environment: env})
	if err != nil {
		cp.t.Fatal(err)
	}
	return c.Secret
}

// trusted returns env's snapshot public keys, as `solstice keys
// export-public` hands them to game servers.
func (cp *controlPlane) trusted(env string) []ed25519.PublicKey {
	cp.t.Helper()
	pem, err := cp.keyring.ExportPublic(env)
	if err != nil {
		cp.t.Fatal(err)
	}
	keys, err := snapshot.ParsePublicKeys(pem)
	if err != nil {
		cp.t.Fatal(err)
	}
	return keys
}

// current returns env's current snapshot, publishing one if need be.
func (cp *controlPlane) current(env string) *snapshot.Built {
	cp.t.Helper()
	if b, ok := cp.pub.Load().Current(env); ok {
		return b
	}
	b, err := cp.pub.Load().Publish(context.Background(), env)
	if err != nil {
		cp.t.Fatal(err)
	}
	return b
}

// createFlag creates a flag and sets its configuration in env.
func (cp *controlPlane) createFlag(env string, nf flags.NewFlag, cfg flags.Config) {
	cp.t.Helper()
	if _, err := cp.flags.CreateFlag(context.Background(), nf); err != nil {
		cp.t.Fatalf("create flag %s: %v", nf.Key, err)
	}
	cp.putConfig(env, nf.Key, cfg)
}

// putConfig replaces a flag's configuration in env.
func (cp *controlPlane) putConfig(env, key string, cfg flags.Config) {
	cp.t.Helper()
	ctx := context.Background()
	fc, err := cp.flags.GetConfig(ctx, env, key)
	if err != nil {
		cp.t.Fatal(err)
	}
	if _, err := cp.flags.PutConfig(ctx, env, key, cfg, fc.Revision, "test"); err != nil {
		cp.t.Fatalf("put config %s: %v", key, err)
	}
}

// toggle flips flag key's kill switch in env.
func (cp *controlPlane) toggle(env, key string) {
	cp.t.Helper()
	fc, err := cp.flags.GetConfig(context.Background(), env, key)
	if err != nil {
		cp.t.Fatal(err)
	}
	c := fc.Config
	c.Enabled = !c.Enabled
	cp.putConfig(env, key, c)
}

// putSegment creates or replaces a segment of env.
func (cp *controlPlane) putSegment(env string, seg flags.Segment) {
	cp.t.Helper()
	ctx := context.Background()
	var expect int64
	if sv, err := cp.flags.GetSegment(ctx, env, seg.Key); err == nil {
		expect = sv.Revision
	} else if !solstice.IsKind(err, solstice.KindNotFound) {
		cp.t.Fatal(err)
	}
	if _, err := cp.flags.PutSegment(ctx, env, seg, expect, "test"); err != nil {
		cp.t.Fatalf("put segment %s: %v", seg.Key, err)
	}
}

// evaluate asks the control plane's evaluate endpoint, over hc.
func (cp *controlPlane) evaluate(hc *http.Client, env, key string, ctx flags.Context) evaluateResponse {
	cp.t.Helper()
	body, err := json.Marshal(map[string]any{"flag": key, "context": ctx})
	if err != nil {
		cp.t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", cp.front.URL+"/api/v1/environments/"+env+"/evaluate", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+cp.viewer)
	req.Header.Set("Content-Type", "application/json")
	res, err := hc.Do(req)
	if err != nil {
		cp.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		cp.t.Fatalf("evaluate %s: %d %s %v", key, res.StatusCode, b, err)
	}
	var out evaluateResponse
	if err := json.Unmarshal(b, &out); err != nil {
		cp.t.Fatal(err)
	}
	return out
}

type evaluateResponse struct {
	Value     any    `json:"value"`
	Variant   string `json:"variant"`
	Reason    string `json:"reason"`
	ErrorCode string `json:"error_code"`
}

// config returns a client configuration for env against the front.
func (cp *controlPlane) config(env string) sdk.Config {
	return sdk.Config{
		Environment: env,
		BaseURL:     cp.front.URL,
		ServerKey:   cp.serverKey(env),
		TrustedKeys: cp.trusted(env),
		ServerID:    "gs-test-1",
		PollWait:    30 * time.Second,
		MinBackoff:  10 * time.Millisecond,
		MaxBackoff:  50 * time.Millisecond,
		Logger:      slog.New(slog.DiscardHandler),
	}
}

// fakeClock is the wall clock plus an offset the test moves forward.
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) Now() time.Time            { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *fakeClock) Advance(d time.Duration)   { c.offset.Add(int64(d)) }
func (c *fakeClock) clock() solstice.ClockFunc { return c.Now }

// eventLog records a client's events.
type eventLog struct {
	mu     sync.Mutex
	events []sdk.Event
	signal chan struct{}
}

func subscribe(c *sdk.Client) *eventLog {
	l := &eventLog{signal: make(chan struct{}, 1)}
	c.Subscribe(func(e sdk.Event) {
		l.mu.Lock()
		l.events = append(l.events, e)
		l.mu.Unlock()
		select {
		case l.signal <- struct{}{}:
		default:
		}
	})
	return l
}

func (l *eventLog) all() []sdk.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]sdk.Event(nil), l.events...)
}

// kinds returns the kinds of the events so far.
func (l *eventLog) kinds() []sdk.EventKind {
	var out []sdk.EventKind
	for _, e := range l.all() {
		out = append(out, e.Kind)
	}
	return out
}

// waitFor waits until an event of kind k has arrived and returns the
// first such event.
func (l *eventLog) waitFor(t *testing.T, k sdk.EventKind, timeout time.Duration) sdk.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		for _, e := range l.all() {
			if e.Kind == k {
				return e
			}
		}
		select {
		case <-l.signal:
		case <-deadline:
			t.Fatalf("no %s event within %s; got %v", k, timeout, l.kinds())
		}
	}
}
