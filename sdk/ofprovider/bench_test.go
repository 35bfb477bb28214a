package ofprovider_test

import (
	"context"
	"testing"
	"time"

	"github.com/open-feature/go-sdk/openfeature"
	"github.com/open-feature/go-sdk/openfeature/isolated"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/sdk"
	"github.com/solsticehq/solstice/sdk/ofprovider"
)

var (
	sinkResult flags.Result
	sinkBool   bool
	sinkDetail openfeature.BoolResolutionDetail
)

// BenchmarkBooleanSplit evaluates a boolean flag with a 50/50 split on the
// targeting key, side by side: the evaluator alone (flags.Evaluate on the
// client's compiled set), the provider's method as the OpenFeature SDK
// calls it, and a whole OpenFeature client evaluation (hooks, context
// merging, flattening, details), unpinned and pinned.
//
//	go test -run '^$' -bench BooleanSplit -benchmem ./sdk/ofprovider/
func BenchmarkBooleanSplit(b *testing.B) {
	s := newSnapshotServer(b, gameSet())
	c := newClient(b, s.config())
	if err := c.Poll(context.Background()); err != nil {
		b.Fatal(err)
	}
	p := ofprovider.New(c)
	api := isolated.NewAPI()
	b.Cleanup(func() { _ = api.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := api.SetProviderAndWait(ctx, p); err != nil {
		b.Fatal(err)
	}
	of := api.NewClient()
	compiled := c.Flags()
	const key, player = "bool-split", "player-42"
	fctx := flags.Context{flags.TargetingKey: player}
	flat := openfeature.FlattenedContext{openfeature.TargetingKey: player}
	evalCtx := openfeature.NewEvaluationContext(player, nil)
	if r := flags.Evaluate(compiled, key, fctx); r.Reason != flags.ReasonSplit {
		b.Fatalf("not a split: %+v", r)
	}

	b.Run("flags.Evaluate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkResult = flags.Evaluate(compiled, key, fctx)
		}
	})
	b.Run("provider", func(b *testing.B) {
		b.ReportAllocs()
		bg := context.Background()
		for b.Loop() {
			sinkDetail = p.BooleanEvaluation(bg, key, false, flat)
		}
	})
	b.Run("openfeature-client", func(b *testing.B) {
		b.ReportAllocs()
		bg := context.Background()
		for b.Loop() {
			sinkBool, _ = of.BooleanValue(bg, key, false, evalCtx)
		}
	})
	b.Run("openfeature-client-pinned", func(b *testing.B) {
		b.ReportAllocs()
		pinned := sdk.WithPinned(context.Background(), c.Pin())
		for b.Loop() {
			sinkBool, _ = of.BooleanValue(pinned, key, false, evalCtx)
		}
	})
}

// TestProviderEvaluationDoesNotAllocate pins the benchmark's zero: the
// provider adds no allocation to the evaluator's none, pinned or not.
func TestProviderEvaluationDoesNotAllocate(t *testing.T) {
	s := newSnapshotServer(t, gameSet())
	c := newClient(t, s.config())
	if err := c.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	p := ofprovider.New(c)
	flat := openfeature.FlattenedContext{openfeature.TargetingKey: "player-42", "country": "JP"}
	pinned := sdk.WithPinned(context.Background(), c.Pin())
	tests := []struct {
		name string
		f    func()
	}{
		{"boolean split", func() { sinkDetail = p.BooleanEvaluation(context.Background(), "bool-split", false, flat) }},
		{"boolean split, pinned", func() { sinkDetail = p.BooleanEvaluation(pinned, "bool-split", false, flat) }},
		{"string rule", func() { _ = p.StringEvaluation(context.Background(), "color", "", flat) }},
		{"int", func() { _ = p.IntEvaluation(context.Background(), "max-players", 0, flat) }},
	}
	for _, tc := range tests {
		if n := testing.AllocsPerRun(100, tc.f); n != 0 {
			t.Errorf("%s: %v allocations per evaluation, want 0", tc.name, n)
		}
	}
}
