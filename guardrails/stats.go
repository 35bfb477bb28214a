package guardrails

import "math"

// mixtureLogE returns ln Λ of the one-sided normal mixture sequential
// probability ratio test of "no harm beyond the margin" (effect ≤ 0)
// against "harm" (effect > 0), for an estimate d of the effect with
// variance v and a half-normal mixing distribution of scale tau on the
// harm:
//
//	ln Λ = ln 2 + ½ ln(V/(V+τ²)) + τ²D²/(2V(V+τ²)) + ln Φ(Dτ/√(V(V+τ²)))
//
// which is ln ∫₀^∞ exp(θD/V − θ²/(2V)) · 2/(τ√(2π)) exp(−θ²/(2τ²)) dθ, the
// likelihood ratio of the normal approximation mixed over harms θ > 0.
// Under no harm it is a nonnegative (super)martingale in the information
// 1/V, so by Ville's inequality it ever reaches 1/α with probability at
// most α, however often it is looked at.
//
// With v ≤ 0 (no events in either arm, or nothing but events) the estimate
// carries no information under the normal approximation and ln Λ is 0.
func mixtureLogE(d, v, tau float64) float64 {
	if !(v > 0) {
		return 0
	}
	t2 := tau * tau
	s := v + t2
	return math.Ln2 + 0.5*math.Log(v/s) + t2*d*d/(2*v*s) + lnPhi(d*tau/math.Sqrt(v*s))
}

// mixtureRadius returns z* > 0 with mixtureLogE(z*, v, tau) = thr (for
// thr > 0). Because mixtureLogE increases with d, the test rejects "effect
// ≤ δ₀" exactly when d − δ₀ ≥ z*, so [d − z*, d + z*] is the confidence
// sequence obtained by inverting the test: each bound alone holds at every
// time with probability at least 1 − α (α = e^−thr), the pair with 1 − 2α.
// The lower bound exceeds 0 exactly when the guardrail trips. It returns
// +Inf when v ≤ 0.
func mixtureRadius(v, tau, thr float64) float64 {
	if !(v > 0) {
		return math.Inf(1)
	}
	t2 := tau * tau
	s := v + t2
	b := tau / math.Sqrt(v*s) // ln Φ's argument per unit of d
	half := 0.5 * math.Log(v/s)
	// The two-sided normal mixture's radius solves half + b²z²/2 = thr;
	// there ln 2 + ln Φ(bz) ≥ 0, so it is an upper bracket.
	hi := math.Sqrt(2*(thr-half)) / b
	lo := 0.0
	z := hi
	for range 100 {
		f := mixtureLogE(z, v, tau) - thr
		if math.Abs(f) < 1e-12 {
			return z
		}
		if f > 0 {
			hi = z
		} else {
			lo = z
		}
		// Newton's step, d/dz = b²z + b·φ(bz)/Φ(bz), kept inside the
		// bracket; bisection where it would leave it.
		df := b*b*z + b*math.Exp(lnNormalDensity(b*z)-lnPhi(b*z))
		next := z - f/df
		if !(next > lo && next < hi) {
			next = 0.5 * (lo + hi)
		}
		if hi-lo <= 1e-15*hi {
			return hi
		}
		z = next
	}
	return hi
}

// ceilingGrid holds the alternatives of the absolute-ceiling e-value, as
// multiples of the ceiling.
var ceilingGrid = [...]float64{1.05, 1.1, 1.2, 1.35, 1.5, 1.75, 2, 2.5, 3, 4}

// ceilingLogE returns the log of the e-value against "rate ≤ c" from x
// events in n trials: the mean over the grid g of the likelihood ratios
// (cg/c)^x ((1−cg)/(1−c))^(n−x) of the alternatives cg, skipping those
// with cg ≥ 1, computed in log space with log-sum-exp. Each ratio is a
// martingale under rate = c and a supermartingale under rate < c, so their
// mean is an e-process: exact, with no normal approximation and no minimum
// sample. It is 0 when n = 0 and −Inf when every cg ≥ 1.
func ceilingLogE(x, n int64, c float64) float64 {
	return gridLogE(x, n, c, false)
}

// gridLogE is ceilingLogE, or with down the mirrored e-value against
// "rate ≥ c" with the alternatives c/g.
func gridLogE(x, n int64, c float64, down bool) float64 {
	var terms [len(ceilingGrid)]float64
	k := 0
	fx, fy := float64(x), float64(n-x)
	for _, g := range ceilingGrid {
		alt := c * g
		if down {
			alt = c / g
		}
		if alt >= 1 {
			continue
		}
		t := fx * math.Log(alt/c)
		if fy > 0 {
			t += fy * (math.Log1p(-alt) - math.Log1p(-c))
		}
		terms[k] = t
		k++
	}
	if k == 0 {
		return math.Inf(-1)
	}
	return logSumExp(terms[:k]) - math.Log(float64(k))
}

// ceilingBounds returns the confidence sequence [lo, hi] of the rate from x
// events in n trials at threshold thr = ln(1/α): the rates not rejected by
// the grid e-values, upward for lo (the ceiling test at every c) and
// downward for hi. The ceiling trips exactly when lo reaches the ceiling.
func ceilingBounds(x, n int64, thr float64) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	p := float64(x) / float64(n)
	// ln E(c) falls as c rises: find where it crosses thr below p.
	lo = 0
	if gridLogE(x, n, 1e-300, false) >= thr {
		a, b := 1e-300, p
		for range 200 {
			m := 0.5 * (a + b)
			if gridLogE(x, n, m, false) >= thr {
				a = m
			} else {
				b = m
			}
			if b-a <= 1e-12*b {
				break
			}
		}
		lo = a
	}
	// The mirrored e-value rises with c: find where it crosses thr above p.
	hi = 1
	top := math.Nextafter(1, 0)
	if gridLogE(x, n, top, true) >= thr {
		a, b := p, top
		for range 200 {
			m := 0.5 * (a + b)
			if gridLogE(x, n, m, true) >= thr {
				b = m
			} else {
				a = m
			}
			if b-a <= 1e-12*b {
				break
			}
		}
		hi = b
	}
	return lo, hi
}

// logSumExp returns ln Σ exp(t) without overflow.
func logSumExp(t []float64) float64 {
	m := math.Inf(-1)
	for _, v := range t {
		m = max(m, v)
	}
	if math.IsInf(m, 0) {
		return m
	}
	var s float64
	for _, v := range t {
		s += math.Exp(v - m)
	}
	return m + math.Log(s)
}

// srmLogE returns the log of the sequential sample-ratio-mismatch Bayes
// factor for xT treatment and xC control exposures against the expected
// treatment share: the Beta-binomial mixture with prior Beta(κ·share,
// κ·(1−share)) over the share, κ = SRMConcentration, divided by the
// binomial likelihood under the expected share (the two-arm case of the
// Dirichlet-multinomial test of Lindon and Malek, 2022). A Bayes factor of
// a simple null is a martingale under it, so the test is always valid. It
// is two-sided: an arm with too many exposures is as suspect as one with
// too few.
func srmLogE(xT, xC int64, share float64) float64 {
	a, b := SRMConcentration*share, SRMConcentration*(1-share)
	fT, fC := float64(xT), float64(xC)
	return lnBeta(fT+a, fC+b) - lnBeta(a, b) - fT*math.Log(share) - fC*math.Log1p(-share)
}

func lnBeta(a, b float64) float64 {
	la, _ := math.Lgamma(a)
	lb, _ := math.Lgamma(b)
	lab, _ := math.Lgamma(a + b)
	return la + lb - lab
}

// armDesignEffect returns the design effect of one arm's rate from its
// per-session sums: the delta-method (cluster-robust) variance of the ratio
// estimator p = Σx/Σn,
//
//	Var(p) ≈ s/(s−1) · Σ(xᵢ − p·nᵢ)² / (Σn)²,  Σ(xᵢ − p·nᵢ)² = Σx² − 2pΣnx + p²Σn²
//
// divided by the binomial variance p(1−p)/Σn. It returns ok = false when
// the sums cannot support an estimate (fewer than two sessions, no
// actions, p of 0 or 1).
func armDesignEffect(s SessionSums) (phi float64, ok bool) {
	if s.Sessions < 2 || s.N <= 0 || s.X < 0 || s.X > s.N {
		return 0, false
	}
	n, x := float64(s.N), float64(s.X)
	p := x / n
	if p <= 0 || p >= 1 {
		return 0, false
	}
	rss := s.XX - 2*p*s.NX + p*p*s.NN
	if rss < 0 { // rounding, or inconsistent sums
		rss = 0
	}
	m := float64(s.Sessions)
	return m / (m - 1) * rss / (n * p * (1 - p)), true
}
