package sdk

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/snapshot/snapshottest"
)

func TestBackoffIsExponentialWithFullJitterWithinBounds(t *testing.T) {
	c, err := New(Config{
		Environment: "production", BaseURL: "http://127.0.0.1:1", ServerKey: "ss_x",
		TrustedKeys: []ed25519.PublicKey{snapshottest.Key("b").Public().(ed25519.PublicKey)},
		MinBackoff:  time.Second, MaxBackoff: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		failures   int
		retryAfter time.Duration
		lo, hi     time.Duration // every wait is in [lo, hi]
		spreadOver time.Duration // and 200 draws span at least this much
	}{
		{1, 0, time.Second, time.Second, 0},
		{2, 0, time.Second, 2 * time.Second, 500 * time.Millisecond},
		{4, 0, time.Second, 8 * time.Second, 4 * time.Second},
		{7, 0, time.Second, time.Minute, 30 * time.Second},
		{40, 0, time.Second, time.Minute, 30 * time.Second}, // no overflow
		{1, 10 * time.Second, 10 * time.Second, 10 * time.Second, 0},
		{1, time.Hour, time.Minute, time.Minute, 0}, // Retry-After is capped too
	}
	for _, tc := range tests {
		lo, hi := time.Duration(1<<62), time.Duration(0)
		for range 200 {
			d := c.backoff(tc.failures, tc.retryAfter)
			lo, hi = min(lo, d), max(hi, d)
		}
		if lo < tc.lo || hi > tc.hi || hi-lo < tc.spreadOver {
			t.Errorf("backoff(%d, %s) ranged over [%s, %s], want within [%s, %s] spread over at least %s",
				tc.failures, tc.retryAfter, lo, hi, tc.lo, tc.hi, tc.spreadOver)
		}
	}
}

func TestFormatWait(t *testing.T) {
	for d, want := range map[time.Duration]string{30 * time.Second: "30", time.Minute: "60", 250 * time.Millisecond: "250ms", 1500 * time.Millisecond: "1.5s"} {
		if got := formatWait(d); got != want {
			t.Errorf("formatWait(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestChangedFlags(t *testing.T) {
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	flag := func(key string, enabled bool, segment string) flags.FlagState {
		f := flags.FlagState{Key: key, Type: flags.TypeBoolean, Config: flags.Config{
			Enabled: enabled, Variants: flags.DefaultBooleanVariants(), DefaultVariant: "on", OffVariant: "off"}}
		if segment != "" {
			f.Rules = []flags.Rule{{Conditions: []flags.Condition{{Op: flags.OpInSegment, Segment: segment}}, Variant: "off"}}
		}
		return f
	}
	seg := func(key, members string) flags.Segment {
		return flags.Segment{Key: key, Conditions: []flags.Condition{{Attribute: "tier", Op: flags.OpEquals, Value: raw(`"` + members + `"`)}}}
	}
	base := flags.Set{
		Flags:    []flags.FlagState{flag("a", true, ""), flag("b", true, "whales"), flag("c", true, ""), flag("d", true, "eu")},
		Segments: []flags.Segment{seg("eu", "x"), seg("whales", "vip")},
	}
	tests := []struct {
		name string
		cur  flags.Set
		want []string
	}{
		{"identical", base, nil},
		{"one toggled", flags.Set{Flags: []flags.FlagState{flag("a", true, ""), flag("b", true, "whales"), flag("c", false, ""), flag("d", true, "eu")}, Segments: base.Segments}, []string{"c"}},
		{"added and removed", flags.Set{Flags: []flags.FlagState{flag("0", true, ""), flag("b", true, "whales"), flag("c", true, ""), flag("d", true, "eu"), flag("e", true, "")}, Segments: base.Segments}, []string{"0", "a", "e"}},
		{"a segment the flag uses changed", flags.Set{Flags: base.Flags, Segments: []flags.Segment{seg("eu", "x"), seg("whales", "gold")}}, []string{"b"}},
		{"a segment removed", flags.Set{Flags: base.Flags, Segments: []flags.Segment{seg("whales", "vip")}}, []string{"d"}},
		{"everything removed", flags.Set{}, []string{"a", "b", "c", "d"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, changedFlags(base, tc.cur)); diff != "" {
				t.Errorf("changedFlags (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzReadAndAccept feeds arbitrary response bodies, plain or claimed to
// be gzip, through what a poll does with a 200: read within the cap,
// verify, compile, install. Whatever the input, nothing panics, and a
// snapshot is installed only if it verifies under the trusted key and is
// newer than the one held.
func FuzzReadAndAccept(f *testing.F) {
	signer := snapshottest.Signer("fuzz")
	set := snapshottest.GenerateSet(3)
	for v := int64(1); v <= 2; v++ {
		b, err := snapshot.Build(set, v, time.Now(), time.Hour, []snapshot.Signer{signer})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(false, b.Envelope())
		f.Add(true, b.Gzip())
	}
	f.Add(false, []byte(`{"payloadType":"application/vnd.solstice.snapshot.v1+json","payload":"","signatures":[]}`))
	f.Add(true, []byte{0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff})
	f.Fuzz(func(t *testing.T, gz bool, body []byte) {
		c, err := New(Config{
			Environment: set.Environment, BaseURL: "http://127.0.0.1:1", ServerKey: "ss_x",
			TrustedKeys: []ed25519.PublicKey{signer.Public()}, MaxSnapshotSize: 1 << 20,
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		res := &http.Response{Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: -1}
		if gz {
			res.Header.Set("Content-Encoding", "gzip")
		}
		c.pollMu.Lock()
		defer c.pollMu.Unlock()
		var evs []Event
		b, err := c.readBody(res)
		if err != nil {
			return
		}
		if err := c.accept(b, time.Now(), &evs); err != nil {
			if c.cur.Load() != nil {
				t.Fatal("a refused snapshot was installed")
			}
			return
		}
		h := c.cur.Load()
		if h == nil {
			t.Fatal("accepted, but nothing is held")
		}
		if _, err := snapshot.Open(b, snapshot.OpenOptions{Trusted: []ed25519.PublicKey{signer.Public()}, Environment: set.Environment, Now: time.Now()}); err != nil {
			t.Fatalf("installed a snapshot that does not verify: %v", err)
		}
	})
}
