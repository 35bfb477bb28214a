package flags

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
)

// Run with, for example:
//
//	go test -run '^$' -fuzz FuzzConfigParse -fuzztime 30s ./flags/
//	go test -run '^$' -fuzz FuzzEvaluate -fuzztime 30s ./flags/
//	go test -run '^$' -fuzz FuzzCanonical -fuzztime 30s ./flags/
//
// Crashers found are kept in testdata/fuzz and run by plain go test.

var fuzzContexts = []Context{
	nil,
	{},
	{TargetingKey: "alice"},
	{TargetingKey: "jack", "tier": "vip", "region": "eu-west", "clientVersion": "2.4.0", "userId": "u-1"},
	{TargetingKey: 42, "email": "x@studio.example", "platform": "console", "a": 1.5},
	{TargetingKey: true, "a": "2026-01-01T00:00:00Z", "userId": json.Number("7")},
	{TargetingKey: "", "a": nil, "tier": []any{"vip"}, "level": math.NaN()},
}

// FuzzConfigParse feeds arbitrary documents through the path of a submitted
// configuration: strict decoding, validation, compilation, evaluation,
// explanation. Nothing may panic; whatever validates must compile; a
// compiled flag serves one of its declared variants, with a value of the
// flag's type.
func FuzzConfigParse(f *testing.F) {
	var seedSet Set
	decodeStrictJSON(f, readFile(f, "testdata/evaluate_set.json"), &seedSet)
	for _, fs := range seedSet.Flags {
		b, err := json.Marshal(fs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"key":"x","type":"object","enabled":true,"variants":[{"key":"a","value":{"n":[1,2,{"m":null}]}}],"default_variant":"a","off_variant":"a"}`))
	f.Add([]byte(`{"key":"x","type":"number","enabled":true,"variants":[{"key":"a","value":1e400}],"default_variant":"a","off_variant":"a"}`))
	f.Add([]byte(`{"key":"x","type":"boolean","enabled":true,"variants":[{"key":"a","value":true}],"default_variant":"a","off_variant":"a",
		"rules":[{"conditions":[{"attribute":"v","op":"semver_gt","value":"1.0.0"},{"attribute":"t","op":"after","value":"2026-01-01T00:00:00Z"}],
		"split":{"bucket_by":"userId","salt":"s","weights":[{"variant":"a","weight":0},{"variant":"a","weight":1}]}}]}`))
	f.Add([]byte(`{"key":"x","type":"string","variants":[],"rules":[{"conditions":[{"op":"in_segment","segment":"testers"}]}]}`))

	segments := []Segment{{Key: "testers", Members: []string{"alice"}}}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fs FlagState
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&fs); err != nil {
			return
		}
		flag := Flag{Key: fs.Key, Name: "fuzz", Type: fs.Type}
		verr := ValidateConfig(flag, fs.Config, map[string]bool{"testers": true})
		if verr != nil && solstice.ErrorKind(verr) != solstice.KindInvalid {
			t.Fatalf("ValidateConfig returned a %s error: %v", solstice.ErrorKind(verr), verr)
		}
		c, cerr := Compile(Set{Flags: []FlagState{fs}, Segments: segments})
		if verr == nil && fs.Key != "" && cerr != nil {
			t.Fatalf("the configuration validates but does not compile: %v", cerr)
		}
		if cerr != nil {
			if solstice.ErrorKind(cerr) != solstice.KindInvalid {
				t.Fatalf("Compile returned a %s error: %v", solstice.ErrorKind(cerr), cerr)
			}
			return
		}
		declared := map[string]bool{}
		for _, v := range fs.Variants {
			declared[v.Key] = true
		}
		for _, ctx := range fuzzContexts {
			r := Evaluate(c, fs.Key, ctx)
			_ = Explain(r)
			if r.Reason == ReasonError {
				continue
			}
			if !declared[r.Variant] {
				t.Fatalf("Evaluate served undeclared variant %q (reason %s)", r.Variant, r.Reason)
			}
			if !valueOfType(r.Value, fs.Type) {
				t.Fatalf("Evaluate served %#v for a %s flag", r.Value, fs.Type)
			}
		}
	})
}

func valueOfType(v any, t Type) bool {
	switch t {
	case TypeBoolean:
		_, ok := v.(bool)
		return ok
	case TypeString:
		_, ok := v.(string)
		return ok
	case TypeNumber:
		n, ok := v.(float64)
		return ok && !math.IsInf(n, 0) && !math.IsNaN(n)
	case TypeObject:
		_, ok := v.(map[string]any)
		return ok
	}
	return false
}

// allOperatorsSet has one flag with a rule per operator on attribute "a",
// each serving its own variant, and splits on "a" and the targeting key.
func allOperatorsSet(tb testing.TB) *Compiled {
	values := map[Operator]string{
		OpEquals: `"x"`, OpNotEquals: `5`, OpIn: `["x",1,true]`, OpNotIn: `["y",2,false]`,
		OpLess: `0`, OpLessEq: `-1`, OpGreater: `1000`, OpGreaterEq: `1e6`,
		OpSemverEq: `"1.2.3"`, OpSemverLess: `"0.1.0"`, OpSemverLessEq: `"1.0.0-alpha"`, OpSemverGt: `"9.9.9"`, OpSemverGtEq: `"v2"`,
		OpStartsWith: `"pre"`, OpEndsWith: `"suf"`, OpContains: `"mid"`,
		OpBefore: `"2000-01-01T00:00:00Z"`, OpAfter: `"2100-01-01T00:00:00Z"`,
	}
	fs := FlagState{Key: "all", Type: TypeNumber, Config: Config{
		Enabled:        true,
		Variants:       []Variant{{Key: "default", Value: json.RawMessage(`0`)}},
		DefaultVariant: "default", OffVariant: "default",
		Split: &Split{Weights: []Weight{{"default", 3}}},
	}}
	i := 0
	for op := range operators {
		i++
		name := "v" + strconv.Itoa(i)
		fs.Variants = append(fs.Variants, Variant{Key: name, Value: json.RawMessage(strconv.Itoa(i))})
		cond := Condition{Attribute: "a", Op: op}
		if operators[op].segment {
			cond = Condition{Op: op, Segment: "seg"}
		}
		if v, ok := values[op]; ok {
			cond.Value = json.RawMessage(v)
		}
		rule := Rule{ID: name, Conditions: []Condition{cond, {Attribute: "gate", Op: OpEquals, Value: json.RawMessage(strconv.Itoa(i % 7))}}, Variant: name}
		if i%3 == 0 {
			rule.Variant = ""
			rule.Split = &Split{BucketBy: "a", Weights: []Weight{{name, 1}, {"default", 1}}}
		}
		fs.Rules = append(fs.Rules, rule)
	}
	c, err := Compile(Set{Flags: []FlagState{fs}, Segments: []Segment{{Key: "seg", MembersAttribute: "a", Members: []string{"x", "7"},
		Conditions: []Condition{{Attribute: "b", Op: OpContains, Value: json.RawMessage(`"z"`)}}}}})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// FuzzEvaluate evaluates every operator against arbitrary context values.
// Nothing may panic, results are deterministic and name declared variants.
func FuzzEvaluate(f *testing.F) {
	f.Add("alice", "x", 1.0, int64(7), true, uint8(0), uint8(0))
	f.Add("", "1.2.3", math.Inf(1), int64(-1), false, uint8(1), uint8(3))
	f.Add("jack", "2026-01-01T00:00:00Z", 1e300, int64(math.MaxInt64), false, uint8(2), uint8(6))
	f.Add("\xff", "premidsuf", math.Copysign(0, -1), int64(0), true, uint8(3), uint8(2))
	c := allOperatorsSet(f)
	declared := map[string]bool{}
	fs, _ := c.Flag("all")
	for _, v := range fs.Variants {
		declared[v.Key] = true
	}
	f.Fuzz(func(t *testing.T, tk, s string, x float64, n int64, b bool, kind, gate uint8) {
		var a any
		switch kind % 10 {
		case 0:
			a = s
		case 1:
			a = x
		case 2:
			a = n
		case 3:
			a = b
		case 4:
			a = json.Number(s)
		case 5:
			a = time.Unix(n%(1<<40), 0)
		case 6:
			a = float32(x)
		case 7:
			a = uint64(n)
		case 8:
			a = []any{s, x}
		case 9:
			a = nil
		}
		ctx := Context{TargetingKey: tk, "a": a, "b": s, "gate": int(gate % 7)}
		r := Evaluate(c, "all", ctx)
		if r.Reason == ReasonError || !declared[r.Variant] {
			t.Fatalf("Evaluate(%v) = %+v: want a declared variant", ctx, r)
		}
		if r.Reason == ReasonSplit && r.Bucket >= uint64(r.TotalWeight) {
			t.Fatalf("bucket %d outside [0, %d)", r.Bucket, r.TotalWeight)
		}
		if again := Evaluate(c, "all", ctx); again != r {
			t.Fatalf("Evaluate is not deterministic: %+v then %+v", r, again)
		}
		_ = Explain(r)
	})
}

// FuzzCanonical: Canonical never panics, is idempotent, and keeps the
// document's meaning.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[1.0,1e400,"x"]}`, `"\u00e9"`, `[[[]]]`, `{"a":1,"a":2}`, `nul`, `{"<":"&"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Canonical(data)
		if err != nil {
			if solstice.ErrorKind(err) != solstice.KindInvalid {
				t.Fatalf("Canonical error of kind %s: %v", solstice.ErrorKind(err), err)
			}
			return
		}
		again, err := Canonical(c)
		if err != nil || !bytes.Equal(again, c) {
			t.Fatalf("not idempotent: %q → %q (%v)", c, again, err)
		}
		var v1, v2 any
		if json.Unmarshal(data, &v1) != nil || json.Unmarshal(c, &v2) != nil {
			return // e.g. numbers beyond float64: both are kept verbatim
		}
		b1, _ := json.Marshal(v1)
		b2, _ := json.Marshal(v2)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("meaning changed: %s → %s", data, c)
		}
	})
}

func readFile(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
