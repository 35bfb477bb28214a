package guardrails

import "math"

const (
	lnSqrt2Pi = 0.91893853320467274178032973640561764 // ½ ln(2π)

	// asymptoticBelow is where lnPhi switches from erfc to the asymptotic
	// series: at x ≤ −10 the series reaches double precision before its
	// terms start to grow, and above it math.Erfc is still far from
	// underflow (it underflows near x = −38.5).
	asymptoticBelow = -10
)

// lnPhi returns ln Φ(x), the logarithm of the standard normal distribution
// function, accurate to a few ulps for every x: log1p of the upper tail
// above 0, the log of erfc down to −10, and below that the asymptotic
// expansion
//
//	Φ(x) = φ(x)/|x| · (1 − 1/x² + 1·3/x⁴ − 1·3·5/x⁶ + …)
//
// so that the result is exact where Φ(x) itself underflows (x < −38.5) and
// the mixture test can handle arbitrarily strong evidence of no harm.
func lnPhi(x float64) float64 {
	switch {
	case math.IsNaN(x):
		return math.NaN()
	case x > 0:
		return math.Log1p(-0.5 * math.Erfc(x/math.Sqrt2))
	case x > asymptoticBelow:
		return math.Log(0.5 * math.Erfc(-x/math.Sqrt2))
	case math.IsInf(x, -1):
		return math.Inf(-1)
	}
	x2 := x * x
	sum, term := 1.0, 1.0
	for k := 1; k < 200; k++ {
		next := -term * float64(2*k-1) / x2
		if math.Abs(next) >= math.Abs(term) { // the series has started to diverge
			break
		}
		term = next
		sum += term
		if math.Abs(term) < 1e-17 {
			break
		}
	}
	return -0.5*x2 - math.Log(-x) - lnSqrt2Pi + math.Log(sum)
}

// lnNormalDensity returns ln φ(x) of the standard normal density.
func lnNormalDensity(x float64) float64 { return -0.5*x*x - lnSqrt2Pi }
