package telemetry

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"
)

// referenceDigest is digest as it was first written, with encoding/json:
// the digests of stored batches depend on it, so digest must agree with it
// byte for byte.
func referenceDigest(b Batch) []byte {
	n := b
	n.Through = referenceTime(b.Through)
	n.Windows = make([]Window, len(b.Windows))
	for i, w := range b.Windows {
		w.Start = referenceTime(w.Start)
		w.Exposures = referenceEvents(w.Exposures)
		n.Windows[i] = w
	}
	n.Activity = referenceEvents(b.Activity)
	js, err := json.Marshal(n)
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(js)
	return sum[:]
}

func referenceEvents(es []PlayerEvent) []PlayerEvent {
	if es == nil {
		return nil
	}
	out := make([]PlayerEvent, len(es))
	for i, e := range es {
		out[i] = PlayerEvent{Player: e.Player, At: referenceTime(e.At)}
	}
	return out
}

func referenceTime(s string) string {
	if s == "" {
		return ""
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func TestDigestIsThatOfEncodingJSON(t *testing.T) {
	sessions := &Sessions{Count: 2, Actions: 30, Rejects: 4, ActionsSquared: 500, RejectsSquared: 10, ActionsRejects: 70}
	tests := []struct {
		name  string
		batch Batch
	}{
		{"heartbeat", Batch{BatchID: "hb", ServerID: "gs-1", Through: "2026-03-01T12:30:00Z"}},
		{"no through", Batch{BatchID: "b", ServerID: "s", SnapshotVersion: -3}},
		{"empty, not nil, slices and maps", Batch{BatchID: "b", ServerID: "s", Windows: []Window{{Start: "2026-03-01T12:29:00Z", Flag: "f", Variant: "v",
			Rejected: map[string]int64{}, Custom: map[string]int64{}, Exposures: []PlayerEvent{}}}, Activity: []PlayerEvent{}}},
		{"everything", Batch{BatchID: "gs-1:0001", ServerID: "gs-1", SnapshotVersion: 7, Through: "2026-03-01T13:30:00+01:00",
			Windows: []Window{
				{Start: "2026-03-01T12:29:00Z", Flag: "winter-drops", Variant: "festival", Accepted: 90,
					Rejected: map[string]int64{"cooldown": 8, "anti-cheat:speed": 2, "b": 0, "a": 1000000000},
					Custom:   map[string]int64{"matchmaking": 5, "failed_matchmaking": 1}, Sessions: sessions,
					Exposures: []PlayerEvent{{Player: "p-1", At: "2026-03-01T12:29:10Z"}, {Player: "p-2", At: "2026-03-01T12:29:59.999000Z"}}},
				{Start: "2026-03-01T07:29:00-05:00", Flag: "winter-drops", Variant: "control", Accepted: 100, Sessions: &Sessions{}},
			},
			Activity: []PlayerEvent{{Player: "p-1", At: "2026-03-01T12:29:30.5Z"}, {Player: "p-9", At: "2026-03-01T11:00:00+01:00"}}}},
		{"strings that JSON escapes", Batch{BatchID: `a"b\c<d>e&f`, ServerID: "s\u2028", Windows: []Window{{Start: "2026-03-01T12:29:00Z", Flag: "f", Variant: "v",
			Rejected:  map[string]int64{"x<y": 1},
			Exposures: []PlayerEvent{{Player: "é\u00ff\u2029\x01\t\n\"", At: "2026-03-01T12:29:10Z"}, {Player: "p\xffq", At: "2026-03-01T12:29:10Z"}}}},
			Activity: []PlayerEvent{{Player: "日本語", At: "2026-03-01t12:29:10z"}, {Player: "x", At: "not a time"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := tc.batch.digest(), referenceDigest(tc.batch); string(got) != string(want) {
				t.Errorf("digest = %s, want %s (that of encoding/json)", hex.EncodeToString(got), hex.EncodeToString(want))
			}
		})
	}
}

func TestParseCanonicalUTCAgreesWithTimeParse(t *testing.T) {
	for _, s := range []string{
		"2026-03-01T12:29:07Z", "2024-02-29T00:00:00Z", "2000-02-29T23:59:59Z", "1999-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
		"9999-12-31T23:59:59Z", "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z",
		"2026-00-10T00:00:00Z", "2026-01-00T00:00:00Z", "2026-03-01T24:00:00Z", "2026-03-01T12:60:00Z", "2026-03-01T12:29:60Z",
		"2026-03-01T12:29:07z", "2026-03-01t12:29:07Z", "2026-03-01T12:29:07+00:00", "2026-03-01T12:29:07.5Z", "2026-3-01T12:29:07Z",
		"", "2026-03-01T12:29:0aZ",
	} {
		got, ok := parseCanonicalUTC(s)
		want, err := time.Parse(time.RFC3339Nano, s)
		switch {
		case ok && (err != nil || !got.Equal(want) || got.Location() != time.UTC):
			t.Errorf("parseCanonicalUTC(%q) = %v; time.Parse: %v, %v", s, got, want, err)
		case !ok && err == nil && isCanonicalUTC(s):
			t.Errorf("parseCanonicalUTC(%q) failed; time.Parse: %v", s, want)
		}
	}
}

func TestDaysSinceEpochAgreesWithTime(t *testing.T) {
	for d := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 10000; d = d.AddDate(0, 0, 1) {
		want := d.Unix() / 86400
		if d.Unix()%86400 != 0 {
			t.Fatalf("%v is not a day's start", d)
		}
		if d.Unix() < 0 {
			want = (d.Unix() - 86399) / 86400
		}
		if got := daysSinceEpoch(d.Year(), int(d.Month()), d.Day()); got != want {
			t.Fatalf("daysSinceEpoch(%s) = %d, want %d", d.Format(time.DateOnly), got, want)
		}
	}
}
