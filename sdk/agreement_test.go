package sdk_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/open-feature/go-sdk/openfeature"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/sdk/ofprovider"
)

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func cond(attr string, op flags.Operator, value string) flags.Condition {
	return flags.Condition{Attribute: attr, Op: op, Value: raw(value)}
}

// createGameFlags gives production rules, segments and splits of every
// kind: targeting matches, segment membership (listed and by condition),
// splits by the targeting key and by other attributes, a salt, a disabled
// flag and a static one.
func createGameFlags(cp *controlPlane) {
	var whales []string
	for i := range 100 {
		whales = append(whales, fmt.Sprintf("p-%d", i*3))
	}
	cp.putSegment("production", flags.Segment{Key: "whales", Members: whales})
	cp.putSegment("production", flags.Segment{Key: "eu-pc", Conditions: []flags.Condition{
		cond("country", flags.OpIn, `["DE","FR"]`), cond("platform", flags.OpEquals, `"pc"`)}})

	on, off := flags.Weight{Variant: "on"}, flags.Weight{Variant: "off"}
	weights := func(ws ...any) []flags.Weight {
		var out []flags.Weight
		for i := 0; i < len(ws); i += 2 {
			w := ws[i].(flags.Weight)
			w.Weight = ws[i+1].(int)
			out = append(out, w)
		}
		return out
	}
	boolean := flags.DefaultBooleanVariants()
	cp.createFlag("production", flags.NewFlag{Key: "double-xp", Type: flags.TypeBoolean}, flags.Config{
		Enabled: true, Variants: boolean, DefaultVariant: "off", OffVariant: "off",
		Rules: []flags.Rule{
			{ID: "vip", Conditions: []flags.Condition{cond("tier", flags.OpEquals, `"vip"`)}, Variant: "on"},
			{ID: "whales", Conditions: []flags.Condition{{Op: flags.OpInSegment, Segment: "whales"}},
				Split: &flags.Split{Weights: weights(on, 3000, off, 7000)}},
		},
		Split: &flags.Split{Weights: weights(on, 5000, off, 5000)},
	})
	cp.createFlag("production", flags.NewFlag{Key: "shop-banner", Type: flags.TypeString, Variants: []flags.Variant{
		{Key: "a", Value: raw(`"autumn"`)}, {Key: "b", Value: raw(`"blossom"`)}, {Key: "c", Value: raw(`"castle"`)}}}, flags.Config{
		Enabled: true, Variants: []flags.Variant{{Key: "a", Value: raw(`"autumn"`)}, {Key: "b", Value: raw(`"blossom"`)}, {Key: "c", Value: raw(`"castle"`)}},
		DefaultVariant: "a", OffVariant: "a",
		Rules: []flags.Rule{
			{Conditions: []flags.Condition{cond("country", flags.OpIn, `["JP","KR"]`)}, Variant: "b"},
			{Conditions: []flags.Condition{{Op: flags.OpInSegment, Segment: "eu-pc"}}, Variant: "c"},
		},
	})
	rates := []flags.Variant{{Key: "slow", Value: raw(`1`)}, {Key: "normal", Value: raw(`1.5`)}, {Key: "fast", Value: raw(`2`)}}
	cp.createFlag("production", flags.NewFlag{Key: "spawn-rate", Type: flags.TypeNumber, Variants: rates}, flags.Config{
		Enabled: true, Variants: rates, DefaultVariant: "normal", OffVariant: "normal",
		Split: &flags.Split{BucketBy: "userId", Weights: weights(flags.Weight{Variant: "slow"}, 3333, flags.Weight{Variant: "normal"}, 3333, flags.Weight{Variant: "fast"}, 3334)},
	})
	events := []flags.Variant{
		{Key: "control", Value: raw(`{"event":"none","xp":1}`)},
		{Key: "festival", Value: raw(`{"event":"winter","xp":2,"drops":[{"item":"globe","weight":3},{"item":"scarf","weight":1}]}`)},
	}
	cp.createFlag("production", flags.NewFlag{Key: "winter-event", Type: flags.TypeObject, Variants: events}, flags.Config{
		Enabled: true, Variants: events, DefaultVariant: "control", OffVariant: "control",
		Rules: []flags.Rule{{ID: "veterans", Conditions: []flags.Condition{
			cond("client_version", flags.OpSemverGtEq, `"2.1.0"`), cond("level", flags.OpGreaterEq, `10`)}, Variant: "festival"}},
		Split: &flags.Split{BucketBy: "matchId", Salt: "winter-2026", Weights: weights(flags.Weight{Variant: "festival"}, 2000, flags.Weight{Variant: "control"}, 8000)},
	})
	cp.createFlag("production", flags.NewFlag{Key: "legacy-mode", Type: flags.TypeBoolean}, flags.Config{
		Enabled: false, Variants: boolean, DefaultVariant: "on", OffVariant: "off"})
	motd := []flags.Variant{{Key: "hello", Value: raw(`"Welcome back"`)}}
	cp.createFlag("production", flags.NewFlag{Key: "motd", Type: flags.TypeString, Variants: motd}, flags.Config{
		Enabled: true, Variants: motd, DefaultVariant: "hello", OffVariant: "hello"})
	cp.createFlag("production", flags.NewFlag{Key: "new-ui", Type: flags.TypeBoolean}, flags.Config{
		Enabled: true, Variants: boolean, DefaultVariant: "off", OffVariant: "off",
		Rules: []flags.Rule{{Conditions: []flags.Condition{{Op: flags.OpNotInSegment, Segment: "whales"}, cond("platform", flags.OpIn, `["ps5"]`)}, Variant: "on"}},
	})
}

// randomContext draws an evaluation context as game servers send them:
// targeting keys present or not (sometimes numbers), attributes that match
// rules or not, bucketing attributes missing or of either kind.
func randomContext(r *rand.Rand) flags.Context {
	ctx := flags.Context{}
	pick := func(xs ...any) any { return xs[r.IntN(len(xs))] }
	switch p := r.IntN(100); {
	case p < 80:
		ctx[flags.TargetingKey] = fmt.Sprintf("p-%d", r.IntN(300))
	case p < 88:
		ctx[flags.TargetingKey] = r.IntN(1000) // a number: bucketed by its decimal form
	case p < 92:
		ctx[flags.TargetingKey] = ""
	} // else missing
	if p := r.IntN(100); p < 15 {
		ctx["tier"] = "vip"
	} else if p < 50 {
		ctx["tier"] = "free"
	}
	if r.IntN(10) > 0 {
		ctx["country"] = pick("DE", "FR", "JP", "KR", "US", "BR")
	}
	ctx["platform"] = pick("pc", "ps5", "xbox", "switch")
	switch p := r.IntN(4); p {
	case 0, 1:
		ctx["userId"] = r.IntN(1_000_000)
	case 2:
		ctx["userId"] = fmt.Sprintf("u-%d", r.IntN(1_000_000))
	}
	switch p := r.IntN(10); {
	case p < 7:
		ctx["level"] = r.IntN(31)
	case p < 8:
		ctx["level"] = float64(r.IntN(300)) / 10
	}
	if r.IntN(6) > 0 {
		ctx["client_version"] = pick("1.9.0", "2.0.5", "2.1.0", "2.3.1", "v2.2.0", "garbage")
	}
	if r.IntN(2) == 0 {
		ctx["matchId"] = fmt.Sprintf("m-%d", r.IntN(100_000))
	}
	return ctx
}

// outcome is what one evaluation served, as both sides report it.
type outcome struct {
	Value     any
	Variant   string
	Reason    string
	ErrorCode string
}

// evaluateWithProvider evaluates key through the provider's method for the
// flag's type, as the OpenFeature SDK would call it.
func evaluateWithProvider(t *testing.T, p *ofprovider.Provider, typ flags.Type, key string, ctx flags.Context) outcome {
	t.Helper()
	flat := openfeature.FlattenedContext(ctx)
	var d openfeature.ProviderResolutionDetail
	var v any
	switch typ {
	case flags.TypeBoolean:
		r := p.BooleanEvaluation(t.Context(), key, false, flat)
		v, d = r.Value, r.ProviderResolutionDetail
	case flags.TypeString:
		r := p.StringEvaluation(t.Context(), key, "", flat)
		v, d = r.Value, r.ProviderResolutionDetail
	case flags.TypeNumber:
		r := p.FloatEvaluation(t.Context(), key, 0, flat)
		v, d = r.Value, r.ProviderResolutionDetail
	case flags.TypeObject:
		r := p.ObjectEvaluation(t.Context(), key, nil, flat)
		v, d = r.Value, r.ProviderResolutionDetail
	}
	rd := d.ResolutionDetail()
	return outcome{v, rd.Variant, string(rd.Reason), string(rd.ErrorCode)}
}

// TestProviderAgreesWithTheControlPlane checks that a game server's
// provider and the control plane's evaluate endpoint serve the same value,
// variant, reason and error code for 10,000 random contexts over a flag
// set with rules, segments and splits.
//
// NOTE: 10,000 evaluate requests take too long under the race detector on
// two cores, so 1,000 contexts go through the HTTP endpoint (keep-alive),
// and all 10,000 are compared, for every flag, with flags.Evaluate over
// the control plane's own compiled set (flags.Service.Compiled), which is
// what that endpoint evaluates with.
func TestProviderAgreesWithTheControlPlane(t *testing.T) {
	cp := newControlPlane(t)
	createGameFlags(cp)
	c := newClient(t, cp.config("production"))
	if err := c.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	p := ofprovider.New(c)
	server, err := cp.flags.Compiled(t.Context(), "production")
	if err != nil {
		t.Fatal(err)
	}
	if snap, _ := c.Snapshot(); snap.Revision != server.Revision() {
		t.Fatalf("client at revision %d, control plane at %d", snap.Revision, server.Revision())
	}
	keys := server.Keys()
	types := map[string]flags.Type{}
	for _, k := range keys {
		f, _ := server.Flag(k)
		types[k] = f.Type
	}

	const contexts, overHTTP = 10_000, 1_000
	r := rand.New(rand.NewPCG(2026, 11))
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer hc.CloseIdleConnections()
	seen := map[string]int{} // reasons and error codes met, so that the test covers them
	disagreements := 0
	for i := range contexts {
		ctx := randomContext(r)
		for _, key := range keys {
			got := evaluateWithProvider(t, p, types[key], key, ctx)
			sr := flags.Evaluate(server, key, ctx)
			want := outcome{sr.Value, sr.Variant, string(sr.Reason), string(sr.ErrorCode)}
			seen[want.Reason]++
			if want.ErrorCode != "" {
				seen[want.ErrorCode]++
			}
			if diff := cmp.Diff(want, got); diff != "" && disagreements < 10 {
				disagreements++
				t.Errorf("context %d %v, flag %s (-control plane +provider):\n%s", i, ctx, key, diff)
			}
		}
		if i < overHTTP {
			key := keys[i%len(keys)]
			res := cp.evaluate(hc, "production", key, ctx)
			want := outcome(res)
			got := evaluateWithProvider(t, p, types[key], key, ctx)
			if diff := cmp.Diff(want, got); diff != "" && disagreements < 10 {
				disagreements++
				t.Errorf("context %d %v, flag %s (-evaluate endpoint +provider):\n%s", i, ctx, key, diff)
			}
		}
	}
	for _, want := range []string{"STATIC", "TARGETING_MATCH", "SPLIT", "DISABLED", "DEFAULT", "TARGETING_KEY_MISSING"} {
		if seen[want] < 100 {
			t.Errorf("only %d evaluations with %s: the random contexts do not exercise it", seen[want], want)
		}
	}
}
