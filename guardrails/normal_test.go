package guardrails

import (
	"math"
	"testing"
)

// Reference values of ln Φ(x) computed with mpmath at 50 digits
// (mp.log(mp.ncdf(x))).
var lnPhiVectors = []struct{ x, want float64 }{
	{3, -0.00135080996474819379884111},
	{0.5, -0.3689464152886563930656156},
	{0, -0.6931471805599453094172321},
	{-1, -1.841021645009263505770783},
	{-3, -6.607726221510349543276077},
	{-5, -15.0649983939887257360837},
	{-8, -35.01343715991454989550413},
	{-9.99, -53.1303537456060153369806},
	{-10, -53.23128515051247057834703},
	{-10.01, -53.33231561088072837145271},
	{-12, -75.41067300156879593883968},
	{-20, -203.9171553710972639368045},
	{-38, -726.5572160188201300965035},
	{-40, -804.6084420137537881666068},
	{-100, -5005.524208694205088626302},
	{-1e5, -5000000012.431863998274901},
}

func TestLnPhi(t *testing.T) {
	for _, tc := range lnPhiVectors {
		got := lnPhi(tc.x)
		if rel := math.Abs(got-tc.want) / math.Abs(tc.want); rel > 2e-15 {
			t.Errorf("lnPhi(%g) = %.17g, want %.17g (relative error %.2g)", tc.x, got, tc.want, rel)
		}
	}
}

// TestLnPhiBranchesAgree checks that the asymptotic series and erfc agree
// where both are accurate, so the switch between them leaves no step.
func TestLnPhiBranchesAgree(t *testing.T) {
	for x := -10.0; x >= -30; x -= 0.25 {
		viaErfc := math.Log(0.5 * math.Erfc(-x/math.Sqrt2))
		if rel := math.Abs(lnPhi(x)-viaErfc) / math.Abs(viaErfc); rel > 1e-13 {
			t.Errorf("x = %g: series %.17g, erfc %.17g", x, lnPhi(x), viaErfc)
		}
	}
	for x := -40.0; x < 40; x += 0.125 {
		if lnPhi(x) > lnPhi(x+0.125) || (x < 8 && lnPhi(x) == lnPhi(x+0.125)) {
			t.Fatalf("lnPhi is not increasing at %g: %g ≥ %g", x, lnPhi(x), lnPhi(x+0.125))
		}
	}
	if got := lnPhi(math.Inf(-1)); !math.IsInf(got, -1) {
		t.Errorf("lnPhi(-Inf) = %g, want -Inf", got)
	}
	if got := lnPhi(math.Inf(1)); got != 0 {
		t.Errorf("lnPhi(+Inf) = %g, want 0", got)
	}
	if got := lnPhi(-1e300); !math.IsInf(got, -1) {
		t.Errorf("lnPhi(-1e300) = %g, want -Inf", got)
	}
}
