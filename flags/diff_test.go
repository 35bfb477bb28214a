package flags

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDiffJSON(t *testing.T) {
	raw := func(s string) json.RawMessage {
		if s == "" {
			return nil
		}
		return json.RawMessage(s)
	}
	tests := []struct {
		name, before, after string
		want                []FieldChange
	}{
		{"equal", `{"a":1,"b":[1,2]}`, `{"b":[1,2],"a":1}`, nil},
		{"created", ``, `{"a":1}`, []FieldChange{{Pointer: "", After: raw(`{"a":1}`)}}},
		{"deleted", `{"a":1}`, ``, []FieldChange{{Pointer: "", Before: raw(`{"a":1}`)}}},
		{"leaf changes", `{"a":1,"b":{"c":"x","d":true}}`, `{"a":2,"b":{"c":"x","e":null}}`, []FieldChange{
			{Pointer: "/a", Before: raw(`1`), After: raw(`2`)},
			{Pointer: "/b/d", Before: raw(`true`)},
			{Pointer: "/b/e", After: raw(`null`)},
		}},
		{"arrays by index", `[1,2,3]`, `[1,5]`, []FieldChange{
			{Pointer: "/1", Before: raw(`2`), After: raw(`5`)},
			{Pointer: "/2", Before: raw(`3`)},
		}},
		{"type change", `{"a":{"x":1}}`, `{"a":[1]}`, []FieldChange{{Pointer: "/a", Before: raw(`{"x":1}`), After: raw(`[1]`)}}},
		{"escaped keys", `{"a/b":1,"m~n":1}`, `{"a/b":2,"m~n":2}`, []FieldChange{
			{Pointer: "/a~1b", Before: raw(`1`), After: raw(`2`)},
			{Pointer: "/m~0n", Before: raw(`1`), After: raw(`2`)},
		}},
		{"numbers kept exactly", `{"n":1.50}`, `{"n":1.5}`, []FieldChange{{Pointer: "/n", Before: raw(`1.50`), After: raw(`1.5`)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DiffJSON(raw(tc.before), raw(tc.after))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("DiffJSON (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := DiffJSON(raw(`{`), raw(`{}`)); err == nil {
		t.Error("DiffJSON accepted invalid JSON")
	}
}
