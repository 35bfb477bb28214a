package flags

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
)

func TestCanonical(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"key order", `{"b":1,"a":{"d":[3,2,1],"c":null}}`, `{"a":{"c":null,"d":[3,2,1]},"b":1}`},
		{"whitespace", " {\n\t\"a\" : [ 1 , true , \"x y\" ] \r\n} ", `{"a":[1,true,"x y"]}`},
		{"numbers kept as written", `[1.0, 1e400, -0, 0.1000, 12345678901234567890, 1E+2]`, `[1.0,1e400,-0,0.1000,12345678901234567890,1E+2]`},
		{"no HTML escaping", `{"s":"<b>&amp;</b>"}`, `{"s":"<b>&amp;</b>"}`},
		{"escapes normalised", `"\u0041\/\t\u00e9"`, `"A/\té"`},
		{"unicode keys sorted", `{"é":1,"z":2,"a":3}`, `{"a":3,"z":2,"é":1}`},
		{"scalar", `"x"`, `"x"`},
		{"empty containers", `{"a":{},"b":[]}`, `{"a":{},"b":[]}`},
		{"deep", strings.Repeat("[", 500) + strings.Repeat("]", 500), strings.Repeat("[", 500) + strings.Repeat("]", 500)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonical(json.RawMessage(tt.in))
			if err != nil {
				t.Fatalf("Canonical(%s): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("Canonical(%s) = %s, want %s", tt.in, got, tt.want)
			}
			again, err := Canonical(got)
			if err != nil || string(again) != string(got) {
				t.Errorf("Canonical is not idempotent: %s → %s (%v)", got, again, err)
			}
		})
	}
}

func TestCanonicalRejects(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		wantPointer string // "" when the error has no field
		wantMsg     string
	}{
		{"empty", ``, "", "unexpected end"},
		{"truncated", `{"a":`, "", "unexpected end"},
		{"syntax", `{"a" 1}`, "", "invalid character"},
		{"trailing data", `{} {}`, "", "after the top-level value"},
		{"trailing garbage", `1 x`, "", "after the top-level value"},
		{"duplicate key", `{"a":1,"a":2}`, "/a", `"a" appears more than once`},
		{"nested duplicate key", `{"x":[{"k/~":1,"k/~":1}]}`, "/x/0/k~1~0", "more than once"},
		{"invalid UTF-8", "\"\xff\"", "", "UTF-8"},
		{"too deep", strings.Repeat("[", 513) + strings.Repeat("]", 513), strings.Repeat("/0", 512), "deeper than 512"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Canonical(json.RawMessage(tt.in))
			if got := solstice.ErrorKind(err); got != solstice.KindInvalid {
				t.Fatalf("Canonical(%q) error kind %q, want %q (err %v)", tt.in, got, solstice.KindInvalid, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			var gotPointer string
			if fs := solstice.ErrorFields(err); len(fs) > 0 {
				gotPointer = fs[0].Pointer
			}
			if gotPointer != tt.wantPointer {
				t.Errorf("pointer %q, want %q", gotPointer, tt.wantPointer)
			}
		})
	}
}

func TestCanonicalOf(t *testing.T) {
	fs := FlagState{Key: "k", Type: TypeBoolean, Config: Config{
		Enabled:  true,
		Variants: []Variant{{Key: "on", Value: json.RawMessage(` { "z" : 1, "a" : 2 } `)}},
	}}
	got, err := CanonicalOf(fs)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"default_variant":"","enabled":true,"key":"k","off_variant":"","type":"boolean","variants":[{"key":"on","value":{"a":2,"z":1}}]}`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("CanonicalOf (-want +got):\n%s", diff)
	}
	if _, err := CanonicalOf(make(chan int)); err == nil || solstice.ErrorKind(err) != solstice.KindInternal {
		t.Errorf("CanonicalOf(chan) = %v, want an internal error", err)
	}
}
