package sim

import (
	"math"
	"math/rand/v2"
)

// poisson draws from the Poisson distribution with mean mu: by
// multiplication of uniforms below a mean of 10, and above it by the
// transformed rejection method with squeeze of Hörmann (1993, "PTRS"),
// which is exact and takes O(1) time; the same split and constants as
// NumPy's generator.
func poisson(r *rand.Rand, mu float64) int64 {
	switch {
	case !(mu > 0):
		return 0
	case mu < 10:
		limit := math.Exp(-mu)
		var k int64
		prod := r.Float64()
		for prod > limit {
			k++
			prod *= r.Float64()
		}
		return k
	}
	slam := math.Sqrt(mu)
	loglam := math.Log(mu)
	b := 0.931 + 2.53*slam
	a := -0.059 + 0.02483*b
	invalpha := 1.1239 + 1.1328/(b-3.4)
	vr := 0.9277 - 3.6224/(b-2)
	for {
		u := r.Float64() - 0.5
		v := r.Float64()
		us := 0.5 - math.Abs(u)
		k := math.Floor((2*a/us+b)*u + mu + 0.43)
		if us >= 0.07 && v <= vr {
			return int64(k)
		}
		if k < 0 || (us < 0.013 && v > us) {
			continue
		}
		lg, _ := math.Lgamma(k + 1)
		if math.Log(v)+math.Log(invalpha)-math.Log(a/(us*us)+b) <= -mu+k*loglam-lg {
			return int64(k)
		}
	}
}

// binomial draws from the binomial distribution with n trials of
// probability p, one Bernoulli trial at a time: n is small wherever the
// simulation calls it.
func binomial(r *rand.Rand, n int64, p float64) int64 {
	var k int64
	for range n {
		if r.Float64() < p {
			k++
		}
	}
	return k
}
