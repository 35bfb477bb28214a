package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/review"
)

func TestUILogin(t *testing.T) {
	h := newUIHarness(t)
	c := h.anonymous()

	// Pages send strangers to the login page, and back afterwards.
	r := c.do("GET", "/env/staging/flags?q=x", nil)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/login?next=%2Fenv%2Fstaging%2Fflags%3Fq%3Dx" {
		t.Fatalf("anonymous GET: %d to %q, want 303 to the login page", r.status, r.header.Get("Location"))
	}
	c.want(c.get("/login"), http.StatusOK, "Log in to Solstice")

	for name, form := range map[string]url.Values{
		"wrong password": {"username": {"alice"}, "password": {"nope-nope-nope"}},
		"unknown user":   {"username": {"mallory"}, "password": {"alice-password"}},
	} {
		r := c.post("/login", form)
		c.want(r, http.StatusUnauthorized, "invalid username or password")
		if strings.Contains(r.body, "mallory") && name == "unknown user" && !strings.Contains(r.body, `value="mallory"`) {
			t.Errorf("%s: the page names the user outside the form", name)
		}
	}
	r = c.post("/login", url.Values{"username": {"alice"}, "password": {"alice-password"}, "next": {"/env/staging/flags?q=x"}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/env/staging/flags?q=x" {
		t.Fatalf("login: %d to %q, want 303 back to the page asked for", r.status, r.header.Get("Location"))
	}
	var session *http.Cookie
	for _, ck := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(ck, "solstice_session=") {
			parsed, err := http.ParseSetCookie(ck)
			if err != nil {
				t.Fatal(err)
			}
			session = parsed
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteLaxMode || session.Path != "/" || session.Secure || session.Domain != "" {
		t.Fatalf("session cookie over HTTP = %+v; want solstice_session, HttpOnly, SameSite=Lax, Path=/, no Domain", session)
	}
	if time.Until(session.Expires) < 6*24*time.Hour {
		t.Errorf("session cookie expires %v, want with the 7-day absolute timeout", session.Expires)
	}
	c.want(c.get("/env/staging/flags"), http.StatusOK, "Flags in staging", "alice")

	// An open redirect is not followed.
	other := h.anonymous()
	other.get("/login")
	r = other.post("/login", url.Values{"username": {"bob"}, "password": {"bob-password"}, "next": {"//evil.example/x"}})
	if r.header.Get("Location") != "/" {
		t.Errorf("login with next=//evil.example: Location %q, want /", r.header.Get("Location"))
	}

	// Logging out ends the session on the server, not only in the browser:
	// the old cookie, replayed, is refused.
	c.want(c.submit("/logout", nil), http.StatusOK, "You are logged out")
	replay := h.anonymous()
	u, _ := url.Parse(h.srv.URL)
	replay.http.Jar.SetCookies(u, []*http.Cookie{{Name: "solstice_session", Value: session.Value}})
	if r := replay.do("GET", "/env/staging", nil); r.status != http.StatusSeeOther {
		t.Errorf("the session cookie still works after logout: %d", r.status)
	}
}

func TestUISecureCookieOverHTTPS(t *testing.T) {
	h := newUIHarness(t)
	c := h.anonymous()
	// The test server is on the loopback interface, whose forwarding
	// headers Echo trusts, like those of a TLS-terminating proxy.
	c.hdr["X-Forwarded-Proto"] = "https"
	c.get("/login")
	r := c.post("/login", url.Values{"username": {"alice"}, "password": {"alice-password"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("login: %d %.300s", r.status, r.body)
	}
	var found bool
	for _, raw := range r.header.Values("Set-Cookie") {
		ck, err := http.ParseSetCookie(raw)
		if err != nil {
			t.Fatal(err)
		}
		if ck.Name == "solstice_session" && ck.Value != "" {
			t.Errorf("the plain cookie was set over HTTPS: %s", raw)
		}
		if ck.Name == "__Host-solstice_session" {
			found = true
			if !ck.Secure || ck.Path != "/" || ck.Domain != "" || !ck.HttpOnly {
				t.Errorf("__Host- cookie %s: want Secure, HttpOnly, Path=/, no Domain", raw)
			}
		}
	}
	if !found {
		t.Fatalf("no __Host-solstice_session cookie over HTTPS: %v", r.header.Values("Set-Cookie"))
	}
}

func TestUICSRF(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	c := h.login("alice")
	c.get("/env/staging/flags/winter")
	good := c.csrf
	toggle := func(token string, headers ...string) int {
		c.hdr = map[string]string{}
		for i := 0; i+1 < len(headers); i += 2 {
			c.hdr[headers[i]] = headers[i+1]
		}
		defer func() { c.hdr = map[string]string{} }()
		return c.do("POST", "/env/staging/flags/winter/toggle", url.Values{"to": {"on"}, "_csrf": {token}}).status
	}
	tests := []struct {
		name    string
		token   string
		headers []string
		want    int
	}{
		{"no token", "", nil, http.StatusForbidden},
		{"wrong token", "x" + good, nil, http.StatusForbidden},
		{"another session's token", h.login("bob").csrf, nil, http.StatusForbidden},
		{"cross-site fetch", good, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"foreign origin", good, []string{"Origin", "https://evil.example"}, http.StatusForbidden},
		{"token in the header", "", []string{"X-CSRF-Token", good}, http.StatusSeeOther},
	}
	for _, tc := range tests {
		if got := toggle(tc.token, tc.headers...); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
		if tc.want == http.StatusForbidden && h.config("staging", "winter").Config.Enabled {
			t.Fatalf("%s: the forged request turned the flag on", tc.name)
		}
	}
	if !h.config("staging", "winter").Config.Enabled {
		t.Error("the request with the right token did not turn the flag on")
	}

	// The login form has its own double-submit token.
	a := h.anonymous()
	r := a.do("POST", "/login", url.Values{"username": {"alice"}, "password": {"alice-password"}, "_csrf": {"forged"}})
	a.want(r, http.StatusForbidden, "The login form expired")
}

func TestUIRoles(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	viewer := h.login("vic")
	page := viewer.want(viewer.get("/env/staging/flags/winter"), http.StatusOK, "winter")
	viewer.wantNot(page, "Edit configuration", "Turn on…")
	viewer.want(viewer.get("/env/staging/flags/winter/edit"), http.StatusForbidden, "needs the editor role in staging")
	viewer.want(viewer.post("/env/staging/flags/winter/toggle", url.Values{"to": {"on"}}), http.StatusForbidden)
	viewer.want(viewer.get("/admin/users"), http.StatusForbidden, "needs the admin role")
	viewer.want(viewer.get("/flags/new"), http.StatusForbidden)

	editor := h.login("alice")
	editor.want(editor.get("/env/staging/flags/winter/edit"), http.StatusOK, "Edit winter")
	editor.want(editor.get("/admin/keys"), http.StatusForbidden)

	// A per-environment role narrows the default one.
	if _, err := h.acc.SetRoles(context.Background(), "alice", map[string]accounts.Role{"*": accounts.RoleEditor, "production": accounts.RoleViewer}); err != nil {
		t.Fatal(err)
	}
	editor.want(editor.get("/env/production/flags/winter/edit"), http.StatusForbidden, "needs the editor role in production")

	// The JSON API keeps its problem+json answers (a session cookie is no
	// credential there), even for unknown paths.
	for _, path := range []string{"/api/v1/flags", "/api/v1/nope"} {
		r := editor.do("GET", path, nil)
		if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("GET %s with a session cookie: %d %s, want a 401 problem", path, r.status, r.header.Get("Content-Type"))
		}
	}
}

func TestUIOneTimePassword(t *testing.T) {
	h := newUIHarness(t)
	admin := h.login("admin")
	page := admin.want(admin.submit("/admin/users", url.Values{"username": {"dora"}, "display_name": {"Dora"}, "role": {"editor"}, "role:production": {"viewer"}}),
		http.StatusCreated, "dora created", "One-time password")
	pw := regexpFind(t, page.body, `id="otp" class="code" readonly value="([^"]+)"`)

	dora := h.anonymous()
	dora.get("/login")
	r := dora.post("/login", url.Values{"username": {"dora"}, "password": {pw}})
	if r.header.Get("Location") != "/account/password" {
		t.Fatalf("first login: Location %q, want the password page", r.header.Get("Location"))
	}
	// Nothing else is reachable before a new password is chosen.
	if r := dora.do("GET", "/env/staging", nil); r.header.Get("Location") != "/account/password" {
		t.Errorf("GET /env/staging with a one-time password: %d to %q", r.status, r.header.Get("Location"))
	}
	dora.get("/account/password")
	dora.want(dora.post("/account/password", url.Values{"current": {pw}, "password": {"short"}, "confirm": {"short"}}), http.StatusUnprocessableEntity, "at least 10 characters")
	dora.want(dora.post("/account/password", url.Values{"current": {pw}, "password": {"dora-secret-1"}, "confirm": {"dora-secret-2"}}), http.StatusUnprocessableEntity, "does not match")
	dora.want(dora.submit("/account/password", url.Values{"current": {pw}, "password": {"dora-secret-1"}, "confirm": {"dora-secret-1"}}), http.StatusOK, "Your password is changed")
	u, err := h.acc.GetUser(context.Background(), "dora")
	if err != nil || u.MustChangePassword || u.Role("production") != "viewer" || u.Role("staging") != "editor" {
		t.Errorf("dora = %+v, %v", u, err)
	}
}

func regexpFind(t *testing.T, s, expr string) string {
	t.Helper()
	m := regexp.MustCompile(expr).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no match for %s in:\n%.3000s", expr, s)
	}
	return m[1]
}

func TestUIConfigEditor(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	c := h.login("alice")
	page := c.want(c.get("/env/staging/flags/winter/edit"), http.StatusOK, "Event name", "XP multiplier", "Add an item to drops")
	form := formValues(t, page.body, "/env/staging/flags/winter/edit")
	if form.Get("/variants/1/value/drops/0/item") != "globe" || form.Get("mode:/variants/0") != "form" {
		t.Fatalf("the schema form lacks the stored values: %v", form)
	}
	before := h.head("staging")

	// An invalid value: inline errors at the input, nothing saved.
	form.Set("/variants/1/value/xp", "9")
	form.Set("/variants/1/value/drops/0/weight", "lots")
	form.Set("op", "save")
	r := c.want(c.post("/env/staging/flags/winter/edit", form), http.StatusUnprocessableEntity, "nothing was saved")
	if !strings.Contains(r.body, `id="f_variants_1_value_xp-err"`) || !strings.Contains(r.body, `id="f_variants_1_value_drops_0_weight-err"`) {
		t.Errorf("the errors are not at their inputs:\n%.4000s", r.body)
	}
	if got := formValues(t, r.body, "/env/staging/flags/winter/edit").Get("/variants/1/value/drops/0/weight"); got != "lots" {
		t.Errorf("the form lost what was typed: weight %q", got)
	}
	if h.head("staging") != before {
		t.Fatal("an invalid configuration was saved")
	}

	// Checking finds no problem in a valid one, and saves nothing either.
	form.Set("/variants/1/value/xp", "3")
	form.Set("/variants/1/value/drops/0/weight", "5")
	form.Set("op", "check")
	c.want(c.post("/env/staging/flags/winter/edit", form), http.StatusOK, "No problems found. Nothing is saved yet.")
	if h.head("staging") != before {
		t.Fatal("checking saved")
	}

	// Saving appends one revision with the new value.
	form.Set("op", "save")
	form.Set("message", "More XP for the festival")
	page = c.want(c.submit("/env/staging/flags/winter/edit", form), http.StatusOK, "Saved as revision", "More XP for the festival")
	fc := h.config("staging", "winter")
	if fc.Revision != before+1 || string(fc.Config.Variants[1].Value) != `{"drops":[{"item":"globe","weight":5}],"event":"winter","xp":3}` {
		t.Errorf("after save: revision %d (want %d), festival %s", fc.Revision, before+1, fc.Config.Variants[1].Value)
	}
	rev, err := h.flags.GetRevision(context.Background(), "staging", fc.Revision)
	if err != nil || rev.Author != "alice" {
		t.Errorf("revision author %q, %v; want alice", rev.Author, err)
	}
	entries, err := h.flags.Store().ListAudit(context.Background(), solstice.AuditFilter{Action: "flag_config.update", Environment: "staging"})
	if err != nil || len(entries) != 1 || entries[0].Actor.Name != "alice" || entries[0].Actor.Kind != "user" {
		t.Errorf("audit of the save = %+v, %v", entries, err)
	}
}

func TestUIEditorActions(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	c := h.login("alice")
	page := c.get("/env/staging/flags/winter/edit")
	form := formValues(t, page.body, "/env/staging/flags/winter/edit")
	step := func(op string, contains ...string) url.Values {
		t.Helper()
		form.Set("op", op)
		r := c.want(c.post("/env/staging/flags/winter/edit", form), http.StatusOK, contains...)
		form = formValues(t, r.body, "/env/staging/flags/winter/edit")
		return form
	}
	step("add:/variants/1/value/drops")
	if form.Get("len:/variants/1/value/drops") != "2" {
		t.Fatalf("after adding a drop: %v", form)
	}
	form.Set("/variants/1/value/drops/1/item", "sled")
	form.Set("/variants/1/value/drops/1/weight", "1")
	step("add-variant", "Variant 3")
	form.Set("/variants/2/key", "blizzard")
	step("raw:2")
	if form.Get("mode:/variants/2") != "raw" {
		t.Fatalf("variant 3 is not raw: %v", form)
	}
	form.Set("/variants/2/value", `{"event": "blizzard", "xp": 4}`)
	step("form:2")
	if form.Get("/variants/2/value/xp") != "4" {
		t.Fatalf("back to the form, xp = %q", form.Get("/variants/2/value/xp"))
	}
	form.Set("split", "on")
	step("check", "No problems found")
	if form.Get("/split/weights/2/variant") != "blizzard" || form.Get("/split/weights/0/weight") != "3334" || form.Get("/split/weights/2/weight") != "3333" {
		t.Errorf("split rows: %v", form)
	}
	form.Set("/split/bucket_by", "userId")
	form.Set("/rules", `[{"id": "vip", "conditions": [{"attribute": "tier", "op": "eq", "value": "gold"}], "variant": "blizzard"}]`)
	form.Set("op", "save")
	c.want(c.submit("/env/staging/flags/winter/edit", form), http.StatusOK, "Saved as revision", "bucketed on", "userId")
	fc := h.config("staging", "winter")
	if len(fc.Config.Variants) != 3 || fc.Config.Split == nil || fc.Config.Split.BucketBy != "userId" || len(fc.Config.Rules) != 1 {
		t.Fatalf("saved configuration: %+v", fc.Config)
	}
	if got := string(fc.Config.Variants[1].Value); !strings.Contains(got, `"item":"sled"`) {
		t.Errorf("festival = %s, want the added drop", got)
	}

	// Errors in the rules land at the rules box; a bad rule JSON is
	// reported, not dropped.
	page = c.get("/env/staging/flags/winter/edit")
	form = formValues(t, page.body, "/env/staging/flags/winter/edit")
	form.Set("/rules", `[{"conditions": [{"attribute": "tier", "op": "bogus"}], "variant": "nope"}]`)
	form.Set("op", "save")
	r := c.want(c.post("/env/staging/flags/winter/edit", form), http.StatusUnprocessableEntity, "/rules/0/")
	if !strings.Contains(r.body, `id="f_rules-err"`) {
		t.Errorf("rule errors are not at the rules box")
	}
	form.Set("/rules", `[{"conditions": [}]`)
	c.want(c.post("/env/staging/flags/winter/edit", form), http.StatusUnprocessableEntity, "not a valid list of rules")
	form.Set("op", "remove-variant:7")
	c.want(c.post("/env/staging/flags/winter/edit", form), http.StatusBadRequest)
}

func TestUIStaleEditShowsConflict(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	c := h.login("alice")
	page := c.get("/env/staging/flags/winter/edit")
	form := formValues(t, page.body, "/env/staging/flags/winter/edit")

	// Meanwhile, bob changes the flag.
	fc := h.config("staging", "winter")
	cfg := fc.Config
	cfg.DefaultVariant = "festival"
	ctx := solstice.WithActor(context.Background(), solstice.Actor{Name: "bob", Kind: "user"})
	if _, err := h.flags.PutConfig(ctx, "staging", "winter", cfg, fc.Revision, "Festival for everyone"); err != nil {
		t.Fatal(err)
	}
	bobs := h.head("staging")

	form.Set("/variants/0/value/xp", "2")
	form.Set("op", "save")
	r := c.want(c.post("/env/staging/flags/winter/edit", form), http.StatusConflict,
		"Someone else changed this flag", "by bob", "Festival for everyone", "What saving your version now would change")
	if h.head("staging") != bobs {
		t.Fatal("the stale save went through")
	}
	if got := h.config("staging", "winter").Config.DefaultVariant; got != "festival" {
		t.Fatalf("bob's change was overwritten: default %q", got)
	}
	// The form now builds on bob's version: saving again applies alice's
	// edit on top of it, knowingly.
	again := formValues(t, r.body, "/env/staging/flags/winter/edit")
	if again.Get("base") != strconv.FormatInt(bobs, 10) || again.Get("/variants/0/value/xp") != "2" {
		t.Fatalf("conflict form: base %s, xp %s", again.Get("base"), again.Get("/variants/0/value/xp"))
	}
	again.Set("op", "save")
	c.want(c.submit("/env/staging/flags/winter/edit", again), http.StatusOK, "Saved as revision")
	if got := h.config("staging", "winter"); got.Revision != bobs+1 || !strings.Contains(string(got.Config.Variants[0].Value), `"xp":2`) {
		t.Errorf("after the second save: %+v", got)
	}
}

func TestUIKillSwitchAndFourEyes(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	alice, bob := h.login("alice"), h.login("bob")

	// Turning on in production is a change request, not a change.
	alice.get("/env/production/flags/winter")
	page := alice.want(alice.submit("/env/production/flags/winter/toggle", url.Values{"to": {"on"}}), http.StatusOK,
		"Change request #1 created", "another approver")
	if h.config("production", "winter").Config.Enabled {
		t.Fatal("a protected environment changed without approval")
	}
	alice.wantNot(page, "Approve and apply")
	alice.want(alice.post("/changes/1/approve", nil), http.StatusForbidden, "needs the approver role")

	bob.want(bob.get("/changes/1"), http.StatusOK, "Approve and apply", `"enabled": true`)
	bob.want(bob.submit("/changes/1/approve", url.Values{"comment": {"ship it"}}), http.StatusOK, "Approved and applied change request #1", "approved by bob")
	fc := h.config("production", "winter")
	if !fc.Config.Enabled {
		t.Fatal("the approved request was not applied")
	}
	rev, _ := h.flags.GetRevision(context.Background(), "production", fc.Revision)
	if rev.Author != "bob" || !strings.Contains(rev.Message, "change request #1 by alice") {
		t.Errorf("applied revision: %q by %q", rev.Message, rev.Author)
	}

	// The kill switch turns it off at once, protected or not.
	alice.get("/env/production/flags/winter")
	alice.want(alice.submit("/env/production/flags/winter/toggle", url.Values{"to": {"off"}}), http.StatusOK, "winter is now OFF in production")
	if h.config("production", "winter").Config.Enabled {
		t.Fatal("the kill switch did not turn the flag off")
	}

	// A configuration edit in production is proposed with its diff.
	page = alice.get("/env/production/flags/winter/edit")
	alice.want(page, http.StatusOK, "Request approval")
	form := formValues(t, page.body, "/env/production/flags/winter/edit")
	form.Set("/variants/0/value/xp", "1.5")
	form.Set("op", "save")
	form.Set("message", "A little more XP")
	head := h.head("production")
	alice.want(alice.submit("/env/production/flags/winter/edit", form), http.StatusOK, "Change request #2 created", `"xp": 1.5`)
	if h.head("production") != head {
		t.Fatal("proposing changed production")
	}
	// A stale request is refused, and stays open.
	other := h.config("production", "winter")
	cfg := other.Config
	cfg.OffVariant = "festival"
	if _, err := h.flags.PutConfig(solstice.WithActor(context.Background(), solstice.Actor{Name: "carol", Kind: "user"}), "production", "winter", cfg, other.Revision, "meanwhile"); err != nil {
		t.Fatal(err)
	}
	bob.get("/changes/2")
	bob.want(bob.post("/changes/2/approve", nil), http.StatusConflict, "cannot be applied as reviewed", "Outdated")
	cr, err := h.review.Get(context.Background(), 2)
	if err != nil || cr.Status != review.StatusOpen {
		t.Fatalf("stale request: %+v, %v", cr, err)
	}
	bob.want(bob.submit("/changes/2/reject", url.Values{"comment": {"outdated"}}), http.StatusOK, "Rejected change request #2")
	bob.want(bob.get("/changes?status=rejected"), http.StatusOK, "A little more XP")
}

func TestUIRevert(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	alice := h.login("alice")
	alice.get("/env/staging/flags/winter")
	alice.submit("/env/staging/flags/winter/toggle", url.Values{"to": {"on"}})
	on := h.head("staging")
	page := alice.want(alice.get(revisionURLFor("staging", on)), http.StatusOK, "Turn on winter", "Undo this change", `"enabled": true`)
	if !strings.Contains(page.body, `class="change"`) {
		t.Errorf("the revision page has no side-by-side change row")
	}
	alice.want(alice.submit(revisionURLFor("staging", on)+"/revert", url.Values{"to": {strconv.FormatInt(on-1, 10)}}), http.StatusOK, "Reverted: revision")
	if h.config("staging", "winter").Config.Enabled || h.head("staging") != on+1 {
		t.Fatalf("after undo: enabled %t, head %d", h.config("staging", "winter").Config.Enabled, h.head("staging"))
	}
	// Undoing again has nothing to do.
	alice.get(revisionURLFor("staging", on))
	alice.want(alice.submit(revisionURLFor("staging", on)+"/revert", url.Values{"to": {strconv.FormatInt(on-1, 10)}}), http.StatusOK, "nothing to revert")

	// In production, a revert is a change request.
	bob := h.login("bob")
	bob.get("/env/production/flags/winter")
	bob.submit("/env/production/flags/winter/toggle", url.Values{"to": {"off"}}) // already off: nothing
	ctx := solstice.WithActor(context.Background(), solstice.Actor{Name: "bob", Kind: "user"})
	fc := h.config("production", "winter")
	cfg := fc.Config
	cfg.DefaultVariant = "festival"
	if _, err := h.flags.PutConfig(ctx, "production", "winter", cfg, fc.Revision, "festival default"); err != nil {
		t.Fatal(err)
	}
	ph := h.head("production")
	alice.get(revisionURLFor("production", ph))
	alice.want(alice.submit(revisionURLFor("production", ph)+"/revert", url.Values{"to": {strconv.FormatInt(ph-1, 10)}}), http.StatusOK, "Change request #1 created")
	if h.head("production") != ph {
		t.Fatal("a revert applied to production without approval")
	}
	bob.get("/changes/1")
	bob.want(bob.submit("/changes/1/approve", nil), http.StatusOK, "Approved and applied")
	if got := h.config("production", "winter").Config.DefaultVariant; got != "control" {
		t.Errorf("after the approved revert: default %q", got)
	}
}

func revisionURLFor(env string, n int64) string {
	return "/env/" + env + "/history/" + strconv.FormatInt(n, 10)
}

func TestUIPromote(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	alice := h.login("alice")
	fc := h.config("staging", "winter")
	cfg := fc.Config
	cfg.DefaultVariant, cfg.Enabled = "festival", true
	ctx := solstice.WithActor(context.Background(), solstice.Actor{Name: "alice", Kind: "user"})
	if _, err := h.flags.PutConfig(ctx, "staging", "winter", cfg, fc.Revision, ""); err != nil {
		t.Fatal(err)
	}
	page := alice.want(alice.get("/env/development/flags/winter/promote?from=staging"), http.StatusOK, "Promote winter from staging to development", "festival")
	form := formValues(t, page.body, "/env/development/flags/winter/promote")
	alice.want(alice.submit("/env/development/flags/winter/promote", form), http.StatusOK, "Promoted winter from staging")
	if got := h.config("development", "winter").Config; !got.Enabled || got.DefaultVariant != "festival" {
		t.Errorf("development after promotion: %+v", got)
	}
	page = alice.get("/env/production/flags/winter/promote?from=staging")
	form = formValues(t, page.body, "/env/production/flags/winter/promote")
	alice.want(alice.submit("/env/production/flags/winter/promote", form), http.StatusOK, "Change request #1 created")
	// A stale promotion form is refused with the current diff.
	if _, err := h.flags.Revert(ctx, "development", h.head("development")-1, ""); err != nil {
		t.Fatal(err)
	}
	page = alice.get("/env/development/flags/winter/promote?from=staging")
	form = formValues(t, page.body, "/env/development/flags/winter/promote")
	dev := h.config("development", "winter")
	cfg = dev.Config
	cfg.OffVariant = "festival"
	if _, err := h.flags.PutConfig(ctx, "development", "winter", cfg, dev.Revision, "meanwhile"); err != nil {
		t.Fatal(err)
	}
	alice.want(alice.post("/env/development/flags/winter/promote", form), http.StatusConflict, "The target changed while you were looking")
	if got := h.config("development", "winter").Config; got.Enabled {
		t.Error("a stale promotion was applied")
	}
}

func TestUICreateFlagAndSettings(t *testing.T) {
	h := newUIHarness(t)
	alice := h.login("alice")
	alice.get("/flags/new")
	bad := url.Values{"key": {"Winter Drops"}, "type": {"object"}, "schema": {`{"type": "object", "properties": {"xp": {"type": "number", "maximum": 5}}}`}, "value": {`{"xp": 7}`}}
	r := alice.want(alice.post("/flags/new", bad), http.StatusUnprocessableEntity, "must be 1 to 128 of a-z")
	if !strings.Contains(r.body, `id="key-err"`) {
		t.Errorf("the key error is not at its input")
	}
	bad.Set("key", "winter-drops")
	r = alice.want(alice.post("/flags/new", bad), http.StatusUnprocessableEntity, "/variants/0/value/xp")
	if !strings.Contains(r.body, `id="value-err"`) {
		t.Errorf("the value error is not at its input")
	}
	alice.want(alice.post("/flags/new", url.Values{"key": {"x"}, "type": {"object"}, "schema": {`{"type": `}, "value": {`{}`}}), http.StatusUnprocessableEntity, "not valid JSON")
	good := bad
	good.Set("key", "winter-drops")
	good.Set("value", `{"xp": 2}`)
	good.Set("tags", "winter, team:live-ops")
	alice.want(alice.submit("/flags/new", good), http.StatusOK, "Created winter-drops", "production")
	f, err := h.flags.Store().GetFlag(context.Background(), "winter-drops")
	if err != nil || len(f.Tags) != 2 || f.Schema == nil {
		t.Fatalf("created flag %+v, %v", f, err)
	}
	alice.want(alice.post("/flags/new", good), http.StatusUnprocessableEntity, "already exists")

	// Settings: a schema that rejects stored values is refused; a stale
	// version shows the conflict.
	page := alice.get("/flags/winter-drops/settings")
	form := formValues(t, page.body, "/flags/winter-drops/settings")
	form.Set("schema", `{"type": "object", "properties": {"xp": {"type": "number", "maximum": 1}}}`)
	alice.want(alice.post("/flags/winter-drops/settings", form), http.StatusUnprocessableEntity, "rejects existing variant values")
	form.Set("schema", `{"type": "object", "properties": {"xp": {"type": "number", "maximum": 10}}}`)
	form.Set("description", "Winter drop table")
	alice.want(alice.submit("/flags/winter-drops/settings", form), http.StatusOK, "Saved the definition of winter-drops (version 2)")
	form.Set("description", "stale")
	alice.want(alice.post("/flags/winter-drops/settings", form), http.StatusConflict, "Someone changed this flag's definition")
}

func TestUIPagesRender(t *testing.T) {
	h := newUIHarness(t)
	h.eventFlag("winter")
	admin := h.login("admin")
	tests := []struct {
		path   string
		status int
		want   []string
	}{
		{"/", http.StatusOK, []string{"staging", "Live now", "Recent changes"}},
		{"/env/production", http.StatusOK, []string{"protected", "Guardrails", "Live operations"}},
		{"/env/staging/flags?q=wint&type=object", http.StatusOK, []string{"1 of 1 flags", "winter"}},
		{"/env/staging/flags?state=on", http.StatusOK, []string{"0 of 1 flags", "No flag matches"}},
		{"/env/staging/flags?changed=1d", http.StatusOK, []string{"1 of 1 flags"}},
		{"/env/staging/flags?tag=nope", http.StatusOK, []string{"0 of 1 flags"}},
		{"/env/staging/flags/winter", http.StatusOK, []string{"Turn on…", `"xp": 2`, "Promote"}},
		{"/flags/winter", http.StatusOK, []string{"development", "production", "Value schema"}},
		{"/env/staging/history", http.StatusOK, []string{"Create flag winter"}},
		{"/env/staging/history/1", http.StatusOK, []string{"Revision 1", "create", "flag winter"}},
		{"/env/staging/history/99", http.StatusNotFound, []string{"not found"}},
		{"/env/qa", http.StatusNotFound, []string{"not found"}},
		{"/env/staging/playground?flag=winter&context=%7B%22targetingKey%22%3A%22p1%22%7D", http.StatusOK, []string{"DISABLED", "off variant control", `"event": "none"`}},
		{"/env/staging/playground?flag=winter&context=%7Bnope", http.StatusUnprocessableEntity, []string{"must be a JSON object"}},
		{"/env/staging/fleet", http.StatusOK, []string{"No game server has polled staging"}},
		{"/audit?action=flag.create", http.StatusOK, []string{"flag/winter", "alice"}},
		{"/audit?since=yesterday", http.StatusUnprocessableEntity, []string{"is not a date and time"}},
		{"/changes?status=", http.StatusOK, []string{"No change requests"}},
		{"/admin/environments", http.StatusOK, []string{"Stop requiring approval", "Require approval"}},
		{"/admin/users", http.StatusOK, []string{"alice", "approver", "Add a user"}},
		{"/admin/users/bob", http.StatusOK, []string{"Reset password", "Save roles"}},
		{"/admin/keys", http.StatusOK, []string{"Create", "None yet"}},
		{"/static/app.css", http.StatusOK, []string{"--accent"}},
		{"/static/nope.js", http.StatusNotFound, nil},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			r := admin.do("GET", tc.path, nil)
			if r.status == http.StatusSeeOther {
				r = admin.get(r.header.Get("Location"))
			}
			admin.want(r, tc.status, tc.want...)
			if strings.HasPrefix(r.header.Get("Content-Type"), "text/html") && r.header.Get("Content-Security-Policy") == "" {
				t.Error("a page without a Content-Security-Policy")
			}
		})
	}
}

func TestUIKeysAndEnvironments(t *testing.T) {
	h := newUIHarness(t)
	admin := h.login("admin")
	admin.get("/admin/keys")
	r := admin.want(admin.post("/admin/keys", url.Values{"name": {"eu servers"}, "kind": {"server"}, "environment": {"production"}}),
		http.StatusCreated, "copy its secret now", "sol_server_")
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("the secret's page may be cached: %q", r.header.Get("Cache-Control"))
	}
	secret := regexpFind(t, r.body, `value="(sol_server_[a-z0-9]+)"`)
	if _, err := h.auth.Authenticate(context.Background(), secret); err != nil {
		t.Fatalf("the shown secret does not authenticate: %v", err)
	}
	list := admin.want(admin.get("/admin/keys"), http.StatusOK, "eu servers")
	admin.wantNot(list, secret)
	admin.want(admin.post("/admin/keys", url.Values{"name": {""}, "kind": {"admin"}, "role": {"editor"}}), http.StatusUnprocessableEntity, "required")
	id := regexpFind(t, list.body, `action="/admin/keys/(srv_[0-9a-f]+)/revoke"`)
	admin.want(admin.submit("/admin/keys/"+id+"/revoke", nil), http.StatusOK, "Revoked "+id)
	if _, err := h.auth.Authenticate(context.Background(), secret); !solstice.IsKind(err, solstice.KindUnauthorized) {
		t.Errorf("a revoked key authenticates: %v", err)
	}

	admin.get("/admin/environments")
	admin.want(admin.submit("/admin/environments/staging", url.Values{"protected": {"true"}}), http.StatusOK, "staging is protected")
	if e, _ := h.flags.Store().GetEnvironment(context.Background(), "staging"); !e.Protected {
		t.Error("staging is not protected")
	}
	alice := h.login("alice")
	alice.get("/admin/environments")
	alice.want(alice.post("/admin/environments/staging", url.Values{"protected": {"false"}}), http.StatusForbidden)
}

func TestUIUserAdministration(t *testing.T) {
	h := newUIHarness(t)
	admin := h.login("admin")
	admin.get("/admin/users/alice")
	admin.want(admin.submit("/admin/users/alice", url.Values{"action": {"roles"}, "role": {"editor"}, "role:production": {"approver"}, "display_name": {"Alice"}}),
		http.StatusOK, "Saved the roles of alice")
	if u, _ := h.acc.GetUser(context.Background(), "alice"); u.Role("production") != "approver" || u.DisplayName != "Alice" {
		t.Errorf("alice = %+v", u)
	}
	admin.want(admin.post("/admin/users/alice", url.Values{"action": {"roles"}, "role": {"owner"}}), http.StatusUnprocessableEntity, "must be viewer, editor, approver or admin")
	admin.want(admin.post("/admin/users/admin", url.Values{"action": {"disable"}}), http.StatusConflict, "last active administrator")

	alice := h.login("alice")
	admin.get("/admin/users/alice")
	r := admin.want(admin.post("/admin/users/alice", url.Values{"action": {"reset"}}), http.StatusOK, "New one-time password")
	pw := regexpFind(t, r.body, `id="otp" class="code" readonly value="([^"]+)"`)
	if got := alice.do("GET", "/env/staging", nil); got.status != http.StatusSeeOther {
		t.Errorf("alice's session survived a password reset: %d", got.status)
	}
	admin.want(admin.submit("/admin/users/alice", url.Values{"action": {"disable"}}), http.StatusOK, "alice is disabled")
	a := h.anonymous()
	a.get("/login")
	a.want(a.post("/login", url.Values{"username": {"alice"}, "password": {pw}}), http.StatusUnauthorized, "invalid username or password")
}

func TestUISessionIdleTimeout(t *testing.T) {
	h := newUIHarness(t)
	c := h.login("alice")
	h.clock.advance(11 * time.Hour)
	c.want(c.get("/env/staging"), http.StatusOK)
	h.clock.advance(11 * time.Hour) // active 11 hours ago: still within 12
	c.want(c.get("/env/staging"), http.StatusOK)
	h.clock.advance(12*time.Hour + time.Minute)
	r := c.do("GET", "/env/staging", nil)
	if r.status != http.StatusSeeOther || !strings.Contains(r.header.Get("Location"), "why=ended") {
		t.Errorf("after 12 idle hours: %d to %q, want the login page saying why", r.status, r.header.Get("Location"))
	}
	c.want(c.get(r.header.Get("Location")), http.StatusOK, "Your session has ended")
	// htmx requests get told to load the login page.
	c.hdr["HX-Request"] = "true"
	r = c.do("GET", "/env/staging", nil)
	if r.header.Get("HX-Redirect") == "" {
		t.Errorf("htmx request without a session: %d, no HX-Redirect", r.status)
	}
}

func TestUIFlagValuesOfOtherTypes(t *testing.T) {
	h := newUIHarness(t)
	ctx := solstice.WithActor(context.Background(), solstice.Actor{Name: "alice", Kind: "user"})
	for _, nf := range []flags.NewFlag{
		{Key: "motd", Type: flags.TypeString, Variants: []flags.Variant{{Key: "hi", Value: json.RawMessage(`"hello"`)}}},
		{Key: "xp-rate", Type: flags.TypeNumber, Variants: []flags.Variant{{Key: "base", Value: json.RawMessage(`1`)}}},
		{Key: "snow", Type: flags.TypeBoolean},
	} {
		if _, err := h.flags.CreateFlag(ctx, nf); err != nil {
			t.Fatal(err)
		}
	}
	c := h.login("alice")
	for key, tc := range map[string]struct{ field, bad, good, want string }{
		"motd":    {"/variants/0/value", "", "hello, world", `"hello, world"`},
		"xp-rate": {"/variants/0/value", "fast", "1.25", `1.25`},
		"snow":    {"/variants/0/value", "maybe", "false", `false`},
	} {
		page := c.get("/env/staging/flags/" + key + "/edit")
		form := formValues(t, page.body, "/env/staging/flags/"+key+"/edit")
		form.Set("op", "save")
		if tc.bad != "" {
			form.Set(tc.field, tc.bad)
			c.want(c.post("/env/staging/flags/"+key+"/edit", form), http.StatusUnprocessableEntity)
		}
		form.Set(tc.field, tc.good)
		c.want(c.submit("/env/staging/flags/"+key+"/edit", form), http.StatusOK)
		if got := string(h.config("staging", key).Config.Variants[0].Value); got != tc.want {
			t.Errorf("%s: saved %s, want %s", key, got, tc.want)
		}
	}
}
