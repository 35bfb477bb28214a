package flags

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
)

// decodeStrictJSON decodes js into v, refusing unknown fields so that a
// fixture with a typo fails loudly.
func decodeStrictJSON(t testing.TB, js string, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(js)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode fixture: %v\n%s", err, js)
	}
}

func mustSet(t testing.TB, js string) Set {
	t.Helper()
	var s Set
	decodeStrictJSON(t, js, &s)
	return s
}

func mustCompile(t testing.TB, js string) *Compiled {
	t.Helper()
	c, err := Compile(mustSet(t, js))
	if err != nil {
		t.Fatalf("Compile: %v\nfields: %v", err, solstice.ErrorFields(err))
	}
	return c
}

func mustCompileFile(t testing.TB, path string) *Compiled {
	t.Helper()
	return mustCompile(t, readFile(t, path))
}

// pointers returns the pointers of err's field errors.
func pointers(err error) []string {
	var out []string
	for _, f := range solstice.ErrorFields(err) {
		out = append(out, f.Pointer)
	}
	return out
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		set  string
		want []string // pointers of the field errors
	}{
		{
			name: "valid",
			set: `{"environment":"prod","revision":3,"flags":[
				{"key":"a","type":"boolean","enabled":true,
				 "variants":[{"key":"on","value":true},{"key":"off","value":false}],
				 "default_variant":"on","off_variant":"off"}],
			 "segments":[]}`,
			want: nil,
		},
		{
			name: "duplicate and empty keys, bad type",
			set: `{"flags":[
				{"key":"a","type":"boolean","variants":[{"key":"on","value":true}],"default_variant":"on","off_variant":"on"},
				{"key":"a","type":"boolean","variants":[{"key":"on","value":true}],"default_variant":"on","off_variant":"on"},
				{"key":"","type":"color","variants":[{"key":"on","value":true}],"default_variant":"on","off_variant":"on"}],
			 "segments":[{"key":"s"},{"key":"s"},{"key":""}]}`,
			want: []string{"/flags/1/key", "/flags/2/key", "/flags/2/type", "/segments/1/key", "/segments/2/key"},
		},
		{
			name: "values of the wrong type and unresolved references",
			set: `{"flags":[
				{"key":"n","type":"number","enabled":true,
				 "variants":[{"key":"a","value":"1"},{"key":"b","value":1e400},{"key":"a","value":2}],
				 "default_variant":"zz","off_variant":"",
				 "rules":[
					{"conditions":[{"op":"in_segment","segment":"nope"}],"variant":"a"},
					{"conditions":[{"attribute":"x","op":"gt","value":"ten"}],"variant":"q"},
					{"conditions":[],"variant":"a","split":{"weights":[{"variant":"a","weight":1}]}},
					{"conditions":[]}],
				 "split":{"weights":[{"variant":"a","weight":0},{"variant":"a","weight":-1},{"variant":"c","weight":2}]}}],
			 "segments":[]}`,
			want: []string{
				"/flags/0/default_variant",
				"/flags/0/off_variant",
				"/flags/0/rules/0/conditions/0/segment",
				"/flags/0/rules/1/conditions/0/value",
				"/flags/0/rules/1/variant",
				"/flags/0/rules/2",
				"/flags/0/rules/3",
				"/flags/0/split/weights/1/variant",
				"/flags/0/split/weights/1/weight",
				"/flags/0/split/weights/2/variant",
				"/flags/0/variants/0/value",
				"/flags/0/variants/1/value",
				"/flags/0/variants/2/key",
			},
		},
		{
			name: "segment conditions may not refer to segments",
			set: `{"flags":[],"segments":[
				{"key":"a","conditions":[{"op":"in_segment","segment":"b"}]},
				{"key":"b","conditions":[{"attribute":"x","op":"before","value":"yesterday"}]}]}`,
			want: []string{"/segments/0/conditions/0/op", "/segments/1/conditions/0/value"},
		},
		{
			name: "split weights must add up to something",
			set: `{"flags":[{"key":"z","type":"string","enabled":true,
				"variants":[{"key":"a","value":"A"}],"default_variant":"a","off_variant":"a",
				"split":{"weights":[{"variant":"a","weight":0}]}}]}`,
			want: []string{"/flags/0/split/weights"},
		},
		{
			name: "split weights over the limit",
			set: `{"flags":[{"key":"z","type":"string","enabled":true,
				"variants":[{"key":"a","value":"A"},{"key":"b","value":"B"}],"default_variant":"a","off_variant":"a",
				"split":{"weights":[{"variant":"a","weight":600000},{"variant":"b","weight":600000}]}}]}`,
			want: []string{"/flags/0/split/weights"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(mustSet(t, tt.set))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Compile: %v", err)
				}
				return
			}
			if got := solstice.ErrorKind(err); got != solstice.KindInvalid {
				t.Fatalf("Compile error kind = %q, want %q (err %v)", got, solstice.KindInvalid, err)
			}
			if diff := cmp.Diff(tt.want, pointers(err)); diff != "" {
				t.Errorf("Compile field pointers (-want +got):\n%s\nfields: %v", diff, solstice.ErrorFields(err))
			}
		})
	}
}

func TestCompiledAccessors(t *testing.T) {
	set := mustSet(t, `{"environment":"production","revision":42,"flags":[
		{"key":"zeta","type":"string","enabled":true,"variants":[{"key":"a","value":"A"}],"default_variant":"a","off_variant":"a"},
		{"key":"alpha","type":"number","enabled":true,"variants":[{"key":"one","value":1}],"default_variant":"one","off_variant":"one"}],
		"segments":[{"key":"beta","members":["x"]}]}`)
	c, err := Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Environment(), "production"; got != want {
		t.Errorf("Environment() = %q, want %q", got, want)
	}
	if got, want := c.Revision(), int64(42); got != want {
		t.Errorf("Revision() = %d, want %d", got, want)
	}
	if got, want := c.Len(), 2; got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
	if diff := cmp.Diff([]string{"alpha", "zeta"}, c.Keys()); diff != "" {
		t.Errorf("Keys() (-want +got):\n%s", diff)
	}
	fs, ok := c.Flag("alpha")
	if !ok || fs.Type != TypeNumber || string(fs.Variants[0].Value) != "1" {
		t.Errorf("Flag(alpha) = %+v, %v; want the number flag", fs, ok)
	}
	if _, ok := c.Flag("missing"); ok {
		t.Error("Flag(missing) reported ok")
	}
	if sg, ok := c.Segment("beta"); !ok || sg.Members[0] != "x" {
		t.Errorf("Segment(beta) = %+v, %v", sg, ok)
	}
	if diff := cmp.Diff(set, c.Set()); diff != "" {
		t.Errorf("Set() differs from the compiled set (-want +got):\n%s", diff)
	}

	// The compiled set is immune to changes of its input and of what its
	// accessors return.
	set.Flags[0].Variants[0].Value[1] = 'Z'
	set.Flags[0].Enabled = false
	fs.Variants[0].Value[0] = '7'
	c.Keys()[0] = "mutated"
	if r := Evaluate(c, "zeta", nil); r.Value != "A" || r.Reason != ReasonStatic {
		t.Errorf("after mutating the input: Evaluate = %v %s, want A STATIC", r.Value, r.Reason)
	}
	if fs2, _ := c.Flag("alpha"); string(fs2.Variants[0].Value) != "1" {
		t.Errorf("Flag() returned shared memory: value now %s", fs2.Variants[0].Value)
	}
	if got := c.Keys()[0]; got != "alpha" {
		t.Errorf("Keys() returned shared memory: %q", got)
	}
}

func TestNilCompiled(t *testing.T) {
	var c *Compiled
	if c.Len() != 0 || c.Keys() != nil || c.Revision() != 0 || c.Environment() != "" {
		t.Error("a nil *Compiled is not empty")
	}
	if _, ok := c.Flag("x"); ok {
		t.Error("nil Compiled has a flag")
	}
	r := Evaluate(c, "x", nil)
	if r.Reason != ReasonError || r.ErrorCode != CodeGeneral {
		t.Errorf("Evaluate(nil) = %s/%s, want ERROR/GENERAL", r.Reason, r.ErrorCode)
	}
}

func TestCompileDecodesValues(t *testing.T) {
	c := mustCompile(t, `{"flags":[
		{"key":"obj","type":"object","enabled":true,
		 "variants":[{"key":"v","value":{"drops":[{"item":"snowball","weight":2.5}],"multiplier":3,"on":true}}],
		 "default_variant":"v","off_variant":"v"},
		{"key":"num","type":"number","enabled":true,"variants":[{"key":"v","value":-0.25}],"default_variant":"v","off_variant":"v"}]}`)
	want := map[string]any{
		"drops":      []any{map[string]any{"item": "snowball", "weight": 2.5}},
		"multiplier": 3.0,
		"on":         true,
	}
	if diff := cmp.Diff(want, Evaluate(c, "obj", nil).Value); diff != "" {
		t.Errorf("object value (-want +got):\n%s", diff)
	}
	if got := Evaluate(c, "num", nil).Value; got != -0.25 {
		t.Errorf("number value = %#v, want -0.25", got)
	}
}
