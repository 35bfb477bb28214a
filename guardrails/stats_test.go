package guardrails

import (
	"math"
	"testing"
)

// mixtureVectors are ln Λ of the design notes' formula evaluated by hand
// with mpmath at 40 digits from the counts (see the comments for D and V).
var mixtureVectors = []struct {
	name               string
	xT, nT, xC, nC     int64
	margin, phi, tau   float64
	retention          bool
	wantD, wantV, want float64
}{
	// pT = 3%, pC = 2%: D = 0.01, V = unpooled 2.4375e-5.
	{"harm, small sample", 60, 2000, 40, 2000, 0, 1, 0.005, false, 0.01, 0.000024375, 1.301131431066777939},
	// Margin 10%, φ = 1.5, unequal arms.
	{"margin and design effect", 300, 10000, 200, 9000, 0.1, 1.5, 0.005, false, 0.0055555555555555554322, 9.0108494921514312618e-6, 1.2299628572769612726},
	// A treatment far better than control: ln Φ of about −11.5, where
	// log(erfc) would still work but the asymptotic series is used, and
	// the sum is a difference of two terms near 66.
	{"strongly better", 10, 5000, 200, 5000, 0, 1, 0.005, false, -0.038, 8.2236e-6, -3.3732375857545439077},
	{"harm, large sample", 1200, 50000, 1000, 50000, 0, 1, 0.005, false, 0.004, 8.6064e-7, 7.9777930636272544103},
	// D1 retention 36% vs 40%: D = pC − pT = 0.04, k = 1, φ = 1.
	{"retention", 360, 1000, 400, 1000, 0, 1, 0.02, true, 0.04, 0.0004712, 1.0534308893839429048},
}

func TestMixtureLogE(t *testing.T) {
	for _, tc := range mixtureVectors {
		t.Run(tc.name, func(t *testing.T) {
			r := Rule{Metric: RejectRate(), Comparison: RelativeToControl(tc.margin), DesignEffect: tc.phi, Tau: tc.tau}
			c := Counters{}
			c.Treatment.Actions, c.Treatment.Rejects = tc.nT, tc.xT
			c.Control.Actions, c.Control.Rejects = tc.nC, tc.xC
			if tc.retention {
				r.Metric, r.DesignEffect = D1Retention(), 0
				c.Treatment.Retention = Retention{Closed: tc.nT, Retained: tc.xT}
				c.Control.Retention = Retention{Closed: tc.nC, Retained: tc.xC}
			}
			s, problem := sampleOf(r, c)
			if problem != "" {
				t.Fatal(problem)
			}
			v := decideRelative(Verdict{Evidence: Evidence{DesignEffect: r.WithDefaults().DesignEffect, Threshold: math.Log(20)}}, r.WithDefaults(), s, true)
			ev := v.Evidence
			if !near(ev.Effect, tc.wantD, 1e-12) || !near(ev.Variance, tc.wantV, 1e-12) {
				t.Errorf("D = %.17g, V = %.17g; want %.17g, %.17g", ev.Effect, ev.Variance, tc.wantD, tc.wantV)
			}
			if !near(ev.LogE, tc.want, 1e-11) {
				t.Errorf("ln Λ = %.17g, want %.17g", ev.LogE, tc.want)
			}
			if got := mixtureLogE(tc.wantD, tc.wantV, tc.tau); !near(got, tc.want, 1e-11) {
				t.Errorf("mixtureLogE = %.17g, want %.17g", got, tc.want)
			}
		})
	}
}

func near(got, want, rel float64) bool {
	return math.Abs(got-want) <= rel*math.Max(math.Abs(want), 1e-300)
}

func TestMixtureLogEEdges(t *testing.T) {
	if got := mixtureLogE(0, 0, 0.005); got != 0 {
		t.Errorf("no information: ln Λ = %g, want 0", got)
	}
	// At D = 0, Λ = 2·√(V/(V+τ²))·Φ(0) = √(V/(V+τ²)) < 1.
	if got, want := mixtureLogE(0, 1e-5, 0.005), 0.5*math.Log(1e-5/(1e-5+2.5e-5)); !near(got, want, 1e-14) {
		t.Errorf("D = 0: ln Λ = %g, want %g", got, want)
	}
	// Overwhelming evidence of no harm stays finite.
	if got := mixtureLogE(-0.5, 1e-9, 0.005); math.IsInf(got, 0) || math.IsNaN(got) || got > -10 {
		t.Errorf("D ≪ 0: ln Λ = %g, want a finite, very negative number", got)
	}
	// ln Λ increases with D, which the confidence sequence relies on.
	prev := math.Inf(-1)
	for d := -0.05; d < 0.05; d += 0.0005 {
		got := mixtureLogE(d, 1e-5, 0.005)
		if got <= prev {
			t.Fatalf("ln Λ is not increasing at D = %g", d)
		}
		prev = got
	}
}

func TestMixtureRadius(t *testing.T) {
	for _, v := range []float64{1e-9, 1e-7, 1e-5, 1e-3, 0.1} {
		for _, tau := range []float64{0.001, 0.005, 0.02, 0.3} {
			for _, alpha := range []float64{0.05, 0.001} {
				thr := -math.Log(alpha)
				z := mixtureRadius(v, tau, thr)
				if got := mixtureLogE(z, v, tau); math.Abs(got-thr) > 1e-9 {
					t.Errorf("V %g, τ %g, α %g: ln Λ(z*) = %.12g, want %.12g", v, tau, alpha, got, thr)
				}
			}
		}
	}
	if z := mixtureRadius(0, 0.005, 3); !math.IsInf(z, 1) {
		t.Errorf("V = 0: radius %g, want +Inf", z)
	}
}

func TestCeilingLogE(t *testing.T) {
	for _, tc := range []struct {
		x, n int64
		c    float64
		want float64 // mpmath, 40 digits
	}{
		{12, 300, 0.02, 1.5876001425362340437},
		{0, 1000, 0.02, -2.9809277768801930961},
		{30, 100, 0.3, -1.3591448149826443891}, // 0.3·4 ≥ 1: the grid point 4 is skipped
	} {
		if got := ceilingLogE(tc.x, tc.n, tc.c); !near(got, tc.want, 1e-12) {
			t.Errorf("ceilingLogE(%d, %d, %g) = %.17g, want %.17g", tc.x, tc.n, tc.c, got, tc.want)
		}
	}
	if got := ceilingLogE(0, 0, 0.02); got != 0 {
		t.Errorf("no trials: ln E = %g, want 0", got)
	}
}

func TestCeilingBounds(t *testing.T) {
	thr := math.Log(20)
	for _, tc := range []struct{ x, n int64 }{{12, 300}, {0, 1000}, {50, 1000}, {1000, 1000}, {3, 10}} {
		lo, hi := ceilingBounds(tc.x, tc.n, thr)
		p := float64(tc.x) / float64(tc.n)
		if !(lo <= p && p <= hi) {
			t.Errorf("%d of %d: bounds [%g, %g] miss the estimate %g", tc.x, tc.n, lo, hi, p)
		}
		// The lower bound is where the ceiling test would just trip (or
		// the top of the grid's reach, 1/1.05).
		if lo > 0 && lo < 1/1.05-1e-9 && math.Abs(ceilingLogE(tc.x, tc.n, lo)-thr) > 1e-6 {
			t.Errorf("%d of %d: ln E at the lower bound %g is %g, want %g", tc.x, tc.n, lo, ceilingLogE(tc.x, tc.n, lo), thr)
		}
		if hi < 1 && math.Abs(gridLogE(tc.x, tc.n, hi, true)-thr) > 1e-6 {
			t.Errorf("%d of %d: mirrored ln E at the upper bound %g is %g, want %g", tc.x, tc.n, hi, gridLogE(tc.x, tc.n, hi, true), thr)
		}
	}
	if lo, hi := ceilingBounds(0, 0, thr); lo != 0 || hi != 1 {
		t.Errorf("no trials: [%g, %g], want [0, 1]", lo, hi)
	}
}

func TestSRMLogE(t *testing.T) {
	// Exactly the expected split carries evidence against a mismatch.
	if got := srmLogE(5000, 5000, 0.5); got >= 0 {
		t.Errorf("5000/5000 at 50%%: ln BF = %g, want < 0", got)
	}
	// 52% treatment of 20000 is a 5.7σ mismatch.
	if got := srmLogE(10400, 9600, 0.5); got < math.Log(1/SRMAlpha) {
		t.Errorf("10400/9600 at 50%%: ln BF = %g, want ≥ %g", got, math.Log(1/SRMAlpha))
	}
	// The same counts match a 52/48 split.
	if got := srmLogE(10400, 9600, 0.52); got >= 0 {
		t.Errorf("10400/9600 at 52%%: ln BF = %g, want < 0", got)
	}
	// Symmetric: too few is as suspect as too many.
	if a, b := srmLogE(10400, 9600, 0.5), srmLogE(9600, 10400, 0.5); !near(a, b, 1e-9) {
		t.Errorf("asymmetric: %g and %g", a, b)
	}
	if got := srmLogE(0, 0, 0.3); got != 0 {
		t.Errorf("no exposures: ln BF = %g, want 0", got)
	}
}

func TestArmDesignEffect(t *testing.T) {
	// Four sessions of 10 actions with 0, 0, 5, 5 rejects: p = 0.25, the
	// residuals are ±2.5, Σ² = 25, Var = 4/3·25/40² against the binomial
	// 0.25·0.75/40, so φ = 4/3·25/7.5 = 40/9.
	s := SessionSums{Sessions: 4, N: 40, X: 10, NN: 400, XX: 50, NX: 100}
	if got, ok := armDesignEffect(s); !ok || !near(got, 40.0/9, 1e-12) {
		t.Errorf("clustered: φ = %g (%v), want %g", got, ok, 40.0/9)
	}
	// One action per session: the binomial itself, up to s/(s−1).
	s = SessionSums{Sessions: 100, N: 100, X: 10, NN: 100, XX: 10, NX: 10}
	if got, ok := armDesignEffect(s); !ok || !near(got, 100.0/99, 1e-12) {
		t.Errorf("independent: φ = %g (%v), want %g", got, ok, 100.0/99)
	}
	for _, s := range []SessionSums{{Sessions: 1, N: 10, X: 1}, {Sessions: 5, N: 50}, {Sessions: 5, N: 50, X: 50}} {
		if _, ok := armDesignEffect(s); ok {
			t.Errorf("%+v: an estimate, want none", s)
		}
	}
}
