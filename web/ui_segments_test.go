package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
)

func (h *uiHarness) getSegment(env, key string) (flags.SegmentVersion, error) {
	return h.flags.GetSegment(context.Background(), env, key)
}

func TestUISegmentCreateEditDelete(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	c := h.login("alice")
	c.want(c.get("/env/staging/flags"), http.StatusOK, `href="/env/staging/segments"`)
	c.want(c.get("/env/staging/segments"), http.StatusOK, "No segments in staging yet", "New segment")

	// Create.
	f := openForm(t, c, "/env/staging/segments/new")
	f.set("/key", "vip", "/name", "VIP players", "/conditions/0/attribute", "tier", "/conditions/0/op", "in",
		"/conditions/0/value", "gold, platinum")
	f.step("add:/conditions", http.StatusOK)
	f.set("/conditions/1/attribute", "level", "/conditions/1/op", "gte", "/conditions/1/value", "10",
		"/members", "p1\np2, p3\n\n", "/members_attribute", "userId", "message", "VIPs for the festival")
	f.step("check", http.StatusOK, "No problems found")
	r := f.step("save", http.StatusSeeOther)
	if loc := r.header.Get("Location"); loc != "/env/staging/segments/vip" {
		t.Fatalf("after creating: redirected to %q", loc)
	}
	c.want(c.get("/env/staging/segments/vip"), http.StatusOK, "Saved segment vip as revision", "No flag in staging uses this segment")
	want := flags.Segment{Key: "vip", Name: "VIP players", MembersAttribute: "userId", Members: []string{"p1", "p2", "p3"},
		Conditions: []flags.Condition{
			{Attribute: "tier", Op: flags.OpIn, Value: json.RawMessage(`["gold","platinum"]`)},
			{Attribute: "level", Op: flags.OpGreaterEq, Value: json.RawMessage(`10`)},
		}}
	sv, err := h.getSegment("staging", "vip")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(asJSON(t, want), asJSON(t, sv.Segment)); diff != "" {
		t.Errorf("created segment (-want +got):\n%s", diff)
	}
	if rev, _ := h.flags.GetRevision(context.Background(), "staging", sv.Revision); rev.Message != "VIPs for the festival" || rev.Author != "alice" {
		t.Errorf("revision: %q by %q", rev.Message, rev.Author)
	}

	// Edit: drop the level condition, rename.
	f = openForm(t, c, "/env/staging/segments/vip")
	if f.form.Get("/conditions/0/value") != "gold\nplatinum" || f.form.Get("/members") != "p1\np2\np3" {
		t.Fatalf("the form of the stored segment: %v", f.form)
	}
	f.step("remove:/conditions/1", http.StatusOK)
	f.set("/name", "Gold and platinum")
	f.form.Set("/key", "renamed") // the address names the segment: a key in the form is ignored
	f.step("save", http.StatusSeeOther)
	want.Name, want.Conditions = "Gold and platinum", want.Conditions[:1]
	if sv, err = h.getSegment("staging", "vip"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(asJSON(t, want), asJSON(t, sv.Segment)); diff != "" {
		t.Errorf("edited segment (-want +got):\n%s", diff)
	}
	if _, err := h.getSegment("staging", "renamed"); !solstice.IsKind(err, solstice.KindNotFound) {
		t.Errorf("a segment was created under the key typed: %v", err)
	}
	// Saving it unchanged makes no revision.
	head := h.head("staging")
	f = openForm(t, c, "/env/staging/segments/vip")
	f.step("save", http.StatusSeeOther)
	if h.head("staging") != head {
		t.Error("an unchanged save made a revision")
	}

	// A flag uses it: the list and the page say so, and deleting is refused.
	fc := h.config("staging", "winter")
	cfg := fc.Config
	cfg.Rules = []flags.Rule{{Conditions: []flags.Condition{{Op: flags.OpInSegment, Segment: "vip"}}, Variant: "festival"}}
	ctx := solstice.WithActor(context.Background(), solstice.Actor{Name: "bob", Kind: "user"})
	if _, err := h.flags.PutConfig(ctx, "staging", "winter", cfg, fc.Revision, "vip festival"); err != nil {
		t.Fatal(err)
	}
	c.want(c.get("/env/staging/segments"), http.StatusOK, "vip", "tier in", "3 listed players (by userId)", `href="/env/staging/flags/winter"`)
	page := c.want(c.get("/env/staging/segments/vip"), http.StatusOK, "Used by the rules of", "Deleting is refused while flags use this segment")
	del := formValues(t, page.body, "/env/staging/segments/vip/delete")
	c.want(c.post("/env/staging/segments/vip/delete", del), http.StatusConflict, `Not deleted: segment "vip" is used by flags winter`)
	if _, err := h.getSegment("staging", "vip"); err != nil {
		t.Fatalf("the segment in use was deleted: %v", err)
	}

	// Unused, it can be deleted.
	fc = h.config("staging", "winter")
	cfg = fc.Config
	cfg.Rules = nil
	if _, err := h.flags.PutConfig(ctx, "staging", "winter", cfg, fc.Revision, "no more vip"); err != nil {
		t.Fatal(err)
	}
	page = c.get("/env/staging/segments/vip")
	del = formValues(t, page.body, "/env/staging/segments/vip/delete")
	c.want(c.submit("/env/staging/segments/vip/delete", del), http.StatusOK, "Deleted segment vip", "No segments in staging yet")
	if _, err := h.getSegment("staging", "vip"); !solstice.IsKind(err, solstice.KindNotFound) {
		t.Errorf("after deleting: %v", err)
	}
	c.want(c.get("/env/staging/segments/vip"), http.StatusNotFound)
}

func TestUISegmentValidation(t *testing.T) {
	h := newUIHarness(t)
	h.segment("staging", flags.Segment{Key: "testers", Members: []string{"p1"}})
	c := h.login("alice")
	tests := []struct {
		name   string
		fields []string
		status int
		at     string
		msg    string
	}{
		{"bad key", []string{"/key", "VIP Players"}, http.StatusUnprocessableEntity, "/key", "must be 1 to 128"},
		{"no key", []string{"/key", ""}, http.StatusUnprocessableEntity, "/key", "is required"},
		{"reserved key", []string{"/key", "new"}, http.StatusUnprocessableEntity, "/key", `"new" is reserved`},
		{"taken key", []string{"/key", "testers"}, http.StatusConflict, "/key", `staging already has a segment "testers"`},
		{"number value", []string{"/conditions/0/op", "gt", "/conditions/0/value", "many"}, http.StatusUnprocessableEntity, "/conditions/0/value", "must be a number"},
		{"segment in a segment", []string{"/conditions/0/op", "in_segment"}, http.StatusUnprocessableEntity, "/conditions/0/op", "a segment's conditions cannot refer to segments"},
		{"long members attribute", []string{"/members_attribute", strings.Repeat("a", 300)}, http.StatusUnprocessableEntity, "/members_attribute", "must be at most 256 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := openForm(t, c, "/env/staging/segments/new")
			f.set("/key", "vip", "/conditions/0/attribute", "tier", "/conditions/0/value", "gold")
			f.set(tc.fields...)
			head := h.head("staging")
			r := f.step("save", tc.status, tc.msg)
			if h.head("staging") != head {
				t.Fatal("an invalid segment was saved")
			}
			if !containsErrorAt(r.body, tc.at, tc.msg) {
				t.Errorf("no error %q at %s", tc.msg, tc.at)
			}
			if f.form.Get("/conditions/0/attribute") != "tier" {
				t.Error("the form did not keep what was typed")
			}
		})
	}
	// Segment operators are not offered in a segment.
	f := openForm(t, c, "/env/staging/segments/new")
	c.wantNot(f.last, `value="in_segment"`, `value="not_in_segment"`)
	c.want(f.last, http.StatusOK, `value="semver_gte"`, `<label for="f_conditions_0_attribute">Attribute</label>`)
}

// containsErrorAt reports whether the page lists msg among the errors of
// the input for ptr.
func containsErrorAt(body, ptr, msg string) bool {
	i := strings.Index(body, `id="`+fieldIDOf(ptr)+`-err"`)
	if i < 0 {
		return false
	}
	end := strings.Index(body[i:], "</ul>")
	return end >= 0 && strings.Contains(unescape(body[i:i+end]), msg)
}

func TestUISegmentAccess(t *testing.T) {
	h := newUIHarness(t)
	for _, env := range []string{"staging", "production"} {
		h.segment(env, flags.Segment{Key: "testers", Members: []string{"p1"}})
	}
	newForm := func() url.Values { return url.Values{"/key": {"vip"}, "/members": {"p9"}, "op": {"save"}} }

	// A viewer sees segments but changes none.
	vic := h.login("vic")
	vic.wantNot(vic.want(vic.get("/env/staging/segments"), http.StatusOK, "testers"), "New segment")
	page := vic.want(vic.get("/env/staging/segments/testers"), http.StatusOK, "You can look at this segment", "needs the editor role")
	vic.wantNot(page, "Save as a new revision", "Delete segment")
	vic.want(vic.get("/env/staging/segments/new"), http.StatusForbidden, "needs the editor role")
	vic.want(vic.post("/env/staging/segments/new", newForm()), http.StatusForbidden)
	vic.want(vic.post("/env/staging/segments/testers", url.Values{"op": {"save"}, "/members": {"p1\nvic"}, "base": {"1"}}), http.StatusForbidden)
	vic.want(vic.post("/env/staging/segments/testers/delete", url.Values{"base": {"1"}}), http.StatusForbidden)

	// CSRF: the same requests, forged, change nothing.
	alice := h.login("alice")
	alice.get("/env/staging/segments/new")
	for name, headers := range map[string]map[string]string{
		"no token":       {},
		"foreign origin": {"Origin": "https://evil.example"},
	} {
		alice.hdr = headers
		form := url.Values{"/key": {"vip"}, "/members": {"p9"}, "op": {"save"}}
		if name != "no token" {
			form.Set("_csrf", alice.csrf)
		} else {
			form.Set("_csrf", "")
		}
		if r := alice.do("POST", "/env/staging/segments/new", form); r.status != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", name, r.status)
		}
		if r := alice.do("POST", "/env/staging/segments/testers/delete", url.Values{"base": {"1"}, "_csrf": form["_csrf"]}); r.status != http.StatusForbidden {
			t.Errorf("%s delete: status %d, want 403", name, r.status)
		}
	}
	alice.hdr = map[string]string{}
	if _, err := h.getSegment("staging", "vip"); !solstice.IsKind(err, solstice.KindNotFound) {
		t.Fatalf("a forged request created a segment: %v", err)
	}
	if _, err := h.getSegment("staging", "testers"); err != nil {
		t.Fatalf("a forged request deleted a segment: %v", err)
	}
	alice.want(alice.submit("/env/staging/segments/new", newForm()), http.StatusOK, "Saved segment vip")

	// Production is protected, and segments have no change requests: an
	// editor cannot change them there; an approver can, directly.
	alice.want(alice.get("/env/production/segments"), http.StatusOK, "changing segments here needs the approver role")
	alice.want(alice.get("/env/production/segments/new"), http.StatusForbidden, "production is protected", "needs the approver role")
	alice.want(alice.post("/env/production/segments/new", newForm()), http.StatusForbidden)
	alice.want(alice.get("/env/production/segments/testers"), http.StatusOK, "You can look at this segment")
	bob := h.login("bob")
	bob.get("/env/production/segments/new")
	bob.want(bob.submit("/env/production/segments/new", newForm()), http.StatusOK, "Saved segment vip", "needs the approver role, and a save applies at once")
	if _, err := h.getSegment("production", "vip"); err != nil {
		t.Errorf("the approver's segment: %v", err)
	}
}

func TestUISegmentStaleEdit(t *testing.T) {
	h := newUIHarness(t)
	h.segment("staging", flags.Segment{Key: "testers", Members: []string{"p1"}})
	c := h.login("alice")
	f := openForm(t, c, "/env/staging/segments/testers")

	// Meanwhile bob adds a member.
	sv, _ := h.getSegment("staging", "testers")
	seg := sv.Segment
	seg.Members = append(seg.Members, "bobs-friend")
	if _, err := h.flags.PutSegment(solstice.WithActor(context.Background(), solstice.Actor{Name: "bob", Kind: "user"}), "staging", seg, sv.Revision, "a friend"); err != nil {
		t.Fatal(err)
	}
	f.set("/members", "p1\nalices-friend")
	f.step("save", http.StatusConflict, "Someone else changed this segment", "by bob", "bobs-friend", "alices-friend")
	if sv, _ := h.getSegment("staging", "testers"); len(sv.Segment.Members) != 2 || sv.Segment.Members[1] != "bobs-friend" {
		t.Fatalf("bob's change was overwritten: %v", sv.Segment.Members)
	}
	// Saving again applies alice's version knowingly.
	f.step("save", http.StatusSeeOther)
	if sv, _ := h.getSegment("staging", "testers"); len(sv.Segment.Members) != 2 || sv.Segment.Members[1] != "alices-friend" {
		t.Errorf("after saving again: %v", sv.Segment.Members)
	}

	// A delete from a stale page is refused too.
	page := c.get("/env/staging/segments/testers")
	del := formValues(t, page.body, "/env/staging/segments/testers/delete")
	sv, _ = h.getSegment("staging", "testers")
	seg = sv.Segment
	seg.Name = "Testers"
	if _, err := h.flags.PutSegment(solstice.WithActor(context.Background(), solstice.Actor{Name: "bob", Kind: "user"}), "staging", seg, sv.Revision, ""); err != nil {
		t.Fatal(err)
	}
	c.want(c.post("/env/staging/segments/testers/delete", del), http.StatusConflict, "Not deleted: the segment changed since you opened it")
	if _, err := h.getSegment("staging", "testers"); err != nil {
		t.Errorf("the stale delete went through: %v", err)
	}
}

// TestUISegmentUnshowable: a segment written through the API that the form
// would save changed (a member id holding a comma would become two) is
// shown, not edited.
func TestUISegmentUnshowable(t *testing.T) {
	h := newUIHarness(t)
	h.segment("staging", flags.Segment{Key: "odd", Members: []string{"p1", "last, first"}})
	h.segment("staging", flags.Segment{Key: "spaced", Conditions: []flags.Condition{{Attribute: " tier", Op: flags.OpExists}}})
	h.segment("staging", flags.Segment{Key: "plain", Members: []string{"p1"}, Description: "two words"})
	c := h.login("alice")
	for key, want := range map[string]string{
		"odd":    "a listed player's id has a comma",
		"spaced": `condition 1 has a value or field its operator "exists" does not take, or an attribute with spaces around it`,
	} {
		page := c.want(c.get("/env/staging/segments/"+key), http.StatusOK, "This form cannot show this segment exactly", want, "Delete segment "+key)
		c.wantNot(page, "Save as a new revision")
	}
	c.wantNot(c.want(c.get("/env/staging/segments/plain"), http.StatusOK, "Save as a new revision"), "cannot show this segment")
}
