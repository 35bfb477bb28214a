package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/sdk"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/telemetry"
	"github.com/solsticehq/solstice/web"
	"github.com/solsticehq/solstice/webhook"
)

// cmdDemo runs the golden path of the guardrails in one process: see
// runDemo.
func cmdDemo(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "demo")
	seed := fs.Uint64("seed", 1, "random seed of the simulated players: the same seed gives the same decisions")
	keep := fs.Bool("keep", false, "keep the temporary data directory (its path is printed) for a look at the database")
	if err := parse(fs, args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "solstice-demo-")
	if err != nil {
		return fmt.Errorf("create a temporary data directory: %w", err)
	}
	if *keep {
		fmt.Fprintf(e.stdout, "data directory (kept): %s\n", dir)
	} else {
		defer func() { _ = os.RemoveAll(dir) }() // a temporary directory: nothing to do if it stays
	}
	return runDemo(ctx, demoOptions{Seed: *seed, Dir: dir, Out: e.stdout})
}

type demoOptions struct {
	Seed uint64
	Dir  string
	Out  io.Writer
}

// The demo's scenario.
const (
	demoEnv          = "production"
	demoFlag         = "winter-festival"
	demoPlayers      = 1000 // per game server; each acts once a simulated minute
	demoBaseRate     = 0.02 // reject rate of both variants while healthy
	demoFaultRate    = 0.06 // the festival's reject rate after the fault: tripled
	demoHealthy      = 8    // simulated minutes of healthy traffic
	demoMaxFaulty    = 30   // the guardrail must trip within this many minutes of the fault
	demoOfflineAfter = 2    // minutes the disconnected server stays offline after the rollback
)

var demoStart = time.Date(2026, 12, 20, 10, 0, 0, 0, time.UTC)

// simClock is the simulated time of the telemetry, the guardrails and the
// store, moved by the demo a minute at a time.
type simClock struct{ ns atomic.Int64 }

func (c *simClock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *simClock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *simClock) add(d time.Duration) { c.ns.Add(int64(d)) }

// link is a game server's network: it can be cut, which fails every
// request in flight and every new one until it is restored. It also keeps
// the telemetry batches the server sent, for the duplicate check.
type link struct {
	base http.RoundTripper
	mu   sync.Mutex
	down bool
	live map[*http.Request]context.CancelFunc
	sent [][]byte // bodies of POST /v1/telemetry
}

func newLink() *link {
	return &link{base: http.DefaultTransport.(*http.Transport).Clone(), live: map[*http.Request]context.CancelFunc{}}
}

func (l *link) RoundTrip(r *http.Request) (*http.Response, error) {
	l.mu.Lock()
	if l.down {
		l.mu.Unlock()
		return nil, errors.New("network unreachable (the demo cut this server's link)")
	}
	ctx, cancel := context.WithCancel(r.Context())
	r = r.WithContext(ctx)
	l.live[r] = cancel
	if r.Method == http.MethodPost && r.Body != nil {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			l.mu.Unlock()
			cancel()
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		l.sent = append(l.sent, body)
	}
	l.mu.Unlock()
	resp, err := l.base.RoundTrip(r)
	l.mu.Lock()
	delete(l.live, r)
	l.mu.Unlock()
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error { err := c.ReadCloser.Close(); c.cancel(); return err }

func (l *link) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = true
	for _, cancel := range l.live {
		cancel()
	}
}

func (l *link) restore() { l.mu.Lock(); l.down = false; l.mu.Unlock() }

// gameServer is one simulated game server on the SDK.
type gameServer struct {
	name    string
	client  *sdk.Client
	rep     *sdk.Reporter
	link    *link
	players []string

	mu       sync.Mutex
	versions []int64 // snapshot versions installed, in order
	applied  map[int64]time.Time
	changed  chan struct{} // signalled on every install
}

func (g *gameServer) version() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.versions) == 0 {
		return 0
	}
	return g.versions[len(g.versions)-1]
}

// waitFor waits until g holds version v or later, and returns when it
// installed it.
func (g *gameServer) waitFor(ctx context.Context, v int64, timeout time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		g.mu.Lock()
		for _, have := range g.versions {
			if have >= v {
				at := g.applied[have]
				g.mu.Unlock()
				return at, nil
			}
		}
		g.mu.Unlock()
		select {
		case <-g.changed:
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%s did not install snapshot v%d within %s (it holds v%d)", g.name, v, timeout, g.version())
		}
	}
}

// arm counts what the demo's players did under one variant.
type armTally struct {
	actions, rejects int64
	players          map[string]bool
}

// demo is one run.
type demo struct {
	opts  demoOptions
	out   io.Writer
	wall  time.Time
	clock *simClock
	rng   *rand.Rand

	db       *store.DB
	flags    *flags.Service
	pub      *snapshot.Publisher
	tel      *telemetry.Service
	job      *guardrails.Job
	gsvc     *guardrails.Service
	hooks    *webhook.Dispatcher
	baseURL  string
	admin    string
	server   string
	servers  []*gameServer
	tally    map[string]*armTally
	ref      guardrails.Ref
	failures []string
	missed   bool // the cut-off server did not see the rollback while offline

	pubMu     sync.Mutex
	published map[int64]time.Time // snapshot version → when it was published

	hookMu    sync.Mutex
	delivered []string // webhook events received with a valid signature
	forged    int      // webhook requests whose signature did not verify
}

func (d *demo) logf(format string, args ...any) {
	fmt.Fprintf(d.out, "[%6.2fs | %s] %s\n", time.Since(d.wall).Seconds(), d.clock.Now().Format("15:04"), fmt.Sprintf(format, args...))
}

func (d *demo) check(ok bool, format string, args ...any) {
	mark := "ok  "
	if !ok {
		mark = "FAIL"
		d.failures = append(d.failures, fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(d.out, "  %s %s\n", mark, fmt.Sprintf(format, args...))
}

// runDemo is the golden path, deterministic but for its timings: a control
// plane on a temporary SQLite database, two game servers on the SDK, a
// seasonal-event config rolled out to half the players with a guardrail on
// reject rate, healthy traffic, a fault (the festival's reject rate
// triples), the guardrail tripping, the rollback published and applied by
// both servers (one of which was cut off during the rollback and catches up
// when its link is restored), a duplicated telemetry batch, and the checks
// of every invariant. It returns an error if any check fails.
func runDemo(ctx context.Context, o demoOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := &demo{opts: o, out: o.Out, wall: time.Now(), clock: &simClock{},
		rng:   rand.New(rand.NewPCG(o.Seed, 0x50151ce)), //nolint:gosec // a simulation, not a secret
		tally: map[string]*armTally{}, published: map[int64]time.Time{},
		ref: guardrails.Ref{Environment: demoEnv, Flag: demoFlag, Key: "reject-rate"}}
	d.clock.set(demoStart)
	fmt.Fprintf(d.out, "Solstice demo (seed %d): a seasonal-event config, a guardrail, a fault and an automatic rollback.\n", o.Seed)
	fmt.Fprintf(d.out, "Times are [wall seconds | simulated UTC]; each simulated minute, 2 × %d players act once.\n\n", demoPlayers)

	stop, err := d.startControlPlane(ctx)
	if err != nil {
		return err
	}
	defer stop()
	if err := d.rollOut(ctx); err != nil {
		return err
	}
	if err := d.startGameServers(ctx); err != nil {
		return err
	}
	defer func() {
		for _, g := range d.servers {
			_ = g.client.Close()
		}
	}()
	if err := d.play(ctx); err != nil {
		return err
	}
	d.finalChecks(ctx)
	if len(d.failures) > 0 {
		return fmt.Errorf("%d of the demo's checks failed: %v", len(d.failures), d.failures)
	}
	fmt.Fprintf(d.out, "\ndemo passed in %.1fs\n", time.Since(d.wall).Seconds())
	return nil
}

// startControlPlane wires the control plane as solstice serve does, on the
// simulated clock, and a webhook receiver that verifies signatures.
func (d *demo) startControlPlane(ctx context.Context) (stop func(), err error) {
	quiet := slog.New(slog.DiscardHandler)
	db, err := store.Open(ctx, store.Config{DataDir: d.opts.Dir, Clock: d.clock})
	if err != nil {
		return nil, err
	}
	if _, err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	d.db = db
	d.flags = flags.NewService(db, flags.WithClock(d.clock), flags.OnRevision(func(ctx context.Context, env string, _ flags.Revision) {
		if _, err := d.pub.Publish(context.WithoutCancel(ctx), env); err != nil {
			d.logf("publish %s: %v", env, err)
		}
	}))
	if err := d.flags.EnsureDefaultEnvironments(ctx); err != nil {
		db.Close()
		return nil, err
	}
	keyring := snapshot.NewKeyring(d.opts.Dir, snapshot.WithKeyringLogger(quiet))
	d.pub = snapshot.NewPublisher(d.flags, db, keyring, snapshot.WithLogger(quiet), snapshot.WithHeads(d.flags),
		snapshot.OnPublish(func(b *snapshot.Built) {
			if b.Environment() == demoEnv {
				d.pubMu.Lock()
				d.published[b.Version()] = time.Now()
				d.pubMu.Unlock()
			}
		}))
	if err := d.pub.Tick(ctx, time.Now()); err != nil {
		db.Close()
		return nil, err
	}

	secret := webhook.NewSecret()
	recv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		d.hookMu.Lock()
		defer d.hookMu.Unlock()
		if err := webhook.Verify(secret, r.Header, body, d.clock.Now()); err != nil {
			d.forged++
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var m struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(body, &m)
		d.delivered = append(d.delivered, m.Type)
		w.WriteHeader(http.StatusNoContent)
	})}
	recvLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		db.Close()
		return nil, err
	}
	go func() { _ = recv.Serve(recvLn) }()

	as := auth.NewService(db, nil)
	d.tel = telemetry.New(db, telemetry.WithClock(d.clock))
	endpoints := []webhook.Endpoint{{Name: "live-ops", URL: "http://" + recvLn.Addr().String() + "/hooks", Secret: secret}}
	d.hooks = webhook.NewDispatcher(db, endpoints, webhook.WithClock(d.clock), webhook.WithLogger(quiet))
	resp := guardrails.NewResponder(db, d.flags, guardrails.WithWebhooks([]string{"live-ops"}, nil))
	d.job = guardrails.NewJob(db, guardrails.WithShares(d.tel.Source(), d.flags), db, resp,
		guardrails.WithClock(d.clock), guardrails.WithLogger(quiet))
	d.gsvc = guardrails.NewService(db, d.flags, d.job)
	srv := web.New(web.Deps{Flags: d.flags, Auth: as, Logger: quiet, Ready: db.Ping, Publisher: d.pub,
		Telemetry: d.tel, Guardrails: d.gsvc})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		db.Close()
		return nil, err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	hs.RegisterOnShutdown(srv.Drain)
	go func() { _ = hs.Serve(ln) }()
	d.baseURL = "http://" + ln.Addr().String()

	// NOTE: production is protected, where an editor token's changes are
	// refused (they need a second person's approval in the UI); the demo's
	// release pipeline holds an admin token, as a deployment pipeline would.
	admin, err := as.Create(ctx, auth.NewToken{Name: "release-pipeline", Kind: auth.KindAdmin, Role: auth.RoleAdmin})
	if err != nil {
		return nil, err
	}
	server, err := as.Create(ctx, auth.NewToken{Name: "game-servers", Kind: auth.KindServer, Environment: demoEnv})
	if err != nil {
		return nil, err
	}
	d.admin, d.server = admin.Secret, server.Secret
	d.logf("control plane up at %s (SQLite in %s), webhooks to %s", d.baseURL, d.opts.Dir, endpoints[0].URL)
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		_ = recv.Shutdown(sctx)
		db.Close()
	}, nil
}

// api calls the admin API as the release pipeline and decodes the answer into out.
func (d *demo) api(ctx context.Context, method, path string, body any, out any, headers ...string) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.baseURL+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+d.admin)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("%s %s: decode %s: %w", method, path, b, err)
		}
	}
	return resp.Header, nil
}

// rollOut creates the seasonal-event config, rolls it out to half the
// players and puts a reject-rate guardrail on it, through the HTTP API.
func (d *demo) rollOut(ctx context.Context) error {
	newFlag := map[string]any{
		"key": demoFlag, "name": "Winter Festival", "type": "object", "tags": []string{"seasonal"},
		"schema": json.RawMessage(`{"type":"object","required":["event","xp_multiplier"],"properties":{"event":{"type":"string"},"xp_multiplier":{"type":"number","minimum":1,"maximum":5}}}`),
		"variants": []map[string]any{
			{"key": "control", "value": json.RawMessage(`{"event":"none","xp_multiplier":1}`)},
			{"key": "festival", "value": json.RawMessage(`{"event":"winter-festival","xp_multiplier":2,"quests":["build-a-snowman"]}`)},
		},
	}
	if _, err := d.api(ctx, http.MethodPost, "/api/v1/flags", newFlag, nil); err != nil {
		return err
	}
	var fc flags.FlagConfig
	h, err := d.api(ctx, http.MethodGet, "/api/v1/environments/"+demoEnv+"/flags/"+demoFlag, nil, &fc)
	if err != nil {
		return err
	}
	cfg := fc.Config
	cfg.Enabled = true
	cfg.Split = &flags.Split{Weights: []flags.Weight{{Variant: "festival", Weight: 5000}, {Variant: "control", Weight: 5000}}}
	var put struct {
		Revision flags.Revision `json:"revision"`
	}
	if _, err := d.api(ctx, http.MethodPut, "/api/v1/environments/"+demoEnv+"/flags/"+demoFlag,
		map[string]any{"enabled": cfg.Enabled, "variants": cfg.Variants, "default_variant": cfg.DefaultVariant,
			"off_variant": cfg.OffVariant, "split": cfg.Split, "message": "Winter Festival: roll out to half the players"},
		&put, "If-Match", h.Get("ETag")); err != nil {
		return err
	}
	d.logf("release pipeline rolled %s out to 50%% of players (festival) with 50%% control, revision %d", demoFlag, put.Revision.Number)
	rule := map[string]any{"metric": map[string]any{"kind": "reject_rate"},
		"comparison": map[string]any{"kind": "relative_to_control", "margin": 0.1},
		"treatment":  "festival", "control": "control", "alpha": 0.05, "tau": 0.005, "action": "rollback"}
	var def guardrails.Definition
	if _, err := d.api(ctx, http.MethodPut, "/api/v1/environments/"+demoEnv+"/flags/"+demoFlag+"/guardrails/"+d.ref.Key, rule, &def); err != nil {
		return err
	}
	d.logf("guardrail %s: roll back if festival's reject rate exceeds 1.1 × control's (α %.2f, τ %.3f, min sample %d per arm)",
		def.Key, def.Alpha, def.Tau, def.MinSample)
	return nil
}

func (d *demo) startGameServers(ctx context.Context) error {
	pem, err := snapshotKeys(demoEnv, d.opts.Dir)
	if err != nil {
		return err
	}
	for i, name := range []string{"gs-eu-1", "gs-us-1"} {
		g := &gameServer{name: name, link: newLink(), applied: map[int64]time.Time{}, changed: make(chan struct{}, 1)}
		for p := range demoPlayers {
			g.players = append(g.players, fmt.Sprintf("player-%05d", i*demoPlayers+p))
		}
		g.client, err = sdk.New(sdk.Config{Environment: demoEnv, BaseURL: d.baseURL, ServerKey: d.server, TrustedKeys: pem,
			ServerID: name, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
			HTTPClient: &http.Client{Transport: g.link}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		g.client.Subscribe(func(ev sdk.Event) {
			if ev.Kind != sdk.EventReady && ev.Kind != sdk.EventConfigurationChanged {
				return
			}
			g.mu.Lock()
			if len(g.versions) == 0 || g.versions[len(g.versions)-1] != ev.Version {
				g.versions = append(g.versions, ev.Version)
				g.applied[ev.Version] = time.Now()
			}
			g.mu.Unlock()
			select {
			case g.changed <- struct{}{}:
			default:
			}
		})
		g.rep, err = sdk.NewReporter(g.client, sdk.WithReporterClock(d.clock), sdk.WithRetryBackoff(20*time.Millisecond, 100*time.Millisecond))
		if err != nil {
			return err
		}
		g.client.Start(ctx)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = g.client.WaitReady(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		d.servers = append(d.servers, g)
	}
	d.logf("game servers %s and %s verified and hold snapshot v%d", d.servers[0].name, d.servers[1].name, d.servers[0].version())
	return nil
}

// snapshotKeys returns the public keys the game servers trust.
func snapshotKeys(env, dir string) ([]ed25519.PublicKey, error) {
	pem, err := snapshot.NewKeyring(dir, snapshot.WithKeyringLogger(slog.New(slog.DiscardHandler))).ExportPublic(env)
	if err != nil {
		return nil, err
	}
	return snapshot.ParsePublicKeys(pem)
}

// minute plays one simulated minute on every game server, then ships the
// telemetry, runs the guardrail job and delivers webhooks, as the control
// plane's loops would.
func (d *demo) minute(ctx context.Context, festivalRate float64) {
	d.clock.add(30 * time.Second) // mid-minute
	for _, g := range d.servers {
		for _, p := range g.players {
			res := g.client.Evaluate(demoFlag, flags.Context{flags.TargetingKey: p})
			g.rep.Exposed(demoFlag, res.Variant, p)
			rate := demoBaseRate
			if res.Variant == "festival" {
				rate = festivalRate
			}
			t := d.tally[res.Variant]
			if t == nil {
				t = &armTally{players: map[string]bool{}}
				d.tally[res.Variant] = t
			}
			t.actions++
			t.players[p] = true
			if d.rng.Float64() < rate {
				t.rejects++
				g.rep.Rejected(p, "inventory_full")
			} else {
				g.rep.Accepted(p)
			}
		}
	}
	d.clock.add(30*time.Second + time.Second) // the minute is over
	for _, g := range d.servers {
		_ = g.rep.Flush(ctx) // a cut link fails; the reporter keeps the batch and retries
	}
}

// status prints the guardrail's view.
func (d *demo) status(ctx context.Context, label string) guardrails.Detail {
	st, err := d.gsvc.Status(ctx, d.ref)
	if err != nil {
		d.logf("%-8s guardrail status: %v", label, err)
		return st
	}
	ev := st.Verdict.Evidence
	d.logf("%-8s festival %5.2f%% of %5d, control %5.2f%% of %5d │ %-10s ln Λ %6.2f / %.2f",
		label, 100*ev.Treatment.Rate, ev.Treatment.N, 100*ev.Control.Rate, ev.Control.N, st.State.Phase, ev.LogE, ev.Threshold)
	return st
}

func (d *demo) tick(ctx context.Context) (time.Time, error) {
	start := time.Now()
	if err := d.job.Tick(ctx, d.clock.Now()); err != nil {
		return start, fmt.Errorf("guardrail tick: %w", err)
	}
	if err := d.hooks.Tick(ctx, d.clock.Now()); err != nil {
		d.logf("webhook delivery: %v", err)
	}
	return start, nil
}

// play runs the healthy minutes, the fault, the trip and the recovery.
func (d *demo) play(ctx context.Context) error {
	fmt.Fprintln(d.out, "\nHealthy traffic: both variants reject 2% of actions.")
	for range demoHealthy {
		d.minute(ctx, demoBaseRate)
		if _, err := d.tick(ctx); err != nil {
			return err
		}
		if st := d.status(ctx, "healthy"); st.State.Phase == guardrails.PhaseTripped {
			return fmt.Errorf("the guardrail rolled back healthy traffic: a false rollback, which the test allows with probability at most α = %.2f; try another --seed", st.Definition.Alpha)
		}
	}
	fmt.Fprintf(d.out, "\nFault injected: the festival's reject rate triples (%.0f%% → %.0f%%).\n", 100*demoBaseRate, 100*demoFaultRate)
	before := d.servers[0].version()
	cut := d.servers[1]
	var tripStart time.Time
	for m := 0; ; m++ {
		if m == demoMaxFaulty {
			return fmt.Errorf("the guardrail did not trip within %d minutes of the fault", demoMaxFaulty)
		}
		d.minute(ctx, demoFaultRate)
		st := d.status(ctx, "fault")
		if st.Verdict.Status == guardrails.StatusRegression {
			// The job is about to trip: cut one server off, so that it
			// misses the rollback and must catch up.
			cut.link.cut()
			d.logf("%s loses its connection to the control plane", cut.name)
			start, err := d.tick(ctx)
			if err != nil {
				return err
			}
			tripStart = start
			break
		}
		if _, err := d.tick(ctx); err != nil {
			return err
		}
	}

	incs, err := d.gsvc.Incidents(ctx, guardrails.IncidentFilter{Environment: demoEnv, Events: []guardrails.Event{guardrails.EventTrip}})
	if err != nil {
		return fmt.Errorf("after the trip: list incidents: %w", err)
	}
	if len(incs) != 1 {
		return fmt.Errorf("after the trip: %d trip incidents, want 1: %v", len(incs), incs)
	}
	inc := incs[0]
	d.logf("guardrail TRIPPED: %s", inc.Reason)
	d.logf("incident #%d: %s", inc.Number, inc.Outcome)
	cur, ok := d.pub.Current(demoEnv)
	if !ok || cur.Version() <= before {
		return fmt.Errorf("no new snapshot was published after the rollback")
	}
	rollback := cur.Version()
	d.pubMu.Lock()
	publishedAt := d.published[rollback]
	d.pubMu.Unlock()
	d.logf("snapshot v%d (the rollback) published %s after the tick began", rollback, publishedAt.Sub(tripStart).Round(time.Microsecond))
	up := d.servers[0]
	at, err := up.waitFor(ctx, rollback, 5*time.Second)
	if err != nil {
		return err
	}
	d.logf("%s applied v%d %s after the tick began", up.name, rollback, at.Sub(tripStart).Round(time.Microsecond))
	d.logf("%s still serves v%d from its last-known-good snapshot while offline", cut.name, cut.version())
	d.missed = cut.version() < rollback

	fmt.Fprintln(d.out, "\nAfter the rollback: every player gets control; the offline server keeps playing on what it holds.")
	for range demoOfflineAfter {
		d.minute(ctx, demoFaultRate)
		if _, err := d.tick(ctx); err != nil {
			return err
		}
	}
	cut.link.restore()
	reconnect := time.Now()
	d.logf("%s reconnects", cut.name)
	at, err = cut.waitFor(ctx, rollback, 10*time.Second)
	if err != nil {
		return err
	}
	d.logf("%s caught up on v%d %s after reconnecting", cut.name, rollback, at.Sub(reconnect).Round(time.Millisecond))
	d.minute(ctx, demoFaultRate)
	if _, err := d.tick(ctx); err != nil {
		return err
	}
	d.status(ctx, "after")

	ev := inc.Verdict.Evidence
	fmt.Fprintf(d.out, "\nIncident #%d evidence (%s, test %d, at %s):\n", inc.Number, ev.Metric, inc.Test, inc.Time.Format(time.RFC3339))
	fmt.Fprintf(d.out, "  festival: %d rejects of %d actions (%.2f%%), %d players exposed\n", ev.Treatment.X, ev.Treatment.N, 100*ev.Treatment.Rate, ev.Treatment.Exposures)
	fmt.Fprintf(d.out, "  control:  %d rejects of %d actions (%.2f%%), %d players exposed\n", ev.Control.X, ev.Control.N, 100*ev.Control.Rate, ev.Control.Exposures)
	fmt.Fprintf(d.out, "  estimate of the harm beyond the margin: %.4f (variance %.3g), confidence sequence [%.4f, %.4f]\n", ev.Effect, ev.Variance, ev.Lower, ev.Upper)
	fmt.Fprintf(d.out, "  log e-value %.2f ≥ threshold ln(1/α) = %.2f, always-valid p-value %.2g\n", ev.LogE, ev.Threshold, ev.PValue)
	return nil
}

// finalChecks ships everything, replays a batch, and checks the invariants.
func (d *demo) finalChecks(ctx context.Context) {
	for _, g := range d.servers {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := g.rep.FlushAll(fctx); err != nil {
			d.logf("%s: final flush: %v", g.name, err)
		}
		cancel()
	}
	d.clock.add(time.Minute)
	if err := d.hooks.Tick(ctx, d.clock.Now()); err != nil {
		d.logf("webhook delivery: %v", err)
	}

	// Replay the first batch gs-eu-1 sent, as a retry after a lost answer
	// would: acknowledged as a duplicate, not counted again.
	dup := "not sent"
	g := d.servers[0]
	g.link.mu.Lock()
	var first []byte
	for _, b := range g.link.sent {
		if bytes.Contains(b, []byte(`"windows"`)) {
			first = b
			break
		}
	}
	g.link.mu.Unlock()
	if first != nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, d.baseURL+"/v1/telemetry", bytes.NewReader(first))
		req.Header.Set("Authorization", "Bearer "+d.server)
		req.Header.Set("Content-Type", "application/json")
		var res telemetry.Result
		if resp, err := http.DefaultClient.Do(req); err != nil {
			dup = err.Error()
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err := json.Unmarshal(b, &res); err == nil && resp.StatusCode == http.StatusOK && res.Duplicate {
				dup = "duplicate"
				d.logf("replayed batch %s of %s: answered %d with duplicate=true", res.BatchID, g.name, resp.StatusCode)
			} else {
				dup = fmt.Sprintf("%s %s", resp.Status, b)
			}
		}
	}

	fmt.Fprintln(d.out, "\nChecks:")
	d.check(d.missed, "the server cut off during the rollback missed it while offline, then caught up")
	pub, _ := d.pub.Current(demoEnv)
	for _, g := range d.servers {
		g.mu.Lock()
		vs := slices.Clone(g.versions)
		g.mu.Unlock()
		d.check(slices.IsSorted(vs) && len(slices.Compact(slices.Clone(vs))) == len(vs),
			"%s installed signed snapshot versions that only increase: %v", g.name, vs)
		d.check(len(vs) > 0 && vs[len(vs)-1] == pub.Version(), "%s ends on the rollback version v%d (holds v%d)", g.name, pub.Version(), g.version())
	}
	c, err := d.tel.Counters(ctx, demoEnv, demoFlag, "festival", "control", time.Time{}, d.clock.Now())
	if err != nil {
		d.check(false, "read the counters: %v", err)
	} else {
		for _, a := range []struct {
			name string
			got  guardrails.Arm
		}{{"festival", c.Treatment}, {"control", c.Control}} {
			want := d.tally[a.name]
			if want == nil {
				want = &armTally{}
			}
			d.check(a.got.Actions == want.actions && a.got.Rejects == want.rejects && a.got.Exposures == int64(len(want.players)),
				"%s: %d actions, %d rejects, %d players played = %d, %d, %d counted (no batch lost or counted twice)",
				a.name, want.actions, want.rejects, len(want.players), a.got.Actions, a.got.Rejects, a.got.Exposures)
		}
	}
	d.check(dup == "duplicate", "a replayed telemetry batch is acknowledged as a duplicate (%s)", dup)
	for _, g := range d.servers {
		s := g.rep.Stats()
		d.check(s.DroppedWindows == 0 && s.DroppedEvents == 0 && s.Refused == 0 && s.PendingBatches == 0,
			"%s's reporter dropped nothing and has nothing pending (%d batches acknowledged, %d retries)", g.name, s.Batches, s.Retries)
	}
	revs, err := d.flags.ListRevisions(ctx, demoEnv, flags.RevisionFilter{})
	var byGuardrail []int64
	for _, r := range revs {
		if r.Author == "guardrail:"+d.ref.Key {
			byGuardrail = append(byGuardrail, r.Number)
		}
	}
	d.check(err == nil && len(byGuardrail) == 1, "exactly one rollback revision, authored by the guardrail: %v", byGuardrail)
	served := map[string]int{}
	for _, g := range d.servers {
		for _, p := range g.players[:100] {
			served[g.client.Evaluate(demoFlag, flags.Context{flags.TargetingKey: p}).Variant]++
		}
	}
	d.check(len(served) == 1 && served["control"] == 200, "every player now gets control: %v", served)
	st, err := d.gsvc.Status(ctx, d.ref)
	d.check(err == nil && st.State.Phase == guardrails.PhaseTripped, "the guardrail stays tripped until a person resumes it (%s)", st.State.Phase)
	d.hookMu.Lock()
	delivered, forged := slices.Clone(d.delivered), d.forged
	d.hookMu.Unlock()
	d.check(slices.Equal(delivered, []string{"guardrail.trip"}) && forged == 0,
		"the trip was announced once by a signed webhook that verified: %v", delivered)
}
