package sdk_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/sdk"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/snapshot/snapshottest"
)

// xpConfig is an enabled boolean flag serving true to everyone; toggling
// it off serves false (DISABLED).
var xpConfig = flags.Config{Enabled: true, Variants: flags.DefaultBooleanVariants(), DefaultVariant: "on", OffVariant: "off"}

func newXP(t *testing.T) *controlPlane {
	t.Helper()
	cp := newControlPlane(t)
	cp.createFlag("production", flags.NewFlag{Key: "double-xp", Type: flags.TypeBoolean}, xpConfig)
	return cp
}

func newClient(t *testing.T, cfg sdk.Config) *sdk.Client {
	t.Helper()
	c, err := sdk.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// served is what an evaluation served, for comparisons.
type served struct {
	Value   any
	Variant string
	Reason  flags.Reason
}

func servedOf(r flags.Result) served { return served{r.Value, r.Variant, r.Reason} }

var (
	xpOn  = served{true, "on", flags.ReasonStatic}
	xpOff = served{false, "off", flags.ReasonDisabled}
)

func TestFirstSnapshotAndChangeThroughLongPoll(t *testing.T) {
	cp := newXP(t)
	cfg := cp.config("production")
	cfg.CacheFile = filepath.Join(t.TempDir(), "lkg", "production.json")
	c := newClient(t, cfg)
	events := subscribe(c)

	c.Start(t.Context())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	first := cp.current("production")
	snap, ok := c.Snapshot()
	if !ok || snap.Version != first.Version() || snap.Revision != first.Revision() || snap.Stale || snap.FromCache ||
		!snap.ExpiresAt.Equal(first.ExpiresAt()) || snap.Environment != "production" {
		t.Fatalf("Snapshot() = %+v, %v; want version %d revision %d, fresh", snap, ok, first.Version(), first.Revision())
	}
	if diff := cmp.Diff(xpOn, servedOf(c.Evaluate("double-xp", nil))); diff != "" {
		t.Errorf("evaluation (-want +got):\n%s", diff)
	}
	// The last-known-good file is the exact verified envelope, private.
	if b, err := os.ReadFile(cfg.CacheFile); err != nil || !bytes.Equal(b, first.Envelope()) {
		t.Errorf("cache file = %d bytes (%v), want the %d-byte envelope", len(b), err, len(first.Envelope()))
	}
	if fi, err := os.Stat(cfg.CacheFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("cache file: %v, want mode 0600", err)
		if err == nil {
			t.Errorf("cache file mode = %v, want 0600", fi.Mode())
		}
	}

	// A change reaches the client through its parked long poll: with
	// PollWait at 30 s, nothing else could deliver it within 10 s.
	cp.toggle("production", "double-xp")
	ev := events.waitFor(t, sdk.EventConfigurationChanged, 10*time.Second)
	second := cp.current("production")
	if diff := cmp.Diff([]string{"double-xp"}, ev.FlagChanges); diff != "" {
		t.Errorf("FlagChanges (-want +got):\n%s", diff)
	}
	if ev.Version != second.Version() {
		t.Errorf("event version = %d, want %d", ev.Version, second.Version())
	}
	if diff := cmp.Diff(xpOff, servedOf(c.Evaluate("double-xp", nil))); diff != "" {
		t.Errorf("evaluation after the change (-want +got):\n%s", diff)
	}
	if b, _ := os.ReadFile(cfg.CacheFile); !bytes.Equal(b, second.Envelope()) {
		t.Error("the cache file does not hold the new snapshot")
	}
	if diff := cmp.Diff([]sdk.EventKind{sdk.EventReady, sdk.EventConfigurationChanged}, events.kinds()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}

	// What went over the wire.
	reqs := cp.recordedRequests()
	if len(reqs) < 2 {
		t.Fatalf("%d requests recorded, want at least 2", len(reqs))
	}
	for i, r := range reqs[:2] {
		if got := r.Header.Get("Authorization"); got != "Bearer "+cfg.ServerKey {
			t.Errorf("request %d: Authorization = %q", i, got)
		}
		if r.Header.Get("Accept-Encoding") != "gzip" || r.ContentEncoding != "gzip" || r.Status != 200 {
			t.Errorf("request %d: Accept-Encoding %q, answered %d with Content-Encoding %q; want gzip both ways",
				i, r.Header.Get("Accept-Encoding"), r.Status, r.ContentEncoding)
		}
		if r.Header.Get("Solstice-Server-Id") != "gs-test-1" {
			t.Errorf("request %d: Solstice-Server-Id = %q", i, r.Header.Get("Solstice-Server-Id"))
		}
	}
	if r := reqs[0]; r.Header.Get("If-None-Match") != "" || strings.Contains(r.URL, "wait=") || r.Header.Get("Solstice-Snapshot-Version") != "" {
		t.Errorf("first request %s %v: want no If-None-Match, wait or held version", r.URL, r.Header)
	}
	if r := reqs[1]; r.Header.Get("If-None-Match") != first.ETag() || !strings.Contains(r.URL, "wait=30") ||
		r.Header.Get("Solstice-Snapshot-Version") != strconv.FormatInt(first.Version(), 10) {
		t.Errorf("second request %s If-None-Match %q version %q: want a long poll on %s, version %d",
			r.URL, r.Header.Get("If-None-Match"), r.Header.Get("Solstice-Snapshot-Version"), first.ETag(), first.Version())
	}
}

// dsse is the DSSE envelope's JSON form.
type dsse struct {
	PayloadType string    `json:"payloadType"`
	Payload     []byte    `json:"payload"`
	Signatures  []dsseSig `json:"signatures"`
}

type dsseSig struct {
	KeyID string `json:"keyid"`
	Sig   []byte `json:"sig"`
}

// reenvelope decodes a DSSE envelope, lets f change it, and encodes it.
func reenvelope(t *testing.T, b []byte, f func(e *dsse)) []byte {
	t.Helper()
	var e dsse
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("decode envelope: %v", err)
	}
	f(&e)
	out, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRefusedSnapshotsKeepThePreviousOne(t *testing.T) {
	cp := newXP(t)
	signers, err := cp.keyring.Signers("production")
	if err != nil {
		t.Fatal(err)
	}
	// build signs a snapshot of set with production's real keys, far ahead
	// in version, so that only the property under test is wrong.
	build := func(set flags.Set, issued time.Time) []byte {
		b, err := snapshot.Build(set, 1_000_000, issued, time.Hour, signers)
		if err != nil {
			t.Fatal(err)
		}
		return b.Envelope()
	}
	goodSet, err := cp.flags.Set(context.Background(), "production")
	if err != nil {
		t.Fatal(err)
	}
	staging := cp.current("staging").Envelope()

	tests := []struct {
		name   string
		mutate func(t *testing.T, body []byte) []byte
		want   snapshot.Reason
	}{
		{"payload byte flipped", func(t *testing.T, b []byte) []byte {
			return reenvelope(t, b, func(e *dsse) { e.Payload[len(e.Payload)/2] ^= 0x01 })
		}, snapshot.ReasonBadSignature},
		{"signed by an unknown key", func(t *testing.T, b []byte) []byte {
			var e dsse
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatal(err)
			}
			forged, err := snapshot.Sign(e.Payload, snapshottest.Signer("intruder"))
			if err != nil {
				t.Fatal(err)
			}
			return forged
		}, snapshot.ReasonUnknownKey},
		{"signature stripped", func(t *testing.T, b []byte) []byte {
			return reenvelope(t, b, func(e *dsse) { e.Signatures = []dsseSig{} })
		}, snapshot.ReasonMalformed},
		{"truncated", func(t *testing.T, b []byte) []byte { return b[:len(b)/2] }, snapshot.ReasonMalformed},
		{"another environment's snapshot", func(*testing.T, []byte) []byte { return staging }, snapshot.ReasonWrongEnvironment},
		{"oversized", func(_ *testing.T, b []byte) []byte {
			return append(b, bytes.Repeat([]byte(" "), 100<<10)...)
		}, snapshot.ReasonTooLarge},
		{"expired", func(*testing.T, []byte) []byte {
			return build(goodSet, time.Now().Add(-2*time.Hour))
		}, snapshot.ReasonExpired},
		{"does not compile", func(*testing.T, []byte) []byte {
			bad := goodSet
			bad.Flags = append([]flags.FlagState(nil), goodSet.Flags...)
			bad.Flags[0].DefaultVariant = "no-such-variant"
			return build(bad, time.Now())
		}, snapshot.ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cp.setMode(modePass)
			cfg := cp.config("production")
			cfg.TrustedKeys = append(cfg.TrustedKeys, cp.trusted("staging")...) // so that only the environment is wrong
			cfg.MaxSnapshotSize = 64 << 10
			c := newClient(t, cfg)
			events := subscribe(c)
			if err := c.Poll(t.Context()); err != nil {
				t.Fatal(err)
			}
			held, _ := c.Snapshot()
			before := servedOf(c.Evaluate("double-xp", nil))

			cp.toggle("production", "double-xp") // a newer snapshot, tampered on its way
			cp.tamper(func(b []byte) []byte { return tc.mutate(t, b) })
			err := c.Poll(t.Context())
			var verr *snapshot.VerifyError
			if !errors.As(err, &verr) || verr.Reason != tc.want {
				t.Fatalf("Poll = %v, want a %s rejection", err, tc.want)
			}
			if snap, _ := c.Snapshot(); snap.Version != held.Version {
				t.Errorf("held version = %d after a refused snapshot, want %d", snap.Version, held.Version)
			}
			if got := servedOf(c.Evaluate("double-xp", nil)); got != before {
				t.Errorf("evaluation changed after a refused snapshot: %+v → %+v", before, got)
			}
			if got := c.Stats().Rejected[tc.want]; got != 1 {
				t.Errorf("Stats().Rejected[%s] = %d, want 1", tc.want, got)
			}
			evs := events.all()
			if len(evs) != 2 || evs[1].Kind != sdk.EventRejected || evs[1].Reason != tc.want || evs[1].Version != held.Version {
				t.Errorf("events = %+v, want READY then REJECTED (%s) holding version %d", evs, tc.want, held.Version)
			}
			if c.Status() != sdk.StatusReady {
				t.Errorf("Status = %s, want READY: one refused snapshot is no outage", c.Status())
			}

			// The genuine snapshot is accepted at the next poll.
			cp.setMode(modePass)
			if err := c.Poll(t.Context()); err != nil {
				t.Fatal(err)
			}
			if snap, _ := c.Snapshot(); snap.Version != cp.current("production").Version() {
				t.Errorf("version = %d after the genuine snapshot, want %d", snap.Version, cp.current("production").Version())
			}
		})
	}
}

func TestRollbackRefusedAndReported(t *testing.T) {
	cp := newXP(t)
	c := newClient(t, cp.config("production"))
	events := subscribe(c)
	if err := c.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	old := cp.lastSnapshotBody()
	cp.toggle("production", "double-xp")
	if err := c.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	newer := cp.current("production")

	cp.replayBody(old) // a replay of the older, genuinely signed snapshot
	err := c.Poll(t.Context())
	if !errors.Is(err, snapshot.ErrRollback) {
		t.Fatalf("Poll = %v, want a rollback refusal", err)
	}
	if snap, _ := c.Snapshot(); snap.Version != newer.Version() {
		t.Errorf("held version = %d, want %d", snap.Version, newer.Version())
	}
	if diff := cmp.Diff(xpOff, servedOf(c.Evaluate("double-xp", nil))); diff != "" {
		t.Errorf("evaluation after the rollback attempt (-want +got):\n%s", diff)
	}
	want := []sdk.EventKind{sdk.EventReady, sdk.EventConfigurationChanged, sdk.EventRejected}
	if diff := cmp.Diff(want, events.kinds()); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	if e := events.all()[2]; e.Reason != snapshot.ReasonRollback || !errors.Is(e.Err, snapshot.ErrRollback) {
		t.Errorf("rejection event = %+v", e)
	}
}

func TestLastKnownGoodWhenControlPlaneIsDown(t *testing.T) {
	cp := newXP(t)
	dir := t.TempDir()
	cfg := cp.config("production")
	cfg.CacheFile = filepath.Join(dir, "production.json")
	if err := newClient(t, cfg).Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	good := cp.current("production")
	stagingCfg := cp.config("staging")
	stagingCfg.CacheFile = filepath.Join(dir, "staging.json")
	if err := newClient(t, stagingCfg).Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	cp.setMode(modeDown)

	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := reenvelope(t, good.Envelope(), func(e *dsse) { e.Payload[10] ^= 0x20 })

	tests := []struct {
		name      string
		file      string
		advance   time.Duration
		trustMore []ed25519.PublicKey
		wantReady bool
		wantStale bool
		wantKinds []sdk.EventKind
	}{
		{name: "fresh", file: cfg.CacheFile, wantReady: true, wantKinds: []sdk.EventKind{sdk.EventReady}},
		{name: "expired", file: cfg.CacheFile, advance: 48 * time.Hour, wantReady: true, wantStale: true,
			wantKinds: []sdk.EventKind{sdk.EventReady, sdk.EventStale}},
		{name: "tampered", file: write("tampered.json", flipped)},
		{name: "another environment", file: stagingCfg.CacheFile, trustMore: cp.trusted("staging")},
		{name: "not a snapshot", file: write("garbage.json", []byte("{}"))},
		{name: "missing", file: filepath.Join(dir, "none.json")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{}
			clock.Advance(tc.advance)
			cfg := cfg
			cfg.CacheFile, cfg.Clock = tc.file, clock.clock()
			cfg.TrustedKeys = append(append([]ed25519.PublicKey(nil), cfg.TrustedKeys...), tc.trustMore...)
			c := newClient(t, cfg)
			events := subscribe(c)
			before, _ := os.ReadFile(tc.file)

			c.Start(t.Context()) // loads the file before it returns
			if c.Ready() != tc.wantReady {
				t.Fatalf("Ready() = %v, want %v", c.Ready(), tc.wantReady)
			}
			if diff := cmp.Diff(tc.wantKinds, events.kinds()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if tc.wantReady {
				snap, _ := c.Snapshot()
				if snap.Version != good.Version() || !snap.FromCache || snap.Stale != tc.wantStale {
					t.Errorf("Snapshot() = version %d fromCache %v stale %v; want %d, true, %v",
						snap.Version, snap.FromCache, snap.Stale, good.Version(), tc.wantStale)
				}
				if diff := cmp.Diff(xpOn, servedOf(c.Evaluate("double-xp", nil))); diff != "" {
					t.Errorf("evaluation from the last-known-good snapshot (-want +got):\n%s", diff)
				}
				wantStatus := sdk.StatusReady
				if tc.wantStale {
					wantStatus = sdk.StatusStale
				}
				if c.Status() != wantStatus {
					t.Errorf("Status = %s, want %s", c.Status(), wantStatus)
				}
			} else if r := c.Evaluate("double-xp", nil); r.Reason != flags.ReasonError {
				t.Errorf("evaluation without a snapshot = %+v, want reason ERROR", r)
			}
			c.Close()
			if after, _ := os.ReadFile(tc.file); !bytes.Equal(before, after) {
				t.Error("the cache file changed although no snapshot was accepted")
			}
		})
	}
}

func TestEventsAcrossAnOutageAndARestart(t *testing.T) {
	cp := newXP(t)
	clock := &fakeClock{}
	cfg := cp.config("production")
	cfg.Clock, cfg.StaleAfter = clock.clock(), time.Minute
	c := newClient(t, cfg)
	events := subscribe(c)
	ctx := t.Context()

	step := func(name string, wantErr bool, wantStatus sdk.Status) {
		t.Helper()
		if err := c.Poll(ctx); (err != nil) != wantErr {
			t.Fatalf("%s: Poll = %v, want error %v", name, err, wantErr)
		}
		if c.Status() != wantStatus {
			t.Fatalf("%s: Status = %s, want %s", name, c.Status(), wantStatus)
		}
	}
	step("first poll", false, sdk.StatusReady)
	cp.toggle("production", "double-xp")
	step("change", false, sdk.StatusReady)
	changed, _ := c.Snapshot()

	cp.setMode(modeDown)
	step("outage begins", true, sdk.StatusReady) // not stale yet: failing for 0 s
	clock.Advance(30 * time.Second)
	step("outage goes on", true, sdk.StatusReady)
	clock.Advance(31 * time.Second)
	step("outage beyond StaleAfter", true, sdk.StatusStale)
	if snap, _ := c.Snapshot(); !snap.Stale || snap.Version != changed.Version {
		t.Errorf("Snapshot() during the outage = version %d stale %v; want %d, stale", snap.Version, snap.Stale, changed.Version)
	}
	if diff := cmp.Diff(xpOff, servedOf(c.Evaluate("double-xp", nil))); diff != "" {
		t.Errorf("evaluation during the outage (-want +got):\n%s", diff)
	}

	cp.restart() // a new process over the same database: a new version
	cp.setMode(modePass)
	step("control plane back", false, sdk.StatusReady)
	snap, _ := c.Snapshot()
	if snap.Version <= changed.Version || snap.Stale {
		t.Errorf("after the restart: version %d stale %v; want above %d, fresh", snap.Version, snap.Stale, changed.Version)
	}

	want := []sdk.EventKind{sdk.EventReady, sdk.EventConfigurationChanged, sdk.EventStale, sdk.EventRecovered}
	if diff := cmp.Diff(want, events.kinds()); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	evs := events.all()
	if diff := cmp.Diff([]string{"double-xp"}, evs[1].FlagChanges); diff != "" {
		t.Errorf("FlagChanges (-want +got):\n%s", diff)
	}
	if evs[2].Err == nil || evs[3].Version != snap.Version {
		t.Errorf("STALE should carry the poll error, RECOVERED the new version: %+v", evs[2:])
	}
	st := c.Stats()
	if st.Failures != 3 || st.Accepted != 3 || st.LastError != nil {
		t.Errorf("Stats = %+v, want 3 failures, 3 snapshots accepted, no last error", st)
	}
}

func TestPinKeepsItsVersion(t *testing.T) {
	cp := newXP(t)
	c := newClient(t, cp.config("production"))
	if p := c.Pin(); p.Version() != 0 || p.Evaluate("double-xp", nil).ErrorCode != flags.CodeGeneral {
		t.Errorf("a pin without a snapshot: version %d, %+v", p.Version(), p.Evaluate("double-xp", nil))
	}
	if err := c.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	match := c.Pin()
	v1 := match.Version()

	cp.toggle("production", "double-xp")
	if err := c.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	next := c.Pin()
	if match.Version() != v1 || next.Version() <= v1 {
		t.Fatalf("versions: pinned %d (was %d), new pin %d", match.Version(), v1, next.Version())
	}
	tests := []struct {
		name string
		got  flags.Result
		want served
	}{
		{"the running match", match.Evaluate("double-xp", nil), xpOn},
		{"the next match", next.Evaluate("double-xp", nil), xpOff},
		{"unpinned", c.Evaluate("double-xp", nil), xpOff},
		{"pinned, as a type", match.EvaluateAs("double-xp", flags.TypeBoolean, nil), xpOn},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, servedOf(tc.got)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	if p, ok := sdk.PinnedFrom(sdk.WithPinned(t.Context(), match)); !ok || p != match || p.Client() != c {
		t.Error("PinnedFrom does not return what WithPinned stored")
	}
	if _, ok := sdk.PinnedFrom(t.Context()); ok {
		t.Error("PinnedFrom found a pin in a bare context")
	}
}

func TestConfigurationErrors(t *testing.T) {
	cp := newXP(t)
	stagingKey := cp.serverKey("staging")
	tests := []struct {
		name   string
		adjust func(*sdk.Config)
		kind   solstice.Kind
	}{
		{"unknown server key", func(c *sdk.Config) { c.ServerKey = "ss_not-a-key" }, solstice.KindUnauthorized},
		{"key of another environment", func(c *sdk.Config) { c.ServerKey = stagingKey }, solstice.KindForbidden},
		{"unknown environment", func(c *sdk.Config) { c.Environment = "nowhere" }, solstice.KindNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := cp.config("production")
			tc.adjust(&cfg)
			c := newClient(t, cfg)
			events := subscribe(c)
			err := c.Poll(t.Context())
			if !solstice.IsKind(err, tc.kind) {
				t.Fatalf("Poll = %v (kind %s), want kind %s", err, solstice.ErrorKind(err), tc.kind)
			}
			if c.Status() != sdk.StatusError || c.Ready() {
				t.Errorf("Status = %s, Ready = %v; want ERROR, not ready", c.Status(), c.Ready())
			}
			if diff := cmp.Diff([]sdk.EventKind{sdk.EventError}, events.kinds()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			// Waiting does not mend a wrong key: WaitReady says so at once.
			c.Start(t.Context())
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := c.WaitReady(ctx); !solstice.IsKind(err, tc.kind) || ctx.Err() != nil {
				t.Errorf("WaitReady = %v, want kind %s before the deadline", err, tc.kind)
			}
			// Repeated refusals are one ERROR, not one per retry.
			c.Close()
			if n := len(events.kinds()); n != 1 {
				t.Errorf("%d events after retries, want 1: %v", n, events.kinds())
			}
		})
	}
}

func TestNewValidatesTheConfig(t *testing.T) {
	key := snapshottest.Key("validate").Public().(ed25519.PublicKey)
	valid := sdk.Config{Environment: "production", BaseURL: "https://flags.example.com/", ServerKey: "ss_x", TrustedKeys: []ed25519.PublicKey{key}}
	tests := []struct {
		name   string
		adjust func(*sdk.Config)
		want   []string // pointers of the field errors
	}{
		{"valid", func(*sdk.Config) {}, nil},
		{"empty", func(c *sdk.Config) { *c = sdk.Config{} }, []string{"/Environment", "/BaseURL", "/ServerKey", "/TrustedKeys"}},
		{"not http", func(c *sdk.Config) { c.BaseURL = "ftp://flags.example.com" }, []string{"/BaseURL"}},
		{"no host", func(c *sdk.Config) { c.BaseURL = "https://" }, []string{"/BaseURL"}},
		{"short key", func(c *sdk.Config) { c.TrustedKeys = append(c.TrustedKeys, key[:16]) }, []string{"/TrustedKeys/1"}},
		{"poll wait over the server's cap", func(c *sdk.Config) { c.PollWait = 2 * time.Minute }, []string{"/PollWait"}},
		{"negative durations", func(c *sdk.Config) { c.MinBackoff, c.StaleAfter = -1, -1 }, []string{"/MinBackoff", "/StaleAfter"}},
		{"backoff bounds reversed", func(c *sdk.Config) { c.MinBackoff, c.MaxBackoff = time.Minute, time.Second }, []string{"/MaxBackoff"}},
		{"negative size", func(c *sdk.Config) { c.MaxSnapshotSize = -1 }, []string{"/MaxSnapshotSize"}},
		{"HTTP timeout shorter than the long poll", func(c *sdk.Config) {
			c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
		}, []string{"/HTTPClient"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid
			tc.adjust(&cfg)
			c, err := sdk.New(cfg)
			var got []string
			for _, f := range solstice.ErrorFields(err) {
				got = append(got, f.Pointer)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("field errors (-want +got):\n%s\nerror: %v", diff, err)
			}
			if tc.want != nil && (c != nil || !solstice.IsKind(err, solstice.KindInvalid)) {
				t.Errorf("New = %v, %v; want nil and a KindInvalid error", c, err)
			}
			if tc.want == nil && (err != nil || c.Environment() != "production") {
				t.Errorf("New = %v", err)
			}
		})
	}
}

func TestReadTrustedKeys(t *testing.T) {
	key := snapshottest.Key("read").Public().(ed25519.PublicKey)
	pem, err := snapshot.MarshalPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests := []struct {
		name    string
		content []byte
		want    []ed25519.PublicKey
		wantErr bool
	}{
		{"PEM", append([]byte("# production\n"), pem...), []ed25519.PublicKey{key}, false},
		{"base64", []byte(base64.StdEncoding.EncodeToString(key) + "\n"), []ed25519.PublicKey{key}, false},
		{"empty", nil, nil, true},
		{"not a key", []byte("hello"), nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := sdk.ReadTrustedKeys(p)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ReadTrustedKeys = %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := sdk.ReadTrustedKeys(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
}
