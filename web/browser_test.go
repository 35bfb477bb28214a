package web_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/solsticehq/solstice/review"
)

// The browser tests drive Debian's Chromium, headless, through the whole
// designer's path of the web UI: they check what a person would see, with
// htmx, the CSP and the CSS in play. They skip when Chromium is missing, but
// fail in CI (CI=true), where .ci/run installs it.

// artifacts is where the screenshots go (git-ignored).
const artifacts = "../testdata-artifacts/ui"

func chromium(t *testing.T) string {
	t.Helper()
	candidates := []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"}
	if p := os.Getenv("SOLSTICE_CHROMIUM"); p != "" {
		candidates = []string{p} // the one asked for, or none
	}
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	msg := "Chromium not found (apt-get install chromium, or set SOLSTICE_CHROMIUM): the browser tests of the web UI did not run"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// tab is one browser tab against the test server.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string
	step int
}

func newBrowser(t *testing.T, base string) *tab {
	t.Helper()
	path := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser; it must not have a deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium at %s: %v", path, err)
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	return &tab{t: t, ctx: ctx, base: base}
}

// do runs actions with a deadline; on failure it saves a screenshot of the
// page as it was.
func (b *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	b.step++
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		name := fmt.Sprintf("failed-step-%02d.png", b.step)
		b.screenshot(name)
		html, _ := chromedp.Run(b.ctx, chromedp.OuterHTML("main"))
		b.t.Fatalf("%s: %v (screenshot %s/%s)\n%.3000s", what, err, artifacts, name, html)
	}
}

func (b *tab) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(artifacts, name), png, 0o644); err != nil {
		b.t.Errorf("write screenshot: %v", err)
	}
}

func (b *tab) open(path string) chromedp.Action[chromedp.Void] {
	return chromedp.Navigate(b.base + path)
}

// xpathString quotes s as an XPath 1.0 string literal (which has no
// escapes).
func xpathString(s string) string {
	switch {
	case !strings.Contains(s, `"`):
		return `"` + s + `"`
	case !strings.Contains(s, "'"):
		return "'" + s + "'"
	}
	parts := strings.Split(s, `"`)
	return `concat("` + strings.Join(parts, `", '"', "`) + `")`
}

// textIn is an XPath for an element of class cls containing text.
func textIn(cls, text string) string {
	return fmt.Sprintf(`//*[contains(concat(" ", normalize-space(@class), " "), " %s ")][contains(., %s)]`, cls, xpathString(text))
}

// button is an XPath for a button or summary with the text.
func button(text string) string {
	return fmt.Sprintf(`//*[self::button or self::summary][contains(normalize-space(.), %s)]`, xpathString(text))
}

func (b *tab) login(user string) {
	b.t.Helper()
	b.do("log in as "+user,
		b.open("/login"),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SetValue(chromedp.CSS("#username"), user),
		chromedp.SetValue(chromedp.CSS("#password"), user+"-password"),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("nav.side")),
	)
	b.waitLoaded()
}

// waitLoaded waits until the page has finished loading, htmx included.
func (b *tab) waitLoaded() {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.readyState === "complete" && typeof htmx === "object"`)); err != nil {
		b.t.Fatalf("wait for the page to load: %v", err)
	}
}

func (b *tab) logout() {
	b.t.Helper()
	b.do("log out", chromedp.Click(button("Log out")), chromedp.WaitVisible(chromedp.CSS("#username")))
}

// evalBool evaluates a JavaScript expression in the page.
func (b *tab) evalBool(expr string) bool {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// poll reports whether a JavaScript expression becomes true within five
// seconds.
func (b *tab) poll(expr string) bool {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	ok, err := chromedp.Run(ctx, chromedp.Poll[bool](expr))
	return err == nil && ok
}

func (b *tab) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

const browserSchema = `{
  "type": "object",
  "required": ["event", "xp"],
  "additionalProperties": false,
  "properties": {
    "event": {"type": "string", "title": "Event name"},
    "xp": {"type": "number", "minimum": 1, "maximum": 5, "description": "XP multiplier"}
  }
}`

func TestBrowserDesignersDay(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	h := newUIHarness(t)
	b := newBrowser(t, h.srv.URL)

	// Log in.
	b.do("open the login page", b.open("/login"), chromedp.WaitVisible(chromedp.CSS("#username")))
	b.screenshot("login.png")
	b.login("alice")
	if !b.evalBool(`typeof htmx === "object" && document.body.getAttribute("hx-boost") === "true"`) {
		t.Fatal("htmx did not load under the Content-Security-Policy")
	}
	// A marker that only survives navigation done by htmx, without a full
	// page load: it shows the pages below are swapped in, not reloaded.
	b.evalBool(`(window.__boosted = true)`)

	// Create an object flag with a schema.
	b.do("create an object flag",
		chromedp.Click(chromedp.CSS(`nav.side a[href$="/flags"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/flags/new"]`)),
		chromedp.Click(chromedp.CSS(`a[href="/flags/new"]`)),
		chromedp.WaitVisible(chromedp.CSS("#fkey")),
		chromedp.SetValue(chromedp.CSS("#fkey"), "winter-event"),
		chromedp.SetValue(chromedp.CSS("#fname"), "Winter event"),
		chromedp.Click(chromedp.CSS(`input[name=type][value=object]`)),
		chromedp.SetValue(chromedp.CSS("#fschema"), browserSchema),
		chromedp.SetValue(chromedp.CSS("#fvalue"), `{"event": "none", "xp": 1}`),
		chromedp.Click(button("Create flag")),
		chromedp.WaitVisible(textIn("flash", "Created winter-event")),
	)
	if !b.evalBool(`window.__boosted === true`) {
		t.Error("creating the flag reloaded the page: htmx is not handling the forms")
	}
	b.screenshot("flag-overview.png")
	before := h.head("staging")

	// An invalid value shows the error at its input, and saves nothing.
	b.do("enter an invalid value",
		b.open("/env/staging/flags/winter-event/edit"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="/variants/0/value/xp"]`)),
		chromedp.SetValue(chromedp.CSS(`input[name="/variants/0/value/xp"]`), "9"),
		chromedp.Click(button("Save as a new revision")),
		chromedp.WaitVisible(chromedp.CSS("#f_variants_0_value_xp-err")),
		chromedp.WaitVisible(chromedp.CSS(".error-summary")),
	)
	if msg := b.text("#f_variants_0_value_xp-err"); !strings.Contains(msg, "5") {
		t.Errorf("inline error %q does not mention the maximum", msg)
	}
	if !b.poll(`document.activeElement.classList.contains("error-summary")`) {
		t.Error("focus did not move to the error summary")
	}
	b.screenshot("editor-invalid.png")
	if h.head("staging") != before {
		t.Fatal("an invalid value was saved")
	}

	// A valid value is saved as a new revision.
	b.do("save a valid value",
		chromedp.SetValue(chromedp.CSS(`input[name="/variants/0/value/xp"]`), "3"),
		chromedp.SetValue(chromedp.CSS("#fmessage"), "Triple XP for the winter event"),
		chromedp.Click(button("Save as a new revision")),
		chromedp.WaitVisible(textIn("flash", "Saved as revision")),
	)
	fc := h.config("staging", "winter-event")
	if fc.Revision != before+1 || !strings.Contains(string(fc.Config.Variants[0].Value), `"xp":3`) {
		t.Fatalf("after saving: revision %d (want %d), value %s", fc.Revision, before+1, fc.Config.Variants[0].Value)
	}
	b.do("see the new revision",
		chromedp.Click(chromedp.CSS(".flash a")),
		chromedp.WaitVisible(textIn("code", `"xp": 3`)),
	)
	b.screenshot("revision.png")

	// The kill switch, with its confirmation.
	b.do("turn the flag on",
		b.open("/env/staging/flags/winter-event"),
		chromedp.WaitVisible(button("Turn on")),
		chromedp.Click(button("Turn on")),
		chromedp.Click(button("Turn on in staging now")),
		chromedp.WaitVisible(textIn("flash", "is now ON in staging")),
	)
	b.screenshot("config.png")
	b.do("turn the flag off",
		chromedp.Click(button("Turn off")),
		chromedp.WaitVisible(button("Turn off in staging now")),
		chromedp.Click(button("Turn off in staging now")),
		chromedp.WaitVisible(textIn("flash", "is now OFF in staging")),
	)
	if h.config("staging", "winter-event").Config.Enabled {
		t.Fatal("the kill switch did not turn the flag off")
	}

	// Revert: undo the kill switch's revision from the history.
	off := h.head("staging")
	b.do("revert",
		b.open(fmt.Sprintf("/env/staging/history/%d", off)),
		chromedp.WaitVisible(button("Undo this change")),
		chromedp.Click(button("Undo this change")),
		chromedp.WaitVisible(textIn("flash", "Reverted")),
	)
	if got := h.config("staging", "winter-event"); !got.Config.Enabled || h.head("staging") != off+1 {
		t.Fatalf("after the revert: enabled %t at head %d", got.Config.Enabled, h.head("staging"))
	}

	// Promote to production: a change request for a second person.
	b.do("propose the production change",
		b.open("/env/production/flags/winter-event/promote?from=staging"),
		chromedp.WaitVisible(button("Request approval to promote")),
		chromedp.Click(button("Request approval to promote")),
		chromedp.WaitVisible(textIn("flash", "Change request #1 created")),
	)
	b.screenshot("change-request.png")
	if h.config("production", "winter-event").Config.Enabled {
		t.Fatal("production changed before approval")
	}
	b.logout()

	b.login("bob")
	b.do("approve as a second user",
		b.open("/changes/1"),
		chromedp.WaitVisible(button("Approve and apply")),
		chromedp.SetValue(chromedp.CSS("#fcomment"), "Looks right"),
		chromedp.Click(button("Approve and apply")),
		chromedp.WaitVisible(textIn("flash", "Approved and applied change request #1")),
	)
	cr, err := h.review.Get(context.Background(), 1)
	if err != nil || cr.Status != review.StatusApproved || cr.DecidedBy != "bob" {
		t.Fatalf("change request after approval: %+v, %v", cr, err)
	}
	if got := h.config("production", "winter-event"); !got.Config.Enabled || !strings.Contains(string(got.Config.Variants[0].Value), `"xp":3`) {
		t.Fatalf("production after approval: %+v", got.Config)
	}

	// Screenshots of the main pages, at laptop and large-monitor widths.
	pages := []struct{ name, path, wait string }{
		{"dashboard", "/env/production", "Live now"},
		{"flags", "/env/production/flags", "winter-event"},
		{"history", "/env/production/history", "change request #1"},
		{"playground", "/env/production/playground?flag=winter-event&context=%7B%22targetingKey%22%3A%22p1%22%7D", "Result"},
		{"fleet", "/env/production/fleet", "Fleet of production"},
		{"audit", "/audit", "change_request.approve"},
		{"changes", "/changes?status=", "approved"},
	}
	for _, width := range []int64{1366, 2560} {
		b.do("resize", chromedp.EmulateViewport(width, 900))
		for _, p := range pages {
			b.do("open "+p.name, b.open(p.path), chromedp.WaitVisible(`//main[contains(., `+xpathString(p.wait)+`)]`))
			b.screenshot(fmt.Sprintf("%s-%d.png", p.name, width))
		}
	}
	b.do("resize", chromedp.EmulateViewport(1440, 900))
	b.logout()
	b.login("admin")
	for _, p := range []struct{ name, path, wait string }{
		{"users", "/admin/users", "Add a user"},
		{"keys", "/admin/keys", "Keys and tokens"},
		{"environments", "/admin/environments", "Four-eyes"},
	} {
		b.do("open "+p.name, b.open(p.path), chromedp.WaitVisible(`//main[contains(., `+xpathString(p.wait)+`)]`))
		b.screenshot(p.name + ".png")
	}
}

// TestBrowserKeyboard checks that the editor can be used without a mouse:
// every control is reachable with Tab and shows where the focus is.
func TestBrowserKeyboard(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	h := newUIHarness(t)
	h.eventFlag("winter")
	b := newBrowser(t, h.srv.URL)
	b.login("alice")
	b.do("open the editor", b.open("/env/staging/flags/winter/edit"), chromedp.WaitVisible(chromedp.CSS("#editor")))
	// Every input, select and textarea has a label.
	if !b.evalBool(`Array.from(document.querySelectorAll("#editor input:not([type=hidden]), #editor select, #editor textarea"))
		.every(el => el.labels && el.labels.length > 0)`) {
		t.Error("a control of the editor has no label")
	}
	// Focus is visible: a focused input gets an outline.
	if !b.evalBool(`(() => { const el = document.querySelector('input[name="/variants/0/value/xp"]'); el.focus();
		const s = getComputedStyle(el); return s.outlineStyle !== "none" && s.outlineWidth !== "0px"; })()`) {
		t.Error("the focused input shows no outline")
	}
	// Enter in a text field checks, and does not save or remove anything.
	head := h.head("staging")
	b.do("press Enter in a field",
		chromedp.SendKeys(chromedp.CSS(`input[name="/variants/0/key"]`), "\r"),
		chromedp.WaitVisible(textIn("success", "No problems found")),
	)
	if h.head("staging") != head {
		t.Error("Enter saved the configuration")
	}
}

// TestBrowserGuardrailChart opens a guardrail's charts after a rollback:
// the SVG renders, styled by app.css under the CSP, with the rollback
// marked.
func TestBrowserGuardrailChart(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	start := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	h := newChartHarness(t, start)
	h.guardedFlag("winter-drops")
	h.play("winter-drops", start, 30)
	b := newBrowser(t, h.srv.URL)
	b.login("vic")
	b.do("open the guardrail's charts",
		b.open("/env/production/flags/winter-drops/guardrails/reject-rate"),
		chromedp.WaitVisible(chromedp.CSS("svg#chart-effect polyline.chart-effect")),
	)
	b.waitLoaded()
	if !b.evalBool(`(() => { const r = document.querySelector("svg#chart-rates").getBoundingClientRect(); return r.width > 400 && r.height > 150; })()`) {
		t.Error("the rates chart is not drawn at a readable size")
	}
	if !b.evalBool(`getComputedStyle(document.querySelector("svg#chart-effect polygon.chart-band")).fillOpacity === "0.18"`) {
		t.Error("the confidence band is not styled: app.css did not apply")
	}
	if !b.evalBool(`document.querySelectorAll("svg .chart-marker line").length === 2 && document.querySelector("svg .chart-marker text").textContent.startsWith("rollback #")`) {
		t.Error("the rollback is not marked on both charts")
	}
	b.screenshot("guardrail-chart.png")
}
