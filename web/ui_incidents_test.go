package web_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/review"
	"github.com/solsticehq/solstice/rollout"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/store/storetest"
	"github.com/solsticehq/solstice/web"
)

// opsHarness is the UI harness with live operations wired in as solstice
// serve wires them: a guardrail job (whose counters the test sets, read
// through guardrails.WithShares) with its service, and a rollout service
// and scheduler, all on one real SQLite database and one clock that
// starts at the wall clock's now (so that sessions and "ago" behave) and
// moves only when the test says.
type opsHarness struct {
	*uiHarness
	db       *store.DB
	clock    *guardrailClock
	counters *settableCounters
	job      *guardrails.Job
	guards   *guardrails.Service
	rollouts *rollout.Service
	sched    *rollout.Scheduler
}

func newOpsHarness(t *testing.T) *opsHarness {
	t.Helper()
	clock := &guardrailClock{now: time.Now().UTC().Truncate(time.Second)}
	db := storetest.Open(t, storetest.WithClock(clock))
	fs := flags.NewService(db, flags.WithClock(clock))
	ctx := context.Background()
	if err := fs.EnsureDefaultEnvironments(ctx); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	acc := newUIAccounts(t, db, fs, clock)
	rev := review.NewService(db, fs, acc)
	as := auth.NewService(db, nil)
	o := &opsHarness{db: db, clock: clock, counters: &settableCounters{}}
	o.job = guardrails.NewJob(db, guardrails.WithShares(o.counters, fs), db, guardrails.NewResponder(db, fs),
		guardrails.WithClock(clock), guardrails.WithLogger(quiet))
	o.guards = guardrails.NewService(db, fs, o.job)
	opts := []rollout.Option{rollout.WithClock(clock), rollout.WithSampleSource(plentySample{}), rollout.WithLogger(quiet)}
	o.rollouts = rollout.NewService(db, fs, db, append(opts, rollout.WithInstance("ui"))...)
	o.sched = rollout.NewScheduler(db, fs, db, append(opts, rollout.WithInstance("s1"))...)
	srv := web.New(web.Deps{Flags: fs, Auth: as, Logger: uiTestLogger(), Guardrails: o.guards, Rollouts: o.rollouts,
		UI: &web.UIDeps{Accounts: acc, Review: rev}})
	o.uiHarness = &uiHarness{t: t, srv: httptest.NewServer(srv), flags: fs, acc: acc, review: rev, auth: as}
	t.Cleanup(o.srv.Close)
	return o
}

// as is a context whose actor is the user name.
func as(name string) context.Context {
	return solstice.WithActor(context.Background(), solstice.Actor{Name: name, Kind: "user"})
}

// splitFlag creates the object flag key with variants control and
// festival (and baseline, serving control's value, when baseline is set),
// and serves it in env, enabled, split between festival (treatmentBP basis
// points) and control.
func (o *opsHarness) splitFlag(env, key string, treatmentBP int, baseline bool) {
	o.t.Helper()
	vs := []flags.Variant{
		{Key: "control", Value: json.RawMessage(`{"event":"none","xp":1}`)},
		{Key: "festival", Value: json.RawMessage(`{"event":"winter","xp":2}`)},
	}
	if baseline {
		vs = append([]flags.Variant{{Key: "baseline", Value: json.RawMessage(`{"event":"none","xp":1}`)}}, vs...)
	}
	if _, err := o.flags.CreateFlag(as("alice"), flags.NewFlag{Key: key, Name: "Winter", Type: flags.TypeObject, Variants: vs}); err != nil {
		o.t.Fatal(err)
	}
	fc := o.config(env, key)
	cfg := fc.Config
	cfg.Enabled = true
	if treatmentBP > 0 {
		cfg.Split = &flags.Split{Weights: []flags.Weight{{Variant: "festival", Weight: treatmentBP}, {Variant: "control", Weight: 10000 - treatmentBP}}}
	}
	if _, err := o.flags.PutConfig(as("alice"), env, key, cfg, fc.Revision, "Serve the winter split"); err != nil {
		o.t.Fatal(err)
	}
}

// rejectRateGuardrail defines the reject-rate guardrail of festival
// against control (margin 10%, action rollback) on key in env.
func (o *opsHarness) rejectRateGuardrail(env, key string) guardrails.Ref {
	o.t.Helper()
	ref := guardrails.Ref{Environment: env, Flag: key, Key: "reject-rate"}
	r := guardrails.Rule{Ref: ref, Metric: guardrails.RejectRate(), Comparison: guardrails.RelativeToControl(0.1), Treatment: "festival", Control: "control"}
	if _, err := o.guards.Put(as("alice"), r, 0); err != nil {
		o.t.Fatal(err)
	}
	return ref
}

// report sets the counters of every guardrail to 5000 actions per arm
// with the given rejects, and 1000 exposures per arm, up to now, and runs
// one tick of the job.
func (o *opsHarness) report(treatmentRejects, controlRejects int64) {
	o.t.Helper()
	now := o.clock.Now()
	o.counters.set(guardrails.Counters{
		Since: now.Add(-time.Hour), Watermark: now,
		Treatment: guardrails.Arm{Exposures: 1000, Actions: 5000, Rejects: treatmentRejects, LastExposure: now, LastMetric: now},
		Control:   guardrails.Arm{Exposures: 1000, Actions: 5000, Rejects: controlRejects, LastExposure: now, LastMetric: now},
	})
	if err := o.job.Tick(context.Background(), now); err != nil {
		o.t.Fatalf("guardrail tick: %v", err)
	}
}

// trip makes the guardrails of every flag see harm, as the job would
// find it in real telemetry: healthy data first, then 6% rejects against
// 2% a minute later.
func (o *opsHarness) trip() {
	o.t.Helper()
	o.report(100, 100)
	o.clock.advance(time.Minute)
	o.report(300, 100)
}

func (o *opsHarness) incident(n int64) guardrails.Record {
	o.t.Helper()
	rec, err := o.guards.Incident(context.Background(), n)
	if err != nil {
		o.t.Fatal(err)
	}
	return rec
}

func (o *opsHarness) guardrailState(ref guardrails.Ref) guardrails.State {
	o.t.Helper()
	st, err := o.db.State(context.Background(), ref)
	if err != nil {
		o.t.Fatal(err)
	}
	return st
}

func TestUIIncidents(t *testing.T) {
	o := newOpsHarness(t)
	o.splitFlag("production", "winter-drops", 5000, false)
	ref := o.rejectRateGuardrail("production", "winter-drops")
	o.trip()

	rec := o.incident(1)
	if rec.Event != guardrails.EventTrip || rec.Revision == 0 || rec.AckedAt != nil {
		t.Fatalf("incident 1 = %+v; want an unacknowledged trip that rolled the flag back", rec)
	}
	rollback := "/env/production/history/" + strconv.FormatInt(rec.Revision, 10)
	page := "/env/production/incidents/1"
	chart := "/env/production/flags/winter-drops/guardrails/reject-rate"

	// A viewer sees the incident, in the list, on its page and on the
	// dashboard, and cannot act on it.
	vic := o.login("vic")
	r := vic.want(vic.get("/env/production/incidents"), http.StatusOK, "Incidents in production", "#1", "winter-drops", "reject-rate", "tripped: rollback",
		"rolled winter-drops in production back in revision "+strconv.FormatInt(rec.Revision, 10))
	if got := regexpFind(t, r.body, `href="(/env/production/incidents/\d+)"`); got != page {
		t.Errorf("the list links %s, want %s", got, page)
	}
	vic.want(vic.get("/env/production"), http.StatusOK, "Open incidents", "#1 winter-drops", "1</span> open incident<")
	r = vic.want(vic.get(page), http.StatusOK, "Incident #1: winter-drops", "open", "Rollback revision", `href="`+rollback+`"`, `href="`+chart+`"`,
		"Counters per arm", "Actions", "Rejected", "Estimated harm", "Confidence bounds", "p-value", "Log evidence", "above the control's", "tripped")
	// The counters per arm: exposures, actions, rejects and the rate (in
	// the guardrail pages' number format, which drops trailing zeros).
	for arm, row := range map[string]string{"festival": `1000</td><td>5000</td><td>300</td><td>6(\.0+)?%`, "control": `1000</td><td>5000</td><td>100</td><td>2(\.0+)?%`} {
		if !regexp.MustCompile(`(?s)<th scope="row">` + arm + `.*?` + row).MatchString(r.body) {
			t.Errorf("the evidence lacks the %s arm's counters %s", arm, row)
		}
	}
	vic.wantNot(r, `action="`+page+`/ack"`, `action="`+page+`/resume"`)
	for _, action := range []string{"ack", "resume"} {
		vic.want(vic.post(page+"/"+action, nil), http.StatusForbidden, "needs the editor role")
	}
	if got := o.incident(1); got.AckedAt != nil || o.guardrailState(ref).Phase != guardrails.PhaseTripped {
		t.Fatalf("a viewer's POST changed something: acked %v, phase %s", got.AckedAt, o.guardrailState(ref).Phase)
	}

	// The other filters, and the incident seen from another environment.
	vic.want(vic.get("/env/production/incidents?state=acknowledged"), http.StatusOK, "No incidents match")
	vic.want(vic.get("/env/production/incidents?state=all&flag=winter-drops"), http.StatusOK, "#1")
	vic.want(vic.get("/env/production/incidents?flag=other"), http.StatusOK, "No open incidents in production for other")
	vic.want(vic.get("/env/staging/incidents"), http.StatusOK, "No open incidents in staging")
	vic.want(vic.get("/env/production/incidents?state=closed"), http.StatusBadRequest, "state must be open, acknowledged or all")
	vic.want(vic.get("/env/staging/incidents/1"), http.StatusNotFound, "incident 1 is not in staging")
	vic.want(vic.get("/env/production/incidents/99"), http.StatusNotFound)

	// Acknowledge needs the session's CSRF token.
	alice := o.login("alice")
	r = alice.want(alice.get(page), http.StatusOK, "Acknowledge", "Resume guardrail…")
	for _, token := range []string{"", "x" + alice.csrf} {
		alice.want(alice.do("POST", page+"/ack", url.Values{"_csrf": {token}}), http.StatusForbidden, "this form has expired")
	}
	if o.incident(1).AckedAt != nil {
		t.Fatal("a forged acknowledgement was recorded")
	}
	alice.want(alice.submit(page+"/ack", formValues(t, r.body, page+"/ack")), http.StatusOK, "Acknowledged incident #1.", "by alice", "acknowledged")
	if got := o.incident(1); got.AckedAt == nil || got.AckedBy == nil || got.AckedBy.Name != "alice" {
		t.Fatalf("after the acknowledgement: %+v", got)
	}
	// A second acknowledgement says who did it first, and changes nothing.
	acked := o.incident(1).AckedAt
	o.clock.advance(time.Minute)
	bob := o.login("bob")
	bob.get(page)
	bob.want(bob.post(page+"/ack", nil), http.StatusConflict, "Incident #1 was already acknowledged by alice", "nothing changed")
	if got := o.incident(1); !got.AckedAt.Equal(*acked) || got.AckedBy.Name != "alice" {
		t.Errorf("a second acknowledgement changed the record: %+v", got)
	}
	vic.want(vic.get("/env/production/incidents"), http.StatusOK, "No open incidents in production")
	vic.want(vic.get("/env/production/incidents?state=acknowledged"), http.StatusOK, "#1", "alice")

	// Resume starts a new test on new data; the flag stays rolled back.
	head := o.head("production")
	r = alice.want(alice.get(page), http.StatusOK, "Resume reject-rate now")
	alice.want(alice.do("POST", page+"/resume", url.Values{}), http.StatusForbidden, "this form has expired")
	if o.guardrailState(ref).Phase != guardrails.PhaseTripped {
		t.Fatal("a forged resume resumed the guardrail")
	}
	alice.want(alice.submit(page+"/resume", formValues(t, r.body, page+"/resume")), http.StatusOK,
		"Resumed guardrail reject-rate of winter-drops: it is collecting in test 2", "It is not tripped, so there is nothing to resume")
	st := o.guardrailState(ref)
	if st.Phase != guardrails.PhaseCollecting || st.Test != 2 || o.head("production") != head {
		t.Fatalf("after the resume: %s in test %d, head %d (was %d); want collecting in test 2, no new revision", st.Phase, st.Test, o.head("production"), head)
	}
	alice.want(alice.get("/env/production/incidents?state=all"), http.StatusOK, "#2", "resumed")

	// Resuming what is not tripped is refused with the domain's reason,
	// and changes nothing.
	r = alice.want(alice.post(page+"/resume", nil), http.StatusConflict, "Not resumed", "is collecting, not tripped: there is nothing to resume")
	alice.wantNot(r, `action="`+page+`/resume"`)
	if got := o.guardrailState(ref); got.Version != st.Version {
		t.Errorf("the refused resume changed the state: version %d, was %d", got.Version, st.Version)
	}

	// A second trip, resumed straight away, is acknowledged by the resume.
	o.clock.advance(time.Minute)
	o.trip()
	recs, err := o.guards.Incidents(context.Background(), guardrails.IncidentFilter{Environment: "production", Events: []guardrails.Event{guardrails.EventTrip}})
	if err != nil || len(recs) != 2 {
		t.Fatalf("trips after the second: %d (%v), want 2", len(recs), err)
	}
	second := "/env/production/incidents/" + strconv.FormatInt(recs[0].Number, 10)
	r = alice.want(alice.get(second), http.StatusOK, "This also acknowledges the incident")
	alice.want(alice.submit(second+"/resume", formValues(t, r.body, second+"/resume")), http.StatusOK, "in test 3")
	if got := o.incident(recs[0].Number); got.AckedBy == nil || got.AckedBy.Name != "alice" {
		t.Errorf("the resumed incident %+v was not acknowledged by alice", got)
	}
}

// TestUIOpsNotEnabled: without guardrail and rollout services, their pages
// say so, and the dashboard leaves them out.
func TestUIOpsNotEnabled(t *testing.T) {
	h := newUIHarness(t)
	c := h.login("vic")
	for _, path := range []string{"/env/staging/incidents", "/env/staging/incidents/1", "/env/staging/rollouts", "/env/staging/rollouts/x", "/env/staging/calendar", "/env/staging/events/x"} {
		c.want(c.get(path), http.StatusNotFound, "not enabled")
	}
	c.want(c.get("/env/nowhere/incidents"), http.StatusNotFound, "not found")
	r := c.want(c.get("/env/staging"), http.StatusOK, "Live now")
	c.wantNot(r, "Open incidents", "Rollouts under way")
}
