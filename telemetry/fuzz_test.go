package telemetry

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// FuzzBatch feeds arbitrary bodies through decoding and validation, as the
// handler does. A batch that validates must plan into a Write that keeps
// Write's promises (one counter row per window, one exposure per flag,
// variant and player, every count non-negative), must digest as
// encoding/json would (referenceDigest), and the same after a round trip
// through JSON. Run it with
//
//	go test -fuzz FuzzBatch ./telemetry/
func FuzzBatch(f *testing.F) {
	now := time.Date(2026, 3, 1, 12, 30, 20, 0, time.UTC)
	for _, seed := range []string{
		`{"batch_id":"b","server_id":"s","through":"2026-03-01T12:30:00Z"}`,
		`{"batch_id":"b","server_id":"s","windows":[{"start":"2026-03-01T12:29:00Z","flag":"f","variant":"v","accepted":3,
		  "rejected":{"cooldown":1},"custom":{"c":2},"sessions":{"count":1,"actions":4,"rejects":1,"actions_squared":16,"rejects_squared":1,"actions_rejects":4},
		  "exposures":[{"player":"p","at":"2026-03-01T12:29:10Z"},{"player":"p","at":"2026-03-01T12:29:20Z"}]}],
		  "activity":[{"player":"p","at":"2026-03-01T12:29:30+01:00"}]}`,
		`{"batch_id":"b","server_id":"s","windows":[{"start":"2026-03-01T12:29:00Z","flag":"f","variant":"v"},{"start":"2026-03-01T12:28:00Z","flag":"f","variant":"v","exposures":[{"player":"p","at":"2026-03-01T12:28:59.9Z"}]}]}`,
		`{"batch_id":"b","server_id":"s","windows":[{"start":"2026-03-01T12:29:30Z","flag":"F","variant":"","accepted":-1}]}`,
		`{"batch_id":"","windows":[{"rejected":{"a/b~":-1}}],"activity":[{"player":"\u00ff","at":"x"}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d := json.NewDecoder(bytes.NewReader(body))
		d.DisallowUnknownFields()
		var b Batch
		if d.Decode(&b) != nil {
			return
		}
		w, err := b.plan(now)
		if err != nil {
			return
		}
		if len(w.Counters) != len(b.Windows) {
			t.Fatalf("%d windows planned into %d counter rows", len(b.Windows), len(w.Counters))
		}
		type key struct{ flag, variant, player string }
		seen := map[key]bool{}
		for _, e := range w.Exposures {
			k := key{e.Flag, e.Variant, e.Player}
			if seen[k] {
				t.Fatalf("exposure %+v planned twice", e)
			}
			seen[k] = true
		}
		if !bytes.Equal(w.Digest, referenceDigest(b)) {
			t.Fatal("the digest differs from that of encoding/json")
		}
		for _, c := range w.Counters {
			if c.Accepted < 0 || c.Rejected < 0 || c.Sessions.X > c.Sessions.N {
				t.Fatalf("invalid counters planned: %+v", c)
			}
		}
		for _, a := range w.Activity {
			if a.First < 0 || a.Last < a.First || a.Last >= minutesPerDay {
				t.Fatalf("invalid activity planned: %+v", a)
			}
		}
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		var again Batch
		if err := json.Unmarshal(js, &again); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.digest(), w.Digest) {
			t.Fatal("the digest changed in a JSON round trip")
		}
	})
}
