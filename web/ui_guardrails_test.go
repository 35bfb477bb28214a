package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/review"
	"github.com/solsticehq/solstice/store/storetest"
	"github.com/solsticehq/solstice/telemetry"
	"github.com/solsticehq/solstice/web"
)

// chartHarness is the UI harness with the guardrails reading real
// telemetry, as solstice serve wires them, on one clock that the test
// moves.
type chartHarness struct {
	*uiHarness
	clock  *guardrailClock
	tel    *telemetry.Service
	job    *guardrails.Job
	guards *guardrails.Service
}

func newChartHarness(t *testing.T, start time.Time) *chartHarness {
	t.Helper()
	clock := &guardrailClock{now: start}
	db := storetest.Open(t, storetest.WithClock(clock))
	fs := flags.NewService(db, flags.WithClock(clock))
	ctx := context.Background()
	if err := fs.EnsureDefaultEnvironments(ctx); err != nil {
		t.Fatal(err)
	}
	acc := newUIAccounts(t, db, fs, clock)
	h := &chartHarness{clock: clock, tel: telemetry.New(db, telemetry.WithClock(clock))}
	h.job = guardrails.NewJob(db, guardrails.WithShares(h.tel.Source(), fs), db, guardrails.NewResponder(db, fs),
		guardrails.WithClock(clock), guardrails.WithLogger(slog.New(slog.DiscardHandler)))
	h.guards = guardrails.NewService(db, fs, h.job)
	rev := review.NewService(db, fs, acc)
	as := auth.NewService(db, nil)
	srv := web.New(web.Deps{Flags: fs, Auth: as, Logger: uiTestLogger(), Guardrails: h.guards, Telemetry: h.tel,
		UI: &web.UIDeps{Accounts: acc, Review: rev}})
	h.uiHarness = &uiHarness{t: t, srv: httptest.NewServer(srv), flags: fs, acc: acc, review: rev, auth: as}
	t.Cleanup(h.srv.Close)
	return h
}

// guardedFlag creates the object flag key (variants control and festival)
// served 50/50 in production, with a reject-rate guardrail of festival
// against control (margin 10%).
func (h *chartHarness) guardedFlag(key string) guardrails.Ref {
	h.t.Helper()
	ctx := solstice.WithActor(context.Background(), solstice.Actor{Name: "alice", Kind: "user"})
	_, err := h.flags.CreateFlag(ctx, flags.NewFlag{Key: key, Name: "Winter", Type: flags.TypeObject, Variants: []flags.Variant{
		{Key: "control", Value: json.RawMessage(`{"xp":1}`)}, {Key: "festival", Value: json.RawMessage(`{"xp":2}`)}}})
	if err != nil {
		h.t.Fatal(err)
	}
	fc := h.config("production", key)
	cfg := fc.Config
	cfg.Enabled = true
	cfg.Split = &flags.Split{Weights: []flags.Weight{{Variant: "festival", Weight: 5000}, {Variant: "control", Weight: 5000}}}
	if _, err := h.flags.PutConfig(ctx, "production", key, cfg, fc.Revision, "Half the players get the festival"); err != nil {
		h.t.Fatal(err)
	}
	ref := guardrails.Ref{Environment: "production", Flag: key, Key: "reject-rate"}
	if _, err := h.guards.Put(ctx, guardrails.Rule{Ref: ref, Metric: guardrails.RejectRate(), Comparison: guardrails.RelativeToControl(0.1),
		Treatment: "festival", Control: "control"}, 0); err != nil {
		h.t.Fatal(err)
	}
	return ref
}

// play reports the minutes [from, from+n) of key, one batch a minute,
// each followed by a tick of the job a few seconds after the minute ends:
// 500 actions a minute per arm, control rejecting 2%, festival 2% for the
// first half and 8% after, and 10 new players per arm and minute.
func (h *chartHarness) play(key string, from time.Time, n int) {
	h.t.Helper()
	for m := range n {
		at := from.Add(time.Duration(m) * time.Minute)
		h.clock.mu.Lock()
		h.clock.now = at.Add(time.Minute + 5*time.Second)
		h.clock.mu.Unlock()
		xT := int64(10)
		if m >= n/2 {
			xT = 40
		}
		windows := []telemetry.Window{
			{Start: at.Format(time.RFC3339), Flag: key, Variant: "festival", Accepted: 500 - xT, Rejected: map[string]int64{"cooldown": xT}},
			{Start: at.Format(time.RFC3339), Flag: key, Variant: "control", Accepted: 490, Rejected: map[string]int64{"cooldown": 10}},
		}
		for i := range 10 {
			for w := range windows {
				windows[w].Exposures = append(windows[w].Exposures, telemetry.PlayerEvent{Player: fmt.Sprintf("%s-%d-%d-%d", key, at.Unix(), w, i), At: at.Format(time.RFC3339)})
			}
		}
		if _, err := h.tel.Ingest(context.Background(), "production", telemetry.Batch{BatchID: fmt.Sprintf("%s-%d", key, m), ServerID: "gs-1", SnapshotVersion: 1, Windows: windows}); err != nil {
			h.t.Fatal(err)
		}
		if err := h.job.Tick(context.Background(), h.clock.Now()); err != nil {
			h.t.Fatal(err)
		}
	}
}

// polylinePoints counts the vertices of the polylines of class in page.
func polylinePoints(page, class string) int {
	n := 0
	for _, m := range regexp.MustCompile(`<polyline class="`+class+`" points="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		n += len(strings.Fields(m[1]))
	}
	return n
}

func TestUIGuardrailCharts(t *testing.T) {
	start := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	h := newChartHarness(t, start)
	ref := h.guardedFlag("winter-drops")
	quiet := h.guardedFlag("spring-drops") // never reported: the empty state
	// A ceiling on winter-drops too, which the 8% never reaches.
	ceiling := guardrails.Ref{Environment: "production", Flag: "winter-drops", Key: "ceiling"}
	if _, err := h.guards.Put(solstice.WithActor(context.Background(), solstice.Actor{Name: "alice", Kind: "user"}), guardrails.Rule{Ref: ceiling,
		Metric: guardrails.RejectRate(), Comparison: guardrails.AbsoluteCeiling(0.3), Treatment: "festival"}, 0); err != nil {
		t.Fatal(err)
	}
	h.play("winter-drops", start, 30)
	st, err := h.guards.Status(context.Background(), ref)
	if err != nil || st.State.Phase != guardrails.PhaseTripped {
		t.Fatalf("after 15 minutes at 8%% against 2%%: %+v, %v; want tripped", st.State, err)
	}
	incs, err := h.guards.Incidents(context.Background(), guardrails.IncidentFilter{Environment: "production", Events: []guardrails.Event{guardrails.EventTrip}})
	if err != nil || len(incs) != 1 {
		t.Fatalf("trips %+v, %v; want one", incs, err)
	}
	trip := incs[0]

	vic := h.login("vic") // a viewer
	list := vic.want(vic.get("/env/production/guardrails"), http.StatusOK,
		"Guardrails in production", "winter-drops", "spring-drops", "reject rate", "at most 10% above the control's", "tripped", "tripped: rollback")
	chartURL := "/env/production/flags/winter-drops/guardrails/reject-rate"
	if !strings.Contains(list.body, `href="`+chartURL+`"`) || !strings.Contains(list.body, `href="/env/production/flags/spring-drops/guardrails/reject-rate"`) {
		t.Errorf("the list does not link to each guardrail's charts:\n%s", mainOf(list.body))
	}

	r := vic.want(vic.get(chartURL), http.StatusOK,
		"reject-rate", "tripped", "p-value", "Treatment", "Control", "Actions", "Rejected",
		`<svg class="chart-svg" id="chart-rates"`, `<svg class="chart-svg" id="chart-effect"`,
		`<title id="chart-rates-title">Reject rate per variant</title>`, `<desc id="chart-effect-desc">`,
		"The guardrail tripped: rollback at "+trip.Time.UTC().Format("2006-01-02 15:04:05 UTC"),
		fmt.Sprintf(`href="/env/production/incidents/%d"`, trip.Number), fmt.Sprintf("rollback #%d", trip.Number),
		"The 30 points as a table", "time (UTC)")
	if strings.Contains(r.body, "style=") {
		t.Error("the chart page has a style attribute, which the Content-Security-Policy blocks")
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "style-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	// One vertex per minute of data for each arm; the limit follows the
	// control; the band is drawn.
	for class, want := range map[string]int{"chart-treatment": 30, "chart-control": 30, "chart-limit": 30, "chart-effect": 30} {
		if got := polylinePoints(r.body, class); got != want {
			t.Errorf("%d vertices in the %s line, want %d", got, class, want)
		}
	}
	if !strings.Contains(r.body, `<polygon class="chart-band" points="`) || !strings.Contains(r.body, `class="chart-zero"`) {
		t.Error("the effect chart has no confidence band or no margin line")
	}
	// The counts of each arm now: 30 minutes of 500 actions.
	wantArms := fmt.Sprintf("<td>%d</td><td>%d</td>", 15000, 15*10+15*40)
	if !strings.Contains(r.body, wantArms) {
		t.Errorf("the arms' counts lack %q:\n%s", wantArms, mainOf(r.body))
	}

	// The ceiling: a line at 30%, the treatment alone, no rollback of its own.
	cr := vic.want(vic.get("/env/production/flags/winter-drops/guardrails/ceiling"), http.StatusOK, "at most 30%", "ceiling 30%", "monitoring",
		`<line class="chart-limit"`, "Estimated harm beyond the ceiling (30%)")
	if got := polylinePoints(cr.body, "chart-treatment"); got != 30 || polylinePoints(cr.body, "chart-control") != 0 {
		t.Errorf("the ceiling's chart: %d treatment vertices and %d control ones, want 30 and none", got, polylinePoints(cr.body, "chart-control"))
	}

	// The guardrail of a flag without telemetry: the empty state.
	e := vic.want(vic.get("/env/production/flags/"+quiet.Flag+"/guardrails/reject-rate"), http.StatusOK, "No complete telemetry window yet", "collecting")
	vic.wantNot(e, "<svg")

	// The flag's page links to its guardrail.
	vic.want(vic.get("/env/production/flags/"+quiet.Flag), http.StatusOK, `href="/env/production/flags/`+quiet.Flag+`/guardrails/reject-rate"`)

	// Unknown guardrails, flags and environments are 404 pages.
	for _, p := range []string{"/env/production/flags/winter-drops/guardrails/nope", "/env/production/flags/nope/guardrails/reject-rate", "/env/nowhere/guardrails"} {
		r := vic.get(p)
		if r.status != http.StatusNotFound || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
			t.Errorf("GET %s: %d %s, want a 404 page", p, r.status, r.header.Get("Content-Type"))
		}
	}
	// Strangers log in first.
	if r := h.anonymous().do("GET", chartURL, nil); r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/login") {
		t.Errorf("anonymous: %d to %q, want the login page", r.status, r.header.Get("Location"))
	}
}

// TestUIGuardrailsNotRun: a server without the guardrail job says so.
func TestUIGuardrailsNotRun(t *testing.T) {
	h := newUIHarness(t)
	c := h.login("vic")
	c.want(c.get("/env/staging/guardrails"), http.StatusOK, "This server does not run the guardrails")
	if r := c.get("/env/staging/flags/any/guardrails/any"); r.status != http.StatusNotFound {
		t.Errorf("a chart without the guardrails: %d, want 404", r.status)
	}
}
