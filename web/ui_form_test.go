package web

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
)

func mustSchema(t *testing.T, raw string) map[string]any {
	t.Helper()
	v, err := decodeJSONValue([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("schema %s is not an object", raw)
	}
	return m
}

func TestFormUnsupported(t *testing.T) {
	tests := []struct {
		schema string
		want   string // a part of the reason; "" when a form is possible
	}{
		{`{"type":"object","properties":{"a":{"type":"string","maxLength":3},"b":{"type":["integer","null"]}}}`, ""},
		{`{"type":"object","properties":{"c":{"enum":["x",1]},"d":{"type":"array","items":{"type":"object","properties":{"e":{"type":"boolean"}}}}},"additionalProperties":false}`, ""},
		{`{"type":"object","properties":{"a":{"oneOf":[{"type":"string"}]}}}`, `"oneOf"`},
		{`{"type":"object","properties":{"a":{"$ref":"#/$defs/x"}},"$defs":{}}`, `"$defs"`},
		{`{"type":"object"}`, "no properties"},
		{`{"type":"object","properties":{"a":{"type":["string","number"]}}}`, "no single type"},
		{`{"type":"object","properties":{},"additionalProperties":{"type":"string"}}`, `"additionalProperties"`},
		{`{"type":"object","properties":{"l":{"type":"array"}}}`, "items"},
	}
	for _, tc := range tests {
		got := formUnsupported(mustSchema(t, tc.schema))
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("formUnsupported(%s) = %q, want %q", tc.schema, got, tc.want)
		}
	}
}

const formSchema = `{"type":"object","required":["event","xp"],"properties":{
  "event":{"type":"string","title":"Event name"},
  "xp":{"type":"number","maximum":5},
  "boss":{"type":"boolean"},
  "tier":{"enum":["bronze","gold",3]},
  "starts":{"type":"string","format":"date-time"},
  "drops":{"type":"array","items":{"type":"object","required":["item"],"properties":{"item":{"type":"string"},"weight":{"type":"integer"}}}},
  "tags":{"type":"array","items":{"type":"string"}},
  "reward":{"type":"object","properties":{"gold":{"type":"integer"}}}}}`

// formOf renders value as a form and returns what a browser would submit.
func formOf(t *testing.T, n *formNode) url.Values {
	t.Helper()
	vals := url.Values{}
	var walk func(n *formNode)
	walk = func(n *formNode) {
		switch n.Kind {
		case "object":
		case "array":
			vals.Set(lenField(n.Ptr), strconv.Itoa(len(n.Children)))
		default:
			vals.Set(n.Ptr, n.Value)
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(n)
	return vals
}

func TestSchemaFormRoundTrip(t *testing.T) {
	s := mustSchema(t, formSchema)
	tests := []string{
		`{"event":"winter","xp":2}`,
		`{"event":"winter","xp":2.5,"boss":false,"tier":3,"starts":"2025-12-21T10:00:00Z"}`,
		`{"event":"","xp":1,"drops":[{"item":"globe","weight":3},{"item":"sled"}],"tags":["a",""],"reward":{"gold":10}}`,
	}
	for _, doc := range tests {
		v, err := decodeJSONValue([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if !valueFits(s, v) {
			t.Fatalf("valueFits(%s) = false", doc)
		}
		n := buildForm(s, v, "/variants/0/value", "Value", true, false)
		form := formOf(t, n)
		got, ok := readForm(s, form, "/variants/0/value", true, false)
		if !ok {
			t.Fatalf("%s: read back as absent", doc)
		}
		gotJSON, _ := json.Marshal(got)
		want, _ := flags.Canonical([]byte(doc))
		if diff := cmp.Diff(string(want), string(gotJSON)); diff != "" {
			t.Errorf("round trip of %s (-want +got):\n%s\nform: %v", doc, diff, form)
		}
	}
}

func TestReadFormKeepsWhatWasTyped(t *testing.T) {
	s := mustSchema(t, formSchema)
	form := url.Values{
		"/v/event": {"winter"}, "/v/xp": {"lots"}, "/v/boss": {""}, "/v/tier": {`"gold"`},
		"len:/v/drops": {"1"}, "/v/drops/0/item": {"globe"}, "/v/drops/0/weight": {""},
		"/v/reward/gold": {""},
	}
	got, ok := readForm(s, form, "/v", true, false)
	if !ok {
		t.Fatal("absent")
	}
	b, _ := json.Marshal(got)
	// "lots" stays a string for validation to report at /v/xp; empty
	// optional inputs are left out, an empty list item stays (as null) so
	// that the indexes of the others do not move.
	want := `{"drops":[{"item":"globe"}],"event":"winter","tier":"gold","xp":"lots"}`
	if string(b) != want {
		t.Errorf("readForm = %s, want %s", b, want)
	}
}

func TestValueFits(t *testing.T) {
	s := mustSchema(t, formSchema)
	for doc, want := range map[string]bool{
		`{"event":"x","xp":1}`:                       true,
		`{"event":"x","xp":1,"extra":true}`:          false,
		`{"event":"x","drops":[{"item":"a","x":1}]}`: false,
		`{"event":{"nested":1}}`:                     false,
		`{"tier":{"any":"enum value"}}`:              true,
	} {
		v, _ := decodeJSONValue([]byte(doc))
		if got := valueFits(s, v); got != want {
			t.Errorf("valueFits(%s) = %t, want %t", doc, got, want)
		}
	}
}

func TestEditorListOps(t *testing.T) {
	s := mustSchema(t, formSchema)
	e := &editor{schema: s, Variants: []editorVariant{{Mode: "form"}}, Errors: map[string][]placedError{}}
	v, _ := decodeJSONValue([]byte(`{"event":"x","xp":1,"drops":[{"item":"a"},{"item":"b"}]}`))
	e.Variants[0].value = v
	e.rebuild()
	steps := []struct {
		op   string
		ok   bool
		want string
	}{
		{"add:/variants/0/value/drops", true, `{"drops":[{"item":"a"},{"item":"b"},{}],"event":"x","xp":1}`},
		{"remove:/variants/0/value/drops/0", true, `{"drops":[{"item":"b"},{}],"event":"x","xp":1}`},
		{"add:/variants/0/value/tags", true, `{"drops":[{"item":"b"},{}],"event":"x","tags":[""],"xp":1}`},
		{"add:/variants/0/value/event", false, ""},
		{"add:/variants/3/value/drops", false, ""},
		{"remove:/variants/0/value/drops/x", false, ""},
	}
	for _, st := range steps {
		ok := e.apply(st.op)
		if ok != st.ok {
			t.Fatalf("apply(%q) = %t, want %t", st.op, ok, st.ok)
		}
		if !ok {
			continue
		}
		b, _ := json.Marshal(e.Variants[0].value)
		if string(b) != st.want {
			t.Errorf("after %s: %s, want %s", st.op, b, st.want)
		}
	}
}

func TestPlaceErrors(t *testing.T) {
	s := mustSchema(t, formSchema)
	e := &editor{schema: s, Variants: []editorVariant{{Mode: "form", Ptr: "/variants/0"}}, Errors: map[string][]placedError{}}
	v, _ := decodeJSONValue([]byte(`{"event":"x","xp":9}`))
	e.Variants[0].value = v
	e.rebuild()
	e.place(
		fieldErr("/variants/0/value/xp", "maximum: got 9, want 5"),
		fieldErr("/variants/0/value", "missing property 'event'"),
		fieldErr("/rules/2/conditions/0/op", "unknown operator"),
		fieldErr("/variants/0/value/ghost/deep", "not allowed"),
		fieldErr("", "the configuration is too large"),
	)
	want := map[string][]placedError{
		"/variants/0/value/xp": {{Message: "maximum: got 9, want 5"}},
		"/variants/0/value":    {{Message: "missing property 'event'"}, {At: "/variants/0/value/ghost/deep", Message: "not allowed"}},
		"/rules":               {{At: "/rules/2/conditions/0/op", Message: "unknown operator"}},
		"":                     {{Message: "the configuration is too large"}},
	}
	if diff := cmp.Diff(want, e.Errors); diff != "" {
		t.Errorf("placed errors (-want +got):\n%s", diff)
	}
	if len(e.Summary) != 5 {
		t.Errorf("summary has %d entries, want 5", len(e.Summary))
	}
}

func TestSideBySide(t *testing.T) {
	rows := sideBySide([]byte(`{"b":1,"a":[1,2,3,4,5,6,7,8,9,10,11,12]}`), []byte(`{"a":[1,2,3,4,5,6,7,8,9,10,11,12],"b":2,"c":true}`))
	var kinds []string
	for _, r := range rows {
		kinds = append(kinds, r.Kind)
	}
	// Key order does not matter (both sides are canonical); the long
	// unchanged list folds into a gap; b's change pairs old with new; c is
	// added.
	want := []string{"gap", "same", "same", "same", "change", "add", "same"}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("row kinds (-want +got):\n%s\n%+v", diff, rows)
	}
	for _, r := range rows {
		if r.Kind == "change" && (r.Left != `  "b": 1` || r.Right != `  "b": 2,`) {
			t.Errorf("change row %+v", r)
		}
	}
	if rows := sideBySide(nil, []byte(`{"a":1}`)); len(rows) != 3 || rows[0].Kind != "add" {
		t.Errorf("creation: %+v", rows)
	}
	if rows := sideBySide([]byte(`{"a":1}`), []byte(`{"a":1}`)); len(rows) != 1 || rows[0].Kind != "gap" || rows[0].Folded != 3 {
		t.Errorf("no change: %+v, want one gap of 3 lines", rows)
	}
}

func TestFieldIDsAreDistinct(t *testing.T) {
	ptrs := []string{"/a_b", "/a/b", "/a.b", "/a-b", "/a b", "/ä", "/a~1b"}
	seen := map[string]string{}
	for _, p := range ptrs {
		id := fieldID(p)
		if other, dup := seen[id]; dup {
			t.Errorf("fieldID(%q) = fieldID(%q) = %q", p, other, id)
		}
		if strings.ContainsAny(id, " /\"'<>") {
			t.Errorf("fieldID(%q) = %q is not a safe id", p, id)
		}
		seen[id] = p
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/env/staging?x=1": "/env/staging?x=1",
		"":                 "/",
		"//evil.example":   "/",
		"/\\evil.example":  "/",
		"https://evil":     "/",
		"/a\r\nSet-Cookie": "/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func fieldErr(ptr, msg string) solstice.FieldError {
	return solstice.FieldError{Pointer: ptr, Message: msg}
}

func TestEnvURL(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/env/staging", "/env/production"},
		{"/env/staging/flags", "/env/production/flags"},
		{"/env/staging/flags/winter", "/env/production/flags/winter"},
		{"/env/staging/flags/winter/edit", "/env/production/flags/winter/edit"},
		{"/env/staging/history/12", "/env/production/history"},
		{"/env/staging/segments/beta", "/env/production/segments"},
		{"/env/staging/incidents/3", "/env/production/incidents"},
		{"/env/staging/rollouts/winter-ramp", "/env/production/rollouts"},
		{"/env/staging/events/winter-festival", "/env/production/calendar"},
		{"/env/staging/flags/winter/guardrails/reject-rate", "/env/production/guardrails"},
		{"/env/stagingx/flags", "/env/production"},
		{"/changes/4", "/env/production"},
	} {
		p := &page{Path: tc.path, Env: "staging"}
		if got := p.EnvURL("production"); got != tc.want {
			t.Errorf("EnvURL(production) on %s = %s, want %s", tc.path, got, tc.want)
		}
	}
}
