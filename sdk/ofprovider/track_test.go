package ofprovider_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/open-feature/go-sdk/openfeature"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/sdk"
	"github.com/solsticehq/solstice/sdk/ofprovider"
	"github.com/solsticehq/solstice/telemetry"
)

// telemetrySink serves s's snapshots and takes telemetry batches on POST
// /v1/telemetry, validated with the control plane's rules.
type telemetrySink struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	batches []telemetry.Batch
}

func newTelemetrySink(t *testing.T, s *snapshotServer) *telemetrySink {
	k := &telemetrySink{t: t}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/telemetry" {
			s.serve(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var b telemetry.Batch
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			t.Errorf("telemetry: not a batch: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if err := b.Validate(time.Now()); err != nil {
			t.Errorf("telemetry: invalid batch: %v", err)
			w.WriteHeader(http.StatusUnprocessableEntity)
			return
		}
		k.mu.Lock()
		k.batches = append(k.batches, b)
		k.mu.Unlock()
		fmt.Fprintf(w, `{"batch_id": %q, "duplicate": false, "new_exposures": 0}`, b.BatchID)
	}))
	t.Cleanup(k.srv.Close)
	return k
}

// windows returns the windows received, merged by flag and variant (the
// tests run within a minute or two), with activity under the key
// "activity".
func (k *telemetrySink) windows() map[string]telemetry.Window {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[string]telemetry.Window{}
	for _, b := range k.batches {
		for _, w := range b.Windows {
			key := w.Flag + "/" + w.Variant
			m := out[key]
			m.Flag, m.Variant = w.Flag, w.Variant
			m.Accepted += w.Accepted
			m.Rejected = addCounts(m.Rejected, w.Rejected)
			m.Custom = addCounts(m.Custom, w.Custom)
			if w.Sessions != nil {
				if m.Sessions == nil {
					m.Sessions = &telemetry.Sessions{}
				}
				m.Sessions.Count += w.Sessions.Count
				m.Sessions.Actions += w.Sessions.Actions
				m.Sessions.Rejects += w.Sessions.Rejects
			}
			for _, e := range w.Exposures {
				m.Exposures = append(m.Exposures, telemetry.PlayerEvent{Player: e.Player})
			}
			out[key] = m
		}
		a := out["activity"]
		for _, e := range b.Activity {
			a.Exposures = append(a.Exposures, telemetry.PlayerEvent{Player: e.Player})
		}
		if len(a.Exposures) > 0 {
			out["activity"] = a
		}
	}
	return out
}

func addCounts(to, from map[string]int64) map[string]int64 {
	for k, v := range from {
		if to == nil {
			to = map[string]int64{}
		}
		to[k] += v
	}
	return to
}

// reporting returns an OpenFeature client over a provider reporting into
// a reporter, and the reporter and sink.
func reporting(t *testing.T, hookOpts ...ofprovider.HookOption) (*openfeature.Client, *sdk.Client, *sdk.Reporter, *telemetrySink) {
	t.Helper()
	s := newSnapshotServer(t, gameSet())
	k := newTelemetrySink(t, s)
	cfg := s.config()
	cfg.BaseURL, cfg.ServerID = k.srv.URL, "gs-1"
	c := newClient(t, cfg)
	// A fixed clock keeps everything in one minute, and activity entries
	// (once a minute) countable.
	now := time.Now()
	rep, err := sdk.NewReporter(c, sdk.WithReporterClock(clockFunc(func() time.Time { return now })))
	if err != nil {
		t.Fatal(err)
	}
	api := newAPI(t)
	if err := api.SetProviderAndWait(t.Context(), ofprovider.New(c, ofprovider.WithReporter(rep, hookOpts...))); err != nil {
		t.Fatal(err)
	}
	return api.NewClient(), c, rep, k
}

func players(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("player-%d", i)
	}
	return out
}

func TestHookRecordsSplitExposures(t *testing.T) {
	tests := []struct {
		name    string
		opts    []ofprovider.HookOption
		reasons []openfeature.Reason
	}{
		{"default: SPLIT only", nil, []openfeature.Reason{openfeature.SplitReason}},
		{"wider", []ofprovider.HookOption{ofprovider.ExposeReasons(openfeature.SplitReason, openfeature.TargetingMatchReason, openfeature.StaticReason)},
			[]openfeature.Reason{openfeature.SplitReason, openfeature.TargetingMatchReason, openfeature.StaticReason}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			of, c, rep, k := reporting(t, tc.opts...)
			want := map[string][]string{} // flag/variant → players
			expect := func(flag, player string, ctx flags.Context) {
				r := c.Evaluate(flag, ctx)
				if slices.Contains(tc.reasons, openfeature.Reason(r.Reason)) {
					want[flag+"/"+r.Variant] = append(want[flag+"/"+r.Variant], player)
				}
			}
			for _, p := range players(20) {
				ec := openfeature.NewEvaluationContext(p, nil)
				for range 3 { // evaluated again and again: exposed once
					of.Boolean(t.Context(), "bool-split", false, ec)
				}
				expect("bool-split", p, flags.Context{flags.TargetingKey: p})
			}
			jp := openfeature.NewEvaluationContext("player-jp", map[string]any{"country": "JP"})
			of.String(t.Context(), "color", "", jp)
			expect("color", "player-jp", flags.Context{flags.TargetingKey: "player-jp", "country": "JP"})
			of.Boolean(t.Context(), "bool-static", false, jp)
			expect("bool-static", "player-jp", flags.Context{flags.TargetingKey: "player-jp"})
			// Errors, and evaluations without a targeting key, expose nobody.
			of.Boolean(t.Context(), "no-such-flag", false, jp)
			of.String(t.Context(), "bool-split", "", jp) // type mismatch
			of.Boolean(t.Context(), "bool-split", false, openfeature.NewTargetlessEvaluationContext(nil))

			if err := rep.FlushAll(t.Context()); err != nil {
				t.Fatal(err)
			}
			got := map[string][]string{}
			for key, w := range k.windows() {
				for _, e := range w.Exposures {
					if key != "activity" {
						got[key] = append(got[key], e.Player)
					}
				}
			}
			if len(want["bool-split/on"]) == 0 || len(want["bool-split/off"]) == 0 {
				t.Fatalf("the split put everyone in one variant: %v", want)
			}
			sortAll := cmpopts.SortSlices(func(a, b string) bool { return a < b })
			if diff := cmp.Diff(want, got, sortAll); diff != "" {
				t.Errorf("exposures (-want +got):\n%s", diff)
			}
			if st := rep.Stats(); st.Invalid != 0 {
				t.Errorf("invalid = %d (%v)", st.Invalid, st.LastInvalid)
			}
		})
	}
}

func TestTrackMapsEventsToTheReporter(t *testing.T) {
	details := func(value float64, attrs ...any) openfeature.TrackingEventDetails {
		d := openfeature.NewTrackingEventDetails(value)
		for i := 0; i < len(attrs); i += 2 {
			d = d.Add(attrs[i].(string), attrs[i+1])
		}
		return d
	}
	type event struct {
		name    string
		player  string
		details openfeature.TrackingEventDetails
	}
	tests := []struct {
		name        string
		events      []event
		want        telemetry.Window // of bool-split for player-0's variant
		wantActive  int
		wantInvalid int64
	}{
		{name: "accepted", events: []event{{"action.accepted", "player-0", details(0)}, {"action.accepted", "player-0", details(5)}},
			want: telemetry.Window{Accepted: 2}, wantActive: 1},
		{name: "rejected with and without a reason",
			events: []event{{"action.rejected", "player-0", details(0, "reason", "cooldown")}, {"action.rejected", "player-0", details(0)}},
			want:   telemetry.Window{Rejected: map[string]int64{"cooldown": 1, "unspecified": 1}}, wantActive: 1},
		{name: "session",
			events: []event{{"session.start", "player-0", details(0)}, {"action.accepted", "player-0", details(0)},
				{"action.rejected", "player-0", details(0, "reason", "replay")}, {"session.end", "player-0", details(0)}},
			want: telemetry.Window{Accepted: 1, Rejected: map[string]int64{"replay": 1}, Sessions: &telemetry.Sessions{Count: 1, Actions: 2, Rejects: 1}}, wantActive: 1},
		{name: "active", events: []event{{"active", "player-0", details(0)}}, wantActive: 1},
		{name: "custom counters: value rounded, 0 counts 1",
			events: []event{{"matchmaking", "player-0", details(0)}, {"matchmaking", "player-0", details(2.6)}, {"gold.spent", "player-0", details(120)}},
			want:   telemetry.Window{Custom: map[string]int64{"matchmaking": 4, "gold.spent": 120}}},
		{name: "explicit flag and variant",
			events: []event{{"action.accepted", "", details(0, "flag", "bool-split", "variant", "VARIANT")},
				{"action.rejected", "", details(0, "flag", "bool-split", "variant", "VARIANT", "reason", "lag")},
				{"kills", "", details(3, "flag", "bool-split", "variant", "VARIANT")}},
			want: telemetry.Window{Accepted: 1, Rejected: map[string]int64{"lag": 1}, Custom: map[string]int64{"kills": 3}}},
		{name: "invalid: no targeting key, bad counter name, negative value",
			events:      []event{{"action.accepted", "", details(0)}, {"Bad Name", "player-0", details(1)}, {"kills", "player-0", details(-2)}},
			wantInvalid: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			of, c, rep, k := reporting(t)
			// player-0 is exposed to a variant of bool-split.
			r := c.Evaluate("bool-split", flags.Context{flags.TargetingKey: "player-0"})
			of.Boolean(t.Context(), "bool-split", false, openfeature.NewEvaluationContext("player-0", nil))
			for _, e := range tc.events {
				d := e.details
				if d.Attribute("variant") == "VARIANT" {
					d = d.Add("variant", r.Variant)
				}
				of.Track(t.Context(), e.name, openfeature.NewEvaluationContext(e.player, nil), d)
			}
			if err := rep.FlushAll(t.Context()); err != nil {
				t.Fatal(err)
			}
			ws := k.windows()
			got := ws["bool-split/"+r.Variant]
			want := tc.want
			want.Flag, want.Variant = "bool-split", r.Variant
			want.Exposures = []telemetry.PlayerEvent{{Player: "player-0"}}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("window (-want +got):\n%s", diff)
			}
			if n := len(ws["activity"].Exposures); n != tc.wantActive {
				t.Errorf("%d activity entries, want %d", n, tc.wantActive)
			}
			if st := rep.Stats(); st.Invalid != tc.wantInvalid {
				t.Errorf("invalid = %d (%v), want %d", st.Invalid, st.LastInvalid, tc.wantInvalid)
			}
		})
	}
}

func TestTrackWithoutReporterDoesNothing(t *testing.T) {
	s := newSnapshotServer(t, gameSet())
	of, _, _ := ready(t, s)
	// No reporter: OpenFeature calls Track, which must not fail.
	of.Track(t.Context(), "action.accepted", openfeature.NewEvaluationContext("p", nil), openfeature.TrackingEventDetails{})
}
