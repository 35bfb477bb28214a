package web

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/review"
)

// revisionsPerPage is the length of one page of history.
const revisionsPerPage = 50

type historyData struct {
	Env       flags.Environment
	Revisions []flags.Revision
	Older     int64 // the "before" of the next page, 0 at the end
}

func (u *ui) history(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	before, err := queryInt(c, "before", 0)
	if err != nil {
		return err
	}
	revs, err := u.s.flags.ListRevisions(c.Request().Context(), env.Name, flags.RevisionFilter{BeforeNumber: before, Limit: revisionsPerPage})
	if err != nil {
		return err
	}
	d := historyData{Env: env, Revisions: revs}
	if n := len(revs); n == revisionsPerPage && revs[n-1].Number > 1 {
		d.Older = revs[n-1].Number
	}
	p := u.page(c, "History of "+env.Name)
	p.Nav, p.Data = "history", d
	return u.render(c, http.StatusOK, "history", p)
}

type revisionData struct {
	Env      flags.Environment
	Revision flags.Revision
	Files    []fileDiff
	Head     int64
}

func (u *ui) revision(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	n, err := pathInt(c, "n")
	if err != nil {
		return err
	}
	rev, err := u.s.flags.GetRevision(c.Request().Context(), env.Name, n)
	if err != nil {
		return err
	}
	p := u.page(c, fmt.Sprintf("Revision %d of %s", n, env.Name))
	p.Nav, p.Data = "history", revisionData{Env: env, Revision: rev, Files: changeDiffs(rev.Diff), Head: env.Head}
	return u.render(c, http.StatusOK, "revision", p)
}

// revert restores the content as of revision "to" (a revision's own
// number: roll back to it; the one before: undo it). In a protected
// environment it proposes the revert as a change request.
func (u *ui) revert(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	if err := require(c, env.Name, accounts.RoleEditor); err != nil {
		return err
	}
	n, err := pathInt(c, "n")
	if err != nil {
		return err
	}
	to, err := strconv.ParseInt(c.FormValue("to"), 10, 64)
	if err != nil || to < 1 || to > n {
		return badRequestf("to must be a revision number between 1 and " + strconv.FormatInt(n, 10))
	}
	ctx := c.Request().Context()
	msg := strings.TrimSpace(c.FormValue("message"))
	if msg == "" {
		msg = fmt.Sprintf("Revert to revision %d", to)
		if to == n-1 {
			msg = fmt.Sprintf("Undo revision %d", n)
		}
	}
	if env.Protected {
		cr, err := u.rev.ProposeRevert(ctx, env.Name, to, msg)
		if err != nil {
			return err
		}
		return u.redirectFlash(c, changeURL(cr.ID), fmt.Sprintf("Change request #%d created: reverting %s needs another approver.", cr.ID, env.Name), "")
	}
	rev, err := u.s.flags.Revert(ctx, env.Name, to, msg)
	if solstice.IsKind(err, solstice.KindConflict) {
		u.setFlash(c, flash{Kind: "error", Message: solstice.ErrorMessage(err)})
		return u.redirect(c, revisionURL(env.Name, n))
	}
	if err != nil {
		return err
	}
	return u.redirectFlash(c, revisionURL(env.Name, rev.Number), fmt.Sprintf("Reverted: revision %d restores %s as of revision %d.", rev.Number, env.Name, to), "")
}

// ---- change requests ----

type changeListData struct {
	Status   string
	Env      string
	Requests []review.ChangeRequest
	Envs     []string
}

func (u *ui) changeList(c echo.Context) error {
	d := changeListData{Status: c.QueryParam("status"), Env: c.QueryParam("env")}
	if d.Status == "" && !c.QueryParams().Has("status") {
		d.Status = string(review.StatusOpen)
	}
	ctx := c.Request().Context()
	list, err := u.rev.List(ctx, review.Filter{Status: review.Status(d.Status), Environment: d.Env, Limit: 200})
	if err != nil {
		return err
	}
	sess := sessionOf(c)
	for _, cr := range list {
		if sess.user.Can(cr.Environment, accounts.RoleViewer) {
			d.Requests = append(d.Requests, cr)
		}
	}
	p := u.page(c, "Change requests")
	for _, e := range p.Envs {
		d.Envs = append(d.Envs, e.Name)
	}
	p.Nav, p.Data = "changes", d
	return u.render(c, http.StatusOK, "changes", p)
}

type changeData struct {
	Request   review.ChangeRequest
	Files     []fileDiff
	Stale     bool
	CanDecide bool
	IsAuthor  bool
	Current   int64 // what the request's base is now
	Error     string
}

func (u *ui) changeState(c echo.Context) (*changeData, error) {
	id, err := pathInt(c, "id")
	if err != nil {
		return nil, err
	}
	ctx := c.Request().Context()
	cr, err := u.rev.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := require(c, cr.Environment, accounts.RoleViewer); err != nil {
		return nil, err
	}
	d := &changeData{Request: cr}
	switch cr.Kind {
	case review.KindConfig:
		d.Files = changeDiffs([]flags.Change{{Kind: flags.KindFlag, Key: cr.Flag, Before: cr.Before, After: cr.After}})
	case review.KindRevert:
		changes, err := u.s.flags.DiffRevisions(ctx, cr.Environment, cr.BaseRevision, cr.TargetRevision)
		if err != nil {
			return nil, err
		}
		d.Files = changeDiffs(changes)
	}
	if d.Stale, err = u.rev.Stale(ctx, cr); err != nil {
		return nil, err
	}
	user := sessionOf(c).user
	d.IsAuthor = user.Username == cr.Author
	d.CanDecide = cr.Status == review.StatusOpen && !d.IsAuthor && user.Can(cr.Environment, accounts.RoleApprover)
	return d, nil
}

func (u *ui) changePage(c echo.Context) error {
	d, err := u.changeState(c)
	if err != nil {
		return err
	}
	return u.renderChange(c, http.StatusOK, d)
}

func (u *ui) renderChange(c echo.Context, status int, d *changeData) error {
	p := u.page(c, fmt.Sprintf("Change request #%d", d.Request.ID))
	p.Env = d.Request.Environment
	p.Nav, p.Data = "changes", d
	return u.render(c, status, "change", p)
}

// decide approves, rejects or withdraws a change request.
func (u *ui) decide(c echo.Context) error {
	id, err := pathInt(c, "id")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	comment := strings.TrimSpace(c.FormValue("comment"))
	var cr review.ChangeRequest
	var done string
	switch c.Param("action") {
	case "approve":
		cr, err = u.rev.Approve(ctx, id, comment)
		done = fmt.Sprintf("Approved and applied change request #%d as revision %d.", id, cr.AppliedRevision)
	case "reject":
		cr, err = u.rev.Reject(ctx, id, comment)
		done = fmt.Sprintf("Rejected change request #%d.", id)
	case "withdraw":
		cr, err = u.rev.Withdraw(ctx, id)
		done = fmt.Sprintf("Withdrew change request #%d.", id)
	default:
		return echo.NewHTTPError(http.StatusNotFound, "no such action")
	}
	if solstice.IsKind(err, solstice.KindConflict) || solstice.IsKind(err, solstice.KindInvalid) {
		d, serr := u.changeState(c)
		if serr != nil {
			return serr
		}
		d.Error = userMessage(err)
		return u.renderChange(c, http.StatusConflict, d)
	}
	if err != nil {
		return err
	}
	link := ""
	if cr.AppliedRevision > 0 {
		link = revisionURL(cr.Environment, cr.AppliedRevision)
	}
	return u.redirectFlash(c, changeURL(id), done, link)
}
