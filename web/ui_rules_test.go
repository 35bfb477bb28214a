package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
)

// formSession is one form being filled in, as a browser would: each op
// posts the whole form and continues from the form the server answers.
type formSession struct {
	t    *testing.T
	c    *client
	path string
	form url.Values
	last pageResp
}

func openForm(t *testing.T, c *client, path string) *formSession {
	t.Helper()
	page := c.want(c.get(path), http.StatusOK)
	return &formSession{t: t, c: c, path: path, form: formValues(t, page.body, path), last: page}
}

// step submits the form with op and checks the answer's status and text;
// on a page that shows the form again, the session continues from it.
func (f *formSession) step(op string, status int, contains ...string) pageResp {
	f.t.Helper()
	f.form.Set("op", op)
	r := f.c.want(f.c.post(f.path, f.form), status, contains...)
	f.last = r
	if strings.Contains(r.body, `method="post" action="`+f.path+`"`) {
		f.form = formValues(f.t, r.body, f.path)
	}
	return r
}

// set sets form fields: name, value, name, value...
func (f *formSession) set(kv ...string) {
	for i := 0; i+1 < len(kv); i += 2 {
		if _, ok := f.form[kv[i]]; !ok && !strings.HasPrefix(kv[i], "serve:") {
			f.t.Fatalf("the form has no field %q", kv[i])
		}
		f.form.Set(kv[i], kv[i+1])
	}
}

// asJSON decodes v's JSON encoding, so that values compare as JSON
// (json.RawMessage spacing aside).
func asJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func (h *uiHarness) segment(env string, s flags.Segment) {
	h.t.Helper()
	ctx := solstice.WithActor(context.Background(), solstice.Actor{Name: "alice", Kind: "user"})
	if _, err := h.flags.PutSegment(ctx, env, s, 0, ""); err != nil {
		h.t.Fatal(err)
	}
}

const editWinter = "/env/staging/flags/winter/edit"

func TestUIRulesFormBuildsAndSaves(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	h.segment("staging", flags.Segment{Key: "testers", Members: []string{"p1"}})
	f := openForm(t, h.login("alice"), editWinter)
	if f.form.Get("rules") != "0" {
		t.Fatalf("a flag without rules: rules = %q, want 0", f.form.Get("rules"))
	}
	f.c.want(f.last, http.StatusOK, "No rules: everyone gets the same treatment", "Edit rules as JSON")

	// Rule 1: gold or platinum players from level 10 on, and testers.
	f.step("add:/rules", http.StatusOK, "Rule 1")
	if f.form.Get("/rules/0/conditions/0/op") != "eq" || f.form.Get("serve:/rules/0") != "variant" {
		t.Fatalf("a new rule: %v", f.form)
	}
	f.set("/rules/0/id", "vip", "/rules/0/conditions/0/attribute", "tier", "/rules/0/conditions/0/op", "in",
		"/rules/0/conditions/0/value", "gold\nplatinum, \"5\"", "/rules/0/variant", "festival")
	f.step("add:/rules/0/conditions", http.StatusOK)
	f.set("/rules/0/conditions/1/attribute", "level", "/rules/0/conditions/1/op", "gte", "/rules/0/conditions/1/value", "10")
	f.step("add:/rules/0/conditions", http.StatusOK)
	f.set("/rules/0/conditions/2/op", "in_segment", "/rules/0/conditions/2/segment", "testers")
	// Rule 2: new app versions get a 25/75 split on userId.
	f.step("add:/rules", http.StatusOK, "Rule 2")
	f.set("/rules/1/conditions/0/attribute", "appVersion", "/rules/1/conditions/0/op", "semver_gte",
		"/rules/1/conditions/0/value", "2.1.0", "serve:/rules/1", "split", "/rules/1/split/bucket_by", "userId",
		"/rules/1/split/weights/0/weight", "2500", "/rules/1/split/weights/1/weight", "7500")
	// Rule 3: everyone else on iOS... then no conditions at all: everyone.
	f.step("add:/rules", http.StatusOK)
	f.step("remove:/rules/2/conditions/0", http.StatusOK, "No conditions: this rule matches everyone.")
	f.set("/rules/2/variant", "control", "/rules/2/description", "everyone else")
	f.step("check", http.StatusOK, "No problems found")
	f.set("message", "Target the festival")
	f.step("save", http.StatusSeeOther)

	got := h.config("staging", "winter").Config.Rules
	want := []flags.Rule{
		{ID: "vip", Conditions: []flags.Condition{
			{Attribute: "tier", Op: flags.OpIn, Value: json.RawMessage(`["gold","platinum","5"]`)},
			{Attribute: "level", Op: flags.OpGreaterEq, Value: json.RawMessage(`10`)},
			{Op: flags.OpInSegment, Segment: "testers"},
		}, Variant: "festival"},
		{Conditions: []flags.Condition{{Attribute: "appVersion", Op: flags.OpSemverGtEq, Value: json.RawMessage(`"2.1.0"`)}},
			Split: &flags.Split{BucketBy: "userId", Weights: []flags.Weight{{Variant: "control", Weight: 2500}, {Variant: "festival", Weight: 7500}}}},
		{Description: "everyone else", Conditions: []flags.Condition{}, Variant: "control"},
	}
	if diff := cmp.Diff(asJSON(t, want), asJSON(t, got)); diff != "" {
		t.Errorf("saved rules (-want +got):\n%s", diff)
	}

	// Loaded again, the form shows them as entered.
	f = openForm(t, f.c, editWinter)
	for name, want := range map[string]string{
		"rules": "3", "/rules/0/id": "vip", "/rules/0/conditions/0/value": "gold\nplatinum\n\"5\"",
		"/rules/0/conditions/1/value": "10", "/rules/0/conditions/2/segment": "testers", "serve:/rules/1": "split",
		"/rules/1/split/weights/1/weight": "7500", "/rules/1/split/bucket_by": "userId", "/rules/2/variant": "control",
	} {
		if got := f.form.Get(name); got != want {
			t.Errorf("reloaded form: %s = %q, want %q", name, got, want)
		}
	}
	// The configuration page describes them in words.
	f.c.want(f.c.get("/env/staging/flags/winter"), http.StatusOK, "in segment testers", "appVersion semver gte")
}

func TestUIRulesInvalidValuesShownInline(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	h.segment("staging", flags.Segment{Key: "testers", Members: []string{"p1"}})
	c := h.login("alice")
	tests := []struct {
		name   string
		fields []string // set on a rule with one condition
		at     string   // the input whose error it is
		msg    string
	}{
		{"number operator", []string{"/rules/0/conditions/0/op", "lt", "/rules/0/conditions/0/value", "ten"}, "/rules/0/conditions/0/value", "must be a number"},
		{"version", []string{"/rules/0/conditions/0/op", "semver_gte", "/rules/0/conditions/0/value", "banana"}, "/rules/0/conditions/0/value", "is not a semantic version"},
		{"time", []string{"/rules/0/conditions/0/op", "before", "/rules/0/conditions/0/value", "tomorrow"}, "/rules/0/conditions/0/value", "is not an RFC 3339 time"},
		{"empty value", []string{"/rules/0/conditions/0/value", ""}, "/rules/0/conditions/0/value", "is required"},
		{"list quoting", []string{"/rules/0/conditions/0/op", "in", "/rules/0/conditions/0/value", `gold, "plat`}, "/rules/0/conditions/0/value", "has no closing quote"},
		{"no attribute", []string{"/rules/0/conditions/0/attribute", ""}, "/rules/0/conditions/0/attribute", "is required for eq"},
		{"unknown operator", []string{"/rules/0/conditions/0/op", "like"}, "/rules/0/conditions/0/op", `unknown operator "like"`},
		{"unknown segment", []string{"/rules/0/conditions/0/op", "in_segment", "/rules/0/conditions/0/segment", "ghosts"}, "/rules/0/conditions/0/segment", `unknown segment "ghosts"`},
		{"no segment", []string{"/rules/0/conditions/0/op", "not_in_segment"}, "/rules/0/conditions/0/segment", "is required for not_in_segment"},
		{"rule id", []string{"/rules/0/id", "Not A Key"}, "/rules/0/id", "must be 1 to 128"},
		{"split weight", []string{"serve:/rules/0", "split", "/rules/0/split/weights/1/weight", "lots"}, "/rules/0/split/weights/1/weight", "must be a whole number"},
		{"split total", []string{"serve:/rules/0", "split", "/rules/0/split/weights/0/weight", "0", "/rules/0/split/weights/1/weight", "0"}, "/rules/0/split/weights", "must add up to more than 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := openForm(t, c, editWinter)
			f.step("add:/rules", http.StatusOK)
			f.set("/rules/0/conditions/0/attribute", "tier", "/rules/0/conditions/0/value", "gold")
			f.set(tc.fields...)
			head := h.head("staging")
			for _, op := range []string{"check", "save"} {
				status := http.StatusOK
				if op == "save" {
					status = http.StatusUnprocessableEntity
				}
				f.form.Set("op", op)
				r := c.want(c.post(editWinter, f.form), status, tc.msg)
				// The message is in the error list of the input it is about.
				errs := regexp.MustCompile(`(?s)<ul class="field-error" id="` + regexp.QuoteMeta(fieldIDOf(tc.at)) + `-err">(.*?)</ul>`).FindStringSubmatch(r.body)
				if errs == nil || !strings.Contains(unescape(errs[1]), tc.msg) {
					t.Errorf("%s: no error %q at %s; errors on the page: %q", op, tc.msg, tc.at, regexp.MustCompile(`id="(f[^"]*)-err"`).FindAllStringSubmatch(r.body, -1))
				}
			}
			if h.head("staging") != head {
				t.Fatal("an invalid configuration was saved")
			}
		})
	}
}

// fieldIDOf is the HTML id of the input for ptr (web.fieldID) for the
// pointers of these tests: "/" becomes "_", and "_" is escaped.
func fieldIDOf(ptr string) string {
	return "f" + strings.ReplaceAll(strings.ReplaceAll(ptr, "_", ".5f."), "/", "_")
}

func TestUIRulesMoveAddRemove(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	f := openForm(t, h.login("alice"), editWinter)
	for i, id := range []string{"a", "b", "c"} {
		f.step("add:/rules", http.StatusOK)
		p := "/rules/" + string(rune('0'+i))
		f.set(p+"/id", id, p+"/conditions/0/attribute", "tier", p+"/conditions/0/value", id)
	}
	order := func() []string {
		var ids []string
		for i := 0; f.form.Has("/rules/" + string(rune('0'+i)) + "/id"); i++ {
			p := "/rules/" + string(rune('0'+i))
			if f.form.Get(p+"/conditions/0/value") != f.form.Get(p+"/id") {
				t.Fatalf("rule %s lost its condition: %v", p, f.form)
			}
			ids = append(ids, f.form.Get(p+"/id"))
		}
		return ids
	}
	steps := []struct {
		op    string
		want  []string
		focus string // the control focused after the step
	}{
		{"up:/rules/2", []string{"a", "c", "b"}, "f_rules_1-up"},
		{"up:/rules/1", []string{"c", "a", "b"}, "f_rules_0-down"}, // now first: its "up" is disabled
		{"up:/rules/0", []string{"c", "a", "b"}, ""},               // already first: nothing moves
		{"down:/rules/0", []string{"a", "c", "b"}, "f_rules_1-down"},
		{"down:/rules/1", []string{"a", "b", "c"}, "f_rules_2-up"}, // now last: its "down" is disabled
		{"remove:/rules/1", []string{"a", "c"}, "f_rules-add"},
		{"add:/rules/1/conditions", []string{"a", "c"}, "f_rules_1_conditions_1_attribute"},
		{"remove:/rules/1/conditions/1", []string{"a", "c"}, "f_rules_1_conditions-add"},
	}
	for _, s := range steps {
		r := f.step(s.op, http.StatusOK)
		if got := order(); !slices.Equal(got, s.want) {
			t.Errorf("after %s: rules %v, want %v", s.op, got, s.want)
		}
		if s.focus != "" && !regexp.MustCompile(`id="`+s.focus+`"[^>]* autofocus data-focus`).MatchString(r.body) {
			t.Errorf("after %s: %s is not focused", s.op, s.focus)
		}
	}
	if f.form.Get("len:/rules/1/conditions") != "1" {
		t.Errorf("rule c has %s conditions, want 1", f.form.Get("len:/rules/1/conditions"))
	}
	for _, op := range []string{"up:/rules/9", "remove:/rules/9", "add:/rules/9/conditions", "remove:/rules/0/conditions/5", "down:/flags"} {
		f.form.Set("op", op)
		f.c.want(f.c.post(editWinter, f.form), http.StatusBadRequest)
	}
	f.step("save", http.StatusSeeOther)
	var ids []string
	for _, r := range h.config("staging", "winter").Config.Rules {
		ids = append(ids, r.ID)
	}
	if !slices.Equal(ids, []string{"a", "c"}) {
		t.Errorf("saved rules %v, want [a c]", ids)
	}
}

func TestUIRulesRawAndFormRoundTrip(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	h.segment("staging", flags.Segment{Key: "testers", Members: []string{"p1"}})
	c := h.login("alice")
	fits := []struct {
		name  string
		rules string
	}{
		{"scalars", `[{"id":"s","conditions":[
			{"attribute":"tier","op":"eq","value":"gold"},
			{"attribute":"n","op":"neq","value":"5"},
			{"attribute":"n","op":"eq","value":5},
			{"attribute":"n","op":"eq","value":1.50},
			{"attribute":"b","op":"eq","value":true},
			{"attribute":"b","op":"eq","value":"true"},
			{"attribute":"e","op":"eq","value":""},
			{"attribute":"q","op":"eq","value":"\"quoted\""},
			{"attribute":"p","op":"eq","value":"  padded "},
			{"attribute":"h","op":"eq","value":"<b>&amp;</b>"}],"variant":"festival"}]`},
		{"lists", `[{"conditions":[
			{"attribute":"tier","op":"in","value":["gold","platinum"]},
			{"attribute":"x","op":"not_in","value":["a,b","5",5,false,"[x",""," y"]}],"variant":"control"}]`},
		{"typed", `[{"conditions":[
			{"attribute":"level","op":"lt","value":10},
			{"attribute":"score","op":"gte","value":-2.5e3},
			{"attribute":"name","op":"starts_with","value":" Sir "},
			{"attribute":"name","op":"contains","value":"5"},
			{"attribute":"v","op":"semver_lt","value":"2.0.0"},
			{"attribute":"t","op":"after","value":"2026-12-01T00:00:00Z"},
			{"attribute":"beta","op":"exists"},
			{"op":"not_in_segment","segment":"testers"}],"variant":"festival"}]`},
		{"split in its own order", `[{"id":"ramp","description":"treatment first","conditions":[],
			"split":{"bucket_by":"matchId","salt":"s1","weights":[{"variant":"festival","weight":100},{"variant":"control","weight":9900}]}}]`},
		{"several", `[{"id":"a","conditions":[{"attribute":"x","op":"eq","value":1}],"variant":"control"},
			{"id":"b","conditions":[{"attribute":"x","op":"eq","value":2}],"variant":"festival"}]`},
		{"invalid but showable", `[{"conditions":[{"attribute":"x","op":"eq","value":[1,2]}]}]`},
	}
	for _, tc := range fits {
		t.Run(tc.name, func(t *testing.T) {
			f := openForm(t, c, editWinter)
			f.step("raw:/rules", http.StatusOK)
			if !f.form.Has("/rules") {
				t.Fatal("raw mode has no rules textarea")
			}
			f.form.Set("/rules", tc.rules)
			f.step("form:/rules", http.StatusOK, "Edit rules as JSON")
			if f.form.Has("/rules") {
				t.Fatalf("still raw: %s", mainOf(f.last.body))
			}
			f.step("raw:/rules", http.StatusOK, "Edit rules with the form")
			var want, got []flags.Rule
			if err := json.Unmarshal([]byte(tc.rules), &want); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(f.form.Get("/rules")), &got); err != nil {
				t.Fatalf("raw text after the round trip: %v\n%s", err, f.form.Get("/rules"))
			}
			for i := range got { // the form lists every variant in a split; weight 0 serves nobody
				if s := got[i].Split; s != nil {
					s.Weights = slices.DeleteFunc(s.Weights, func(w flags.Weight) bool { return w.Weight == 0 })
				}
				if want[i].Conditions == nil {
					want[i].Conditions = []flags.Condition{}
				}
			}
			if diff := cmp.Diff(asJSON(t, want), asJSON(t, got)); diff != "" {
				t.Errorf("raw → form → raw (-want +got):\n%s", diff)
			}
		})
	}

	// What the form cannot show exactly stays raw, with the reason.
	stays := []struct{ name, rules, why string }{
		{"variant and split", `[{"conditions":[],"variant":"control","split":{"weights":[{"variant":"control","weight":1}]}}]`, "rule 1 sets both a variant and a split"},
		{"value of another type", `[{"conditions":[{"attribute":"v","op":"semver_eq","value":1}],"variant":"control"}]`, `condition 1 of rule 1 has a value or field its operator "semver_eq" does not take`},
		{"stray value", `[{"conditions":[{"attribute":"v","op":"exists","value":true}],"variant":"control"}]`, "condition 1 of rule 1"},
		{"stray attribute", `[{"conditions":[{"attribute":"v","op":"in_segment","segment":"testers"}],"variant":"control"}]`, "condition 1 of rule 1"},
		{"undeclared split variant", `[{"conditions":[],"split":{"weights":[{"variant":"ghost","weight":1}]}}]`, "the split of rule 1 names a variant that is not declared"},
		{"not JSON", `[{"conditions": [}]`, "fix the JSON before switching to the form"},
		{"unknown field", `[{"conditions": [], "serves": "control"}]`, `unknown field "serves"`},
	}
	for _, tc := range stays {
		t.Run("stays raw: "+tc.name, func(t *testing.T) {
			f := openForm(t, c, editWinter)
			f.step("raw:/rules", http.StatusOK)
			f.form.Set("/rules", tc.rules)
			r := f.step("form:/rules", http.StatusOK, tc.why)
			if !f.form.Has("/rules") || f.form.Get("/rules") != tc.rules {
				t.Errorf("the raw rules were not kept as typed: %q", f.form.Get("/rules"))
			}
			if !strings.Contains(r.body, `id="f_rules-err"`) {
				t.Error("the reason is not at the rules box")
			}
		})
	}

	// Rules saved from raw mode open in the form.
	f := openForm(t, c, editWinter)
	f.step("raw:/rules", http.StatusOK)
	f.form.Set("/rules", `[{"id":"x","conditions":[{"attribute":"level","op":"gt","value":3}],"variant":"festival"}]`)
	f.set("message", "raw save")
	f.step("save", http.StatusSeeOther)
	if got := h.config("staging", "winter").Config.Rules; len(got) != 1 || got[0].ID != "x" || string(got[0].Conditions[0].Value) != "3" {
		t.Errorf("saved from raw mode: %+v", got)
	}
	f = openForm(t, c, editWinter)
	if f.form.Get("/rules/0/conditions/0/op") != "gt" || f.form.Get("/rules/0/conditions/0/value") != "3" {
		t.Errorf("saved rules in the form: %v", f.form)
	}

	// The form holding something unreadable does not switch to JSON.
	f.set("/rules/0/conditions/0/value", "three")
	f.step("raw:/rules", http.StatusOK, "must be a number", "fix the rules before switching them to JSON")
	if f.form.Has("/rules") {
		t.Error("switched to JSON with an unreadable value")
	}
}

func TestUIRulesOperatorsAndSegmentPicker(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	h.segment("staging", flags.Segment{Key: "testers", Members: []string{"p1"}})
	h.segment("staging", flags.Segment{Key: "whales", Members: []string{"p2"}})
	c := h.login("alice")
	f := openForm(t, c, editWinter)
	r := f.step("add:/rules", http.StatusOK)
	ops := regexp.MustCompile(`(?s)<select id="f_rules_0_conditions_0_op".*?</select>`).FindString(r.body)
	var got []string
	for _, m := range regexp.MustCompile(`<option value="([^"]+)"`).FindAllStringSubmatch(ops, -1) {
		got = append(got, m[1])
	}
	want := []flags.Operator{flags.OpEquals, flags.OpNotEquals, flags.OpIn, flags.OpNotIn, flags.OpLess, flags.OpLessEq,
		flags.OpGreater, flags.OpGreaterEq, flags.OpStartsWith, flags.OpEndsWith, flags.OpContains, flags.OpSemverEq,
		flags.OpSemverLess, flags.OpSemverLessEq, flags.OpSemverGt, flags.OpSemverGtEq, flags.OpBefore, flags.OpAfter,
		flags.OpExists, flags.OpNotExists, flags.OpInSegment, flags.OpNotInSegment}
	var wantS []string
	for _, op := range want {
		wantS = append(wantS, string(op))
	}
	if diff := cmp.Diff(wantS, got); diff != "" {
		t.Errorf("operators offered (-want +got):\n%s", diff)
	}
	seg := regexp.MustCompile(`(?s)<select id="f_rules_0_conditions_0_segment".*?</select>`).FindString(r.body)
	for _, s := range []string{`<option value="testers"`, `<option value="whales"`} {
		if !strings.Contains(seg, s) {
			t.Errorf("the segment picker lacks %s: %s", s, seg)
		}
	}
	c.want(r, http.StatusOK, `href="/env/staging/segments"`, `<label for="f_rules_0_conditions_0_segment">Segment</label>`)
	// Every control of the rules form has a label.
	rules := r.body[strings.Index(r.body, `id="rules-heading"`):]
	rules = rules[:strings.Index(rules, `<section class="save">`)]
	for _, m := range regexp.MustCompile(`<(?:input|select|textarea)[^>]* id="([^"]+)"`).FindAllStringSubmatch(rules, -1) {
		if !strings.Contains(rules, `<label for="`+m[1]+`"`) {
			t.Errorf("control %s has no label", m[1])
		}
	}
	// A segment removed meanwhile is kept in the picker, marked, and
	// refused before saving.
	f.set("/rules/0/conditions/0/op", "in_segment", "/rules/0/conditions/0/segment", "whales")
	if err := deleteSegment(h, "staging", "whales"); err != nil {
		t.Fatal(err)
	}
	f.step("save", http.StatusUnprocessableEntity, "whales (no such segment)", `unknown segment "whales"`)
}

func deleteSegment(h *uiHarness, env, key string) error {
	sv, err := h.flags.GetSegment(context.Background(), env, key)
	if err != nil {
		return err
	}
	_, err = h.flags.DeleteSegment(solstice.WithActor(context.Background(), solstice.Actor{Name: "bob", Kind: "user"}), env, key, sv.Revision)
	return err
}

func TestUIRulesAccessAndCSRF(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	viewer := h.login("vic")
	viewer.want(viewer.post(editWinter, url.Values{"op": {"add:/rules"}}), http.StatusForbidden, "needs the editor role")

	alice := h.login("alice")
	f := openForm(t, alice, editWinter)
	f.step("add:/rules", http.StatusOK)
	f.set("/rules/0/conditions/0/attribute", "tier", "/rules/0/conditions/0/value", "gold")
	f.form.Set("op", "save")
	head := h.head("staging")
	for name, token := range map[string]string{"no token": "", "wrong token": "x" + alice.csrf, "another session's token": h.login("bob").csrf} {
		form := url.Values{}
		for k, v := range f.form {
			form[k] = v
		}
		form.Set("_csrf", token)
		if r := alice.do("POST", editWinter, form); r.status != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", name, r.status)
		}
	}
	if h.head("staging") != head {
		t.Fatal("a forged save went through")
	}
	f.step("save", http.StatusSeeOther)
	if len(h.config("staging", "winter").Config.Rules) != 1 {
		t.Error("the genuine save did not go through")
	}
}

func unescape(s string) string {
	return strings.NewReplacer("&#34;", `"`, "&quot;", `"`, "&amp;", "&", "&lt;", "<", "&gt;", ">", "&#39;", "'").Replace(s)
}

// TestBrowserRulesEditor checks in Chromium what the HTTP tests cannot: the
// stylesheet shows only the controls the chosen operator and serving use,
// and after each action (through htmx) the focus is on the control the
// person works with next.
func TestBrowserRulesEditor(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	h := newUIHarness(t)
	h.eventFlag("winter")
	h.segment("staging", flags.Segment{Key: "testers", Members: []string{"p1"}})
	b := newBrowser(t, h.srv.URL)
	b.login("alice")
	b.do("open the editor at laptop width", chromedp.EmulateViewport(1366, 900),
		b.open(editWinter), chromedp.WaitVisible(chromedp.CSS("#f_rules-add")))
	b.evalBool(`(window.__boosted = true)`)
	shown := func(id string) bool { // whether the control with id is rendered
		return b.evalBool(`document.getElementById(` + strconvQuote(id) + `).checkVisibility()`)
	}

	b.do("add a rule", chromedp.Click(chromedp.CSS("#f_rules-add")), chromedp.WaitVisible(chromedp.CSS("#f_rules_0_conditions_0_attribute")))
	if !b.poll(`document.activeElement.id === "f_rules_0_conditions_0_attribute"`) {
		t.Error("after adding a rule, the focus is not on its first condition")
	}
	if !shown("f_rules_0_conditions_0_value") || shown("f_rules_0_conditions_0_segment") {
		t.Error("an eq condition: want the value shown and the segment picker hidden")
	}
	b.do("target a segment", chromedp.SetValue(chromedp.CSS("#f_rules_0_conditions_0_op"), "in_segment"),
		chromedp.SetValue(chromedp.CSS("#f_rules_0_conditions_0_segment"), "testers"))
	if shown("f_rules_0_conditions_0_attribute") || shown("f_rules_0_conditions_0_value") || !shown("f_rules_0_conditions_0_segment") {
		t.Error("an in_segment condition: want only the segment picker shown")
	}
	if shown("f_rules_0_split_bucket.5f.by") {
		t.Error("a rule serving a variant shows its split")
	}
	b.do("serve a split", chromedp.Click(chromedp.CSS(`input[name="serve:/rules/0"][value="split"]`)),
		chromedp.SetValue(chromedp.CSS("#f_rules_0_split_weights_0_weight"), "1000"),
		chromedp.SetValue(chromedp.CSS("#f_rules_0_split_weights_1_weight"), "9000"))
	if !shown("f_rules_0_split_bucket.5f.by") || shown("f_rules_0_variant") {
		t.Error("a rule serving a split: want the split shown and the variant hidden")
	}
	b.do("add a condition", chromedp.Click(chromedp.CSS("#f_rules_0_conditions-add")), chromedp.WaitVisible(chromedp.CSS("#f_rules_0_conditions_1_attribute")))
	if !b.poll(`document.activeElement.id === "f_rules_0_conditions_1_attribute"`) {
		t.Error("after adding a condition, the focus is not on it")
	}
	b.do("fill it in", chromedp.SetValue(chromedp.CSS("#f_rules_0_conditions_1_attribute"), "platform"),
		chromedp.SetValue(chromedp.CSS("#f_rules_0_conditions_1_value"), "ios"))
	b.screenshot("rules-editor.png")
	b.do("save", chromedp.Click(button("Save as a new revision")), chromedp.WaitVisible(textIn("flash", "Saved as revision")))
	if !b.evalBool(`window.__boosted === true`) {
		t.Error("the rules editor reloaded the page: htmx is not handling its form")
	}
	want := []flags.Rule{{Conditions: []flags.Condition{{Op: flags.OpInSegment, Segment: "testers"},
		{Attribute: "platform", Op: flags.OpEquals, Value: json.RawMessage(`"ios"`)}},
		Split: &flags.Split{Weights: []flags.Weight{{Variant: "control", Weight: 1000}, {Variant: "festival", Weight: 9000}}}}}
	if diff := cmp.Diff(asJSON(t, want), asJSON(t, h.config("staging", "winter").Config.Rules)); diff != "" {
		t.Errorf("saved rules (-want +got):\n%s", diff)
	}
	b.do("the segments", b.open("/env/staging/segments"), chromedp.WaitVisible(chromedp.CSS("table.segments")))
	b.screenshot("segments.png")
	b.do("a segment", b.open("/env/staging/segments/testers"), chromedp.WaitVisible(chromedp.CSS("#f_members")))
	b.screenshot("segment.png")
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

// TestUIRulesUntouchedSaveChangesNothing: rules and splits written through
// the API in a way the form would write differently (no conditions as null,
// a split leaving a variant out) are saved as they are when the form does
// not change what they mean.
func TestUIRulesUntouchedSaveChangesNothing(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	fc := h.config("staging", "winter")
	cfg := fc.Config
	cfg.Rules = []flags.Rule{
		{Variant: "festival"},
		{Conditions: []flags.Condition{{Attribute: "tier", Op: flags.OpEquals, Value: json.RawMessage(`"gold"`)}},
			Split: &flags.Split{Weights: []flags.Weight{{Variant: "festival", Weight: 10}}}},
	}
	cfg.Split = &flags.Split{Weights: []flags.Weight{{Variant: "festival", Weight: 10}}}
	ctx := solstice.WithActor(context.Background(), solstice.Actor{Name: "bob", Kind: "user"})
	if _, err := h.flags.PutConfig(ctx, "staging", "winter", cfg, fc.Revision, "through the API"); err != nil {
		t.Fatal(err)
	}
	head := h.head("staging")
	c := h.login("alice")
	f := openForm(t, c, editWinter)
	if f.form.Get("rules") != "2" || f.form.Get("/rules/1/split/weights/1/variant") != "control" {
		t.Fatalf("the stored rules in the form: %v", f.form)
	}
	r := f.step("save", http.StatusSeeOther)
	c.want(c.get(r.header.Get("Location")), http.StatusOK, "Nothing changed")
	if h.head("staging") != head {
		t.Error("saving the untouched form made a revision")
	}
	// Changing a weight saves the rule as the form has it.
	f = openForm(t, c, editWinter)
	f.set("/rules/1/split/weights/1/weight", "5")
	f.step("save", http.StatusSeeOther)
	got := h.config("staging", "winter").Config
	want := []flags.Weight{{Variant: "festival", Weight: 10}, {Variant: "control", Weight: 5}}
	if diff := cmp.Diff(want, got.Rules[1].Split.Weights); diff != "" {
		t.Errorf("rule 2's weights (-want +got):\n%s", diff)
	}
	if got.Rules[0].Conditions != nil || len(got.Split.Weights) != 1 {
		t.Errorf("the untouched parts changed: %+v", got)
	}
}

// TestUIRulesStoredUnshowableOpensRaw: stored rules the form would save
// changed (here an attribute with a space before it, which the form trims)
// open as JSON, with the reason, and save unchanged.
func TestUIRulesStoredUnshowableOpensRaw(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	fc := h.config("staging", "winter")
	cfg := fc.Config
	cfg.Rules = []flags.Rule{{Conditions: []flags.Condition{{Attribute: " tier", Op: flags.OpExists}}, Variant: "festival"}}
	ctx := solstice.WithActor(context.Background(), solstice.Actor{Name: "bob", Kind: "user"})
	if _, err := h.flags.PutConfig(ctx, "staging", "winter", cfg, fc.Revision, "through the API"); err != nil {
		t.Fatal(err)
	}
	head := h.head("staging")
	c := h.login("alice")
	f := openForm(t, c, editWinter)
	c.want(f.last, http.StatusOK, "These rules are shown as JSON because the form cannot show them exactly",
		`condition 1 of rule 1 has a value or field its operator "exists" does not take, or an attribute with spaces around it`)
	if !f.form.Has("/rules") || !strings.Contains(f.form.Get("/rules"), `" tier"`) {
		t.Fatalf("not in raw mode: %v", f.form)
	}
	f.step("form:/rules", http.StatusOK, "the form cannot show these rules as they are")
	r := f.step("save", http.StatusSeeOther)
	c.want(c.get(r.header.Get("Location")), http.StatusOK, "Nothing changed")
	if h.head("staging") != head {
		t.Error("saving the untouched raw rules made a revision")
	}
}
