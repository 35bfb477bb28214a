package web_test

import (
	"context"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/review"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/store/storetest"
	"github.com/solsticehq/solstice/web"
)

// uiHarness is the control plane with its web UI on a real SQLite
// database, with one user per role: admin, alice (editor), bob and carol
// (approvers) and vic (viewer). Passwords are the username + "-password".
type uiHarness struct {
	t      *testing.T
	srv    *httptest.Server
	flags  *flags.Service
	acc    *accounts.Service
	review *review.Service
	auth   *auth.Service
	clock  *uiClock
}

type uiClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *uiClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *uiClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var uiUsers = map[string]accounts.Role{
	"admin": accounts.RoleAdmin, "alice": accounts.RoleEditor, "bob": accounts.RoleApprover,
	"carol": accounts.RoleApprover, "vic": accounts.RoleViewer,
}

// newUIAccounts returns the accounts service of a UI test, with cheap
// password hashing and the users of uiUsers (password "<name>-password",
// their role in every environment).
func newUIAccounts(t *testing.T, db *store.DB, fs *flags.Service, clock solstice.Clock) *accounts.Service {
	t.Helper()
	acc := accounts.NewService(db, accounts.WithClock(clock), accounts.WithLogger(slog.New(slog.DiscardHandler)),
		accounts.WithHashParams(accounts.HashParams{Memory: 64, Time: 1, Threads: 1}),
		accounts.WithEnvironmentCheck(func(ctx context.Context, env string) error {
			_, err := fs.Store().GetEnvironment(ctx, env)
			return err
		}))
	for name, role := range uiUsers {
		if _, err := acc.CreateUser(context.Background(), accounts.NewUser{Username: name, Password: name + "-password", Roles: map[string]accounts.Role{"*": role}}); err != nil {
			t.Fatal(err)
		}
	}
	return acc
}

func newUIHarness(t *testing.T) *uiHarness {
	t.Helper()
	db := storetest.Open(t)
	clk := &uiClock{now: time.Now().UTC()}
	fs := flags.NewService(db)
	ctx := context.Background()
	if err := fs.EnsureDefaultEnvironments(ctx); err != nil {
		t.Fatal(err)
	}
	acc := newUIAccounts(t, db, fs, clk)
	rev := review.NewService(db, fs, acc)
	as := auth.NewService(db, nil)
	srv := web.New(web.Deps{Flags: fs, Auth: as, Logger: uiTestLogger(),
		UI: &web.UIDeps{Accounts: acc, Review: rev}})
	h := &uiHarness{t: t, srv: httptest.NewServer(srv), flags: fs, acc: acc, review: rev, auth: as, clock: clk}
	t.Cleanup(h.srv.Close)
	return h
}

// client is one browser: a cookie jar, and the CSRF token of the last page
// it loaded.
type client struct {
	h    *uiHarness
	t    *testing.T
	http *http.Client
	csrf string
	hdr  map[string]string // extra request headers
}

// pageResp is a response as a page.
type pageResp struct {
	status int
	header http.Header
	body   string
}

var csrfInput = regexp.MustCompile(`name="_csrf" value="([^"]+)"`)

func (h *uiHarness) anonymous() *client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return &client{h: h, t: h.t, hdr: map[string]string{}, http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

// login returns a client logged in as name.
func (h *uiHarness) login(name string) *client {
	h.t.Helper()
	c := h.anonymous()
	c.get("/login")
	r := c.post("/login", url.Values{"username": {name}, "password": {name + "-password"}})
	if r.status != http.StatusSeeOther {
		h.t.Fatalf("login %s: status %d, want 303; body %.300s", name, r.status, r.body)
	}
	c.get("/")
	return c
}

func (c *client) do(method, path string, form url.Values) pageResp {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.h.srv.URL+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range c.hdr {
		req.Header.Set(k, v)
	}
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	if m := csrfInput.FindStringSubmatch(string(b)); m != nil {
		c.csrf = html.UnescapeString(m[1])
	}
	return pageResp{status: res.StatusCode, header: res.Header, body: string(b)}
}

// get loads a page, following redirects.
func (c *client) get(path string) pageResp {
	c.t.Helper()
	for range 5 {
		r := c.do("GET", path, nil)
		if r.status != http.StatusSeeOther && r.status != http.StatusFound {
			return r
		}
		path = r.header.Get("Location")
	}
	c.t.Fatalf("GET %s: too many redirects", path)
	return pageResp{}
}

// post submits a form with the CSRF token of the last page.
func (c *client) post(path string, form url.Values) pageResp {
	c.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if form.Get("_csrf") == "" {
		form.Set("_csrf", c.csrf)
	}
	return c.do("POST", path, form)
}

// submit posts a form and follows its redirect, like a browser.
func (c *client) submit(path string, form url.Values) pageResp {
	c.t.Helper()
	r := c.post(path, form)
	if r.status == http.StatusSeeOther {
		return c.get(r.header.Get("Location"))
	}
	return r
}

func (c *client) want(r pageResp, status int, contains ...string) pageResp {
	c.t.Helper()
	if r.status != status {
		c.t.Fatalf("status = %d, want %d; page:\n%.3000s", r.status, status, mainOf(r.body))
	}
	text := html.UnescapeString(r.body)
	for _, s := range contains {
		if !strings.Contains(text, s) {
			c.t.Errorf("page (status %d) lacks %q; page:\n%.3000s", r.status, s, mainOf(text))
		}
	}
	return r
}

// mainOf returns the main region of a page, for failure messages.
func mainOf(page string) string {
	if i := strings.Index(page, "<main"); i >= 0 {
		return page[i:]
	}
	return page
}

func (c *client) wantNot(r pageResp, absent ...string) {
	c.t.Helper()
	text := html.UnescapeString(r.body)
	for _, s := range absent {
		if strings.Contains(text, s) {
			c.t.Errorf("page has %q, which it must not", s)
		}
	}
}

// formValues returns the values a browser would submit for the POST form
// with the given action on a page: every input, textarea and selected option
// (text and hidden inputs, checked boxes), without buttons.
func formValues(t *testing.T, page, action string) url.Values {
	t.Helper()
	start := strings.Index(page, `method="post" action="`+action+`"`)
	if start < 0 {
		t.Fatalf("no form with action %q", action)
	}
	end := strings.Index(page[start:], "</form>")
	form := page[start : start+end]
	vals := url.Values{}
	attr := func(tag, name string) (string, bool) {
		m := regexp.MustCompile(`\s` + name + `="([^"]*)"`).FindStringSubmatch(tag)
		if m == nil {
			return "", false
		}
		return html.UnescapeString(m[1]), true
	}
	for _, tag := range regexp.MustCompile(`<input[^>]*>`).FindAllString(form, -1) {
		name, ok := attr(tag, "name")
		if !ok {
			continue
		}
		typ, _ := attr(tag, "type")
		if (typ == "checkbox" || typ == "radio") && !strings.Contains(tag, " checked") {
			continue
		}
		v, _ := attr(tag, "value")
		vals.Add(name, v)
	}
	for _, m := range regexp.MustCompile(`(?s)<textarea([^>]*)>(.*?)</textarea>`).FindAllStringSubmatch(form, -1) {
		if name, ok := attr(m[1], "name"); ok {
			vals.Add(name, html.UnescapeString(strings.TrimPrefix(m[2], "\n")))
		}
	}
	for _, m := range regexp.MustCompile(`(?s)<select([^>]*)>(.*?)</select>`).FindAllStringSubmatch(form, -1) {
		name, ok := attr(m[1], "name")
		if !ok {
			continue
		}
		opts := regexp.MustCompile(`(?s)<option([^>]*)>(.*?)</option>`).FindAllStringSubmatch(m[2], -1)
		chosen := -1
		for i, o := range opts {
			if strings.Contains(o[1], " selected") {
				chosen = i
			}
		}
		if chosen < 0 && len(opts) > 0 {
			chosen = 0
		}
		if chosen >= 0 {
			o := opts[chosen]
			v, ok := attr(o[1], "value")
			if !ok {
				v = html.UnescapeString(strings.TrimSpace(o[2]))
			}
			vals.Add(name, v)
		}
	}
	return vals
}

// eventFlag creates the object flag of the tests, with a schema, as alice.
func (h *uiHarness) eventFlag(key string) {
	h.t.Helper()
	ctx := solstice.WithActor(context.Background(), solstice.Actor{Name: "alice", Kind: "user"})
	_, err := h.flags.CreateFlag(ctx, flags.NewFlag{Key: key, Type: flags.TypeObject, Name: "Winter event",
		Schema: []byte(`{"type":"object","required":["event","xp"],"additionalProperties":false,"properties":{
			"event":{"type":"string","title":"Event name"},
			"xp":{"type":"number","minimum":1,"maximum":5,"description":"XP multiplier"},
			"drops":{"type":"array","items":{"type":"object","required":["item","weight"],"properties":{"item":{"type":"string"},"weight":{"type":"integer","minimum":1}}}}}}`),
		Variants: []flags.Variant{
			{Key: "control", Value: []byte(`{"event":"none","xp":1}`)},
			{Key: "festival", Value: []byte(`{"event":"winter","xp":2,"drops":[{"item":"globe","weight":3}]}`)},
		}})
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *uiHarness) config(env, key string) flags.FlagConfig {
	h.t.Helper()
	fc, err := h.flags.GetConfig(context.Background(), env, key)
	if err != nil {
		h.t.Fatal(err)
	}
	return fc
}

func (h *uiHarness) head(env string) int64 {
	h.t.Helper()
	e, err := h.flags.Store().GetEnvironment(context.Background(), env)
	if err != nil {
		h.t.Fatal(err)
	}
	return e.Head
}

// uiTestLogger discards logs unless SOLSTICE_TEST_LOG is set.
func uiTestLogger() *slog.Logger {
	if os.Getenv("SOLSTICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}
