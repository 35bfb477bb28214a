package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/fleet"
)

// ---- evaluation playground ----

type playgroundData struct {
	Env      flags.Environment
	Flags    []string
	Flag     string
	Context  string
	Error    string
	Result   *flags.Result
	Value    string
	Explain  string
	Revision int64
}

// playground evaluates a flag for a context, as a game server would. It is
// a GET form: evaluating changes nothing, and the address can be shared.
func (u *ui) playground(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	d := playgroundData{Env: env, Flag: c.QueryParam("flag"), Context: c.QueryParam("context")}
	if d.Context == "" {
		d.Context = `{"targetingKey": "player-123"}`
	}
	objs, err := u.s.flags.Store().ListObjects(ctx, env.Name, flags.KindFlag)
	if err != nil {
		return err
	}
	for _, o := range objs {
		d.Flags = append(d.Flags, o.Key)
	}
	status := http.StatusOK
	if d.Flag != "" {
		dec := json.NewDecoder(strings.NewReader(d.Context))
		dec.UseNumber()
		var evalCtx flags.Context
		if err := dec.Decode(&evalCtx); err != nil {
			d.Error = "The context must be a JSON object of attributes: " + strings.TrimPrefix(err.Error(), "json: ")
			status = http.StatusUnprocessableEntity
		} else {
			compiled, err := u.s.flags.Compiled(ctx, env.Name)
			if err != nil {
				return err
			}
			r := flags.Evaluate(compiled, d.Flag, evalCtx)
			d.Result, d.Explain, d.Revision = &r, flags.Explain(r), compiled.Revision()
			if b, err := json.MarshalIndent(r.Value, "", "  "); err == nil {
				d.Value = string(b)
			}
		}
	}
	p := u.page(c, "Playground")
	p.Nav, p.Data = "playground", d
	return u.render(c, status, "playground", p)
}

// ---- fleet ----

// fleetStaleAfter is when a game server that stopped polling is listed as
// not seen.
const fleetStaleAfter = 2 * time.Minute

func (u *ui) fleetReport(env string) fleet.Report {
	var newest int64
	if u.s.publisher != nil {
		if b, ok := u.s.publisher.Current(env); ok {
			newest = b.Version()
		}
	}
	return u.s.fleet.Report(env, newest, fleetStaleAfter)
}

type fleetData struct {
	Env    flags.Environment
	Report fleet.Report
	Max    int // servers on the most common version, for the bars
}

func (u *ui) fleetPage(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	d := fleetData{Env: env, Report: u.fleetReport(env.Name)}
	for _, v := range d.Report.Versions {
		d.Max = max(d.Max, v.Servers)
	}
	p := u.page(c, "Fleet of "+env.Name)
	p.Nav, p.Data = "fleet", d
	return u.render(c, http.StatusOK, "fleet", p)
}

// ---- audit log ----

type auditData struct {
	Filter  solstice.AuditFilter
	Since   string
	Until   string
	Entries []solstice.AuditEntry
	Older   string // the address of the next page
	Error   string
}

const auditPerPage = 100

func (u *ui) auditPage(c echo.Context) error {
	d := auditData{Filter: solstice.AuditFilter{
		Environment: strings.TrimSpace(c.QueryParam("environment")), Actor: strings.TrimSpace(c.QueryParam("actor")),
		Action: strings.TrimSpace(c.QueryParam("action")), Resource: strings.TrimSpace(c.QueryParam("resource")), Limit: auditPerPage,
	}, Since: c.QueryParam("since"), Until: c.QueryParam("until")}
	env := d.Filter.Environment
	if env == "" {
		env = accounts.AllEnvironments
	}
	if err := require(c, env, accounts.RoleViewer); err != nil {
		return err
	}
	status := http.StatusOK
	for _, x := range []struct {
		in  string
		out *time.Time
	}{{d.Since, &d.Filter.Since}, {d.Until, &d.Filter.Until}} {
		if x.in == "" {
			continue
		}
		t, err := parseDateTime(x.in)
		if err != nil {
			d.Error, status = err.Error(), http.StatusUnprocessableEntity
			continue
		}
		*x.out = t
	}
	before, err := queryInt(c, "before", 0)
	if err != nil {
		return err
	}
	d.Filter.BeforeID = before
	if d.Error == "" {
		entries, err := u.s.flags.Store().ListAudit(c.Request().Context(), d.Filter)
		if err != nil {
			return err
		}
		d.Entries = entries
		if len(entries) == auditPerPage {
			q := c.QueryParams()
			q.Set("before", strconv.FormatInt(entries[len(entries)-1].ID, 10))
			d.Older = "/audit?" + q.Encode()
		}
	}
	p := u.page(c, "Audit log")
	p.Nav, p.Data = "audit", d
	return u.render(c, status, "audit", p)
}

// parseDateTime reads a time typed into a filter: RFC 3339, or the
// "2006-01-02T15:04" of a datetime-local input or a plain date, in UTC.
func parseDateTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date and time (like 2025-12-21T10:30, in UTC)", s)
}

// ---- keys ----

type keysData struct {
	Tokens  []auth.Token
	Created *auth.Created
	Form    auth.NewToken
	Errors  map[string]string
	Envs    []string
}

func (u *ui) keysPage(c echo.Context) error {
	if err := require(c, accounts.AllEnvironments, accounts.RoleAdmin); err != nil {
		return err
	}
	return u.renderKeys(c, http.StatusOK, &keysData{Form: auth.NewToken{Kind: auth.KindServer}})
}

func (u *ui) renderKeys(c echo.Context, status int, d *keysData) error {
	ts, err := u.s.auth.List(c.Request().Context())
	if err != nil {
		return err
	}
	d.Tokens = ts
	p := u.page(c, "Keys and tokens")
	for _, e := range p.Envs {
		d.Envs = append(d.Envs, e.Name)
	}
	p.Nav, p.Data = "keys", d
	return u.render(c, status, "keys", p)
}

func (u *ui) createKey(c echo.Context) error {
	if err := require(c, accounts.AllEnvironments, accounts.RoleAdmin); err != nil {
		return err
	}
	ctx := c.Request().Context()
	in := auth.NewToken{Name: strings.TrimSpace(c.FormValue("name")), Kind: auth.TokenKind(c.FormValue("kind"))}
	if in.Kind == auth.KindServer {
		in.Environment = c.FormValue("environment")
	} else {
		in.Role = auth.Role(c.FormValue("role"))
	}
	d := &keysData{Form: in, Errors: map[string]string{}}
	if in.Kind == auth.KindServer && in.Environment != "" {
		if _, err := u.s.flags.Store().GetEnvironment(ctx, in.Environment); err != nil {
			if !solstice.IsKind(err, solstice.KindNotFound) {
				return err
			}
			d.Errors["/environment"] = solstice.ErrorMessage(err)
			return u.renderKeys(c, http.StatusUnprocessableEntity, d)
		}
	}
	created, err := u.s.auth.Create(ctx, in)
	if solstice.IsKind(err, solstice.KindInvalid) {
		d.Errors = errorsByField(err)
		return u.renderKeys(c, http.StatusUnprocessableEntity, d)
	}
	if err != nil {
		return err
	}
	// The secret is on this page and nowhere else, ever: no redirect.
	d.Created, d.Form = &created, auth.NewToken{Kind: in.Kind}
	return u.renderKeys(c, http.StatusCreated, d)
}

func (u *ui) revokeKey(c echo.Context) error {
	if err := require(c, accounts.AllEnvironments, accounts.RoleAdmin); err != nil {
		return err
	}
	id := c.Param("id")
	if err := u.s.auth.Revoke(c.Request().Context(), id); err != nil {
		return err
	}
	return u.redirectFlash(c, "/admin/keys", "Revoked "+id+". Requests with it are refused from now on.", "")
}

// ---- users ----

type usersData struct {
	Users    []accounts.User
	Roles    []accounts.Role
	Envs     []string
	Form     userForm
	Errors   map[string]string
	Password string // a one-time password, shown once
	For      string // whose
}

type userForm struct {
	Username, DisplayName string
	Default               accounts.Role
	PerEnv                map[string]accounts.Role
}

func (u *ui) usersPage(c echo.Context) error {
	if err := require(c, accounts.AllEnvironments, accounts.RoleAdmin); err != nil {
		return err
	}
	return u.renderUsers(c, http.StatusOK, &usersData{Form: userForm{Default: accounts.RoleViewer}})
}

func (u *ui) renderUsers(c echo.Context, status int, d *usersData) error {
	users, err := u.acc.ListUsers(c.Request().Context())
	if err != nil {
		return err
	}
	d.Users, d.Roles = users, accounts.Roles
	p := u.page(c, "Users")
	for _, e := range p.Envs {
		d.Envs = append(d.Envs, e.Name)
	}
	p.Nav, p.Data = "users", d
	return u.render(c, status, "users", p)
}

// readRoles reads a role form: "role" for every environment, "role:ENV"
// for each environment's own (empty: the default).
func readRoles(form url.Values) map[string]accounts.Role {
	roles := map[string]accounts.Role{accounts.AllEnvironments: accounts.Role(form.Get("role"))}
	for k, v := range form {
		if env, ok := strings.CutPrefix(k, "role:"); ok && len(v) > 0 && v[0] != "" {
			roles[env] = accounts.Role(v[0])
		}
	}
	return roles
}

func (u *ui) createUser(c echo.Context) error {
	if err := require(c, accounts.AllEnvironments, accounts.RoleAdmin); err != nil {
		return err
	}
	form, err := c.FormParams()
	if err != nil {
		return badRequestf("could not read the form")
	}
	roles := readRoles(form)
	d := &usersData{Form: userForm{Username: form.Get("username"), DisplayName: form.Get("display_name"), Default: roles[accounts.AllEnvironments], PerEnv: roles}}
	pw, err := accounts.GeneratePassword()
	if err != nil {
		return err
	}
	nu, err := u.acc.CreateUser(c.Request().Context(), accounts.NewUser{Username: d.Form.Username, DisplayName: d.Form.DisplayName,
		Password: pw, Roles: roles, MustChangePassword: true})
	switch {
	case solstice.IsKind(err, solstice.KindInvalid):
		d.Errors = errorsByField(err)
		return u.renderUsers(c, http.StatusUnprocessableEntity, d)
	case solstice.IsKind(err, solstice.KindConflict):
		d.Errors = map[string]string{"/username": solstice.ErrorMessage(err)}
		return u.renderUsers(c, http.StatusConflict, d)
	case err != nil:
		return err
	}
	d.Password, d.For, d.Form = pw, nu.Username, userForm{Default: accounts.RoleViewer}
	return u.renderUsers(c, http.StatusCreated, d)
}

type userData struct {
	Account  accounts.User
	Roles    []accounts.Role
	Envs     []string
	Errors   map[string]string
	Error    string
	Password string
}

func (u *ui) userPage(c echo.Context) error {
	if err := require(c, accounts.AllEnvironments, accounts.RoleAdmin); err != nil {
		return err
	}
	acct, err := u.acc.GetUser(c.Request().Context(), c.Param("name"))
	if err != nil {
		return err
	}
	return u.renderUser(c, http.StatusOK, &userData{Account: acct})
}

func (u *ui) renderUser(c echo.Context, status int, d *userData) error {
	d.Roles = accounts.Roles
	p := u.page(c, "User "+d.Account.Username)
	for _, e := range p.Envs {
		d.Envs = append(d.Envs, e.Name)
	}
	p.Nav, p.Data = "users", d
	return u.render(c, status, "user", p)
}

// updateUser applies one of the user page's forms: roles, display name,
// password reset, disable or enable.
func (u *ui) updateUser(c echo.Context) error {
	if err := require(c, accounts.AllEnvironments, accounts.RoleAdmin); err != nil {
		return err
	}
	ctx := c.Request().Context()
	name := c.Param("name")
	acct, err := u.acc.GetUser(ctx, name)
	if err != nil {
		return err
	}
	form, err := c.FormParams()
	if err != nil {
		return badRequestf("could not read the form")
	}
	d := &userData{Account: acct}
	var msg string
	switch form.Get("action") {
	case "roles":
		if _, err = u.acc.SetRoles(ctx, name, readRoles(form)); err == nil {
			_, err = u.acc.SetDisplayName(ctx, name, form.Get("display_name"))
		}
		msg = "Saved the roles of " + name + "."
	case "reset":
		pw, perr := accounts.GeneratePassword()
		if perr != nil {
			return perr
		}
		if err = u.acc.SetPassword(ctx, name, pw, true); err == nil {
			d.Password = pw
			return u.renderUser(c, http.StatusOK, d)
		}
	case "disable", "enable":
		_, err = u.acc.SetDisabled(ctx, name, form.Get("action") == "disable")
		msg = fmt.Sprintf("%s is %sd.", name, form.Get("action"))
	default:
		return badRequestf("unknown action")
	}
	switch {
	case solstice.IsKind(err, solstice.KindInvalid):
		d.Errors = errorsByField(err)
		return u.renderUser(c, http.StatusUnprocessableEntity, d)
	case solstice.IsKind(err, solstice.KindConflict):
		d.Error = solstice.ErrorMessage(err)
		return u.renderUser(c, http.StatusConflict, d)
	case err != nil:
		return err
	}
	return u.redirectFlash(c, "/admin/users/"+url.PathEscape(name), msg, "")
}

// ---- environments ----

type environmentsData struct {
	Environments []flags.Environment
}

func (u *ui) environmentsPage(c echo.Context) error {
	if err := require(c, accounts.AllEnvironments, accounts.RoleViewer); err != nil {
		return err
	}
	envs, err := u.s.flags.Store().ListEnvironments(c.Request().Context())
	if err != nil {
		return err
	}
	p := u.page(c, "Environments")
	p.Nav, p.Data = "environments", environmentsData{Environments: envs}
	return u.render(c, http.StatusOK, "environments", p)
}

func (u *ui) updateEnvironmentUI(c echo.Context) error {
	if err := require(c, accounts.AllEnvironments, accounts.RoleAdmin); err != nil {
		return err
	}
	protected, err := strconv.ParseBool(c.FormValue("protected"))
	if err != nil {
		return badRequestf("protected must be true or false")
	}
	env, err := u.s.flags.SetProtected(c.Request().Context(), c.Param("env"), protected)
	if err != nil {
		return err
	}
	msg := env.Name + " is no longer protected: changes apply at once."
	if protected {
		msg = env.Name + " is protected: changes need another approver."
	}
	return u.redirectFlash(c, "/admin/environments", msg, "")
}

// jsonCompact formats an audit entry's details for a table cell.
func jsonCompact(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}
