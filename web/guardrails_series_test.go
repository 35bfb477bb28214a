package web_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/telemetry"
)

// seriesJSON is the answer to GET .../guardrails/{guardrail}/series.
type seriesJSON struct {
	Definition definitionJSON      `json:"definition"`
	State      guardrails.State    `json:"state"`
	Verdict    guardrails.Verdict  `json:"verdict"`
	Since      time.Time           `json:"since"`
	Watermark  time.Time           `json:"watermark"`
	Points     []map[string]any    `json:"points"`
	Incidents  []guardrails.Record `json:"incidents"`
}

// reportMinutes sends n minutes of telemetry for winter-drops from start,
// one batch a minute with the server key: 500 actions a minute per arm,
// festival rejecting rejectsT of them and control 10, and 20 new players
// per arm.
func (h *harness) reportMinutes(key string, start time.Time, n int, rejectsT func(m int) int) {
	h.t.Helper()
	for m := range n {
		at := start.Add(time.Duration(m) * time.Minute)
		window := func(variant string, rejected int) map[string]any {
			var exposures []any
			for i := range 20 {
				exposures = append(exposures, map[string]any{"player": fmt.Sprintf("%s-%d-%d", variant, at.Unix(), i), "at": at.Format(time.RFC3339)})
			}
			return map[string]any{"start": at.Format(time.RFC3339), "flag": "winter-drops", "variant": variant,
				"accepted": 500 - rejected, "rejected": map[string]int{"cooldown": rejected}, "exposures": exposures}
		}
		batch := map[string]any{"batch_id": fmt.Sprint("s-", at.Unix()), "server_id": "gs-eu-1", "snapshot_version": 1,
			"windows": []any{window("festival", rejectsT(m)), window("control", 10)}}
		h.want(h.do("POST", "/v1/telemetry", key, batch), http.StatusOK)
	}
}

func TestGuardrailSeries(t *testing.T) {
	h := newHarness(t)
	db, ok := h.flags.Store().(*store.DB)
	if !ok {
		t.Fatalf("the harness's flags store is a %T", h.flags.Store())
	}
	clock := &guardrailClock{now: time.Date(2026, 3, 1, 12, 0, 20, 0, time.UTC)}
	tel := telemetry.New(db, telemetry.WithClock(clock))
	g := h.withGuardrails(guardrailSetup{telemetry: tel, fromTelemetry: true, clock: clock})
	h.guardrailFlag("production", "winter-drops", 5000)
	path := guardrailPath("production", "winter-drops", "reject-rate")
	h.want(h.do("PUT", path, h.editor, rejectRateRule), http.StatusCreated)
	key := h.newServerKey("production")

	// Before any telemetry: no points, and the shape of an empty series.
	var s seriesJSON
	r := h.want(h.do("GET", path+"/series", h.viewer, nil), http.StatusOK)
	r.json(t, &s)
	if s.Points == nil || len(s.Points) != 0 || s.Incidents == nil || !s.Watermark.IsZero() || s.Definition.Version != 1 {
		t.Errorf("series before any data = %s; want empty lists of points and incidents, no watermark, the definition", r.body)
	}

	// Ten minutes from 12:00: festival at 2% for five, then at 8%; the job
	// ticks after each minute and rolls back.
	start := time.Date(2026, 3, 1, 11, 50, 0, 0, time.UTC)
	rejects := func(m int) int {
		if m < 5 {
			return 10
		}
		return 40
	}
	for m := range 10 {
		clock.now = start.Add(time.Duration(m+1)*time.Minute + 20*time.Second)
		h.reportMinutes(key, start.Add(time.Duration(m)*time.Minute), 1, func(int) int { return rejects(m) })
		g.tick()
	}

	tests := []struct {
		name, query, token string
		status             int
	}{
		{"points zero", "?points=0", h.viewer, http.StatusBadRequest},
		{"too many points", "?points=501", h.viewer, http.StatusBadRequest},
		{"points not a number", "?points=ten", h.viewer, http.StatusBadRequest},
		{"negative points", "?points=-5", h.viewer, http.StatusBadRequest},
		{"no token", "", "", http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := h.want(h.do("GET", path+"/series"+tc.query, tc.token, nil), tc.status).problem(t)
			if tc.status == http.StatusBadRequest && !strings.Contains(p.Detail, "points") {
				t.Errorf("detail %q does not name the parameter", p.Detail)
			}
		})
	}
	for _, missing := range []string{
		guardrailPath("production", "winter-drops", "nope"), guardrailPath("production", "nope", "reject-rate"), guardrailPath("nowhere", "winter-drops", "reject-rate"),
	} {
		h.want(h.do("GET", missing+"/series", h.viewer, nil), http.StatusNotFound).problem(t)
	}

	r = h.want(h.do("GET", path+"/series?points=5", h.viewer, nil), http.StatusOK)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want JSON", ct)
	}
	s = seriesJSON{}
	r.json(t, &s)
	if !s.Since.Equal(start) || !s.Watermark.Equal(start.Add(10*time.Minute)) || s.State.Phase != guardrails.PhaseTripped {
		t.Errorf("since %v, watermark %v, phase %s; want %v, %v, tripped", s.Since, s.Watermark, s.State.Phase, start, start.Add(10*time.Minute))
	}
	if len(s.Points) != 5 {
		t.Fatalf("%d points, want 5: %s", len(s.Points), r.body)
	}
	for i, p := range s.Points {
		want := start.Add(time.Duration(2*(i+1)) * time.Minute).Format(time.RFC3339)
		treatment, _ := p["treatment"].(map[string]any)
		for _, field := range []string{"time", "status", "treatment", "control", "estimated", "effect", "lower", "upper", "log_e", "p_value", "limit"} {
			if _, ok := p[field]; !ok {
				t.Errorf("point %d lacks %q: %v", i, field, p)
			}
		}
		if p["time"] != want || treatment["n"] != float64(1000*(i+1)) {
			t.Errorf("point %d at %v with treatment %v; want at %s with %d actions", i, p["time"], treatment, want, 1000*(i+1))
		}
	}
	var d detailJSON
	h.want(h.do("GET", path, h.viewer, nil), http.StatusOK).json(t, &d)
	last := s.Points[len(s.Points)-1]
	if last["p_value"] != d.Verdict.Evidence.PValue || last["effect"] != d.Verdict.Evidence.Effect || last["status"] != string(d.Verdict.Status) {
		t.Errorf("the last point %v; want the guardrail's verdict now, %+v", last, d.Verdict)
	}
	if len(s.Incidents) != 1 || s.Incidents[0].Event != guardrails.EventTrip || s.Incidents[0].Action != guardrails.ActionRollback ||
		s.Incidents[0].Time.Before(s.Since) || s.Incidents[0].Time.After(clock.now) {
		t.Errorf("incidents %+v; want the rollback, within the series", s.Incidents)
	}
}
