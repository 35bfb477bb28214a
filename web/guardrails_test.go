package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/rollout"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/telemetry"
	"github.com/solsticehq/solstice/web"
)

// The tests in this file drive the guardrail and incident API through the
// real HTTP server, wired as solstice serve wires it: definitions, states
// and incidents in the harness's SQLite database, a guardrails.Job whose
// Tick the tests call, and a Responder that rolls flags back through the
// harness's flags service (which publishes snapshots).

// guardrailT0 is when the guardrail clock starts.
var guardrailT0 = time.Date(2026, 12, 20, 10, 0, 0, 0, time.UTC)

// guardrailClock is a settable clock, read by the job, the guardrail
// service and (in the end-to-end test) the telemetry service from the
// server's goroutines.
type guardrailClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *guardrailClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *guardrailClock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// settableCounters is a CounterSource with the same counters for every
// guardrail, set by the test.
type settableCounters struct {
	mu sync.Mutex
	c  guardrails.Counters
}

func (s *settableCounters) set(c guardrails.Counters) {
	s.mu.Lock()
	s.c = c
	s.mu.Unlock()
}

func (s *settableCounters) Counters(_ context.Context, _ guardrails.Rule, since time.Time) (guardrails.Counters, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.c
	if c.Since.Before(since) {
		c.Since = since
	}
	return c, nil
}

// armCounters are counters at now over 5000 actions per arm with the given
// rejects, and 2000 exposures split as the flag's split promises (share is
// the treatment's). TreatmentShare is left to guardrails.WithShares, which
// reads it from the flag's configuration.
func armCounters(now time.Time, share float64, treatmentRejects, controlRejects int64) guardrails.Counters {
	te := int64(2000 * share)
	return guardrails.Counters{
		Since: guardrailT0, Watermark: now,
		Treatment: guardrails.Arm{Exposures: te, Actions: 5000, Rejects: treatmentRejects, LastExposure: now, LastMetric: now},
		Control:   guardrails.Arm{Exposures: 2000 - te, Actions: 5000, Rejects: controlRejects, LastExposure: now, LastMetric: now},
	}
}

// guardrailRig is the harness's control plane served again with the
// guardrail API.
type guardrailRig struct {
	h        *harness
	clock    *guardrailClock
	counters *settableCounters // nil when the job reads telemetry
	job      *guardrails.Job
}

// guardrailSetup configures withGuardrails.
type guardrailSetup struct {
	// telemetry is served on POST /v1/telemetry (not when nil).
	telemetry *telemetry.Service
	// fromTelemetry makes the job read telemetry's counters instead of
	// settable ones.
	fromTelemetry bool
	// clock drives the job and the service (default: one at guardrailT0).
	clock *guardrailClock
}

// withGuardrails serves h's control plane again with a guardrail service
// and job on its database. The job reads its counters through
// guardrails.WithShares, as solstice serve does, so that the treatment
// share is the split in force.
func (h *harness) withGuardrails(s guardrailSetup) *guardrailRig {
	h.t.Helper()
	db, ok := h.flags.Store().(*store.DB)
	if !ok {
		h.t.Fatalf("the harness's flags store is a %T, not a *store.DB", h.flags.Store())
	}
	if s.clock == nil {
		s.clock = &guardrailClock{now: guardrailT0}
	}
	g := &guardrailRig{h: h, clock: s.clock}
	var src guardrails.CounterSource
	if s.fromTelemetry {
		src = s.telemetry.Source()
	} else {
		g.counters = &settableCounters{}
		src = g.counters
	}
	quiet := slog.New(slog.DiscardHandler)
	g.job = guardrails.NewJob(db, guardrails.WithShares(src, h.flags), db, guardrails.NewResponder(db, h.flags),
		guardrails.WithClock(s.clock), guardrails.WithLogger(quiet))
	svc := guardrails.NewService(db, h.flags, g.job)
	h.srv.Close()
	h.web = web.New(web.Deps{Flags: h.flags, Auth: h.auth, Logger: quiet, Publisher: h.pub, Telemetry: s.telemetry, Guardrails: svc,
		Rollouts: rollout.NewService(db, h.flags, db, rollout.WithLogger(quiet))})
	h.srv = httptest.NewServer(h.web)
	h.t.Cleanup(h.srv.Close)
	return g
}

// tick runs one tick of the job at the rig's clock.
func (g *guardrailRig) tick() {
	g.h.t.Helper()
	if err := g.job.Tick(context.Background(), g.clock.Now()); err != nil {
		g.h.t.Fatalf("tick: %v", err)
	}
}

// guardrailFlag creates the object flag key (variants control and
// festival, see createEventFlag) and serves it in env, enabled, split
// between festival (treatmentBP basis points) and control.
func (h *harness) guardrailFlag(env, key string, treatmentBP int) {
	h.t.Helper()
	h.createEventFlag(key)
	path := "/api/v1/environments/" + env + "/flags/" + key
	got := h.want(h.do("GET", path, h.viewer, nil), http.StatusOK)
	var fc struct{ Config map[string]any }
	got.json(h.t, &fc)
	fc.Config["enabled"] = true
	fc.Config["split"] = map[string]any{"weights": []any{
		map[string]any{"variant": "festival", "weight": treatmentBP},
		map[string]any{"variant": "control", "weight": 10000 - treatmentBP},
	}}
	h.want(h.do("PUT", path, h.admin, fc.Config, "If-Match", got.header.Get("ETag")), http.StatusOK) // admin: env may be protected
}

// rejectRateRule is a reject-rate guardrail of festival against control,
// with margin 0.1.
const rejectRateRule = `{"metric":{"kind":"reject_rate"},"comparison":{"kind":"relative_to_control","margin":0.1},"treatment":"festival","control":"control"}`

// definitionJSON is a guardrail definition as the API writes it
// (durations as strings).
type definitionJSON struct {
	Environment  string                `json:"environment"`
	Flag         string                `json:"flag"`
	Key          string                `json:"key"`
	Metric       guardrails.Metric     `json:"metric"`
	Comparison   guardrails.Comparison `json:"comparison"`
	Treatment    string                `json:"treatment"`
	Control      string                `json:"control"`
	Alpha        float64               `json:"alpha"`
	Tau          float64               `json:"tau"`
	MinSample    int64                 `json:"min_sample"`
	DesignEffect float64               `json:"design_effect"`
	Action       string                `json:"action"`
	HoldTimeout  string                `json:"hold_timeout"`
	MissingAfter string                `json:"missing_after"`
	Version      int64                 `json:"version"`
	CreatedAt    time.Time             `json:"created_at"`
	UpdatedAt    time.Time             `json:"updated_at"`
}

// detailJSON is the answer to GET .../guardrails/{guardrail}.
type detailJSON struct {
	Definition definitionJSON     `json:"definition"`
	State      guardrails.State   `json:"state"`
	Verdict    guardrails.Verdict `json:"verdict"`
}

func guardrailPath(env, flag, key string) string {
	return "/api/v1/environments/" + env + "/flags/" + flag + "/guardrails/" + key
}

// problemPointers returns the pointers of a problem's field errors.
func problemPointers(p web.Problem) []string {
	var out []string
	for _, f := range p.Errors {
		out = append(out, f.Pointer)
	}
	return out
}

func TestGuardrailDefinitions(t *testing.T) {
	h := newHarness(t)
	h.withGuardrails(guardrailSetup{})
	h.guardrailFlag("production", "winter-drops", 5000)
	path := guardrailPath("production", "winter-drops", "reject-rate")

	r := h.want(h.do("PUT", path, h.editor, rejectRateRule), http.StatusCreated)
	if got := r.header.Get("ETag"); got != `"g1"` {
		t.Errorf("created: ETag %s, want \"g1\"", got)
	}
	var d definitionJSON
	r.json(t, &d)
	want := definitionJSON{
		Environment: "production", Flag: "winter-drops", Key: "reject-rate",
		Metric: guardrails.RejectRate(), Comparison: guardrails.RelativeToControl(0.1), Treatment: "festival", Control: "control",
		Alpha: 0.05, Tau: 0.005, MinSample: 100, DesignEffect: 1, Action: "rollback", HoldTimeout: "2h0m0s", MissingAfter: "30m0s",
		Version: 1,
	}
	if d.CreatedAt.IsZero() || !d.UpdatedAt.Equal(d.CreatedAt) {
		t.Errorf("created_at %v, updated_at %v: want both set, and equal", d.CreatedAt, d.UpdatedAt)
	}
	d.CreatedAt, d.UpdatedAt = time.Time{}, time.Time{}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("created definition, with its defaults filled in (-want +got):\n%s", diff)
	}

	p := h.want(h.do("PUT", path, h.editor, rejectRateRule), http.StatusPreconditionRequired).problem(t)
	if !strings.Contains(p.Detail, "If-Match") {
		t.Errorf("428 detail %q does not say what to send", p.Detail)
	}
	replace := `{"metric":{"kind":"reject_rate"},"comparison":{"kind":"relative_to_control","margin":0.2},"treatment":"festival","control":"control","hold_timeout":"90m","key":"reject-rate","flag":"winter-drops","environment":"production"}`
	r = h.want(h.do("PUT", path, h.editor, replace, "If-Match", `"g1"`), http.StatusOK)
	r.json(t, &d)
	if r.header.Get("ETag") != `"g2"` || d.Version != 2 || d.Comparison.Margin != 0.2 || d.HoldTimeout != "1h30m0s" {
		t.Errorf("replaced: ETag %s, %+v; want \"g2\", version 2, margin 0.2, hold_timeout 1h30m0s", r.header.Get("ETag"), d)
	}

	// Every refused write changes nothing: the definition stays at
	// version 2.
	rule := func(edit func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(rejectRateRule), &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	g2 := []string{"If-Match", `"g2"`}
	tests := []struct {
		name    string
		path    string
		token   string
		body    string
		headers []string
		status  int
		pointer string // of the first field error, if any
	}{
		{"stale If-Match", path, h.editor, rejectRateRule, []string{"If-Match", `"g1"`}, 412, ""},
		{"a configuration's ETag", path, h.editor, rejectRateRule, []string{"If-Match", `"r2"`}, 412, ""},
		{"g0 creates: it exists", path, h.editor, rejectRateRule, []string{"If-Match", `"g0"`}, 409, ""},
		{"key unlike the URL's", path, h.editor, rule(func(m map[string]any) { m["key"] = "other" }), g2, 422, "/key"},
		{"flag unlike the URL's", path, h.editor, rule(func(m map[string]any) { m["flag"] = "spring-drops" }), g2, 422, "/flag"},
		{"environment unlike the URL's", path, h.editor, rule(func(m map[string]any) { m["environment"] = "staging" }), g2, 422, "/environment"},
		{"unknown variant", path, h.editor, rule(func(m map[string]any) { m["treatment"] = "winter" }), g2, 422, "/treatment"},
		{"tau over 1", path, h.editor, rule(func(m map[string]any) { m["tau"] = 2 }), g2, 422, "/tau"},
		{"negative margin", path, h.editor, rule(func(m map[string]any) { m["comparison"] = map[string]any{"kind": "relative_to_control", "margin": -1} }), g2, 422, "/comparison/margin"},
		{"bad duration", path, h.editor, rule(func(m map[string]any) { m["hold_timeout"] = "soon" }), g2, 422, "/hold_timeout"},
		{"unknown field", path, h.editor, rule(func(m map[string]any) { m["colour"] = "red" }), g2, 400, "/colour"},
		{"wrong JSON type", path, h.editor, rule(func(m map[string]any) { m["tau"] = "small" }), g2, 400, "/tau"},
		{"malformed JSON", path, h.editor, `{"metric":`, g2, 400, ""},
		{"not JSON", path, h.editor, rejectRateRule, append([]string{"Content-Type", "text/plain"}, g2...), 415, ""},
		{"unknown flag", guardrailPath("production", "nope", "reject-rate"), h.editor, rejectRateRule, nil, 404, ""},
		{"unknown environment", guardrailPath("nowhere", "winter-drops", "reject-rate"), h.editor, rejectRateRule, nil, 404, ""},
		{"If-Match on a guardrail that does not exist", guardrailPath("production", "winter-drops", "other"), h.editor, rejectRateRule, []string{"If-Match", `"g1"`}, 404, ""},
		{"viewer", path, h.viewer, rejectRateRule, g2, 403, ""},
		{"no token", path, "", rejectRateRule, g2, 401, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do("PUT", tc.path, tc.token, tc.body, tc.headers...)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			p := r.problem(t)
			if got := problemPointers(p); tc.pointer != "" && (len(got) == 0 || got[0] != tc.pointer) {
				t.Errorf("field errors %v, want %s first: %s", got, tc.pointer, r.body)
			}
		})
	}
	var detail detailJSON
	r = h.want(h.do("GET", path, h.viewer, nil), http.StatusOK)
	r.json(t, &detail)
	if r.header.Get("ETag") != `"g2"` || detail.Definition.Version != 2 || detail.Definition.Comparison.Margin != 0.2 {
		t.Errorf("after the refused writes: ETag %s, definition %+v; want version 2 unchanged", r.header.Get("ETag"), detail.Definition)
	}
	if detail.State.Phase != guardrails.PhaseCollecting || detail.Verdict.Status != guardrails.StatusCollecting {
		t.Errorf("a guardrail without data: state %s, verdict %s; want collecting", detail.State.Phase, detail.Verdict.Status)
	}
	h.want(h.do("GET", guardrailPath("production", "winter-drops", "nope"), h.viewer, nil), http.StatusNotFound).problem(t)

	// If-Match: * replaces whatever is stored.
	r = h.want(h.do("PUT", path, h.editor, rejectRateRule, "If-Match", "*"), http.StatusOK)
	if got := r.header.Get("ETag"); got != `"g3"` {
		t.Errorf("If-Match *: ETag %s, want \"g3\"", got)
	}

	// Lists: per environment, per flag.
	h.createEventFlag("spring-drops")
	h.want(h.do("PUT", guardrailPath("production", "winter-drops", "ceiling"), h.editor,
		`{"metric":{"kind":"reject_rate"},"comparison":{"kind":"absolute_ceiling","ceiling":0.2},"treatment":"festival"}`), http.StatusCreated)
	h.want(h.do("PUT", guardrailPath("production", "spring-drops", "reject-rate"), h.editor, rejectRateRule), http.StatusCreated)
	h.want(h.do("PUT", guardrailPath("staging", "winter-drops", "reject-rate"), h.editor, rejectRateRule), http.StatusCreated)
	lists := []struct {
		path string
		want []string
	}{
		{"/api/v1/environments/production/guardrails", []string{"spring-drops/reject-rate", "winter-drops/ceiling", "winter-drops/reject-rate"}},
		{"/api/v1/environments/production/flags/winter-drops/guardrails", []string{"winter-drops/ceiling", "winter-drops/reject-rate"}},
		{"/api/v1/environments/staging/guardrails", []string{"winter-drops/reject-rate"}},
		{"/api/v1/environments/development/guardrails", []string{}},
		{"/api/v1/environments/staging/flags/spring-drops/guardrails", []string{}},
	}
	for _, l := range lists {
		r := h.want(h.do("GET", l.path, h.viewer, nil), http.StatusOK)
		var body struct{ Guardrails []definitionJSON }
		r.json(t, &body)
		got := []string{}
		for _, d := range body.Guardrails {
			got = append(got, d.Flag+"/"+d.Key)
			if d.Version < 1 || d.Alpha == 0 {
				t.Errorf("GET %s: %+v lacks its version or defaults", l.path, d)
			}
		}
		if !strings.Contains(string(r.body), `"guardrails":[`) {
			t.Errorf("GET %s = %s; want a list, even an empty one", l.path, r.body)
		}
		if diff := cmp.Diff(l.want, got); diff != "" {
			t.Errorf("GET %s (-want +got):\n%s", l.path, diff)
		}
	}
	h.want(h.do("GET", "/api/v1/environments/nowhere/guardrails", h.viewer, nil), http.StatusNotFound).problem(t)
	h.want(h.do("GET", "/api/v1/environments/production/flags/nope/guardrails", h.viewer, nil), http.StatusNotFound).problem(t)

	var audit struct {
		Entries []struct {
			Action string
			Actor  struct{ Name string }
		}
	}
	h.want(h.do("GET", "/api/v1/audit?resource=guardrail/winter-drops/reject-rate&environment=production", h.viewer, nil), http.StatusOK).json(t, &audit)
	var actions []string
	for _, e := range audit.Entries {
		actions = append(actions, e.Action+" by "+e.Actor.Name)
	}
	wantActions := []string{"guardrail.update by token:editor-test", "guardrail.update by token:editor-test", "guardrail.create by token:editor-test"}
	if diff := cmp.Diff(wantActions, actions); diff != "" {
		t.Errorf("audit of the guardrail, newest first (-want +got):\n%s", diff)
	}
}

func TestGuardrailTripAckResumeDelete(t *testing.T) {
	h := newHarness(t)
	g := h.withGuardrails(guardrailSetup{})
	h.guardrailFlag("production", "winter-drops", 5000)
	path := guardrailPath("production", "winter-drops", "reject-rate")
	h.want(h.do("PUT", path, h.editor, rejectRateRule), http.StatusCreated)
	status := func() detailJSON {
		t.Helper()
		var d detailJSON
		h.want(h.do("GET", path, h.viewer, nil), http.StatusOK).json(t, &d)
		return d
	}

	// Never evaluated: there is nothing to resume.
	h.want(h.do("POST", path+"/resume", h.editor, nil), http.StatusNotFound).problem(t)

	// Healthy: 2% against 2%.
	g.counters.set(armCounters(g.clock.Now(), 0.5, 100, 100))
	g.tick()
	d := status()
	ev := d.Verdict.Evidence
	if d.State.Phase != guardrails.PhaseMonitoring || d.Verdict.Status != guardrails.StatusHealthy {
		t.Errorf("healthy counters: state %s, verdict %s (%s); want monitoring, healthy", d.State.Phase, d.Verdict.Status, d.Verdict.Reason)
	}
	wantArm := guardrails.ArmSample{Exposures: 1000, N: 5000, X: 100, Rate: 0.02}
	if ev.Treatment != wantArm || ev.Control != wantArm || !ev.SRMChecked || ev.LogE >= ev.Threshold || ev.Lower >= 0 || ev.Upper <= 0 {
		t.Errorf("healthy evidence %+v; want the counters, the split's share checked, and no harm established", ev)
	}
	h.want(h.do("POST", path+"/resume", h.editor, nil), http.StatusConflict).problem(t)

	// Harmful: 6% against 2%.
	var before struct{ Revision int64 }
	h.want(h.do("GET", "/api/v1/environments/production/flags/winter-drops", h.viewer, nil), http.StatusOK).json(t, &before)
	g.clock.advance(time.Minute)
	g.counters.set(armCounters(g.clock.Now(), 0.5, 300, 100))
	g.tick()

	// The flag serves control to everyone, in a revision by the guardrail.
	var fc struct {
		Config   flags.Config
		Revision int64
	}
	h.want(h.do("GET", "/api/v1/environments/production/flags/winter-drops", h.viewer, nil), http.StatusOK).json(t, &fc)
	if fc.Config.Split != nil || fc.Config.DefaultVariant != "control" || !fc.Config.Enabled || fc.Revision <= before.Revision {
		t.Errorf("after the trip the config is %+v at revision %d (was %d); want control for everyone in a new revision", fc.Config, fc.Revision, before.Revision)
	}
	var rev struct{ Author, Message string }
	h.want(h.do("GET", fmt.Sprintf("/api/v1/environments/production/revisions/%d", fc.Revision), h.viewer, nil), http.StatusOK).json(t, &rev)
	if rev.Author != "guardrail:reject-rate" || !strings.Contains(rev.Message, "reject_rate") {
		t.Errorf("revision %d by %q, message %q; want the guardrail as author and the metric named", fc.Revision, rev.Author, rev.Message)
	}
	for _, player := range []string{"p-1", "p-2", "p-3", "p-4", "p-5", "p-6"} {
		var res struct{ Variant string }
		h.want(h.do("POST", "/api/v1/environments/production/evaluate", h.viewer,
			fmt.Sprintf(`{"flag":"winter-drops","context":{"targetingKey":%q}}`, player)), http.StatusOK).json(t, &res)
		if res.Variant != "control" {
			t.Errorf("player %s gets %q after the rollback, want control", player, res.Variant)
		}
	}
	if d := status(); d.State.Phase != guardrails.PhaseTripped || d.State.Last == nil || d.State.Last.Event != guardrails.EventTrip {
		t.Errorf("after the trip the state is %+v; want tripped, its last incident the trip", d.State)
	}

	// The incident: listed as unacknowledged, with its evidence.
	incidents := func(query string, status int) []guardrails.Record {
		t.Helper()
		r := h.want(h.do("GET", "/api/v1/incidents"+query, h.viewer, nil), status)
		if status != http.StatusOK {
			r.problem(t)
			return nil
		}
		var body struct{ Incidents []guardrails.Record }
		r.json(t, &body)
		return body.Incidents
	}
	unacked := incidents("?unacked=true", 200)
	if len(unacked) != 1 || unacked[0].Event != guardrails.EventTrip || unacked[0].Action != guardrails.ActionRollback ||
		unacked[0].Revision != fc.Revision || !strings.Contains(unacked[0].Outcome, fmt.Sprint("revision ", fc.Revision)) {
		t.Fatalf("unacknowledged incidents %+v; want the trip, naming revision %d", unacked, fc.Revision)
	}
	n := unacked[0].Number
	inc := fmt.Sprintf("/api/v1/incidents/%d", n)
	var rec guardrails.Record
	h.want(h.do("GET", inc, h.viewer, nil), http.StatusOK).json(t, &rec)
	if rec.Verdict == nil {
		t.Fatalf("incident %d has no verdict: %+v", n, rec)
	}
	ev = rec.Verdict.Evidence
	if ev.Treatment.X != 300 || ev.Control.X != 100 || ev.LogE < ev.Threshold || ev.Lower <= 0 || ev.PValue > ev.Alpha {
		t.Errorf("incident evidence %+v; want the counters, log e over the threshold and the confidence sequence above 0", ev)
	}
	h.want(h.do("GET", "/api/v1/incidents/999", h.viewer, nil), http.StatusNotFound).problem(t)
	h.want(h.do("GET", "/api/v1/incidents/abc", h.viewer, nil), http.StatusBadRequest).problem(t)

	// Acknowledged twice: the second changes nothing.
	h.want(h.do("POST", inc+"/ack", h.viewer, nil), http.StatusForbidden).problem(t)
	var first, second guardrails.Record
	h.want(h.do("POST", inc+"/ack", h.editor, nil), http.StatusOK).json(t, &first)
	g.clock.advance(time.Minute)
	h.want(h.do("POST", inc+"/ack", h.admin, nil), http.StatusOK).json(t, &second)
	if first.AckedBy == nil || first.AckedBy.Name != "token:editor-test" || first.AckedAt == nil {
		t.Fatalf("acknowledged: %+v; want acked_by the editor and acked_at", first)
	}
	if second.AckedBy == nil || second.AckedBy.Name != first.AckedBy.Name || !second.AckedAt.Equal(*first.AckedAt) {
		t.Errorf("acknowledged again by another token: %v at %v; want the first acknowledgement unchanged", second.AckedBy, second.AckedAt)
	}
	h.want(h.do("POST", "/api/v1/incidents/999/ack", h.editor, nil), http.StatusNotFound).problem(t)
	if got := incidents("?unacked=true", 200); len(got) != 0 {
		t.Errorf("unacknowledged after the ack: %+v", got)
	}
	var audit struct{ Entries []struct{ Action string } }
	h.want(h.do("GET", "/api/v1/audit?action=incident.ack", h.viewer, nil), http.StatusOK).json(t, &audit)
	if len(audit.Entries) != 1 {
		t.Errorf("%d incident.ack audit entries for two acks, want 1", len(audit.Entries))
	}

	// Resumed: test 2 collects from now. Not twice.
	resumedAt := g.clock.advance(time.Hour)
	var st guardrails.State
	h.want(h.do("POST", inc+"/resume", h.viewer, nil), http.StatusForbidden).problem(t)
	h.want(h.do("POST", inc+"/resume", h.editor, nil), http.StatusOK).json(t, &st)
	if st.Phase != guardrails.PhaseCollecting || st.Test != 2 || !st.TestStarted.Equal(resumedAt) {
		t.Errorf("after the resume: %+v; want test 2 collecting from %v", st, resumedAt)
	}
	if p := h.want(h.do("POST", inc+"/resume", h.editor, nil), http.StatusConflict).problem(t); !strings.Contains(p.Detail, "not tripped") {
		t.Errorf("resuming twice: %q; want it to say the guardrail is not tripped", p.Detail)
	}
	h.want(h.do("POST", path+"/resume", h.editor, nil), http.StatusConflict).problem(t)
	h.want(h.do("POST", "/api/v1/incidents/999/resume", h.editor, nil), http.StatusNotFound).problem(t)

	// The same harm in test 2 trips again; the rollback is in force, so no
	// revision. Resumed through the guardrail this time.
	g.clock.advance(time.Minute)
	g.counters.set(armCounters(g.clock.Now(), 0.5, 300, 100))
	g.tick()
	h.want(h.do("GET", "/api/v1/environments/production/flags/winter-drops", h.viewer, nil), http.StatusOK).json(t, &fc)
	if fc.Revision != rec.Revision {
		t.Errorf("a second trip moved the config to revision %d; the rollback of revision %d was in force", fc.Revision, rec.Revision)
	}
	h.want(h.do("POST", path+"/resume", h.editor, nil), http.StatusOK).json(t, &st)
	if st.Phase != guardrails.PhaseCollecting || st.Test != 3 {
		t.Errorf("resumed through the guardrail: %+v; want test 3 collecting", st)
	}

	// Filters.
	numbers := func(recs []guardrails.Record) []string {
		out := []string{}
		for _, r := range recs {
			out = append(out, fmt.Sprintf("%s/%d", r.Event, r.Test))
		}
		return out
	}
	all := []string{"resume/3", "trip/2", "resume/2", "trip/1"}
	filters := []struct {
		query string
		want  []string
	}{
		{"", all},
		{"?environment=production&flag=winter-drops&guardrail=reject-rate", all},
		{"?event=trip,resume", all},
		{"?event=trip&event=resume", all},
		{"?event=trip", []string{"trip/2", "trip/1"}},
		{"?event=resume&unacked=true", []string{"resume/3", "resume/2"}},
		{"?unacked=true", []string{"resume/3", "trip/2", "resume/2"}},
		{"?unacked=false", all},
		{"?limit=1", []string{"resume/3"}},
		{fmt.Sprintf("?before=%d&limit=2", n+2), []string{"resume/2", "trip/1"}}, // numbered in order: trip/1 is n
		{"?environment=staging", []string{}},
		{"?flag=spring-drops", []string{}},
	}
	for _, f := range filters {
		if diff := cmp.Diff(f.want, numbers(incidents(f.query, 200))); diff != "" {
			t.Errorf("GET /api/v1/incidents%s, event/test (-want +got):\n%s", f.query, diff)
		}
	}
	for _, q := range []string{"?event=rollback", "?event=trip,", "?guardrail=reject-rate", "?unacked=maybe", "?limit=many", "?before=-1"} {
		incidents(q, http.StatusBadRequest)
	}
	incidents("?environment=nowhere", http.StatusNotFound)
	for _, r := range incidents("?event=resume", 200) {
		if r.Actor.Name != "token:editor-test" || r.Verdict != nil || r.Revision != 0 {
			t.Errorf("resume incident %+v; want the editor as actor, and neither verdict nor revision", r)
		}
	}

	// Deleted: the guardrail is gone, its incidents stay.
	h.want(h.do("DELETE", path, h.editor, nil), http.StatusPreconditionRequired).problem(t)
	h.want(h.do("DELETE", path, h.editor, nil, "If-Match", `"g2"`), http.StatusPreconditionFailed).problem(t)
	h.want(h.do("DELETE", path, h.viewer, nil, "If-Match", `"g1"`), http.StatusForbidden).problem(t)
	h.want(h.do("DELETE", path, h.editor, nil, "If-Match", `"g1"`), http.StatusNoContent)
	h.want(h.do("GET", path, h.viewer, nil), http.StatusNotFound).problem(t)
	h.want(h.do("POST", path+"/resume", h.editor, nil), http.StatusNotFound).problem(t)
	h.want(h.do("DELETE", path, h.editor, nil, "If-Match", "*"), http.StatusNotFound).problem(t)
	if diff := cmp.Diff(all, numbers(incidents("?flag=winter-drops&guardrail=reject-rate", 200))); diff != "" {
		t.Errorf("incidents of the deleted guardrail (-want +got):\n%s", diff)
	}
	h.want(h.do("GET", inc, h.viewer, nil), http.StatusOK)
	g.tick() // the job no longer watches it
	if got := incidents("", 200); len(got) != len(all) {
		t.Errorf("%d incidents after a tick without the guardrail, want %d", len(got), len(all))
	}
}

// TestGuardrailRollbackReachesGameServers is the whole path: game servers
// report telemetry with a server key, the job reads it, trips, rolls the
// flag back, and the next snapshot the game servers poll serves control.
func TestGuardrailRollbackReachesGameServers(t *testing.T) {
	h := newHarness(t)
	db, ok := h.flags.Store().(*store.DB)
	if !ok {
		t.Fatalf("the harness's flags store is a %T", h.flags.Store())
	}
	clock := &guardrailClock{now: time.Date(2026, 3, 1, 12, 30, 20, 0, time.UTC)}
	tel := telemetry.New(db, telemetry.WithClock(clock))
	g := h.withGuardrails(guardrailSetup{telemetry: tel, fromTelemetry: true, clock: clock})
	h.guardrailFlag("production", "winter-drops", 5000)
	path := guardrailPath("production", "winter-drops", "reject-rate")
	h.want(h.do("PUT", path, h.editor, rejectRateRule), http.StatusCreated)
	key := h.newServerKey("production")

	snap := h.want(h.do("GET", "/v1/snapshots/production", key, nil), http.StatusOK)
	old, err := h.open("production", snap.body, 0)
	if err != nil {
		t.Fatal(err)
	}
	if variants := servedVariants(t, old.Payload); !variants["festival"] || !variants["control"] {
		t.Fatalf("before the trip the snapshot serves %v; want both variants", variants)
	}

	// Three minutes of a 50/50 split: festival rejects 6% of 500 actions a
	// minute, control 2%; 20 new players a minute in each arm.
	for m := range 3 {
		start := time.Date(2026, 3, 1, 12, 27+m, 0, 0, time.UTC)
		window := func(variant string, rejected int) map[string]any {
			var exposures []any
			for i := range 20 {
				exposures = append(exposures, map[string]any{
					"player": fmt.Sprintf("%s-%d-%d", variant, m, i), "at": start.Add(time.Duration(i) * time.Second).Format(time.RFC3339)})
			}
			return map[string]any{"start": start.Format(time.RFC3339), "flag": "winter-drops", "variant": variant,
				"accepted": 500 - rejected, "rejected": map[string]int{"cooldown": rejected}, "exposures": exposures}
		}
		batch := map[string]any{"batch_id": fmt.Sprint("b-", m), "server_id": "gs-eu-1", "snapshot_version": old.Payload.Version,
			"through": start.Add(time.Minute).Format(time.RFC3339), "windows": []any{window("festival", 30), window("control", 10)}}
		h.want(h.do("POST", "/v1/telemetry", key, batch), http.StatusOK)
	}
	g.tick()

	var rec struct{ Incidents []guardrails.Record }
	h.want(h.do("GET", "/api/v1/incidents?event=trip", h.viewer, nil), http.StatusOK).json(t, &rec)
	if len(rec.Incidents) != 1 || rec.Incidents[0].Verdict == nil {
		t.Fatalf("trips %+v; want one, with its verdict", rec.Incidents)
	}
	ev := rec.Incidents[0].Verdict.Evidence
	wantT := guardrails.ArmSample{Exposures: 60, N: 1500, X: 90, Rate: 0.06}
	wantC := guardrails.ArmSample{Exposures: 60, N: 1500, X: 30, Rate: 0.02}
	if ev.Treatment != wantT || ev.Control != wantC || !ev.SRMChecked {
		t.Errorf("evidence from telemetry: treatment %+v, control %+v, SRM checked %v; want %+v, %+v, checked against the 50/50 split",
			ev.Treatment, ev.Control, ev.SRMChecked, wantT, wantC)
	}

	r := h.want(h.do("GET", "/v1/snapshots/production", key, nil, "If-None-Match", snap.header.Get("ETag")), http.StatusOK)
	opened, err := h.open("production", r.body, old.Payload.Version)
	if err != nil {
		t.Fatalf("the snapshot after the rollback: %v", err)
	}
	if opened.Payload.Version <= old.Payload.Version || opened.Payload.Revision != rec.Incidents[0].Revision {
		t.Errorf("snapshot version %d of revision %d after the trip (was version %d); want a newer version of the rollback's revision %d",
			opened.Payload.Version, opened.Payload.Revision, old.Payload.Version, rec.Incidents[0].Revision)
	}
	if variants := servedVariants(t, opened.Payload); len(variants) != 1 || !variants["control"] {
		t.Errorf("after the rollback the snapshot serves %v; want control only", variants)
	}
}

// servedVariants evaluates winter-drops in a verified snapshot payload for
// a hundred players, with the evaluator game servers use, and returns the
// variants served.
func servedVariants(t *testing.T, p snapshot.Payload) map[string]bool {
	t.Helper()
	c, err := flags.Compile(flags.Set{Environment: p.Environment, Revision: p.Revision, Flags: p.Flags, Segments: p.Segments})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for i := range 100 {
		res := flags.Evaluate(c, "winter-drops", flags.Context{flags.TargetingKey: fmt.Sprint("player-", i)})
		out[res.Variant] = true
	}
	return out
}
