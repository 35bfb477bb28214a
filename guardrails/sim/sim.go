// Package sim is the guardrail simulation benchmark behind `solstice sim
// guardrails`: it drives the production guardrail job (guardrails.Job and
// its Tick, hence Evaluate and the state machine; not a copy) through
// simulated telemetry, A/A runs with no regression and A/B runs with one,
// beside a naive fixed-horizon z-test evaluated at every tick, and reports
// false rollback rates, power, and time and samples to rollback.
//
// Everything is deterministic for a seed: each run draws from its own PCG
// generator seeded with the seed and the run's number, runs are combined
// in a fixed order whatever the parallelism, and no map order reaches the
// output.
package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/guardrails"
)

// quiet discards the job's logs: a simulation raises thousands of incidents.
var quiet = slog.New(slog.DiscardHandler)

// Simulation settings: those of the reference figures in the design
// notes.
const (
	Tick            = 10 * time.Second
	Alpha           = 0.05
	RejectTau       = 0.005 // "+25% on a 2% base is bad"
	RetentionTau    = 0.02  // "−2 pp on a 40% D1 is bad"
	BaseRejectRate  = 0.02
	BaseRetention   = 0.40
	RetentionPerArm = 200 // new players per hour and arm
	// NaiveZ is the critical value of the naive rule: a one-sided
	// two-proportion z-test at 5% (pooled variance), applied at every tick
	// once both arms have MinSample trials, as if each look were the only
	// one.
	NaiveZ = 1.6448536269514722

	trafficSwing = 0.5  // traffic varies by ±50% over the day
	rejectSwing  = 0.25 // and the reject rate by ±25%, peaking 6 h later
	exposureRate = 0.2  // new players exposed per action
	day          = 24 * time.Hour
)

// Rates are the traffic levels simulated, in actions per second and arm.
var Rates = []float64{0.2, 2, 20, 200}

// Treatments are the treatment reject rates of the A/B runs (the control's
// is BaseRejectRate).
var Treatments = []float64{0.025, 0.03, 0.04}

// RetentionTreatment is the treatment D1 retention of the retention A/B
// runs: −4 pp.
const RetentionTreatment = 0.36

// Options configure Run.
type Options struct {
	// Seed makes the run reproducible: the same seed, the same report.
	Seed uint64
	// Quick runs fewer runs over shorter horizons, for CI; every tick is
	// still evaluated.
	Quick bool
	// Progress, if not nil, receives a line per finished scenario.
	Progress io.Writer
	// Workers is the number of runs simulated at once (default: GOMAXPROCS).
	// It does not change the report.
	Workers int
	// Runs overrides the number of runs of each scenario (0: the mode's).
	Runs int
}

// Scenario is one simulated setting.
type Scenario struct {
	Metric string // "reject_rate" or "d1_retention"
	// Rate is the traffic per arm: actions per second for the reject
	// rate, new players per hour for retention.
	Rate      float64
	Control   float64 // the control's base rate
	Treatment float64 // the treatment's (equal to Control in A/A runs)
	Horizon   time.Duration
	Runs      int
}

// AA reports whether the scenario has no regression.
func (s Scenario) AA() bool { return s.Treatment == s.Control }

// Result is what the runs of a scenario came to.
type Result struct {
	Scenario Scenario
	// Rollbacks counts the runs the guardrail rolled back within the
	// horizon: false rollbacks in A/A runs, detections (power) in A/B
	// runs. Naive counts those the naive rule would have rolled back.
	Rollbacks Proportion
	Naive     Proportion
	// Holds counts the runs in which a data-quality hold happened, and
	// FailSafes those rolled back because a hold outlasted its timeout
	// (they are among Rollbacks).
	Holds, FailSafes int
	// Time and Samples are the time and the treatment trials to rollback,
	// over all runs, a run without rollback counting as never (+Inf).
	Time    Quantiles
	Samples Quantiles
	// NaiveTime is Time for the naive rule.
	NaiveTime Quantiles
}

// Proportion is a count out of runs with its 95% Wilson score interval.
type Proportion struct {
	Count, Of       int
	Rate, Low, High float64
}

// Quantiles are the median and the 95th percentile of a quantity over the
// runs; +Inf where the quantile falls on a run that never got there.
type Quantiles struct{ Median, P95 float64 }

// Report is the outcome of a simulation.
type Report struct {
	Seed    uint64
	Quick   bool
	Results []Result
	Elapsed time.Duration // wall time; not part of WriteText's output
}

// scenarios returns the scenarios of a mode.
func scenarios(o Options) []Scenario {
	aa, ab, retAA, retAB := 4000, 1000, 1000, 500
	rejectHorizon, retentionHorizon := day, 7*day
	if o.Quick {
		// Enough A/A runs that Check's thresholds are far from the
		// expected rates (a false alarm of CI is then rarer than 1 in
		// 500 seeds), over horizons short enough for the race detector.
		aa, ab, retAA, retAB = 150, 25, 40, 20
		rejectHorizon, retentionHorizon = 6*time.Hour, 3*day
	}
	if o.Runs > 0 {
		aa, ab, retAA, retAB = o.Runs, o.Runs, o.Runs, o.Runs
	}
	var out []Scenario
	for _, rate := range Rates {
		out = append(out, Scenario{Metric: "reject_rate", Rate: rate, Control: BaseRejectRate, Treatment: BaseRejectRate, Horizon: rejectHorizon, Runs: aa})
	}
	for _, tr := range Treatments {
		for _, rate := range Rates {
			out = append(out, Scenario{Metric: "reject_rate", Rate: rate, Control: BaseRejectRate, Treatment: tr, Horizon: rejectHorizon, Runs: ab})
		}
	}
	out = append(out,
		Scenario{Metric: "d1_retention", Rate: RetentionPerArm, Control: BaseRetention, Treatment: BaseRetention, Horizon: retentionHorizon, Runs: retAA},
		Scenario{Metric: "d1_retention", Rate: RetentionPerArm, Control: BaseRetention, Treatment: RetentionTreatment, Horizon: retentionHorizon, Runs: retAB},
	)
	return out
}

// outcome is one run's.
type outcome struct {
	rolledBack bool
	at         time.Duration // since the start, to the rollback
	samples    int64         // treatment trials at the rollback
	naive      bool
	naiveAt    time.Duration
	held       bool
	failSafe   bool // the rollback was a hold's fail-safe
}

// Run simulates every scenario of the mode and returns the report. It
// returns ctx's error when ctx ends first, or the first error of the
// guardrail job, which is a bug.
func Run(ctx context.Context, o Options) (Report, error) {
	start := time.Now()
	scs := scenarios(o)
	type task struct{ sc, run int }
	var tasks []task
	outs := make([][]outcome, len(scs))
	for i, sc := range scs {
		outs[i] = make([]outcome, sc.Runs)
		for r := range sc.Runs {
			tasks = append(tasks, task{i, r})
		}
	}
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		mu       sync.Mutex
		firstErr error
		left     = make([]int, len(scs))
		next     int
		wg       sync.WaitGroup
	)
	for i, sc := range scs {
		left[i] = sc.Runs
	}
	take := func() (task, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next >= len(tasks) || firstErr != nil {
			return task{}, false
		}
		next++
		return tasks[next-1], true
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				t, ok := take()
				if !ok {
					return
				}
				sc := scs[t.sc]
				// Each run has its own stream: the seed and the run's
				// number, so results do not depend on scheduling.
				rng := rand.New(rand.NewPCG(o.Seed, uint64(t.sc)<<32|uint64(t.run))) //nolint:gosec // a simulation must be reproducible from its seed, not unpredictable
				var out outcome
				var err error
				if sc.Metric == "d1_retention" {
					out, err = runRetention(ctx, sc, rng)
				} else {
					out, err = runReject(ctx, sc, rng)
				}
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("scenario %s, run %d: %w", sc, t.run, err)
						cancel()
					}
				} else {
					outs[t.sc][t.run] = out
					left[t.sc]--
					if left[t.sc] == 0 && o.Progress != nil {
						fmt.Fprintf(o.Progress, "sim: %s: %d runs done (%s)\n", sc, sc.Runs, time.Since(start).Round(time.Second))
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
			return Report{}, err
		}
		return Report{}, firstErr
	}
	rep := Report{Seed: o.Seed, Quick: o.Quick, Elapsed: time.Since(start)}
	for i, sc := range scs {
		rep.Results = append(rep.Results, summarize(sc, outs[i]))
	}
	return rep, nil
}

// String names the scenario: "reject_rate 20/s 2%→3% (24h)".
func (s Scenario) String() string {
	unit := "/s"
	if s.Metric == "d1_retention" {
		unit = "/h"
	}
	return fmt.Sprintf("%s %g%s %g%%→%g%% (%s)", s.Metric, s.Rate, unit, 100*s.Control, 100*s.Treatment, fmtDuration(s.Horizon))
}

func summarize(sc Scenario, outs []outcome) Result {
	res := Result{Scenario: sc}
	var times, samples, naive []float64
	var rb, nv int
	for _, o := range outs {
		t, s, n := math.Inf(1), math.Inf(1), math.Inf(1)
		if o.rolledBack {
			rb++
			t, s = o.at.Seconds(), float64(o.samples)
		}
		if o.naive {
			nv++
			n = o.naiveAt.Seconds()
		}
		if o.held {
			res.Holds++
		}
		if o.failSafe {
			res.FailSafes++
		}
		times, samples, naive = append(times, t), append(samples, s), append(naive, n)
	}
	res.Rollbacks = wilson(rb, len(outs))
	res.Naive = wilson(nv, len(outs))
	res.Time, res.Samples, res.NaiveTime = quantiles(times), quantiles(samples), quantiles(naive)
	return res
}

// wilson returns k of n with its 95% Wilson score interval.
func wilson(k, n int) Proportion {
	p := Proportion{Count: k, Of: n}
	if n == 0 {
		return p
	}
	const z = 1.959963984540054
	fn := float64(n)
	r := float64(k) / fn
	den := 1 + z*z/fn
	centre := (r + z*z/(2*fn)) / den
	half := z / den * math.Sqrt(r*(1-r)/fn+z*z/(4*fn*fn))
	p.Rate, p.Low, p.High = r, max(0, centre-half), min(1, centre+half)
	return p
}

// quantiles returns the median and 95th percentile (nearest rank).
func quantiles(xs []float64) Quantiles {
	if len(xs) == 0 {
		return Quantiles{math.NaN(), math.NaN()}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return s[max(0, min(len(s)-1, i))]
	}
	return Quantiles{Median: rank(0.5), P95: rank(0.95)}
}

// world is one run's telemetry and the job's surroundings: the rule
// source, the counter source, the state store and the actions, all in
// memory, for one guardrail.
type world struct {
	rules    []guardrails.Rule
	counters guardrails.Counters
	state    guardrails.State
	stored   bool

	rolledBack bool
	at         time.Time
	samples    int64
	held       bool
	failSafe   bool
}

var (
	_ guardrails.RuleSource    = (*world)(nil)
	_ guardrails.CounterSource = (*world)(nil)
	_ guardrails.StateStore    = (*world)(nil)
	_ guardrails.Actions       = (*world)(nil)
)

var errNoState = &solstice.Error{Kind: solstice.KindNotFound, Message: "no state"}

func (w *world) Rules(context.Context) ([]guardrails.Rule, error) { return w.rules, nil }

func (w *world) Counters(_ context.Context, _ guardrails.Rule, since time.Time) (guardrails.Counters, error) {
	if w.counters.Since.Before(since) {
		return guardrails.Counters{}, errors.New("the simulation does not resume")
	}
	return w.counters, nil
}

func (w *world) State(context.Context, guardrails.Ref) (guardrails.State, error) {
	if !w.stored {
		return guardrails.State{}, errNoState
	}
	return w.state, nil
}

func (w *world) SwapState(_ context.Context, old int64, next guardrails.State) error {
	if w.state.Version != old {
		return solstice.Errorf(solstice.KindConflict, "version %d, not %d", w.state.Version, old)
	}
	w.state, w.stored = next, true
	return nil
}

func (w *world) Apply(_ context.Context, inc guardrails.Incident) error {
	switch inc.Event {
	case guardrails.EventHold:
		w.held = true
	case guardrails.EventTrip, guardrails.EventFailSafe:
		if inc.Action == guardrails.ActionRollback && !w.rolledBack {
			w.rolledBack, w.at, w.samples = true, inc.Time, w.counters.Treatment.Actions
			w.failSafe = inc.Event == guardrails.EventFailSafe
			if w.rules[0].Metric.Kind == guardrails.KindD1Retention {
				w.samples = w.counters.Treatment.Retention.Closed
			}
		}
	}
	return nil
}

// epoch is the simulated start; each run starts at a random time of day.
var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func newWorld(rule guardrails.Rule, start time.Time) *world {
	return &world{
		rules:    []guardrails.Rule{rule},
		counters: guardrails.Counters{Since: start, TreatmentShare: 0.5},
	}
}

// runReject simulates one reject-rate run.
func runReject(ctx context.Context, sc Scenario, rng *rand.Rand) (outcome, error) {
	rule := guardrails.Rule{
		Ref:        guardrails.Ref{Environment: "sim", Flag: "flag", Key: "reject-rate"},
		Metric:     guardrails.RejectRate(),
		Comparison: guardrails.RelativeToControl(0),
		Treatment:  "on", Control: "off",
		Alpha: Alpha, Tau: RejectTau, MinSample: guardrails.DefaultMinSample,
		Action: guardrails.ActionRollback,
	}
	phase := rng.Float64() // of the day, at the start
	start := epoch.Add(time.Duration(phase * float64(day)))
	w := newWorld(rule, start)
	job := guardrails.NewJob(w, w, w, w, guardrails.WithLogger(quiet))
	ratio := sc.Treatment / sc.Control
	var out outcome
	ticks := int(sc.Horizon / Tick)
	for i := 1; i <= ticks; i++ {
		if i%1024 == 0 && ctx.Err() != nil {
			return out, ctx.Err()
		}
		now := start.Add(time.Duration(i) * Tick)
		angle := 2 * math.Pi * (phase + float64(i)*Tick.Seconds()/day.Seconds())
		mean := sc.Rate * Tick.Seconds() * (1 + trafficSwing*math.Sin(angle))
		pC := sc.Control * (1 + rejectSwing*math.Sin(angle-math.Pi/2))
		c := &w.counters
		c.Watermark = now
		for a, p := range [2]float64{pC * ratio, pC} {
			arm := &c.Treatment
			if a == 1 {
				arm = &c.Control
			}
			// Poisson thinning: rejected and accepted actions are
			// independent Poisson counts.
			rej := poisson(rng, mean*p)
			acc := poisson(rng, mean*(1-p))
			exp := poisson(rng, mean*exposureRate)
			arm.Actions += rej + acc
			arm.Rejects += rej
			arm.Exposures += exp
			if rej+acc > 0 {
				arm.LastMetric = now
			}
			if exp > 0 {
				arm.LastExposure = now
			}
		}
		if !w.rolledBack {
			if err := job.Tick(ctx, now); err != nil {
				return out, err
			}
			if w.rolledBack {
				out.rolledBack, out.at, out.samples = true, w.at.Sub(start), w.samples
			}
		}
		if !out.naive && naiveTrips(c.Treatment.Actions, c.Treatment.Rejects, c.Control.Actions, c.Control.Rejects) {
			out.naive, out.naiveAt = true, now.Sub(start)
		}
		if out.rolledBack && out.naive {
			break
		}
	}
	out.held, out.failSafe = w.held, w.failSafe
	return out, nil
}

// naiveTrips is the naive rule: a one-sided pooled two-proportion z-test
// of treatment worse than control at 5%, once both arms have the
// guardrail's minimum sample.
func naiveTrips(nT, xT, nC, xC int64) bool {
	if nT < guardrails.DefaultMinSample || nC < guardrails.DefaultMinSample {
		return false
	}
	fT, fC := float64(nT), float64(nC)
	pT, pC := float64(xT)/fT, float64(xC)/fC
	pbar := float64(xT+xC) / (fT + fC)
	v := pbar * (1 - pbar) * (1/fT + 1/fC)
	if v <= 0 {
		return false
	}
	return (pT-pC)/math.Sqrt(v) > NaiveZ
}

// runRetention simulates one D1-retention run: players arrive in both
// arms, each returns on day 1 with the arm's probability, and counts once
// their 48 h window has closed.
func runRetention(ctx context.Context, sc Scenario, rng *rand.Rand) (outcome, error) {
	rule := guardrails.Rule{
		Ref:        guardrails.Ref{Environment: "sim", Flag: "flag", Key: "d1-retention"},
		Metric:     guardrails.D1Retention(),
		Comparison: guardrails.RelativeToControl(0),
		Treatment:  "on", Control: "off",
		Alpha: Alpha, Tau: RetentionTau, MinSample: guardrails.DefaultMinSample,
		Action: guardrails.ActionRollback,
	}
	phase := rng.Float64()
	start := epoch.Add(time.Duration(phase * float64(day)))
	w := newWorld(rule, start)
	job := guardrails.NewJob(w, w, w, w, guardrails.WithLogger(quiet))
	ticks := int(sc.Horizon / Tick)
	window := int(guardrails.RetentionWindow / Tick)
	// arrivals[a][i] and retained[a][i]: players of arm a first exposed in
	// tick i, and of them those who return.
	var arrivals, retained [2][]int64
	for a := range 2 {
		arrivals[a] = make([]int64, ticks+1)
		retained[a] = make([]int64, ticks+1)
	}
	var out outcome
	for i := 1; i <= ticks; i++ {
		if i%1024 == 0 && ctx.Err() != nil {
			return out, ctx.Err()
		}
		now := start.Add(time.Duration(i) * Tick)
		angle := 2 * math.Pi * (phase + float64(i)*Tick.Seconds()/day.Seconds())
		mean := sc.Rate * Tick.Hours() * (1 + trafficSwing*math.Sin(angle))
		c := &w.counters
		c.Watermark = now
		for a, p := range [2]float64{sc.Treatment, sc.Control} {
			arm := &c.Treatment
			if a == 1 {
				arm = &c.Control
			}
			n := poisson(rng, mean)
			arrivals[a][i] = n
			retained[a][i] = binomial(rng, n, p)
			arm.Exposures += n
			if n > 0 {
				arm.LastExposure = now
			}
			if j := i - window; j >= 1 && arrivals[a][j] > 0 {
				arm.Retention.Closed += arrivals[a][j]
				arm.Retention.Retained += retained[a][j]
				arm.LastMetric = now
			}
		}
		if !w.rolledBack {
			if err := job.Tick(ctx, now); err != nil {
				return out, err
			}
			if w.rolledBack {
				out.rolledBack, out.at, out.samples = true, w.at.Sub(start), w.samples
			}
		}
		r := &c.Treatment.Retention
		q := &c.Control.Retention
		// Retention: higher is better, so the naive rule tests control
		// above treatment.
		if !out.naive && naiveTrips(q.Closed, q.Retained, r.Closed, r.Retained) {
			out.naive, out.naiveAt = true, now.Sub(start)
		}
		if out.rolledBack && out.naive {
			break
		}
	}
	out.held, out.failSafe = w.held, w.failSafe
	return out, nil
}
