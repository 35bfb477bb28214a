package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/rollout"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/store/storetest"
	"github.com/solsticehq/solstice/web"
)

// rolloutClock is the fast clock of the rollout tests, set by hand.
type rolloutClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *rolloutClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *rolloutClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// plentySample measures plenty of exposures in both arms of every step.
type plentySample struct{}

func (plentySample) Sample(context.Context, rollout.Plan, time.Time) (rollout.Sample, error) {
	return rollout.Sample{Treatment: 5000, Control: 5000}, nil
}

// noCounters is a guardrail job's counter source with no data: the tests
// move guardrail states by hand, as the job would.
type noCounters struct{}

func (noCounters) Counters(_ context.Context, _ guardrails.Rule, since time.Time) (guardrails.Counters, error) {
	return guardrails.Counters{Since: since}, nil
}

// rolloutRig is a control plane on a real SQLite database behind a real
// HTTP server with the rollout API, sharing a fast clock with a rollout
// scheduler the test ticks.
type rolloutRig struct {
	*harness
	clock *rolloutClock
	db    *store.DB
	sched *rollout.Scheduler
	job   *guardrails.Job // ticked by the tests that need it
}

const rolloutEnv = "production"

func newRolloutRig(t *testing.T, now time.Time) *rolloutRig {
	t.Helper()
	return newRolloutRigWith(t, now, noCounters{})
}

// newRolloutRigWith is newRolloutRig with the guardrail job reading
// counters from src. The rollout service and scheduler read the
// guardrails' evidence through the guardrail service, as solstice serve
// wires them.
func newRolloutRigWith(t *testing.T, now time.Time, src guardrails.CounterSource) *rolloutRig {
	t.Helper()
	clock := &rolloutClock{now: now}
	db := storetest.Open(t, storetest.WithClock(clock))
	fs := flags.NewService(db, flags.WithClock(clock))
	as := auth.NewService(db, nil)
	ctx := context.Background()
	if err := fs.EnsureDefaultEnvironments(ctx); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, flags: fs, auth: as}
	for _, r := range []struct {
		role auth.Role
		dst  *string
	}{{auth.RoleAdmin, &h.admin}, {auth.RoleEditor, &h.editor}, {auth.RoleViewer, &h.viewer}} {
		c, err := as.Create(ctx, auth.NewToken{Name: string(r.role) + "-test", Kind: auth.KindAdmin, Role: r.role})
		if err != nil {
			t.Fatal(err)
		}
		*r.dst = c.Secret
	}
	quiet := slog.New(slog.DiscardHandler)
	job := guardrails.NewJob(db, src, db, guardrails.NewResponder(db, fs), guardrails.WithClock(clock), guardrails.WithLogger(quiet))
	gsvc := guardrails.NewService(db, fs, job)
	opts := []rollout.Option{rollout.WithClock(clock), rollout.WithSampleSource(plentySample{}), rollout.WithEvidence(gsvc), rollout.WithLogger(quiet)}
	svc := rollout.NewService(db, fs, db, append(opts, rollout.WithInstance("api"))...)
	rig := &rolloutRig{harness: h, clock: clock, db: db, sched: rollout.NewScheduler(db, fs, db, append(opts, rollout.WithInstance("s1"))...), job: job}
	h.web = web.New(web.Deps{Flags: fs, Auth: as, Logger: quiet, Guardrails: gsvc, Rollouts: svc})
	h.srv = httptest.NewServer(h.web)
	t.Cleanup(h.srv.Close)
	return rig
}

// tick sets the clock to at and runs the scheduler once.
func (r *rolloutRig) tick(at time.Time) {
	r.t.Helper()
	r.clock.set(at)
	if err := r.sched.Tick(context.Background(), at); err != nil {
		r.t.Fatalf("scheduler tick at %s: %v", at, err)
	}
}

var festivalGuardrail = guardrails.Ref{Environment: rolloutEnv, Flag: "winter-festival", Key: "reject-rate"}

// setGuardrail moves the reject-rate guardrail to phase through the
// guardrails' state store, as the guardrail job would.
func (r *rolloutRig) setGuardrail(phase guardrails.Phase, reason string) {
	r.t.Helper()
	ctx := context.Background()
	st, err := r.db.State(ctx, festivalGuardrail)
	if solstice.IsKind(err, solstice.KindNotFound) {
		st, err = guardrails.NewState(festivalGuardrail, r.clock.Now()), nil
		st.Version = 0
	}
	if err != nil {
		r.t.Fatal(err)
	}
	old := st.Version
	st.Phase, st.Reason, st.Since, st.Version = phase, reason, r.clock.Now(), old+1
	if err := r.db.SwapState(ctx, old, st); err != nil {
		r.t.Fatal(err)
	}
}

// guardrailPhase returns the guardrail's phase, or "" before it has a
// state.
func (r *rolloutRig) guardrailPhase() guardrails.Phase {
	r.t.Helper()
	st, err := r.db.State(context.Background(), festivalGuardrail)
	if solstice.IsKind(err, solstice.KindNotFound) {
		return ""
	}
	if err != nil {
		r.t.Fatal(err)
	}
	return st.Phase
}

func rolloutUTC(y int, m time.Month, d, h, minute int) time.Time {
	return time.Date(y, m, d, h, minute, 0, 0, time.UTC)
}

const (
	rolloutsPath = "/api/v1/environments/production/rollouts"
	eventsPath   = "/api/v1/environments/production/events"
)

// The Winter Festival as a new user would send it: a banner teaser, the
// festival config turned on through a 5% → 25% → 100% ramp gated by a
// reject-rate guardrail, a wind-down, and the end a week after the start.
const (
	festivalFlagJSON = `{"key":"winter-festival","name":"Winter Festival","type":"object",
	  "schema":{"type":"object","required":["festival"],"properties":{"festival":{"type":"boolean"},"xp":{"type":"number","maximum":3}}},
	  "variants":[{"key":"baseline","value":{"festival":false}},{"key":"control","value":{"festival":false}},{"key":"festival","value":{"festival":true,"xp":2}}],
	  "default_variant":"baseline","off_variant":"baseline"}`
	festivalGuardrailJSON = `{"metric":{"kind":"reject_rate"},"comparison":{"kind":"relative_to_control","margin":0.1},"treatment":"festival","control":"control"}`
	festivalRampJSON      = `{"id":"winter-ramp","flag":"winter-festival","treatment":"festival","control":"control","baseline":"baseline",
	  "steps":[{"weight":500,"min_duration":"24h"},{"weight":2500,"min_duration":"24h"},{"weight":10000,"min_duration":"24h"}],
	  "gates":{"guardrails":["reject-rate"],"min_sample":100}}`
	festivalEventJSON = `{"key":"winter-festival","name":"Winter Festival","time_zone":"Europe/Paris",
	  "start":"2026-12-18T10:00","end":"2026-12-25T10:00",
	  "phases":[
	    {"name":"teaser","start":"2026-12-18T10:00","changes":[{"flag":"festival-banner","enabled":true}]},
	    {"name":"live","start":"2026-12-18T18:00","changes":[{"flag":"winter-festival","rollout":"winter-ramp"}]},
	    {"name":"wind-down","start":"2026-12-24T18:00","changes":[{"flag":"festival-banner","serve":"off"}]}],
	  "end_state":[{"flag":"festival-banner","enabled":false}]}`
)

// setUpFestival creates the flags, the guardrail and the plan of the
// Winter Festival through the API.
func (r *rolloutRig) setUpFestival() {
	r.t.Helper()
	r.want(r.do("POST", "/api/v1/flags", r.editor, `{"key":"festival-banner","type":"boolean"}`), http.StatusCreated)
	r.want(r.do("POST", "/api/v1/flags", r.editor, festivalFlagJSON), http.StatusCreated)
	r.want(r.do("PUT", "/api/v1/environments/production/flags/winter-festival/guardrails/reject-rate", r.editor, festivalGuardrailJSON), http.StatusCreated)
	res := r.want(r.do("POST", rolloutsPath, r.editor, festivalRampJSON), http.StatusCreated)
	if got := res.header.Get("ETag"); got != `"p1"` {
		r.t.Errorf("created plan: ETag %s, want \"p1\"", got)
	}
}

func (r *rolloutRig) plan(id string) rollout.Plan {
	r.t.Helper()
	var p rollout.Plan
	r.want(r.do("GET", rolloutsPath+"/"+id, r.viewer, nil), http.StatusOK).json(r.t, &p)
	return p
}

func (r *rolloutRig) calendar(from, to time.Time) rollout.Calendar {
	r.t.Helper()
	q := url.Values{"from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}}
	var cal rollout.Calendar
	r.want(r.do("GET", "/api/v1/environments/production/calendar?"+q.Encode(), r.viewer, nil), http.StatusOK).json(r.t, &cal)
	return cal
}

// evaluation is the part of /evaluate's and /preview's answers the tests
// compare.
type evaluation struct {
	Flag        string          `json:"flag"`
	Value       json.RawMessage `json:"value"`
	Variant     string          `json:"variant"`
	Reason      string          `json:"reason"`
	Explanation struct {
		Text string `json:"text"`
	} `json:"explanation"`
}

func (r *rolloutRig) preview(at time.Time, flag, player string) evaluation {
	r.t.Helper()
	body := fmt.Sprintf(`{"at":%q,"flag":%q,"context":{"targetingKey":%q}}`, at.Format(time.RFC3339), flag, player)
	var e evaluation
	r.want(r.do("POST", "/api/v1/environments/production/preview", r.viewer, body), http.StatusOK).json(r.t, &e)
	return e
}

func (r *rolloutRig) evaluate(flag, player string) evaluation {
	r.t.Helper()
	body := fmt.Sprintf(`{"flag":%q,"context":{"targetingKey":%q}}`, flag, player)
	var e evaluation
	r.want(r.do("POST", "/api/v1/environments/production/evaluate", r.viewer, body), http.StatusOK).json(r.t, &e)
	return e
}

func (r *rolloutRig) config(flag string) json.RawMessage {
	r.t.Helper()
	var fc struct {
		Config json.RawMessage `json:"config"`
	}
	r.want(r.do("GET", "/api/v1/environments/production/flags/"+flag, r.viewer, nil), http.StatusOK).json(r.t, &fc)
	return fc.Config
}

// TestWinterFestivalThroughTheAPI is the "done when", tried as a
// new user would: the Winter Festival is created through the API, the
// calendar shows it, the preview says what players get on day 3, and a
// fast clock runs the whole event from start to end, once cleanly and once
// with the guardrail tripping in the middle of the ramp.
func TestWinterFestivalThroughTheAPI(t *testing.T) {
	for _, trip := range []bool{false, true} {
		name := "completes"
		if trip {
			name = "guardrail trip rolls back"
		}
		t.Run(name, func(t *testing.T) {
			begin := rolloutUTC(2026, 12, 17, 9, 0)
			r := newRolloutRig(t, begin)
			r.setUpFestival()
			before := map[string]json.RawMessage{"festival-banner": r.config("festival-banner"), "winter-festival": r.config("winter-festival")}

			var check struct{ Conflicts []rollout.Conflict }
			r.want(r.do("POST", eventsPath+"/check", r.viewer, festivalEventJSON), http.StatusOK).json(t, &check)
			if len(check.Conflicts) != 0 {
				t.Errorf("check before saving: conflicts %+v, want none", check.Conflicts)
			}
			res := r.want(r.do("POST", eventsPath, r.editor, festivalEventJSON), http.StatusCreated)
			var ev rollout.Event
			res.json(t, &ev)
			if res.header.Get("ETag") != `"e1"` || ev.UID == "" || ev.Phases[1].Changes[0].BaseRevision == 0 {
				t.Errorf("created event: ETag %s, uid %q, base revision %d; want \"e1\", a uid and the flag's revision",
					res.header.Get("ETag"), ev.UID, ev.Phases[1].Changes[0].BaseRevision)
			}

			// The calendar shows the festival, its three phases and every
			// change to come: 3 phases, the end, the ramp's start, its two
			// advances and its completion.
			cal := r.calendar(begin, rolloutUTC(2026, 12, 26, 0, 0))
			if len(cal.Events) != 1 || cal.Events[0].Name != "Winter Festival" || len(cal.Events[0].Phases) != 3 || len(cal.Entries) != 8 {
				t.Fatalf("calendar before the event: %d events (%+v), %d entries; want the Winter Festival with 3 phases and 8 entries", len(cal.Events), cal.Events, len(cal.Entries))
			}
			if w := cal.Events[0]; !w.Start.Equal(rolloutUTC(2026, 12, 18, 9, 0)) || !w.End.Equal(rolloutUTC(2026, 12, 25, 9, 0)) {
				t.Errorf("calendar window %s to %s, want 10:00 Paris time (09:00 UTC) on the 18th and the 25th", w.Start, w.End)
			}
			for _, e := range cal.Entries {
				if e.Status != rollout.EntryScheduled && e.Status != rollout.EntryProjected {
					t.Errorf("calendar entry before the event %+v: want scheduled or projected", e)
				}
			}

			// Day 3, noon in Paris: the ramp's second step, 25%.
			day3 := rolloutUTC(2026, 12, 20, 11, 0)
			players := make([]string, 200)
			previewed := make([]evaluation, len(players))
			treated := 0
			for i := range players {
				players[i] = fmt.Sprintf("player-%d", i)
				previewed[i] = r.preview(day3, "winter-festival", players[i])
				if previewed[i].Reason != string(flags.ReasonSplit) || previewed[i].Explanation.Text == "" {
					t.Fatalf("day-3 preview for %s: %+v, want a split with its explanation", players[i], previewed[i])
				}
				if previewed[i].Variant == "festival" {
					treated++
				}
			}
			if treated < 30 || treated > 70 {
				t.Errorf("the day-3 preview gives %d of %d players the festival, want about 25%%", treated, len(players))
			}

			tripAt := rolloutUTC(2026, 12, 19, 23, 0) // 6 hours into the 25% step
			tripped, sawStatus := false, false
			for at := rolloutUTC(2026, 12, 18, 8, 0); !at.After(rolloutUTC(2026, 12, 25, 10, 0)); at = at.Add(15 * time.Minute) {
				r.clock.set(at)
				// The guardrail job: each new test reaches its minimum
				// sample within a tick; in the trip run, harm is
				// established once.
				if r.guardrailPhase() == guardrails.PhaseCollecting {
					r.setGuardrail(guardrails.PhaseMonitoring, "the minimum sample is reached")
				}
				if trip && !tripped && !at.Before(tripAt) {
					r.setGuardrail(guardrails.PhaseTripped, "reject rate 3.1% against 2.0% for control: harm established")
					tripped = true
				}
				r.tick(at)

				if at.Equal(rolloutUTC(2026, 12, 19, 20, 0)) {
					// Halfway through the second step: the status shows
					// the duration gate still closed.
					var st rollout.PlanStatus
					r.want(r.do("GET", rolloutsPath+"/winter-ramp/status", r.viewer, nil), http.StatusOK).json(t, &st)
					sawStatus = true
					if st.Plan.Status != rollout.StatusRunning || st.Plan.Step != 1 || st.Decision.Action != rollout.ActWait || !hasGate(st.Decision.Gates, rollout.GateDuration, false) {
						t.Errorf("status on the second day: %s step %d, decision %+v; want running at step 2, waiting on its duration", st.Plan.Status, st.Plan.Step, st.Decision)
					}
				}
				if at.Equal(day3) {
					festival := 0
					for i, p := range players {
						got := r.evaluate("winter-festival", p)
						if got.Variant == "festival" {
							festival++
						}
						if !trip && (got.Variant != previewed[i].Variant || string(got.Value) != string(previewed[i].Value)) {
							t.Errorf("on day 3 %s gets %s %s, previewed %s %s", p, got.Variant, got.Value, previewed[i].Variant, previewed[i].Value)
						}
					}
					if trip && festival != 0 {
						t.Errorf("on day 3, after the rollback, %d players get the festival, want none", festival)
					}
				}
			}
			if !sawStatus {
				t.Fatal("the loop never asked for the plan's status")
			}

			p := r.plan("winter-ramp")
			var moves []string
			for _, h := range p.History {
				moves = append(moves, string(h.From)+"→"+string(h.To)+" by "+h.Actor)
			}
			want := []string{"draft→running by event:winter-festival", "running→running by rollout:winter-ramp", "running→running by rollout:winter-ramp", "running→completed by rollout:winter-ramp"}
			if trip {
				want = []string{"draft→running by event:winter-festival", "running→running by rollout:winter-ramp", "running→rolled_back by rollout:winter-ramp"}
			}
			if diff := cmp.Diff(want, moves); diff != "" {
				t.Errorf("plan history (-want +got):\n%s", diff)
			}
			if trip {
				if h := p.History[len(p.History)-1]; p.Status != rollout.StatusRolledBack || !h.Time.Equal(tripAt) || !strings.Contains(h.Reason, "guardrail reject-rate tripped") {
					t.Errorf("after the trip: %s at %s (%q); want rolled back at the first tick after the trip", p.Status, h.Time, h.Reason)
				}
			} else if p.Status != rollout.StatusCompleted {
				t.Errorf("plan %s, want completed", p.Status)
			}

			var d rollout.EventDetail
			res = r.want(r.do("GET", eventsPath+"/winter-festival", r.viewer, nil), http.StatusOK)
			res.json(t, &d)
			if d.State.Status != rollout.EventEnded || len(d.Records) != 4 {
				t.Fatalf("event after its end: %+v with %d records, want ended with 4", d.State, len(d.Records))
			}
			for _, rec := range d.Records {
				if rec.Status != rollout.StatusDone || rec.Late != 0 {
					t.Errorf("record %s: %s, late %s (%s); want done on time", rec.ID, rec.Status, rec.Late, rec.Outcome)
				}
			}
			// The end set both flags back to what they were before.
			for flag, c := range before {
				if got := r.config(flag); !jsonEqual(t, got, c) {
					t.Errorf("%s after the event:\n%s\nwant what it was before:\n%s", flag, got, c)
				}
			}
			kinds := map[rollout.EntryKind]int{}
			for _, e := range r.calendar(begin, rolloutUTC(2026, 12, 26, 0, 0)).Entries {
				kinds[e.Kind]++
				if e.Status != rollout.EntryDone {
					t.Errorf("calendar entry after the event %+v, want done", e)
				}
			}
			wantKinds := map[rollout.EntryKind]int{rollout.EntryPhase: 3, rollout.EntryEnd: 1, rollout.EntryPlanStart: 1, rollout.EntryPlanStep: 2, rollout.EntryPlanComplete: 1}
			if trip {
				wantKinds = map[rollout.EntryKind]int{rollout.EntryPhase: 3, rollout.EntryEnd: 1, rollout.EntryPlanStart: 1, rollout.EntryPlanStep: 1, rollout.EntryPlanRollback: 1}
			}
			if diff := cmp.Diff(wantKinds, kinds); diff != "" {
				t.Errorf("calendar entries after the event, by kind (-want +got):\n%s", diff)
			}
		})
	}
}

// festivalExperimentJSON is an experiment on the Winter Festival's config:
// 10%, then 50%, in each arm, an hour and two hours, gated by the
// reject-rate guardrail.
const festivalExperimentJSON = `{"id":"winter-test","flag":"winter-festival","treatment":"festival","control":"control","baseline":"baseline",
  "description":"Does the festival config hurt rejects?","experiment":true,
  "steps":[{"weight":1000,"min_duration":"1h"},{"weight":5000,"min_duration":"2h"}],
  "gates":{"guardrails":["reject-rate"]}}`

// TestExperimentThroughTheAPI runs an experiment from the API to its end,
// with the guardrail job evaluating counters and the scheduler ticking,
// and fetches its decision as JSON and as a Markdown memo: once with
// healthy arms (ship), once with the treatment rejecting more than twice as
// often (the guardrail trips, the plan is rolled back: roll_back with the
// incident in the evidence).
func TestExperimentThroughTheAPI(t *testing.T) {
	for _, tc := range []struct {
		name               string
		rejectsT, rejectsC int64 // of 5000 actions per arm
		status             rollout.Status
		outcome            rollout.Outcome
		headline           string
	}{
		{"ship", 105, 100, rollout.StatusCompleted, rollout.OutcomeShip, "**Ship `festival`.**"},
		{"guardrail trip rolls back", 260, 100, rollout.StatusRolledBack, rollout.OutcomeRollBack, "**Roll back: keep `baseline`.**"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			begin := rolloutUTC(2026, 12, 18, 17, 0)
			counters := &settableCounters{}
			r := newRolloutRigWith(t, begin, counters)
			r.setUpFestival()
			plan := rolloutsPath + "/winter-test"

			tooBig := strings.Replace(festivalExperimentJSON, `"weight":5000`, `"weight":7500`, 1)
			p := r.want(r.do("POST", rolloutsPath, r.editor, tooBig), http.StatusUnprocessableEntity).problem(t)
			if !slices.Equal(pointersOf(p), []string{"/steps/1/weight"}) || !strings.Contains(fmt.Sprint(p.Errors), "equal size") {
				t.Errorf("an experiment step above 50%%: %q %v, want /steps/1/weight saying the arms are of equal size", p.Detail, p.Errors)
			}
			r.want(r.do("POST", rolloutsPath, r.editor, festivalExperimentJSON), http.StatusCreated)
			for _, tc := range []struct{ path, detail string }{
				{plan + "/decision", "its decision is written when it ends"},
				{rolloutsPath + "/winter-ramp/decision", "is not an experiment"},
				{rolloutsPath + "/nope/decision", "not found"},
			} {
				if p := r.want(r.do("GET", tc.path, r.viewer, nil), http.StatusNotFound).problem(t); !strings.Contains(p.Detail, tc.detail) {
					t.Errorf("GET %s: %q, want it to say %q", tc.path, p.Detail, tc.detail)
				}
			}
			r.want(r.do("POST", plan+"/start", r.editor, nil, "If-Match", `"p1"`), http.StatusOK)

			for at := begin; !at.After(begin.Add(4 * time.Hour)); at = at.Add(15 * time.Minute) {
				r.clock.set(at)
				counters.set(armCounters(at, 0.5, tc.rejectsT, tc.rejectsC))
				if err := r.job.Tick(context.Background(), at); err != nil {
					t.Fatalf("guardrail job tick at %s: %v", at, err)
				}
				r.tick(at)
			}
			if got := r.plan("winter-test"); got.Status != tc.status {
				t.Fatalf("experiment %s (%s), want %s", got.Status, got.Reason, tc.status)
			}

			res := r.want(r.do("GET", plan+"/decision", r.viewer, nil), http.StatusOK)
			var d rollout.ExperimentDecision
			res.json(t, &d)
			if d.Outcome != tc.outcome || d.Plan != "winter-test" || d.Status != tc.status || len(d.Guardrails) != 1 {
				t.Fatalf("decision %s (%s) of %s, %s, %d guardrails; want %s of winter-test, %s, 1", d.Outcome, d.Reason, d.Plan, d.Status, len(d.Guardrails), tc.outcome, tc.status)
			}
			g := d.Guardrails[0]
			wantT := guardrails.ArmSample{Exposures: 1000, N: 5000, X: tc.rejectsT, Rate: float64(tc.rejectsT) / 5000}
			wantC := guardrails.ArmSample{Exposures: 1000, N: 5000, X: tc.rejectsC, Rate: float64(tc.rejectsC) / 5000}
			if diff := cmp.Diff([]guardrails.ArmSample{wantT, wantC}, []guardrails.ArmSample{g.Treatment, g.Control}); diff != "" {
				t.Errorf("evidence per arm (-want +got):\n%s", diff)
			}
			if !g.EnoughSample || !(g.Lower <= g.Effect && g.Effect <= g.Upper) || g.PValue <= 0 || g.PValue > 1 {
				t.Errorf("evidence %+v: want enough sample and an effect within its bounds", g)
			}
			var incidents []string
			for _, inc := range g.Incidents {
				incidents = append(incidents, fmt.Sprintf("%s #%d", inc.Event, inc.Number))
			}
			if tc.outcome == rollout.OutcomeRollBack {
				var list struct{ Incidents []guardrails.Record }
				r.want(r.do("GET", "/api/v1/incidents?flag=winter-festival", r.viewer, nil), http.StatusOK).json(t, &list)
				if len(list.Incidents) != 1 || !slices.Equal(incidents, []string{fmt.Sprintf("trip #%d", list.Incidents[0].Number)}) || g.Phase != guardrails.PhaseTripped {
					t.Errorf("evidence incidents %v (phase %s), want the trip the incident API lists (%+v), tripped", incidents, g.Phase, list.Incidents)
				}
				if got := r.evaluate("winter-festival", "player-1"); got.Variant == "festival" {
					t.Errorf("after the rollback player-1 gets %s", got.Variant)
				}
			} else if len(incidents) != 0 {
				t.Errorf("incidents %v, want none", incidents)
			}

			res = r.want(r.do("GET", plan+"/decision", r.viewer, nil, "Accept", "text/markdown"), http.StatusOK)
			if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/markdown") || !strings.Contains(res.header.Get("Vary"), "Accept") {
				t.Errorf("memo Content-Type %q, Vary %q; want text/markdown, varying on Accept", ct, res.header.Get("Vary"))
			}
			memo := string(res.body)
			if !strings.HasPrefix(memo, "# Experiment decision: winter-festival, plan winter-test\n\n"+tc.headline) {
				t.Errorf("memo does not start with its title and %s:\n%s", tc.headline, memo)
			}
			if memo != rollout.Memo(d) {
				t.Errorf("the memo served is not the memo of the decision served as JSON:\n%s", memo)
			}
			res = r.want(r.do("GET", plan+"/decision", r.viewer, nil, "Accept", "application/json, text/markdown;q=0.5"), http.StatusOK)
			if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("preferring JSON: Content-Type %q", ct)
			}
		})
	}
}

func hasGate(gates []rollout.Gate, name string, passed bool) bool {
	return slices.ContainsFunc(gates, func(g rollout.Gate) bool { return g.Name == name && g.Passed == passed })
}

func jsonEqual(t *testing.T, a, b json.RawMessage) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return cmp.Equal(x, y)
}

func pointersOf(p web.Problem) []string {
	var out []string
	for _, f := range p.Errors {
		out = append(out, f.Pointer)
	}
	return out
}

// TestRolloutPlanAPI walks a plan through its transitions by hand and
// checks what the API refuses: invalid plans with pointers, stale and
// missing If-Match, illegal transitions with their reason, unknown plans,
// roles.
func TestRolloutPlanAPI(t *testing.T) {
	r := newRolloutRig(t, rolloutUTC(2026, 12, 17, 9, 0))
	r.setUpFestival()
	plan := rolloutsPath + "/winter-ramp"

	t.Run("invalid plans", func(t *testing.T) {
		for _, tc := range []struct {
			name, body string
			want       []string
		}{
			{"shape", `{"id":"Bad Id","flag":"winter-festival","treatment":"festival","control":"festival","baseline":"baseline","steps":[{"weight":0,"min_duration":"1h"},{"weight":20000,"min_duration":"1h"}]}`,
				[]string{"/id", "/control", "/steps/0/weight", "/steps/1/weight"}},
			{"references", `{"id":"r2","flag":"winter-festival","treatment":"festival","control":"nope","baseline":"baseline","steps":[{"weight":500,"min_duration":"1h"}],"gates":{"guardrails":["latency"]}}`,
				[]string{"/control", "/gates/guardrails/0"}},
			{"environment", `{"id":"r3","environment":"staging","flag":"winter-festival","treatment":"festival","control":"control","baseline":"baseline","steps":[{"weight":500}]}`,
				[]string{"/environment"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				p := r.want(r.do("POST", rolloutsPath, r.editor, tc.body), http.StatusUnprocessableEntity).problem(t)
				if diff := cmp.Diff(tc.want, pointersOf(p)); diff != "" {
					t.Errorf("field errors of %s (-want +got):\n%s", p.Detail, diff)
				}
			})
		}
		r.want(r.do("POST", rolloutsPath, r.editor, `{"id":"r4","flag":"winter-festival","steps":"many"}`), http.StatusBadRequest).problem(t)
		if p := r.want(r.do("POST", rolloutsPath, r.editor, festivalRampJSON), http.StatusConflict).problem(t); !strings.Contains(p.Detail, "winter-ramp") {
			t.Errorf("creating an existing plan: %q, want it named", p.Detail)
		}
	})

	t.Run("roles", func(t *testing.T) {
		r.want(r.do("POST", rolloutsPath, r.viewer, festivalRampJSON), http.StatusForbidden).problem(t)
		r.want(r.do("POST", plan+"/start", r.viewer, nil, "If-Match", `"p1"`), http.StatusForbidden).problem(t)
		var list struct{ Rollouts []rollout.Plan }
		r.want(r.do("GET", rolloutsPath+"?flag=winter-festival", r.viewer, nil), http.StatusOK).json(t, &list)
		if len(list.Rollouts) != 1 || list.Rollouts[0].ID != "winter-ramp" {
			t.Errorf("list: %+v, want winter-ramp", list.Rollouts)
		}
	})

	t.Run("edit", func(t *testing.T) {
		r.want(r.do("PUT", plan, r.editor, festivalRampJSON), http.StatusPreconditionRequired).problem(t)
		edited := strings.Replace(festivalRampJSON, `"min_sample":100`, `"min_sample":250`, 1)
		res := r.want(r.do("PUT", plan, r.editor, edited, "If-Match", `"p1"`), http.StatusOK)
		var p rollout.Plan
		res.json(t, &p)
		if res.header.Get("ETag") != `"p2"` || p.Gates.MinSample != 250 || p.Status != rollout.StatusDraft {
			t.Errorf("edited: ETag %s, %+v; want \"p2\", min_sample 250, a draft", res.header.Get("ETag"), p)
		}
		if p := r.want(r.do("PUT", plan, r.editor, festivalRampJSON, "If-Match", `"p1"`), http.StatusPreconditionFailed).problem(t); !strings.Contains(p.Detail, "version 2") {
			t.Errorf("stale If-Match: %q, want the current version", p.Detail)
		}
		other := strings.Replace(festivalRampJSON, `"id":"winter-ramp"`, `"id":"other"`, 1)
		if p := r.want(r.do("PUT", plan, r.editor, other, "If-Match", `"p2"`), http.StatusUnprocessableEntity).problem(t); !slices.Equal(pointersOf(p), []string{"/id"}) {
			t.Errorf("an id other than the URL's: %v, want /id", pointersOf(p))
		}
	})

	t.Run("transitions", func(t *testing.T) {
		steps := []struct {
			name, action, body, ifMatch string // ifMatch: "cur", "stale" or none
			status                      int
			detail                      string // in the problem, or the plan's status
		}{
			{"advance a draft", "advance", "", "cur", http.StatusConflict, "only a running plan advances"},
			{"resume a draft", "resume", "", "cur", http.StatusConflict, "is draft: only a paused plan resumes"},
			{"schedule in the past", "schedule", `{"start_at":"2026-01-01T00:00:00Z"}`, "cur", http.StatusUnprocessableEntity, "must be in the future"},
			{"schedule without a time", "schedule", `{}`, "cur", http.StatusUnprocessableEntity, "required"},
			{"without If-Match", "start", "", "", http.StatusPreconditionRequired, "If-Match"},
			{"stale If-Match", "start", "", "stale", http.StatusPreconditionFailed, "version 2"},
			{"schedule", "schedule", `{"start_at":"2026-12-20T00:00:00Z"}`, "cur", http.StatusOK, "scheduled"},
			{"unschedule", "unschedule", "", "cur", http.StatusOK, "draft"},
			{"start", "start", "{}", "cur", http.StatusOK, "running"},
			{"start twice", "start", "", "cur", http.StatusConflict, "only a draft or scheduled plan can start"},
			{"approve a step that asks for none", "approve", `{"step":0}`, "cur", http.StatusConflict, "step"},
			{"approve without a step", "approve", `{}`, "cur", http.StatusUnprocessableEntity, "required"},
			{"pause", "pause", `{"reason":"a crash report to read"}`, "cur", http.StatusOK, "paused"},
			{"advance while paused", "advance", "", "cur", http.StatusConflict, "only a running plan advances"},
			{"resume", "resume", "", "cur", http.StatusOK, "running"},
			{"abort", "abort", `{"reason":"wrong art"}`, "cur", http.StatusOK, "rolled_back"},
			{"resume a finished plan", "resume", "", "cur", http.StatusConflict, "only a paused plan resumes"},
			{"edit a finished plan", "", festivalRampJSON, "cur", http.StatusConflict, "only a draft or scheduled plan can be edited"},
		}
		cur := `"p2"`
		for _, s := range steps {
			method, path := "POST", plan+"/"+s.action
			if s.action == "" {
				method, path = "PUT", plan
			}
			var body any
			if s.body != "" {
				body = s.body
			}
			var headers []string
			switch s.ifMatch {
			case "cur":
				headers = []string{"If-Match", cur}
			case "stale":
				headers = []string{"If-Match", `"p1"`}
			}
			res := r.do(method, path, r.editor, body, headers...)
			if res.status != s.status {
				t.Fatalf("%s: status %d, want %d: %s", s.name, res.status, s.status, res.body)
			}
			if res.status != http.StatusOK {
				if p := res.problem(t); !strings.Contains(p.Detail+fmt.Sprint(p.Errors), s.detail) {
					t.Errorf("%s: %q %v, want it to say %q", s.name, p.Detail, p.Errors, s.detail)
				}
				continue
			}
			var p rollout.Plan
			res.json(t, &p)
			if res.header.Get("ETag") == cur {
				t.Errorf("%s: the ETag stayed %s", s.name, cur)
			}
			cur = res.header.Get("ETag")
			if string(p.Status) != s.detail || cur != etagOf("p", p.Version) {
				t.Errorf("%s: %s with ETag %s (version %d), want %s", s.name, p.Status, res.header.Get("ETag"), p.Version, s.detail)
			}
		}
		p := r.plan("winter-ramp")
		if h := p.History[len(p.History)-1]; h.Actor != "token:editor-test" || h.Reason != "aborted by token:editor-test: wrong art" || h.Revision == 0 {
			t.Errorf("the abort in the history: %+v; want the editor token's, with the reason and a revision", h)
		}
		if got := r.evaluate("winter-festival", "player-1"); got.Variant != "baseline" {
			t.Errorf("after the abort player-1 gets %s, want the baseline", got.Variant)
		}
	})

	t.Run("delete and not found", func(t *testing.T) {
		r.want(r.do("GET", rolloutsPath+"/nope", r.viewer, nil), http.StatusNotFound).problem(t)
		r.want(r.do("GET", rolloutsPath+"/nope/status", r.viewer, nil), http.StatusNotFound).problem(t)
		r.want(r.do("POST", rolloutsPath+"/nope/start", r.editor, nil, "If-Match", `"p1"`), http.StatusNotFound).problem(t)
		r.want(r.do("DELETE", plan, r.editor, nil), http.StatusPreconditionRequired).problem(t)
		r.want(r.do("DELETE", plan, r.editor, nil, "If-Match", etagOf("p", r.plan("winter-ramp").Version)), http.StatusNoContent)
		r.want(r.do("GET", plan, r.viewer, nil), http.StatusNotFound).problem(t)
	})
}

func etagOf(prefix string, version int64) string { return fmt.Sprintf(`"%s%d"`, prefix, version) }

// TestEventAPI checks events' conflicts, edits, cancellation and deletion,
// and the calendar's and the preview's refusals.
func TestEventAPI(t *testing.T) {
	r := newRolloutRig(t, rolloutUTC(2026, 12, 17, 9, 0))
	r.setUpFestival()
	event := eventsPath + "/winter-festival"
	r.want(r.do("POST", eventsPath, r.editor, festivalEventJSON), http.StatusCreated)

	t.Run("conflicts", func(t *testing.T) {
		overlap := `{"key":"new-year","name":"New Year","time_zone":"UTC","start":"2026-12-24T00:00","end":"2027-01-02T00:00",
		  "phases":[{"name":"live","start":"2026-12-24T00:00","changes":[{"flag":"festival-banner","enabled":true}]}]}`
		var check struct{ Conflicts []rollout.Conflict }
		r.want(r.do("POST", eventsPath+"/check", r.viewer, overlap), http.StatusOK).json(t, &check)
		if len(check.Conflicts) != 1 || check.Conflicts[0].Kind != rollout.ConflictOverlap || check.Conflicts[0].With != "winter-festival" {
			t.Errorf("check: %+v, want one overlap with winter-festival", check.Conflicts)
		}
		p := r.want(r.do("POST", eventsPath, r.editor, overlap), http.StatusConflict).problem(t)
		if !slices.Equal(pointersOf(p), []string{check.Conflicts[0].Pointer}) {
			t.Errorf("saving it: %q %v, want the conflict at %s", p.Detail, p.Errors, check.Conflicts[0].Pointer)
		}
		r.want(r.do("GET", eventsPath+"/new-year", r.viewer, nil), http.StatusNotFound).problem(t)
	})

	t.Run("invalid", func(t *testing.T) {
		bad := `{"key":"bad","name":"Bad","time_zone":"Mars/Olympus","start":"2026-12-24T00:00","end":"2026-12-23T00:00",
		  "phases":[{"name":"live","start":"2026-12-24T00:00","changes":[{"flag":"nope","enabled":true}]}]}`
		p := r.want(r.do("POST", eventsPath, r.editor, bad), http.StatusUnprocessableEntity).problem(t)
		if ptrs := pointersOf(p); !slices.Contains(ptrs, "/time_zone") {
			t.Errorf("invalid event: %v, want /time_zone among them", ptrs)
		}
		r.want(r.do("POST", eventsPath, r.viewer, festivalEventJSON), http.StatusForbidden).problem(t)
	})

	t.Run("edit, cancel, delete", func(t *testing.T) {
		var d rollout.EventDetail
		res := r.want(r.do("GET", event, r.viewer, nil), http.StatusOK)
		res.json(t, &d)
		if res.header.Get("ETag") != `"e1"` || d.State.Status != rollout.EventScheduled {
			t.Errorf("event: ETag %s, state %+v; want \"e1\", scheduled", res.header.Get("ETag"), d.State)
		}
		renamed := strings.Replace(festivalEventJSON, `"name":"Winter Festival"`, `"name":"Winter Festival 2026"`, 1)
		r.want(r.do("PUT", event, r.editor, renamed), http.StatusPreconditionRequired).problem(t)
		var ev rollout.Event
		res = r.want(r.do("PUT", event, r.editor, renamed, "If-Match", `"e1"`), http.StatusOK)
		res.json(t, &ev)
		if ev.Name != "Winter Festival 2026" || res.header.Get("ETag") != `"e2"` {
			t.Errorf("renamed: %q with ETag %s", ev.Name, res.header.Get("ETag"))
		}
		r.want(r.do("PUT", event, r.editor, renamed, "If-Match", `"e1"`), http.StatusPreconditionFailed).problem(t)

		// Once the teaser has started, the event is live: it cannot be
		// deleted, only cancelled, and its end then applies.
		r.tick(rolloutUTC(2026, 12, 18, 9, 0))
		if got := r.evaluate("festival-banner", "player-1"); got.Variant != "on" {
			t.Errorf("during the teaser the banner is %s, want on", got.Variant)
		}
		if p := r.want(r.do("DELETE", event, r.editor, nil, "If-Match", `"e2"`), http.StatusConflict).problem(t); !strings.Contains(p.Detail, "cancel it") {
			t.Errorf("deleting a live event: %q, want the way out", p.Detail)
		}
		r.want(r.do("POST", event+"/cancel", r.editor, nil, "If-Match", `"e2"`), http.StatusOK)
		if p := r.want(r.do("POST", event+"/cancel", r.editor, nil, "If-Match", `"e3"`), http.StatusConflict).problem(t); !strings.Contains(p.Detail, "already cancelled") {
			t.Errorf("cancelling twice: %q", p.Detail)
		}
		r.tick(rolloutUTC(2026, 12, 18, 9, 15))
		if got := r.evaluate("festival-banner", "player-1"); got.Variant != "off" {
			t.Errorf("after the cancellation the banner is %s, want off (the end state)", got.Variant)
		}
		var list struct{ Events []rollout.Event }
		r.want(r.do("GET", eventsPath+"?open=true", r.viewer, nil), http.StatusOK).json(t, &list)
		if len(list.Events) != 0 {
			t.Errorf("open events after the end: %d, want none", len(list.Events))
		}
		r.want(r.do("DELETE", event, r.editor, nil, "If-Match", `"e3"`), http.StatusNoContent)
		r.want(r.do("GET", event, r.viewer, nil), http.StatusNotFound).problem(t)
		r.want(r.do("POST", event+"/cancel", r.editor, nil, "If-Match", `"e3"`), http.StatusNotFound).problem(t)
	})

	t.Run("calendar and preview refusals", func(t *testing.T) {
		cal := "/api/v1/environments/production/calendar"
		for _, tc := range []struct {
			name, path string
			status     int
			detail     string
		}{
			{"bad from", cal + "?from=tomorrow", http.StatusBadRequest, "RFC 3339"},
			{"reversed", cal + "?from=2026-12-20T00:00:00Z&to=2026-12-19T00:00:00Z", http.StatusBadRequest, "must be after from"},
			{"too long", cal + "?from=2026-01-01T00:00:00Z&to=2028-01-01T00:00:00Z", http.StatusBadRequest, "at most"},
			{"unknown environment", "/api/v1/environments/nope/calendar", http.StatusNotFound, "nope"},
		} {
			if p := r.want(r.do("GET", tc.path, r.viewer, nil), tc.status).problem(t); !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("%s: %q, want it to say %q", tc.name, p.Detail, tc.detail)
			}
		}
		var c rollout.Calendar
		r.want(r.do("GET", cal, r.viewer, nil), http.StatusOK).json(t, &c)
		if now := r.clock.Now(); !c.From.Equal(now.Add(-7*24*time.Hour)) || !c.To.Equal(c.From.Add(35*24*time.Hour)) {
			t.Errorf("default calendar range %s to %s, want a week before now (%s) to four weeks after", c.From, c.To, now)
		}

		preview := "/api/v1/environments/production/preview"
		for _, tc := range []struct {
			name, body string
			want       []string
		}{
			{"no time, no flag", `{"context":{}}`, []string{"/at", "/flag"}},
			{"bad time", `{"at":"day 3","flag":"winter-festival"}`, []string{"/at"}},
			{"in the past", `{"at":"2026-01-01T00:00:00Z","flag":"winter-festival"}`, []string{"/at"}},
		} {
			p := r.want(r.do("POST", preview, r.viewer, tc.body), http.StatusUnprocessableEntity).problem(t)
			if diff := cmp.Diff(tc.want, pointersOf(p)); diff != "" {
				t.Errorf("%s: field errors (-want +got):\n%s", tc.name, diff)
			}
		}
		r.want(r.do("POST", "/api/v1/environments/nope/preview", r.viewer, `{"at":"2027-01-01T00:00:00Z","flag":"x"}`), http.StatusNotFound).problem(t)
	})
}

// TestRolloutAPIContract calls every rollout, event, calendar and preview
// operation and checks each answer against docs/openapi.yaml (status,
// headers, schema), and that every such route is documented.
//
// NOTE: TestOpenAPIDescribesEveryRoute and TestOpenAPIRoles build servers
// without Deps.Rollouts; until they set it, this test covers these routes.
func TestRolloutAPIContract(t *testing.T) {
	base := map[string]bool{}
	for _, rt := range web.New(web.Deps{}).Echo().Routes() {
		base[rt.Method+" "+rt.Path] = true
	}
	c := newAPIContract(t, nil) // exerciseRolloutAPI gives it its harness
	var ours []string
	for _, rt := range web.New(web.Deps{Rollouts: new(rollout.Service)}).Echo().Routes() {
		if base[rt.Method+" "+rt.Path] {
			continue
		}
		op := rt.Method + " " + echoPath(rt.Path)
		ours = append(ours, op)
		if _, ok := c.ops[op]; !ok {
			t.Errorf("route %s is not in %s", op, openapiPath)
		}
	}
	if len(ours) != 24 {
		t.Errorf("Deps.Rollouts adds %d routes, want 24: %v", len(ours), ours)
	}

	exerciseRolloutAPI(t, c)
	for _, op := range ours {
		if !c.exercised[op] {
			t.Errorf("%s was never called", op)
		}
	}
}

// exerciseRolloutAPI calls every operation of the rollout API through c,
// on a control plane of its own with a fast clock (c's harness is put back
// afterwards), so that any contract scenario can include them.
func exerciseRolloutAPI(t *testing.T, c *apiContract) {
	t.Helper()
	r := newRolloutRig(t, rolloutUTC(2026, 12, 17, 9, 0))
	r.setUpFestival()
	saved := c.h
	c.h = r.harness
	defer func() { c.h = saved }()
	const (
		plans  = "/api/v1/environments/{env}/rollouts"
		plan   = plans + "/{id}"
		events = "/api/v1/environments/{env}/events"
		event  = events + "/{id}"
	)
	env, id := []string{"production"}, []string{"production", "winter-ramp"}
	etag := func(res response) string { return res.header.Get("ETag") }

	c.call("GET", plans, []string{"production", "?flag=winter-festival"}, r.viewer, nil, http.StatusOK)
	c.call("POST", plans, env, r.editor, `{"id":"bad","flag":"winter-festival","treatment":"festival","control":"control","baseline":"baseline","steps":[]}`, http.StatusUnprocessableEntity)
	tag := etag(c.call("GET", plan, id, r.viewer, nil, http.StatusOK))
	tag = etag(c.call("PUT", plan, id, r.editor, festivalRampJSON, http.StatusOK, "If-Match", tag))
	c.call("PUT", plan, id, r.editor, festivalRampJSON, http.StatusPreconditionFailed, "If-Match", `"p1"`)
	tag = etag(c.call("POST", plan+"/schedule", id, r.editor, `{"start_at":"2026-12-18T00:00:00Z"}`, http.StatusOK, "If-Match", tag))
	tag = etag(c.call("POST", plan+"/unschedule", id, r.editor, nil, http.StatusOK, "If-Match", tag))
	c.call("POST", plan+"/advance", id, r.editor, nil, http.StatusConflict, "If-Match", tag)
	tag = etag(c.call("POST", plan+"/start", id, r.editor, nil, http.StatusOK, "If-Match", tag))
	c.call("GET", plan+"/status", id, r.viewer, nil, http.StatusOK)
	c.call("POST", plan+"/approve", id, r.editor, `{"step":0}`, http.StatusConflict, "If-Match", tag)
	tag = etag(c.call("POST", plan+"/pause", id, r.editor, `{"reason":"a look at the numbers"}`, http.StatusOK, "If-Match", tag))
	tag = etag(c.call("POST", plan+"/resume", id, r.editor, nil, http.StatusOK, "If-Match", tag))
	r.setGuardrail(guardrails.PhaseMonitoring, "the minimum sample is reached")
	tag = etag(c.call("POST", plan+"/advance", id, r.editor, nil, http.StatusOK, "If-Match", tag))
	tag = etag(c.call("POST", plan+"/abort", id, r.editor, nil, http.StatusOK, "If-Match", tag))
	c.call("DELETE", plan, id, r.editor, nil, http.StatusNoContent, "If-Match", tag)
	c.call("GET", plan, id, r.viewer, nil, http.StatusNotFound)
	c.call("POST", plans, env, r.editor, festivalRampJSON, http.StatusCreated)

	exp := []string{"production", "winter-test"}
	c.call("POST", plans, env, r.editor, festivalExperimentJSON, http.StatusCreated)
	c.call("GET", plan+"/decision", exp, r.viewer, nil, http.StatusNotFound)
	tag = etag(c.call("POST", plan+"/start", exp, r.editor, nil, http.StatusOK, "If-Match", `"p1"`))
	c.call("POST", plan+"/abort", exp, r.editor, `{"reason":"wrong art"}`, http.StatusOK, "If-Match", tag)
	c.call("GET", plan+"/decision", exp, r.viewer, nil, http.StatusOK)
	c.call("GET", plan+"/decision", exp, r.viewer, nil, http.StatusOK, "Accept", "text/markdown")
	c.call("GET", plan+"/decision", id, r.viewer, nil, http.StatusNotFound)

	c.call("POST", events+"/check", env, r.viewer, festivalEventJSON, http.StatusOK)
	c.call("POST", events, env, r.editor, festivalEventJSON, http.StatusCreated)
	c.call("POST", events, env, r.editor, festivalEventJSON, http.StatusConflict)
	c.call("GET", events, env, r.viewer, nil, http.StatusOK)
	ev := []string{"production", "winter-festival"}
	tag = etag(c.call("GET", event, ev, r.viewer, nil, http.StatusOK))
	tag = etag(c.call("PUT", event, ev, r.editor, festivalEventJSON, http.StatusOK, "If-Match", tag))
	c.call("GET", "/api/v1/environments/{env}/calendar", []string{"production", "?from=2026-12-17T00:00:00Z&to=2026-12-26T00:00:00Z"}, r.viewer, nil, http.StatusOK)
	c.call("GET", "/api/v1/environments/{env}/calendar", []string{"production", "?from=yesterday"}, r.viewer, nil, http.StatusBadRequest)
	c.call("POST", "/api/v1/environments/{env}/preview", env, r.viewer, `{"at":"2026-12-20T12:00:00+01:00","flag":"winter-festival","context":{"targetingKey":"player-7"}}`, http.StatusOK)
	c.call("POST", "/api/v1/environments/{env}/preview", env, r.viewer, `{"at":"soon","flag":"winter-festival"}`, http.StatusUnprocessableEntity)
	r.tick(rolloutUTC(2026, 12, 18, 9, 0))
	c.call("DELETE", event, ev, r.editor, nil, http.StatusConflict, "If-Match", tag)
	tag = etag(c.call("POST", event+"/cancel", ev, r.editor, nil, http.StatusOK, "If-Match", tag))
	r.tick(rolloutUTC(2026, 12, 18, 9, 15))
	c.call("GET", event, ev, r.viewer, nil, http.StatusOK)
	c.call("DELETE", event, ev, r.editor, nil, http.StatusNoContent, "If-Match", tag)

}
