package web

import (
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
)

// loginData is the login page.
type loginData struct {
	Username string
	Next     string
	Error    string
	Notice   string
	Token    string // double-submit CSRF token of the form
}

// safeNext returns next if it is a path on this site, else "/".
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return "/"
	}
	return next
}

func (u *ui) loginPage(c echo.Context) error {
	// Someone already logged in goes on.
	if ck, err := c.Cookie(u.sessionCookieName(c)); err == nil {
		if _, _, err := u.acc.Authenticate(c.Request().Context(), ck.Value); err == nil {
			return u.redirect(c, safeNext(c.QueryParam("next")))
		}
	}
	d := loginData{Next: safeNext(c.QueryParam("next"))}
	switch {
	case c.QueryParam("out") != "":
		d.Notice = "You are logged out."
	case c.QueryParam("why") == "ended":
		d.Notice = "Your session has ended (it expired, or you were logged out elsewhere). Log in again to continue."
	}
	return u.renderLogin(c, http.StatusOK, d)
}

// renderLogin renders the login form with a fresh double-submit token:
// the form carries it and so does a cookie only this site can set. A
// forged login from another site cannot match them.
func (u *ui) renderLogin(c echo.Context, status int, d loginData) error {
	tok, err := randomToken()
	if err != nil {
		return err
	}
	d.Token = tok
	u.setCookie(c, loginCookie, tok, "/login", http.SameSiteStrictMode, time.Hour)
	p := u.page(c, "Log in")
	p.Data = d
	return u.render(c, status, "login", p)
}

func (u *ui) login(c echo.Context) error {
	d := loginData{Username: strings.TrimSpace(c.FormValue("username")), Next: safeNext(c.FormValue("next"))}
	if err := u.sameOrigin(c); err != nil {
		return err
	}
	ck, err := c.Cookie(loginCookie)
	if err != nil || ck.Value == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(c.FormValue(csrfField))) != 1 {
		d.Error = "The login form expired. Please try again."
		return u.renderLogin(c, http.StatusForbidden, d)
	}
	l, err := u.acc.Login(c.Request().Context(), d.Username, c.FormValue("password"), c.RealIP(), c.Request().UserAgent())
	switch {
	case solstice.IsKind(err, solstice.KindUnauthorized), solstice.IsKind(err, solstice.KindRateLimited):
		d.Error = solstice.ErrorMessage(err)
		status := http.StatusUnauthorized
		if solstice.IsKind(err, solstice.KindRateLimited) {
			status = http.StatusTooManyRequests
		}
		return u.renderLogin(c, status, d)
	case err != nil:
		return err
	}
	u.setSession(c, l)
	u.setCookie(c, loginCookie, "", "/login", http.SameSiteStrictMode, -1)
	if l.User.MustChangePassword {
		return u.redirect(c, "/account/password")
	}
	return u.redirect(c, d.Next)
}

// setSession gives the browser the session cookie of l: HttpOnly,
// SameSite=Lax (links from chat and e-mail still arrive logged in; every
// unsafe request needs the CSRF token anyway), Secure with the __Host-
// prefix over HTTPS, expiring with the session.
func (u *ui) setSession(c echo.Context, l accounts.Login) {
	u.setCookie(c, u.sessionCookieName(c), l.Token, "/", http.SameSiteLaxMode, u.acc.AbsoluteTimeout()) // a new session
}

func (u *ui) clearSession(c echo.Context) {
	u.setCookie(c, u.sessionCookieName(c), "", "/", http.SameSiteLaxMode, -1)
}

func (u *ui) logout(c echo.Context) error {
	if err := u.acc.Logout(c.Request().Context(), sessionOf(c).token); err != nil {
		return err
	}
	u.clearSession(c)
	return u.redirect(c, "/login?out=1")
}

// passwordData is the password page.
type passwordData struct {
	Forced bool
	Errors map[string]string
}

func (u *ui) passwordPage(c echo.Context) error {
	p := u.page(c, "Change your password")
	p.Data = passwordData{Forced: sessionOf(c).user.MustChangePassword}
	return u.render(c, http.StatusOK, "password", p)
}

func (u *ui) changePassword(c echo.Context) error {
	sess := sessionOf(c)
	d := passwordData{Forced: sess.user.MustChangePassword, Errors: map[string]string{}}
	next, confirm := c.FormValue("password"), c.FormValue("confirm")
	var err error
	if next != confirm {
		d.Errors["/confirm"] = "does not match the new password"
	} else {
		var l accounts.Login
		l, err = u.acc.ChangePassword(c.Request().Context(), sess.user.Username, c.FormValue("current"), next, c.RealIP(), c.Request().UserAgent())
		switch {
		case err == nil:
			u.setSession(c, l)
			sess.token = l.Token // the flash is signed for the new session
			return u.redirectFlash(c, "/", "Your password is changed. Other sessions were logged out.", "")
		case solstice.IsKind(err, solstice.KindInvalid):
			d.Errors = errorsByField(err)
		case solstice.IsKind(err, solstice.KindRateLimited):
			d.Errors["/current"] = solstice.ErrorMessage(err)
		default:
			return err
		}
	}
	p := u.page(c, "Change your password")
	p.Data = d
	status := http.StatusUnprocessableEntity
	if solstice.IsKind(err, solstice.KindRateLimited) {
		status = http.StatusTooManyRequests
	}
	return u.render(c, status, "password", p)
}
