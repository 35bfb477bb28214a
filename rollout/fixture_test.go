package rollout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/rollout"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/store/storetest"
)

// fakeClock is a clock tests set by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// fixedSample is a SampleSource with plenty of exposures in both arms.
type fixedSample struct{}

func (fixedSample) Sample(context.Context, rollout.Plan, time.Time) (rollout.Sample, error) {
	return rollout.Sample{Treatment: 5000, Control: 5000}, nil
}

const env = "production"

// world is a control plane on a real database: the flags service, the
// rollout service and a scheduler sharing a fake clock, with the Winter
// Festival's flags and its reject-rate guardrail.
type world struct {
	t     *testing.T
	ctx   context.Context // alice's
	db    *store.DB
	clock *fakeClock
	flags *flags.Service
	svc   *rollout.Service
	sched *rollout.Scheduler
}

var guardrailRef = guardrails.Ref{Environment: env, Flag: "winter-festival", Key: "reject-rate"}

func newWorld(t *testing.T, db *store.DB, clock *fakeClock, opts ...rollout.Option) *world {
	t.Helper()
	w := &world{t: t, db: db, clock: clock,
		ctx: solstice.WithActor(t.Context(), solstice.Actor{Name: "alice", Kind: "user"})}
	w.flags = flags.NewService(db, flags.WithClock(clock))
	opts = append([]rollout.Option{rollout.WithClock(clock), rollout.WithSampleSource(fixedSample{})}, opts...)
	w.svc = rollout.NewService(db, w.flags, db, append(opts, rollout.WithInstance("api"))...)
	w.sched = rollout.NewScheduler(db, w.flags, db, append(opts, rollout.WithInstance("s1"))...)
	w.must(w.flags.EnsureDefaultEnvironments(w.ctx))
	_, err := w.flags.CreateFlag(w.ctx, flags.NewFlag{Key: "festival-banner", Type: flags.TypeBoolean})
	w.must(err)
	_, err = w.flags.CreateFlag(w.ctx, flags.NewFlag{Key: "winter-festival", Type: flags.TypeObject,
		Schema:         json.RawMessage(`{"type":"object","required":["festival"],"properties":{"festival":{"type":"boolean"},"xp":{"type":"number","maximum":3}}}`),
		Variants:       festivalConfig().Variants,
		DefaultVariant: "baseline", OffVariant: "baseline"})
	w.must(err)
	rule := guardrails.Rule{Ref: guardrailRef, Metric: guardrails.RejectRate(), Comparison: guardrails.RelativeToControl(0.1),
		Treatment: "festival", Control: "control"}.WithDefaults()
	_, err = db.PutGuardrail(w.ctx, rule, 0, solstice.AuditEntry{Actor: solstice.ActorFrom(w.ctx), Action: "guardrail.create", Resource: "guardrail/reject-rate"})
	w.must(err)
	return w
}

func (w *world) must(err error) {
	w.t.Helper()
	if err != nil {
		w.t.Fatal(err)
	}
}

// tick sets the clock to at and runs the scheduler once.
func (w *world) tick(at time.Time) {
	w.t.Helper()
	w.clock.Set(at)
	if err := w.sched.Tick(w.ctx, at); err != nil {
		w.t.Fatalf("tick at %s: %v", at, err)
	}
}

func (w *world) config(flag string) flags.FlagConfig {
	w.t.Helper()
	fc, err := w.flags.GetConfig(w.ctx, env, flag)
	w.must(err)
	return fc
}

func (w *world) plan(id string) rollout.Plan {
	w.t.Helper()
	p, err := w.svc.GetPlan(w.ctx, env, id)
	w.must(err)
	return p
}

func (w *world) eval(flag string, evalCtx flags.Context) flags.Result {
	w.t.Helper()
	r, err := w.flags.Evaluate(w.ctx, env, flag, evalCtx)
	w.must(err)
	return r
}

// revisions returns the environment's revisions, oldest first.
func (w *world) revisions() []flags.Revision {
	w.t.Helper()
	var out []flags.Revision
	var before int64
	for {
		revs, err := w.flags.ListRevisions(w.ctx, env, flags.RevisionFilter{BeforeNumber: before, Limit: 100})
		w.must(err)
		out = append(out, revs...)
		if len(revs) < 100 {
			break
		}
		before = revs[len(revs)-1].Number
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// tagged counts the revisions whose message carries change id.
func (w *world) tagged(id string) int {
	n := 0
	for _, r := range w.revisions() {
		if strings.Contains(r.Message, "["+id+"]") {
			n++
		}
	}
	return n
}

// setGuardrail moves the reject-rate guardrail to phase, as the guardrail
// job would.
func (w *world) setGuardrail(phase guardrails.Phase, reason string) {
	w.t.Helper()
	st, err := w.db.State(w.ctx, guardrailRef)
	if solstice.IsKind(err, solstice.KindNotFound) {
		st, err = guardrails.NewState(guardrailRef, w.clock.Now()), nil
		st.Version = 0
	}
	w.must(err)
	old := st.Version
	st.Phase, st.Reason, st.Since, st.Version = phase, reason, w.clock.Now(), old+1
	w.must(w.db.SwapState(w.ctx, old, st))
}

func (w *world) guardrailState() guardrails.State {
	w.t.Helper()
	st, err := w.db.State(w.ctx, guardrailRef)
	w.must(err)
	return st
}

// ramp is the Winter Festival's ramp plan: 5% → 25% → 100%, a day each,
// gated by the reject-rate guardrail and 100 exposures per arm.
func ramp() rollout.Plan {
	return rollout.Plan{
		ID: "winter-ramp", Environment: env, Flag: "winter-festival",
		Treatment: "festival", Control: "control", Baseline: "baseline",
		Steps: []rollout.Step{
			{Weight: 500, MinDuration: rollout.Duration(24 * time.Hour)},
			{Weight: 2500, MinDuration: rollout.Duration(24 * time.Hour)},
			{Weight: 10000, MinDuration: rollout.Duration(24 * time.Hour)},
		},
		Gates: rollout.Gates{Guardrails: []string{"reject-rate"}, MinSample: 100},
	}
}

func players(n int) []flags.Context {
	out := make([]flags.Context, n)
	for i := range out {
		out[i] = flags.Context{flags.TargetingKey: fmt.Sprintf("player-%d", i)}
	}
	return out
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func openDB(t *testing.T, clock *fakeClock) *store.DB {
	return storetest.Open(t, storetest.WithClock(clock))
}
