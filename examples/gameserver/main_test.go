package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/store/storetest"
	"github.com/solsticehq/solstice/telemetry"
	"github.com/solsticehq/solstice/web"
)

// TestAgainstControlPlane plays matches against a real control plane in
// this process, as the README does against `make run`: a config change
// published mid-match reaches the next match and not the one under way;
// with the control plane gone, matches go on from the last snapshot, which
// turns stale; a restart from the last-known-good file plays the same
// config; and the control plane's return is noticed.
func TestAgainstControlPlane(t *testing.T) {
	cp := startControlPlane(t)
	dir := t.TempDir()
	o := options{
		URL: cp.srv.URL, Env: "development", ServerKey: cp.serverKey(), PublicKey: filepath.Join(dir, "development.pub"),
		Cache: filepath.Join(dir, "gameserver-cache.snap"), ServerID: "gs-test",
		Players: 6, Match: time.Second, TickRate: 100, Cooldown: 50 * time.Millisecond, Seed: 7,
		StaleAfter: 200 * time.Millisecond, ReadyTimeout: 10 * time.Second, ReportEvery: 50 * time.Millisecond,
		minBackoff: 10 * time.Millisecond, maxBackoff: 50 * time.Millisecond, finalFlush: 200 * time.Millisecond,
	}
	if err := os.WriteFile(o.PublicKey, cp.publicKey(), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)

	out := newTranscript(t)
	gs, err := connect(ctx, o, out, quiet)
	if err != nil {
		t.Fatal(err)
	}
	first := gs.client.Pin().Version()

	// Matches 1 and 2, with the festival's XP multiplier raised from 2 to 3
	// while match 1 is under way.
	reports := make(chan matchReport, 2)
	go gs.playMatches(ctx, 2, func(r matchReport) { reports <- r })
	out.waitFor(t, "match 1: snapshot version")
	cp.setFestivalXP(3)
	changed := out.waitFor(t, "event CONFIGURATION_CHANGED")
	if !strings.Contains(out.line(changed), "winter-festival") {
		t.Errorf("the change event does not name the flag: %s", out.line(changed))
	}
	if over := out.index("match 1 over"); over >= 0 && over < changed {
		t.Fatal("match 1 ended before the change reached the client: the test proves nothing; lengthen the match")
	}
	if f, _ := gs.festivalFor(ctx, "player-1"); f.XPMultiplier != 3 { // not pinned: the newest snapshot
		t.Errorf("outside a match, xp_multiplier = %g after the change, want 3", f.XPMultiplier)
	}
	m1, m2 := <-reports, <-reports

	if m1.Version != first {
		t.Errorf("match 1 pinned version %d, want %d", m1.Version, first)
	}
	if m2.Version <= m1.Version {
		t.Errorf("match 2 pinned version %d, want a version after match 1's %d", m2.Version, m1.Version)
	}
	// Every read in match 1, before and after the change arrived, saw its
	// pinned config; match 2 saw the new one.
	checkMultipliers(t, m1, 2)
	checkMultipliers(t, m2, 3)
	for _, reason := range []Reason{ReasonWrongActor, ReasonReplay, ReasonCooldown, ReasonNotOwned} {
		if m1.Rejected[reason] == 0 {
			t.Errorf("match 1 rejected no action for %s; rejected: %v", reason, m1.Rejected)
		}
	}
	if m1.Accepted == 0 || m1.Players[0].XP == 0 {
		t.Errorf("match 1 accepted %d actions, player-1 earned %g xp; want some of both", m1.Accepted, m1.Players[0].XP)
	}
	// The telemetry of matches 1 and 2 reached the control plane's
	// counters: the split's players and their actions, once each.
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := gs.reporter.FlushAll(fctx); err != nil {
		t.Fatalf("ship the telemetry of matches 1 and 2: %v", err)
	}
	cp.checkTelemetry(m1, m2)

	// The control plane goes away: the client turns stale and the next
	// match still plays the last config.
	cp.stop()
	out.waitFor(t, "event STALE")
	var m3 matchReport
	gs.playMatches(ctx, 1, func(r matchReport) { m3 = r })
	if m3.Number != 3 || m3.Version != m2.Version || !m3.Stale {
		t.Errorf("match %d with the control plane down: version %d, stale %t; want match 3, version %d, stale", m3.Number, m3.Version, m3.Stale, m2.Version)
	}
	checkMultipliers(t, m3, 3)
	gs.close()
	if i := out.waitFor(t, "telemetry:"); !strings.Contains(out.line(i), "not delivered") {
		t.Errorf("with the control plane down, close reported %q; want the telemetry not delivered", out.line(i))
	}

	// A new game server, started while the control plane is down, plays on
	// the last-known-good file. Match 1 again, with the same seed: the same
	// moves as the first match 1, at the new multiplier.
	out2 := newTranscript(t)
	gs2, err := connect(ctx, o, out2, quiet)
	if err != nil {
		t.Fatalf("start from the last-known-good file: %v", err)
	}
	defer gs2.close()
	if i := out2.waitFor(t, "event READY"); !strings.Contains(out2.line(i), "last-known-good file") {
		t.Errorf("READY does not come from the last-known-good file: %s", out2.line(i))
	}
	var m4 matchReport
	gs2.playMatches(ctx, 1, func(r matchReport) { m4 = r })
	if m4.Version != m2.Version || !m4.FromCache {
		t.Errorf("restarted: version %d, from cache %t; want version %d from the last-known-good file", m4.Version, m4.FromCache, m2.Version)
	}
	checkMultipliers(t, m4, 3)
	if m4.Accepted != m1.Accepted || !cmp.Equal(m4.Rejected, m1.Rejected) {
		t.Errorf("same seed, same match number, different outcome: accepted %d, rejected %v; first time %d, %v", m4.Accepted, m4.Rejected, m1.Accepted, m1.Rejected)
	}
	if got, want := m4.Players[0].XP, m1.Players[0].XP*3/2; got != want {
		t.Errorf("player-1 earned %g xp at x3, want %g (%g at x2)", got, want, m1.Players[0].XP)
	}

	// The control plane comes back, and takes the new server's telemetry.
	cp.restart()
	out2.waitFor(t, "event RECOVERED")
	fctx2, cancel2 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel2()
	if err := gs2.reporter.FlushAll(fctx2); err != nil {
		t.Errorf("ship the restarted server's telemetry: %v", err)
	}
	if s := gs2.reporter.Stats(); s.Batches == 0 || s.Refused != 0 || s.PendingEvents != 0 {
		t.Errorf("restarted server's telemetry: %+v; want delivered, nothing refused or pending", s)
	}
}

// checkTelemetry checks the control plane's counters of winter-festival
// against what the matches did. Only the players the split assigned are
// exposed (TARGETING_MATCH is not an experiment), so each arm counts the
// actions of its split players, a session per player and match, and the
// drops they got.
func (cp *controlPlane) checkTelemetry(matches ...matchReport) {
	cp.t.Helper()
	want := map[string]guardrails.Arm{}
	players := map[string]map[string]bool{}
	for _, m := range matches {
		for _, p := range m.Players {
			if p.Reason != "SPLIT" {
				continue
			}
			a := want[p.Variant]
			if players[p.Variant] == nil {
				players[p.Variant] = map[string]bool{}
			}
			players[p.Variant][p.ID] = true
			a.Exposures = int64(len(players[p.Variant]))
			a.Actions += int64(p.Accepted + p.Rejected)
			a.Rejects += int64(p.Rejected)
			a.Sessions.Sessions++
			a.Sessions.N += int64(p.Accepted + p.Rejected)
			a.Sessions.X += int64(p.Rejected)
			if p.Drops > 0 {
				if a.Custom == nil {
					a.Custom = map[string]int64{}
				}
				a.Custom["drops"] += int64(p.Drops)
			}
			want[p.Variant] = a
		}
	}
	if want["festival"].Actions == 0 || want["control"].Actions == 0 {
		cp.t.Fatalf("the split gave one arm no actions: %+v", want)
	}
	got, err := cp.telemetry.Counters(context.Background(), "development", festivalFlag, "festival", "control", time.Time{}, cp.telemetryNow())
	if err != nil {
		cp.t.Fatal(err)
	}
	opts := []cmp.Option{
		cmpopts.IgnoreFields(guardrails.Arm{}, "Retention", "LastExposure", "LastMetric"),
		cmpopts.IgnoreFields(guardrails.SessionSums{}, "NN", "XX", "NX"),
	}
	if diff := cmp.Diff(want["festival"], got.Treatment, opts...); diff != "" {
		cp.t.Errorf("festival counters (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want["control"], got.Control, opts...); diff != "" {
		cp.t.Errorf("control counters (-want +got):\n%s", diff)
	}
}

// checkMultipliers checks that every player of the festival variant read
// want as the XP multiplier throughout match r, and every other player 1.
func checkMultipliers(t *testing.T, r matchReport, want float64) {
	t.Helper()
	for _, p := range r.Players {
		w := []float64{1}
		if p.Variant == "festival" {
			w = []float64{want}
		}
		if !slices.Equal(p.Multipliers, w) {
			t.Errorf("match %d (version %d), %s (%s): read xp multipliers %v, want %v", r.Number, r.Version, p.ID, p.Variant, p.Multipliers, w)
		}
	}
}

func TestParseOptions(t *testing.T) {
	env := func(key string) func(string) string {
		return func(name string) string {
			if name == "SOLSTICE_SERVER_KEY" {
				return key
			}
			return ""
		}
	}
	tests := []struct {
		name    string
		args    []string
		key     string
		check   func(options) bool
		wantErr string
	}{
		{name: "defaults", key: "sol_server_x", check: func(o options) bool {
			return o.URL == "http://127.0.0.1:8080" && o.PublicKey == "development.pub" && o.ServerKey == "sol_server_x" && o.Match == 20*time.Second
		}},
		{name: "public key follows the environment", args: []string{"--env", "staging"}, key: "k", check: func(o options) bool { return o.PublicKey == "staging.pub" }},
		{name: "no server key", wantErr: "SOLSTICE_SERVER_KEY"},
		{name: "no key on the command line", args: []string{"--server-key", "k"}, key: "k", wantErr: "not defined"},
		{name: "no players", args: []string{"--players", "0"}, key: "k", wantErr: "--players"},
		{name: "match shorter than a tick", args: []string{"--match", "1ms"}, key: "k", wantErr: "--match"},
		{name: "telemetry never shipped", args: []string{"--report-every", "0s"}, key: "k", wantErr: "--report-every"},
		{name: "help", args: []string{"-h"}, key: "k", wantErr: flag.ErrHelp.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(tt.args, env(tt.key), io.Discard)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want one containing %q", err, tt.wantErr)
				}
			case err != nil:
				t.Errorf("err = %v", err)
			case !tt.check(o):
				t.Errorf("unexpected options %+v", o)
			}
		})
	}
}

// controlPlane is a real control plane in this process, wired as `solstice
// serve` wires it: a migrated SQLite store, the flags and auth services, a
// keyring, a publisher told of every commit, and the web server.
type controlPlane struct {
	t         *testing.T
	db        *store.DB
	flags     *flags.Service
	auth      *auth.Service
	keyring   *snapshot.Keyring
	pub       atomic.Pointer[snapshot.Publisher]
	telemetry *telemetry.Service
	addr      string
	srv       *httptest.Server
}

// telemetryNow is the telemetry service's clock: two minutes ahead of the
// game server's.
//
// NOTE: the watermark never passes the control plane's current minute,
// and a game server's last batch declares the minute under way done: two
// minutes ahead, the counters include it at once instead of a minute
// later. The skew is well within what telemetry accepts (5 minutes).
func (cp *controlPlane) telemetryNow() time.Time { return time.Now().Add(2 * time.Minute) }

func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	cp := &controlPlane{t: t, db: storetest.Open(t)}
	cp.auth = auth.NewService(cp.db, nil)
	cp.flags = flags.NewService(cp.db, flags.OnRevision(func(ctx context.Context, env string, _ flags.Revision) {
		if _, err := cp.pub.Load().Publish(ctx, env); err != nil {
			t.Errorf("publish %s: %v", env, err)
		}
	}))
	cp.keyring = snapshot.NewKeyring(t.TempDir(), snapshot.WithKeyringLogger(slog.New(slog.DiscardHandler)))
	cp.pub.Store(cp.newPublisher())
	cp.telemetry = telemetry.New(cp.db, telemetry.WithClock(solstice.ClockFunc(cp.telemetryNow)))
	if err := cp.flags.EnsureDefaultEnvironments(context.Background()); err != nil {
		t.Fatal(err)
	}
	cp.seedFestival()
	cp.serve("127.0.0.1:0")
	t.Cleanup(cp.stop)
	return cp
}

func (cp *controlPlane) newPublisher() *snapshot.Publisher {
	return snapshot.NewPublisher(cp.flags, cp.db, cp.keyring,
		snapshot.WithLogger(slog.New(slog.DiscardHandler)), snapshot.WithHeads(cp.flags))
}

// serve serves the web server on addr.
func (cp *controlPlane) serve(addr string) {
	cp.t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		cp.t.Fatalf("listen on %s: %v", addr, err)
	}
	h := web.New(web.Deps{Flags: cp.flags, Auth: cp.auth, Logger: slog.New(slog.DiscardHandler), Publisher: cp.pub.Load(), Telemetry: cp.telemetry})
	cp.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: h}}
	cp.srv.Start()
	cp.addr = l.Addr().String()
}

// stop takes the control plane down as a crash would: new connections are
// refused and parked long polls are cut.
func (cp *controlPlane) stop() {
	// NOTE: the listener closes first. net/http's client retries a GET
	// whose connection was cut before any answer, at once and on a new
	// connection: one accepted now would hold Close for a whole long poll.
	cp.srv.Listener.Close()
	cp.srv.CloseClientConnections()
	cp.srv.Close()
}

// restart starts the control plane again on the same address, over the
// same database and keys. Like `solstice serve`, it publishes every
// environment before it takes traffic.
func (cp *controlPlane) restart() {
	cp.t.Helper()
	pub := cp.newPublisher()
	if err := pub.Tick(context.Background(), time.Now()); err != nil {
		cp.t.Fatal(err)
	}
	cp.pub.Store(pub)
	cp.serve(cp.addr)
}

func (cp *controlPlane) serverKey() string {
	cp.t.Helper()
	c, err := cp.auth.Create(context.Background(), auth.NewToken{Name: "gs", Kind: auth.KindServer, Environment: "development"})
	if err != nil {
		cp.t.Fatal(err)
	}
	return c.Secret
}

// publicKey is what `solstice keys export-public --env development` prints.
func (cp *controlPlane) publicKey() []byte {
	cp.t.Helper()
	pem, err := cp.keyring.ExportPublic("development")
	if err != nil {
		cp.t.Fatal(err)
	}
	return pem
}

// seedFestival creates the demo's winter-festival flag in development:
// the festival (x2) for the beta testers (player-1 to player-3), a 50/50
// split by userId for everyone else.
func (cp *controlPlane) seedFestival() {
	cp.t.Helper()
	ctx := context.Background()
	if _, err := cp.flags.PutSegment(ctx, "development", flags.Segment{Key: "beta-testers", Name: "Beta testers",
		Members: []string{"player-1", "player-2", "player-3"}}, 0, "seed"); err != nil {
		cp.t.Fatal(err)
	}
	if _, err := cp.flags.CreateFlag(ctx, flags.NewFlag{
		Key: festivalFlag, Name: "Winter Festival config", Type: flags.TypeObject,
		Schema: json.RawMessage(`{"type": "object", "required": ["event", "xp_multiplier", "drops"],
			"properties": {"xp_multiplier": {"type": "number", "minimum": 1, "maximum": 5}}}`),
		Variants: []flags.Variant{
			{Key: "control", Value: json.RawMessage(`{"event":"none","xp_multiplier":1,"drops":[{"item":"coal","weight":1}]}`)},
			{Key: "festival", Value: json.RawMessage(`{"event":"winter-festival","xp_multiplier":2,"drops":[{"item":"snow-globe","weight":5},{"item":"ice-sword","weight":1}]}`)},
		},
		DefaultVariant: "control", OffVariant: "control",
	}); err != nil {
		cp.t.Fatal(err)
	}
	cp.updateFestival(func(c *flags.Config) {
		c.Enabled = true
		c.Rules = []flags.Rule{{ID: "beta", Conditions: []flags.Condition{{Op: flags.OpInSegment, Segment: "beta-testers"}}, Variant: "festival"}}
		c.Split = &flags.Split{BucketBy: "userId", Weights: []flags.Weight{{Variant: "festival", Weight: 5000}, {Variant: "control", Weight: 5000}}}
	})
}

// setFestivalXP sets the festival variant's xp_multiplier, as the
// README's curl PUT does.
func (cp *controlPlane) setFestivalXP(xp float64) {
	cp.updateFestival(func(c *flags.Config) {
		for i, v := range c.Variants {
			if v.Key != "festival" {
				continue
			}
			var value map[string]any
			if err := json.Unmarshal(v.Value, &value); err != nil {
				cp.t.Fatal(err)
			}
			value["xp_multiplier"] = xp
			b, err := json.Marshal(value)
			if err != nil {
				cp.t.Fatal(err)
			}
			c.Variants[i].Value = b
		}
	})
}

func (cp *controlPlane) updateFestival(change func(*flags.Config)) {
	cp.t.Helper()
	ctx := context.Background()
	fc, err := cp.flags.GetConfig(ctx, "development", festivalFlag)
	if err != nil {
		cp.t.Fatal(err)
	}
	c := fc.Config
	change(&c)
	if _, err := cp.flags.PutConfig(ctx, "development", festivalFlag, c, fc.Revision, "test"); err != nil {
		cp.t.Fatal(err)
	}
}

// transcript is the example's output, kept line by line for the test to
// wait on, and logged if the test fails.
type transcript struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	grew    chan struct{} // closed and replaced when a line arrives
}

func newTranscript(t *testing.T) *transcript {
	tr := &transcript{grew: make(chan struct{})}
	t.Cleanup(func() {
		if t.Failed() {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			t.Logf("output:\n%s", strings.Join(tr.lines, "\n"))
		}
	})
	return tr
}

func (tr *transcript) Write(p []byte) (int, error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.partial = append(tr.partial, p...)
	for {
		i := bytes.IndexByte(tr.partial, '\n')
		if i < 0 {
			break
		}
		tr.lines = append(tr.lines, string(tr.partial[:i]))
		tr.partial = tr.partial[i+1:]
		close(tr.grew)
		tr.grew = make(chan struct{})
	}
	return len(p), nil
}

// index returns the index of the first line containing s, -1 if none.
func (tr *transcript) index(s string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.IndexFunc(tr.lines, func(l string) bool { return strings.Contains(l, s) })
}

func (tr *transcript) line(i int) string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.lines[i]
}

// waitFor waits for a line containing s and returns its index.
func (tr *transcript) waitFor(t *testing.T, s string) int {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		tr.mu.Lock()
		grew := tr.grew
		tr.mu.Unlock()
		if i := tr.index(s); i >= 0 {
			return i
		}
		select {
		case <-grew:
		case <-deadline:
			t.Fatalf("no line containing %q within 10s", s)
		}
	}
}

var _ io.Writer = (*transcript)(nil)
