package sdk_test

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/sdk"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/snapshot/snapshottest"
)

// heapAlloc returns the live heap after a full collection.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemoryPer1000Flags measures the memory a game server holds for
// 1,000 flags (snapshottest.GenerateSet: a third of them 20-field event
// configs): the compiled set alone, and a whole client holding the
// verified snapshot (compiled set, payload bytes kept for the next
// version check, its own bookkeeping). The figure is the live-heap
// difference, with collections before and after.
//
//	go test -run '^$' -bench MemoryPer1000Flags ./sdk/
func BenchmarkMemoryPer1000Flags(b *testing.B) {
	set := snapshottest.GenerateSet(1000)
	b.Run("compiled", func(b *testing.B) {
		var total, n uint64
		for b.Loop() {
			before := heapAlloc()
			c, err := flags.Compile(set)
			if err != nil {
				b.Fatal(err)
			}
			after := heapAlloc()
			runtime.KeepAlive(c)
			total += after - min(before, after)
			n++
		}
		b.ReportMetric(float64(total)/float64(n), "bytes/1000-flags")
	})
	b.Run("client", func(b *testing.B) {
		signer := snapshottest.Signer("bench")
		built, err := snapshot.Build(set, 1, time.Now(), time.Hour, []snapshot.Signer{signer})
		if err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(built.Envelope()) }))
		defer srv.Close()
		cfg := sdk.Config{
			Environment: snapshottest.Environment, BaseURL: srv.URL, ServerKey: "ss_bench",
			TrustedKeys: []ed25519.PublicKey{signer.Public()}, Logger: slog.New(slog.DiscardHandler),
			// A transport of its own, closed before each measurement, so
			// that connection buffers are not counted.
			HTTPClient: &http.Client{Transport: &http.Transport{}},
		}
		var total, n uint64
		for b.Loop() {
			c, err := sdk.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			before := heapAlloc()
			if err := c.Poll(context.Background()); err != nil {
				b.Fatal(err)
			}
			cfg.HTTPClient.CloseIdleConnections()
			after := heapAlloc()
			runtime.KeepAlive(c)
			total += after - min(before, after)
			n++
		}
		b.ReportMetric(float64(total)/float64(n), "bytes/1000-flags")
		b.ReportMetric(float64(len(built.Envelope())), "envelope-bytes")
	})
}
