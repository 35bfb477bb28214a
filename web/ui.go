package web

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/review"
)

// UIDeps are the dependencies of the web UI for people, served by the same
// server as the API. The UI is not served when Deps.UI is nil.
type UIDeps struct {
	Accounts *accounts.Service
	Review   *review.Service
	// SecureCookies marks the session cookie Secure (and names it with the
	// __Host- prefix) even for requests that arrive over plain HTTP: set it
	// behind a TLS-terminating proxy that does not send X-Forwarded-Proto.
	// Requests over HTTPS get the secure cookie anyway.
	SecureCookies bool
}

//go:embed templates static
var uiFiles embed.FS

// Cookie names. The session cookie gets the __Host- prefix over HTTPS:
// browsers then accept it only with Secure, Path=/ and no Domain, so no
// sibling subdomain can set or shadow it.
const (
	sessionCookie       = "solstice_session"
	secureSessionCookie = "__Host-solstice_session"
	loginCookie         = "solstice_login" // the login form's double-submit CSRF token
	flashCookie         = "solstice_flash"
	csrfField           = "_csrf"
	csrfHeader          = "X-CSRF-Token"
)

// contentSecurityPolicy allows nothing but this origin's own files: no
// inline scripts or styles, no frames, no other origins.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// ui serves the pages. Every handler is a method; the route table is
// uiRoutes.
type ui struct {
	s      *Server
	acc    *accounts.Service
	rev    *review.Service
	secure bool
	pages  map[string]*template.Template
	assets map[string]string // static file name → content digest, for cache busting
}

// uiRoutes registers the UI's routes when the server has UI dependencies.
//
// NOTE: the middleware is given per route, not to an Echo group: a group
// with middleware registers a catch-all route, which would turn every
// unknown /api/v1 path into a login redirect.
func (s *Server) uiRoutes(e *echo.Echo) {
	if s.uiDeps == nil {
		return
	}
	u := newUI(s, *s.uiDeps)
	e.GET("/static/*", u.static)

	pub := []echo.MiddlewareFunc{u.htmlErrors, u.headers}
	e.GET("/login", u.loginPage, pub...)
	e.POST("/login", u.login, pub...)

	auth := append(slices.Clone(pub), u.session, u.csrf)
	get := func(p string, h echo.HandlerFunc) { e.GET(p, h, auth...) }
	post := func(p string, h echo.HandlerFunc) { e.POST(p, h, auth...) }

	post("/logout", u.logout)
	get("/account/password", u.passwordPage)
	post("/account/password", u.changePassword)

	get("/", u.home)
	get("/env/:env", u.dashboard)
	get("/env/:env/flags", u.flagList)
	get("/env/:env/flags/:key", u.configView)
	get("/env/:env/flags/:key/edit", u.editPage)
	post("/env/:env/flags/:key/edit", u.editSubmit)
	post("/env/:env/flags/:key/toggle", u.toggle)
	get("/env/:env/flags/:key/promote", u.promotePage)
	post("/env/:env/flags/:key/promote", u.promote)
	get("/env/:env/history", u.history)
	get("/env/:env/history/:n", u.revision)
	post("/env/:env/history/:n/revert", u.revert)
	get("/env/:env/playground", u.playground)
	get("/env/:env/fleet", u.fleetPage)
	get("/env/:env/guardrails", u.guardrailsPage)
	get("/env/:env/flags/:key/guardrails/:guardrail", u.guardrailPage)

	// Segments (ui_segments.go).
	get("/env/:env/segments", u.segmentList)
	get("/env/:env/segments/new", u.newSegmentPage)
	post("/env/:env/segments/new", u.newSegmentSubmit)
	get("/env/:env/segments/:key", u.segmentPage)
	post("/env/:env/segments/:key", u.editSegmentSubmit)
	post("/env/:env/segments/:key/delete", u.deleteSegment)

	// Incidents, rollouts and the calendar (ui_incidents.go, ui_rollouts.go).
	get("/env/:env/incidents", u.incidentList)
	get("/env/:env/incidents/:n", u.incidentPage)
	post("/env/:env/incidents/:n/ack", u.ackIncident)
	post("/env/:env/incidents/:n/resume", u.resumeIncident)
	get("/env/:env/rollouts", u.rolloutList)
	get("/env/:env/rollouts/:id", u.rolloutPage)
	post("/env/:env/rollouts/:id/:action", u.rolloutTransition)
	get("/env/:env/calendar", u.calendarPage)
	get("/env/:env/events/:id", u.eventPage)
	post("/env/:env/events/:id/cancel", u.cancelEvent)

	get("/flags/new", u.newFlagPage)
	post("/flags/new", u.createFlag)
	get("/flags/:key", u.flagOverview)
	get("/flags/:key/settings", u.settingsPage)
	post("/flags/:key/settings", u.saveSettings)

	get("/changes", u.changeList)
	get("/changes/:id", u.changePage)
	post("/changes/:id/:action", u.decide)

	get("/audit", u.auditPage)
	get("/admin/keys", u.keysPage)
	post("/admin/keys", u.createKey)
	post("/admin/keys/:id/revoke", u.revokeKey)
	get("/admin/users", u.usersPage)
	post("/admin/users", u.createUser)
	get("/admin/users/:name", u.userPage)
	post("/admin/users/:name", u.updateUser)
	get("/admin/environments", u.environmentsPage)
	post("/admin/environments/:env", u.updateEnvironmentUI)
}

func newUI(s *Server, d UIDeps) *ui {
	u := &ui{s: s, acc: d.Accounts, rev: d.Review, secure: d.SecureCookies, assets: map[string]string{}}
	err := fs.WalkDir(uiFiles, "static", func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := uiFiles.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		u.assets[strings.TrimPrefix(p, "static/")] = hex.EncodeToString(sum[:6])
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("web: read embedded static files: %v", err)) // the files are compiled in: a bug
	}
	u.pages = mustParsePages(u.funcs())
	return u
}

// mustParsePages parses every page of templates/pages with the layout and
// the partials. The templates are compiled into the binary and covered by
// the tests, so a failure is a bug.
func mustParsePages(funcs template.FuncMap) map[string]*template.Template {
	base := template.Must(template.New("").Funcs(funcs).ParseFS(uiFiles, "templates/layout.html", "templates/partials/*.html"))
	names, err := fs.Glob(uiFiles, "templates/pages/*.html")
	if err != nil {
		panic(err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		t := template.Must(template.Must(base.Clone()).ParseFS(uiFiles, n))
		pages[strings.TrimSuffix(path.Base(n), ".html")] = t
	}
	return pages
}

// static serves the embedded CSS, JavaScript and htmx. A request naming
// the current digest (?v=) may be cached for a year.
func (u *ui) static(c echo.Context) error {
	name := c.Param("*")
	digest, ok := u.assets[name]
	if !ok {
		return echo.NewHTTPError(http.StatusNotFound, "no such file")
	}
	b, err := uiFiles.ReadFile("static/" + name)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	if c.QueryParam("v") == digest {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	h.Set("ETag", `"`+digest+`"`)
	if c.Request().Header.Get("If-None-Match") == `"`+digest+`"` {
		return c.NoContent(http.StatusNotModified)
	}
	ct := "application/octet-stream"
	switch path.Ext(name) {
	case ".css":
		ct = "text/css; charset=utf-8"
	case ".js":
		ct = "text/javascript; charset=utf-8"
	case ".svg":
		ct = "image/svg+xml"
	}
	return c.Blob(http.StatusOK, ct, b)
}

// ---- middleware ----

// headers sets the security headers of every page.
func (u *ui) headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store") // pages hold CSRF tokens and live data
		h.Add("Vary", "HX-Request")
		return next(c)
	}
}

// uiSession is the logged-in user of a request.
type uiSession struct {
	user  accounts.User
	token string
	csrf  string
}

const uiSessionKey = "solstice.ui.session"

func sessionOf(c echo.Context) *uiSession {
	s, _ := c.Get(uiSessionKey).(*uiSession)
	return s
}

func (u *ui) secureRequest(c echo.Context) bool { return u.secure || c.Scheme() == "https" }

func (u *ui) sessionCookieName(c echo.Context) string {
	if u.secureRequest(c) {
		return secureSessionCookie
	}
	return sessionCookie
}

// session authenticates the session cookie, puts the user (as the actor of
// every change) into the request, and sends everyone else to the login
// page. A user with a one-time password may only change it.
func (u *ui) session(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		var token string
		if ck, err := c.Cookie(u.sessionCookieName(c)); err == nil {
			token = ck.Value
		}
		if token == "" {
			return u.toLogin(c, "")
		}
		req := c.Request()
		user, _, err := u.acc.Authenticate(req.Context(), token)
		if solstice.IsKind(err, solstice.KindUnauthorized) {
			u.clearSession(c)
			return u.toLogin(c, "ended")
		}
		if err != nil {
			return err
		}
		c.SetRequest(req.WithContext(solstice.WithActor(req.Context(), user.Actor(c.RealIP()))))
		c.Set(uiSessionKey, &uiSession{user: user, token: token, csrf: accounts.CSRFToken(token)})
		if user.MustChangePassword && c.Path() != "/account/password" && c.Path() != "/logout" {
			return u.redirect(c, "/account/password")
		}
		return next(c)
	}
}

// toLogin sends a request without a valid session to the login page, and
// back where it was going afterwards. why is a code the login page turns
// into its message ("ended"), never text from the address bar.
func (u *ui) toLogin(c echo.Context, why string) error {
	target := "/login"
	q := url.Values{}
	if r := c.Request(); r.Method == http.MethodGet && r.URL.RequestURI() != "/" {
		q.Set("next", r.URL.RequestURI())
	}
	if why != "" {
		q.Set("why", why)
	}
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	if isHTMX(c) {
		c.Response().Header().Set("HX-Redirect", target)
		return c.NoContent(http.StatusUnauthorized)
	}
	return c.Redirect(http.StatusSeeOther, target)
}

func isHTMX(c echo.Context) bool { return c.Request().Header.Get("HX-Request") == "true" }

// csrf refuses unsafe requests that do not carry the session's CSRF token
// (in a form field or a header), and any from another site.
func (u *ui) csrf(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			return next(c)
		}
		if err := u.sameOrigin(c); err != nil {
			return err
		}
		// Either the form's field or htmx's header will do: after a password
		// change the page's header still holds the old session's token
		// until the next full load, while the new page's forms hold the new.
		s := sessionOf(c)
		if s == nil || !accounts.ValidCSRF(s.token, r.Header.Get(csrfHeader)) && !accounts.ValidCSRF(s.token, c.FormValue(csrfField)) {
			return solstice.Errorf(solstice.KindForbidden, "this form has expired or did not come from Solstice: reload the page and try again")
		}
		return next(c)
	}
}

// sameOrigin refuses a request that the browser says came from another
// site (Sec-Fetch-Site, Origin): a second line of defence behind the token.
func (u *ui) sameOrigin(c echo.Context) error {
	r := c.Request()
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return solstice.Errorf(solstice.KindForbidden, "cross-site requests are not allowed")
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		if o != c.Scheme()+"://"+r.Host {
			return solstice.Errorf(solstice.KindForbidden, "cross-origin requests are not allowed")
		}
	}
	return nil
}

// htmlErrors renders errors as pages (or, for htmx, a page the client
// swaps in with the message in X-Error-Message for its toast).
func (u *ui) htmlErrors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if err == nil || c.Response().Committed {
			return err
		}
		p := problemFor(err)
		if p.Status >= 500 {
			u.s.log.ErrorContext(c.Request().Context(), "page failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
		}
		msg := p.Detail
		if msg == "" {
			msg = p.Title
		}
		c.Response().Header().Set("X-Error-Message", url.PathEscape(msg))
		pg := u.page(c, p.Title)
		pg.Data = map[string]any{"Status": p.Status, "Title": p.Title, "Message": msg, "Fields": p.Errors}
		if rerr := u.render(c, p.Status, "error", pg); rerr != nil {
			return err
		}
		return nil
	}
}

// ---- pages ----

// page is what every page template gets.
type page struct {
	Title   string
	Nav     string // the active navigation item
	User    accounts.User
	CSRF    string
	Env     string // the environment the page is about, or the last one visited
	Envs    []flags.Environment
	Flash   *flash
	Open    int // open change requests the user can see
	Path    string
	Secure  bool
	Data    any
	session *uiSession
}

// Can reports whether the user has at least role in env ("*": every
// environment).
func (p *page) Can(env, role string) bool {
	return p.session != nil && p.User.Can(env, accounts.Role(role))
}

// EnvURL returns the current page's address in another environment when
// the page is about one, else that environment's dashboard.
func (p *page) EnvURL(env string) string {
	if rest, ok := strings.CutPrefix(p.Path, "/env/"+p.Env); ok && (rest == "" || strings.HasPrefix(rest, "/")) {
		// History entries, segments, incidents, plans, events and
		// guardrails are each one environment's: go to the list instead.
		for _, list := range []string{"/history", "/segments", "/incidents", "/rollouts", "/events"} {
			if strings.HasPrefix(rest, list+"/") {
				rest = list
			}
		}
		if strings.HasPrefix(rest, "/flags/") && strings.Contains(rest, "/guardrails/") {
			rest = "/guardrails"
		}
		if rest == "/events" {
			rest = "/calendar"
		}
		return "/env/" + url.PathEscape(env) + rest
	}
	return "/env/" + url.PathEscape(env)
}

// EnvInfo returns the environment named env.
func (p *page) EnvInfo(env string) flags.Environment {
	for _, e := range p.Envs {
		if e.Name == env {
			return e
		}
	}
	return flags.Environment{Name: env}
}

// page returns the common part of a page for the current request.
func (u *ui) page(c echo.Context, title string) *page {
	p := &page{Title: title, Path: c.Request().URL.Path, Secure: u.secureRequest(c)}
	sess := sessionOf(c)
	if sess == nil {
		return p
	}
	p.session, p.User, p.CSRF = sess, sess.user, sess.csrf
	ctx := c.Request().Context()
	if envs, err := u.s.flags.Store().ListEnvironments(ctx); err == nil {
		p.Envs = envs
	}
	p.Env = c.Param("env")
	if p.Env == "" {
		p.Env = u.lastEnv(c, p.Envs)
	}
	if open, err := u.rev.List(ctx, review.Filter{Status: review.StatusOpen, Limit: 1000}); err == nil {
		p.Open = len(open)
	}
	p.Flash = u.takeFlash(c)
	return p
}

// lastEnv returns the environment the user last looked at (remembered in a
// cookie), or staging, or the first one.
func (u *ui) lastEnv(c echo.Context, envs []flags.Environment) string {
	has := func(name string) bool {
		return slices.ContainsFunc(envs, func(e flags.Environment) bool { return e.Name == name })
	}
	if ck, err := c.Cookie("solstice_env"); err == nil && has(ck.Value) {
		return ck.Value
	}
	if has("staging") {
		return "staging"
	}
	if len(envs) > 0 {
		return envs[0].Name
	}
	return ""
}

// render executes a page template into a buffer, so that a template error
// becomes a clean 500 rather than half a page.
func (u *ui) render(c echo.Context, status int, name string, p *page) error {
	t, ok := u.pages[name]
	if !ok {
		return fmt.Errorf("no page template %q", name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	if c.Param("env") != "" && sessionOf(c) != nil {
		u.setCookie(c, "solstice_env", c.Param("env"), "/", http.SameSiteLaxMode, 90*24*time.Hour)
	}
	if c.Request().Method != http.MethodGet && isHTMX(c) {
		// A page answering a form (an error, a secret shown once) is not a
		// place to come back to: keep the address bar where it was.
		c.Response().Header().Set("HX-Push-Url", "false")
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// setCookie sets a cookie of the UI: HttpOnly always, Secure whenever the
// request came over HTTPS (or the UI is told it is behind TLS), for maxAge
// (negative: delete it now).
func (u *ui) setCookie(c echo.Context, name, value, path string, sameSite http.SameSite, maxAge time.Duration) {
	// NOTE: over plain HTTP (a local `make run`) a Secure cookie would never
	// come back, so Secure follows the transport: always over HTTPS.
	ck := &http.Cookie{Name: name, Value: value, Path: path, HttpOnly: true, SameSite: sameSite, //nolint:gosec // Secure is set below, by transport
		Secure: u.secureRequest(c)}
	switch {
	case maxAge < 0:
		ck.MaxAge = -1
	case maxAge > 0:
		ck.MaxAge = int(maxAge / time.Second)
		ck.Expires = time.Now().Add(maxAge)
	}
	c.SetCookie(ck)
}

// ---- redirects and flash messages ----

// flash is a one-time message shown on the next page.
type flash struct {
	Kind    string // "success" or "error"
	Message string
	Link    string // optional
}

// redirect answers a form with 303 See Other (htmx follows it and swaps
// the page in).
func (u *ui) redirect(c echo.Context, to string) error {
	return c.Redirect(http.StatusSeeOther, to)
}

// redirectFlash redirects with a success message for the next page.
func (u *ui) redirectFlash(c echo.Context, to, msg, link string) error {
	u.setFlash(c, flash{Kind: "success", Message: msg, Link: link})
	return u.redirect(c, to)
}

// setFlash stores f in a short-lived cookie, signed with a key derived from
// the session so that nobody else can plant messages.
func (u *ui) setFlash(c echo.Context, f flash) {
	sess := sessionOf(c)
	if sess == nil {
		return
	}
	payload := base64.RawURLEncoding.EncodeToString([]byte(f.Kind + "\x00" + f.Message + "\x00" + f.Link))
	u.setCookie(c, flashCookie, payload+"."+flashMAC(sess.token, payload), "/", http.SameSiteStrictMode, time.Minute)
}

func flashMAC(token, payload string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("solstice flash v1\x00" + payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// takeFlash returns and clears the pending flash message, if any.
func (u *ui) takeFlash(c echo.Context) *flash {
	ck, err := c.Cookie(flashCookie)
	sess := sessionOf(c)
	if err != nil || sess == nil {
		return nil
	}
	u.setCookie(c, flashCookie, "", "/", http.SameSiteStrictMode, -1)
	payload, mac, ok := strings.Cut(ck.Value, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(flashMAC(sess.token, payload))) {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return nil
	}
	parts := strings.SplitN(string(raw), "\x00", 3)
	if len(parts) != 3 {
		return nil
	}
	return &flash{Kind: parts[0], Message: parts[1], Link: parts[2]}
}

// ---- access ----

// require returns KindForbidden unless the user has at least role in env
// (accounts.AllEnvironments for what is not about one environment).
func require(c echo.Context, env string, role accounts.Role) error {
	s := sessionOf(c)
	if s == nil || !s.user.Can(env, role) {
		where := "in " + env
		if env == accounts.AllEnvironments {
			where = "for every environment"
		}
		return solstice.Errorf(solstice.KindForbidden, "this needs the %s role %s", role, where)
	}
	return nil
}

// environment returns the environment of the path and checks that the
// user may see it.
func (u *ui) environment(c echo.Context) (flags.Environment, error) {
	env, err := u.s.flags.Store().GetEnvironment(c.Request().Context(), c.Param("env"))
	if err != nil {
		return flags.Environment{}, err
	}
	return env, require(c, env.Name, accounts.RoleViewer)
}

// randomToken returns 32 random bytes, base64url-encoded.
func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// formError is a KindInvalid error's field errors as the page shows them.
type formError struct {
	Pointer string
	Message string
}

func fieldErrors(err error) []formError {
	var out []formError
	for _, f := range solstice.ErrorFields(err) {
		out = append(out, formError{Pointer: f.Pointer, Message: f.Message})
	}
	return out
}

// errorsByField indexes field errors by pointer, for forms with one input
// per pointer.
func errorsByField(err error) map[string]string {
	m := map[string]string{}
	for _, f := range solstice.ErrorFields(err) {
		if m[f.Pointer] != "" {
			m[f.Pointer] += "; "
		}
		m[f.Pointer] += f.Message
	}
	return m
}

// userMessage is the message of an error a form shows to its user.
func userMessage(err error) string {
	var e *solstice.Error
	if errors.As(err, &e) && e.Kind == solstice.KindInvalid {
		return e.Message
	}
	return solstice.ErrorMessage(err)
}

// ago formats the time since t for people.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case t.IsZero():
		return "never"
	case d < 0:
		return "just now"
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour") + " ago"
	default:
		return plural(int(d/(24*time.Hour)), "day") + " ago"
	}
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
