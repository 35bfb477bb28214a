package ofprovider_test

import (
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/sdk"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/snapshot/snapshottest"
)

// snapshotServer serves signed snapshots as the control plane's snapshot
// endpoint does (ETag, If-None-Match, 304), without the rest of the
// control plane: the provider's tests are about the mapping to
// OpenFeature, and the sdk package's tests run the real control plane.
type snapshotServer struct {
	t      testing.TB
	srv    *httptest.Server
	signer snapshot.Signer

	mu      sync.Mutex
	version int64
	built   *snapshot.Built
	answer  int    // 0: serve the snapshot; else this status
	body    []byte // with answer 200: this body instead

	requests atomic.Int64
}

func newSnapshotServer(t testing.TB, set flags.Set) *snapshotServer {
	t.Helper()
	s := &snapshotServer{t: t, signer: snapshottest.Signer("ofprovider")}
	s.publish(set)
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// publish makes set the current snapshot, under the next version.
func (s *snapshotServer) publish(set flags.Set) *snapshot.Built {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version++
	set.Environment = "production"
	b, err := snapshot.Build(set, s.version, time.Now(), time.Hour, []snapshot.Signer{s.signer})
	if err != nil {
		s.t.Fatal(err)
	}
	s.built = b
	return b
}

// respond makes the server answer every request with status (0: serve
// snapshots again) and, for 200, body.
func (s *snapshotServer) respond(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answer, s.body = status, body
}

func (s *snapshotServer) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	b, answer, body := s.built, s.answer, s.body
	s.mu.Unlock()
	switch {
	case answer == http.StatusOK:
		w.Write(body)
	case answer != 0:
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(answer)
		json.NewEncoder(w).Encode(map[string]any{"title": http.StatusText(answer), "status": answer})
	case r.Header.Get("If-None-Match") == b.ETag():
		w.WriteHeader(http.StatusNotModified)
	default:
		w.Header().Set("ETag", b.ETag())
		w.Write(b.Envelope())
	}
}

// config is a client configuration against s, polling fast.
func (s *snapshotServer) config() sdk.Config {
	return sdk.Config{
		Environment: "production",
		BaseURL:     s.srv.URL,
		ServerKey:   "ss_test",
		TrustedKeys: []ed25519.PublicKey{s.signer.Public()},
		PollWait:    -1, // this server does not hold polls
		MinBackoff:  5 * time.Millisecond,
		MaxBackoff:  20 * time.Millisecond,
		Logger:      slog.New(slog.DiscardHandler),
	}
}

func newClient(t testing.TB, cfg sdk.Config) *sdk.Client {
	t.Helper()
	c, err := sdk.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func boolFlag(key string, c flags.Config) flags.FlagState {
	if c.Variants == nil {
		c.Variants = flags.DefaultBooleanVariants()
	}
	return flags.FlagState{Key: key, Type: flags.TypeBoolean, Config: c}
}

// gameSet is a flag set with every flag type and evaluation reason.
func gameSet() flags.Set {
	return flags.Set{Revision: 7, Flags: []flags.FlagState{
		boolFlag("bool-split", flags.Config{Enabled: true, DefaultVariant: "off", OffVariant: "off",
			Split: &flags.Split{Weights: []flags.Weight{{Variant: "on", Weight: 50}, {Variant: "off", Weight: 50}}}}),
		boolFlag("bool-static", flags.Config{Enabled: true, DefaultVariant: "on", OffVariant: "off"}),
		{Key: "color", Type: flags.TypeString, Config: flags.Config{Enabled: true, DefaultVariant: "blue", OffVariant: "blue",
			Variants: []flags.Variant{{Key: "blue", Value: raw(`"blue"`)}, {Key: "red", Value: raw(`"red"`)}},
			Rules:    []flags.Rule{{ID: "japan", Conditions: []flags.Condition{{Attribute: "country", Op: flags.OpEquals, Value: raw(`"JP"`)}}, Variant: "red"}}}},
		{Key: "event", Type: flags.TypeObject, Config: flags.Config{Enabled: true, DefaultVariant: "winter", OffVariant: "winter",
			Variants: []flags.Variant{{Key: "winter", Value: raw(`{"name":"winter","xp":2,"drops":[{"item":"globe","weight":3}]}`)}}}},
		{Key: "max-players", Type: flags.TypeNumber, Config: flags.Config{Enabled: true, DefaultVariant: "v64", OffVariant: "v64",
			Variants: []flags.Variant{{Key: "v64", Value: raw(`64`)}}}},
		boolFlag("off-flag", flags.Config{Enabled: false, DefaultVariant: "on", OffVariant: "off"}),
		{Key: "spawn-rate", Type: flags.TypeNumber, Config: flags.Config{Enabled: true, DefaultVariant: "fast", OffVariant: "fast",
			Variants: []flags.Variant{{Key: "fast", Value: raw(`1.5`)}}}},
	}}
}
