package sim

import (
	"context"
	"math/rand/v2"
	"testing"
)

// BenchmarkRejectRun measures one simulated A/A day at 20 actions/s per
// arm: 8640 ticks of the production job.
func BenchmarkRejectRun(b *testing.B) {
	sc := Scenario{Metric: "reject_rate", Rate: 20, Control: BaseRejectRate, Treatment: BaseRejectRate, Horizon: day, Runs: 1}
	for i := 0; b.Loop(); i++ {
		if _, err := runReject(context.Background(), sc, rand.New(rand.NewPCG(1, uint64(i)))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(day/Tick), "ns/tick")
}
