package snapshot_test

import (
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/snapshot/snapshottest"
)

// Benchmarks of the snapshot hot paths:
//
//	go test -run '^$' -bench . -benchmem ./snapshot/
//
// Build is paid once per publish (every change, every re-sign); Open once
// per poll that brings a new version, on every game server.

func BenchmarkBuild(b *testing.B) {
	signers := []snapshot.Signer{snapshottest.Signer("bench")}
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("flags=%d", n), func(b *testing.B) {
			set := snapshottest.GenerateSet(n)
			var built *snapshot.Built
			b.ReportAllocs()
			for b.Loop() {
				var err error
				built, err = snapshot.Build(set, 1, t0, time.Hour, signers)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(built.Payload())))
			b.ReportMetric(float64(len(built.Payload())), "payload-bytes")
			b.ReportMetric(float64(len(built.Envelope())), "envelope-bytes")
			b.ReportMetric(float64(len(built.Gzip())), "gzip-bytes")
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	signer := snapshottest.Signer("bench")
	set := snapshottest.GenerateSet(1000)
	built, err := snapshot.Build(set, 1, t0, time.Hour, []snapshot.Signer{signer})
	if err != nil {
		b.Fatal(err)
	}
	o := snapshot.OpenOptions{
		Trusted:     []ed25519.PublicKey{signer.Public()},
		Environment: snapshottest.Environment,
		Now:         t0,
	}
	b.Run("flags=1000", func(b *testing.B) {
		b.SetBytes(int64(len(built.Envelope())))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := snapshot.Open(built.Envelope(), o); err != nil {
				b.Fatal(err)
			}
		}
	})
}
