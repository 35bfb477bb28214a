package flags

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// The evaluator's goals (run with
// go test -run '^$' -bench . -benchmem ./flags/):
//
//	BenchmarkEvaluateBoolean  < 300 ns/op, 0 allocs/op
//	BenchmarkEvaluateObject   < 1 µs/op,   0 allocs/op
//
// Every iteration uses another targeting key, so bucketing really runs.

// benchContexts returns n contexts with distinct targeting keys and the
// attributes of the object benchmark's rule, half of them matching it.
func benchContexts(n int) []Context {
	platforms := []string{"pc", "console", "mobile", "switch"}
	out := make([]Context, n)
	for i := range out {
		out[i] = Context{
			TargetingKey: "player-" + strconv.Itoa(i*7919),
			"platform":   platforms[i%len(platforms)],
			"level":      i % 60,
			"region":     "eu-west",
		}
	}
	return out
}

func BenchmarkEvaluateBoolean(b *testing.B) {
	c := mustCompile(b, `{"flags":[
		{"key":"static","type":"boolean","enabled":true,
		 "variants":[{"key":"on","value":true},{"key":"off","value":false}],"default_variant":"on","off_variant":"off"},
		{"key":"split","type":"boolean","enabled":true,
		 "variants":[{"key":"on","value":true},{"key":"off","value":false}],"default_variant":"off","off_variant":"off",
		 "split":{"weights":[{"variant":"on","weight":5000},{"variant":"off","weight":5000}]}}]}`)
	ctxs := benchContexts(1024)
	for _, key := range []string{"static", "split"} {
		b.Run(key, func(b *testing.B) {
			b.ReportAllocs()
			var on int
			i := 0
			for b.Loop() {
				if Evaluate(c, key, ctxs[i%len(ctxs)]).Value == true {
					on++
				}
				i++
			}
			_ = on
		})
	}
}

func BenchmarkEvaluateObject(b *testing.B) {
	var fields []string
	for i := range 20 {
		switch i % 4 {
		case 0:
			fields = append(fields, fmt.Sprintf(`"multiplier%d":%d.5`, i, i))
		case 1:
			fields = append(fields, fmt.Sprintf(`"name%d":"event %d"`, i, i))
		case 2:
			fields = append(fields, fmt.Sprintf(`"enabled%d":true`, i))
		default:
			fields = append(fields, fmt.Sprintf(`"drops%d":[{"item":"snowball","weight":%d}]`, i, i))
		}
	}
	obj := "{" + strings.Join(fields, ",") + "}"
	c := mustCompile(b, `{"flags":[{"key":"event","type":"object","enabled":true,
		"variants":[{"key":"control","value":`+obj+`},{"key":"treatment","value":`+obj+`}],
		"default_variant":"control","off_variant":"control",
		"rules":[{"id":"veterans-on-console","conditions":[
			{"attribute":"platform","op":"in","value":["console","pc"]},
			{"attribute":"level","op":"gte","value":30}],
			"split":{"weights":[{"variant":"treatment","weight":2000},{"variant":"control","weight":8000}]}}],
		"split":{"weights":[{"variant":"treatment","weight":500},{"variant":"control","weight":9500}]}}]}`)
	ctxs := benchContexts(1024)
	b.ReportAllocs()
	var treated int
	i := 0
	for b.Loop() {
		if Evaluate(c, "event", ctxs[i%len(ctxs)]).Variant == "treatment" {
			treated++
		}
		i++
	}
	_ = treated
}

// BenchmarkCompile compiles a set of 200 flags of 3 rules each: what a
// server pays once per published revision.
func BenchmarkCompile(b *testing.B) {
	var set Set
	for i := range 200 {
		set.Flags = append(set.Flags, FlagState{Key: "flag-" + strconv.Itoa(i), Type: TypeString, Config: Config{
			Enabled:        true,
			Variants:       []Variant{{Key: "a", Value: json.RawMessage(`"A"`)}, {Key: "b", Value: json.RawMessage(`"B"`)}},
			DefaultVariant: "a", OffVariant: "a",
			Rules: []Rule{
				{Conditions: []Condition{{Attribute: "tier", Op: OpEquals, Value: json.RawMessage(`"vip"`)}}, Variant: "b"},
				{Conditions: []Condition{{Attribute: "v", Op: OpSemverGtEq, Value: json.RawMessage(`"2.0.0"`)}}, Variant: "b"},
				{Conditions: []Condition{{Attribute: "region", Op: OpIn, Value: json.RawMessage(`["eu","us","asia"]`)}},
					Split: &Split{Weights: []Weight{{"a", 1}, {"b", 1}}}},
			},
		}})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(set); err != nil {
			b.Fatal(err)
		}
	}
}
