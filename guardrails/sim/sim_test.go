package sim

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestQuick runs the quick simulation that CI relies on: it must pass
// Check, detect clear regressions, and give the same bytes for the same
// seed whatever the parallelism.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("the quick simulation takes seconds")
	}
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Options{Seed: 1, Quick: true, Progress: &progress, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
	var first bytes.Buffer
	if err := rep.WriteText(&first); err != nil {
		t.Fatal(err)
	}
	t.Logf("quick report:\n%s", first.String())
	if !strings.Contains(progress.String(), "d1_retention") {
		t.Errorf("progress does not report every scenario:\n%s", progress.String())
	}

	for _, res := range rep.Results {
		sc := res.Scenario
		// A regression to twice the base rate at 20 actions/s per arm is
		// caught in minutes; −4 pp of retention within the horizon.
		if (sc.Metric == "reject_rate" && sc.Treatment == 0.04 && sc.Rate >= 20) || (sc.Metric == "d1_retention" && !sc.AA()) {
			if res.Rollbacks.Rate < 0.9 {
				t.Errorf("%s: rolled back %v of runs, want at least 90%%", sc, res.Rollbacks.Rate)
			}
		}
		if sc.AA() && res.Rollbacks.Count > 0 && !math.IsInf(res.Time.Median, 1) && res.Rollbacks.Rate < 0.5 {
			t.Errorf("%s: median time to a false rollback %v with only %v false rollbacks", sc, res.Time.Median, res.Rollbacks.Rate)
		}
	}

	again, err := Run(context.Background(), Options{Seed: 1, Quick: true, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	var second bytes.Buffer
	if err := again.WriteText(&second); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Errorf("same seed, different reports:\n%s\n---\n%s", first.String(), second.String())
	}
}

func TestSeedsDiffer(t *testing.T) {
	a, err := Run(context.Background(), Options{Seed: 1, Quick: true, Runs: 3})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(context.Background(), Options{Seed: 2, Quick: true, Runs: 3})
	if err != nil {
		t.Fatal(err)
	}
	var ta, tb bytes.Buffer
	_ = a.WriteText(&ta)
	_ = b.WriteText(&tb)
	if ta.String() == tb.String() {
		t.Error("seeds 1 and 2 gave the same report")
	}
}

func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Options{Seed: 1, Quick: true}); !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a canceled context: %v, want context.Canceled", err)
	}
}

func TestCheck(t *testing.T) {
	aa := func(metric string, false_, naive int) Result {
		return Result{
			Scenario:  Scenario{Metric: metric, Rate: 2, Control: 0.02, Treatment: 0.02, Runs: 100},
			Rollbacks: wilson(false_, 100), Naive: wilson(naive, 100),
		}
	}
	ab := Result{Scenario: Scenario{Metric: "reject_rate", Control: 0.02, Treatment: 0.03, Runs: 100}, Rollbacks: wilson(100, 100), Naive: wilson(100, 100)}
	for _, tc := range []struct {
		name    string
		results []Result
		want    string // in the error; "" for none
	}{
		{"pass", []Result{aa("reject_rate", 4, 45), aa("reject_rate", 10, 31), ab}, ""},
		{"too many false rollbacks", []Result{aa("reject_rate", 11, 45), ab}, "false rollback rate 11.0% exceeds 10.0%"},
		{"retention counts too", []Result{aa("reject_rate", 3, 45), aa("d1_retention", 12, 0)}, "d1_retention"},
		{"naive too low", []Result{aa("reject_rate", 3, 20), aa("reject_rate", 3, 30)}, "naive every-tick z-test rolled back only 25.0%"},
		{"A/B runs are not false rollbacks", []Result{aa("reject_rate", 3, 40), ab}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Report{Results: tc.results}.Check()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Check: %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Check: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestWilson(t *testing.T) {
	for _, tc := range []struct {
		k, n      int
		low, high float64
	}{
		{0, 10, 0, 0.2775},
		{5, 10, 0.2366, 0.7634},
		{10, 10, 0.7225, 1},
		{37, 1000, 0.0270, 0.0506},
	} {
		p := wilson(tc.k, tc.n)
		if math.Abs(p.Low-tc.low) > 1e-4 || math.Abs(p.High-tc.high) > 1e-4 {
			t.Errorf("wilson(%d, %d) = [%.4f, %.4f], want [%.4f, %.4f]", tc.k, tc.n, p.Low, p.High, tc.low, tc.high)
		}
	}
}

// TestPoisson checks the sampler's mean and variance on both of its
// branches against the Poisson law (mean = variance = mu), within five
// standard errors for a fixed seed.
func TestPoisson(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, mu := range []float64{0.04, 0.5, 3, 9.9, 10, 40, 1000, 1e5} {
		const n = 40000
		var sum, sq float64
		for range n {
			k := float64(poisson(r, mu))
			if k < 0 {
				t.Fatalf("poisson(%g) = %g", mu, k)
			}
			sum += k
			sq += k * k
		}
		mean := sum / n
		variance := sq/n - mean*mean
		if se := math.Sqrt(mu / n); math.Abs(mean-mu) > 5*se {
			t.Errorf("poisson(%g): mean %g, want %g ± %g", mu, mean, mu, 5*se)
		}
		// The variance of the sample variance is about (μ + 2μ²)/n.
		if se := math.Sqrt((mu + 2*mu*mu) / n); math.Abs(variance-mu) > 5*se {
			t.Errorf("poisson(%g): variance %g, want %g ± %g", mu, variance, mu, 5*se)
		}
	}
	if got := poisson(r, 0); got != 0 {
		t.Errorf("poisson(0) = %d", got)
	}
}

func TestQuantiles(t *testing.T) {
	inf := math.Inf(1)
	q := quantiles([]float64{5, 1, 3, 2, 4, inf, inf, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18})
	if q.Median != 10 || !math.IsInf(q.P95, 1) {
		t.Errorf("quantiles = %+v, want median 10 and p95 +Inf", q)
	}
}
