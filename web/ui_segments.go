package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/flags"
)

// The segment pages: the list of an environment's segments (with the flags
// using each), and one segment's form, whose condition rows are the rules
// editor's. Changes go through flags.Service.PutSegment and DeleteSegment
// with the revision the form was loaded from, like the configuration editor.
//
// NOTE: change requests (package review) hold flag configurations and
// reverts, not segments. So a protected environment's segments cannot be
// proposed for approval; instead, changing them there directly needs the
// approver role, the role that may apply other people's changes, and the
// pages say so.

// segmentForm is the state of one segment's form.
type segmentForm struct {
	Env              flags.Environment
	New              bool
	Base             int64
	Key              string
	Name             string
	Description      string
	MembersAttribute string
	Members          string // one per line
	Conditions       []editorCondition
	Message          string
	UsedBy           []string // keys of the flags whose rules reference the segment
	CanEdit          bool
	WhyNot           string // why the user cannot change it
	Unshowable       string // why the form cannot show the stored segment exactly ("" if it can)

	Errors   map[string][]placedError
	Summary  []formError
	Notice   string
	Conflict *conflict
	Focus    string
}

func newSegmentForm(env flags.Environment) *segmentForm {
	return &segmentForm{Env: env, Errors: map[string][]placedError{}}
}

// segmentFormOf returns the form of a stored segment.
func segmentFormOf(env flags.Environment, sv flags.SegmentVersion) *segmentForm {
	f := newSegmentForm(env)
	s := sv.Segment
	f.Base, f.Key, f.Name, f.Description, f.MembersAttribute = sv.Revision, s.Key, s.Name, s.Description, s.MembersAttribute
	f.Members = strings.Join(s.Members, "\n")
	for _, c := range s.Conditions {
		f.Conditions = append(f.Conditions, conditionFromModel(c))
	}
	renumberConditions(f.Conditions, "/conditions")
	// The form would save such a segment changed: it is shown, not edited.
	switch j := unfitCondition(s.Conditions); {
	case j >= 0:
		f.Unshowable = fmt.Sprintf("condition %d has a value or field its operator %q does not take, or an attribute with spaces around it or a line break", j+1, s.Conditions[j].Op)
	case !oneLine(s.Name) || !oneLine(s.MembersAttribute) || strings.ContainsAny(s.Description, "\r\n"):
		f.Unshowable = "its name, description or members attribute has spaces around it or a line break"
	case slices.ContainsFunc(s.Members, func(m string) bool { return !oneLine(m) || strings.Contains(m, ",") }):
		f.Unshowable = "a listed player's id has a comma, spaces around it or a line break"
	}
	return f
}

// parseSegmentForm reads a submitted segment form.
func parseSegmentForm(env flags.Environment, form url.Values) *segmentForm {
	f := newSegmentForm(env)
	f.Base, _ = strconv.ParseInt(form.Get("base"), 10, 64)
	f.Key = strings.TrimSpace(form.Get("/key"))
	f.Name, f.Description = strings.TrimSpace(form.Get("/name")), form.Get("/description")
	f.MembersAttribute, f.Members = strings.TrimSpace(form.Get("/members_attribute")), form.Get("/members")
	f.Conditions = parseConditions(form, "/conditions")
	f.Message = strings.TrimSpace(form.Get("message"))
	return f
}

// Action is the address the form posts to.
func (f *segmentForm) Action() string {
	if f.New {
		return segmentsURL(f.Env.Name) + "/new"
	}
	return segmentURL(f.Env.Name, f.Key)
}

// ErrorsAt returns the errors placed at ptr.
func (f *segmentForm) ErrorsAt(ptr string) []placedError { return f.Errors[ptr] }

// Errs returns the errors at ptr for the "errs" template.
func (f *segmentForm) Errs(ptr string) errView { return errView{ID: fieldID(ptr), Errs: f.Errors[ptr]} }

// CondForm returns the view of a condition row.
func (f *segmentForm) CondForm(c editorCondition) conditionForm {
	return conditionForm{editorCondition: c, errs: f.Errors, focus: f.Focus}
}

// FocusOn reports whether the control with HTML id is to be focused.
func (f *segmentForm) FocusOn(id string) bool { return f.Focus != "" && f.Focus == id }

// Attributes lists attribute names to suggest.
func (f *segmentForm) Attributes() []string {
	names := []string{flags.TargetingKey, "userId", "serverId", "matchId", "platform", "country", "appVersion"}
	for _, c := range f.Conditions {
		if c.Attribute != "" && !slices.Contains(names, c.Attribute) {
			names = append(names, c.Attribute)
		}
	}
	return names
}

// MemberCount is the number of members listed.
func (f *segmentForm) MemberCount() int { return len(splitMembers(f.Members)) }

// splitMembers reads a member list: one per line or separated by commas.
func splitMembers(text string) []string {
	var out []string
	for _, m := range strings.FieldsFunc(text, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' }) {
		if m = strings.TrimSpace(m); m != "" {
			out = append(out, m)
		}
	}
	return out
}

// segment returns the segment the form holds, with the errors of anything
// that could not be read.
func (f *segmentForm) segment() (flags.Segment, []solstice.FieldError) {
	var fields []solstice.FieldError
	bad := func(ptr, msg string) { fields = append(fields, solstice.FieldError{Pointer: ptr, Message: msg}) }
	s := flags.Segment{Key: f.Key, Name: f.Name, Description: f.Description, MembersAttribute: f.MembersAttribute,
		Members: splitMembers(f.Members)}
	for _, c := range f.Conditions {
		s.Conditions = append(s.Conditions, conditionToModel(c, bad))
	}
	return s, fields
}

func (f *segmentForm) pointers() map[string]bool {
	set := map[string]bool{"": true, "/key": true, "/name": true, "/description": true, "/members_attribute": true,
		"/members": true, "/conditions": true}
	for _, c := range f.Conditions {
		conditionPointers(c.Ptr, set)
	}
	return set
}

func (f *segmentForm) place(fields ...solstice.FieldError) {
	placeFields(f.pointers(), f.Errors, &f.Summary, fields...)
}

// apply performs a non-saving op: "add:/conditions" or
// "remove:/conditions/N". It returns false for an unknown op.
func (f *segmentForm) apply(op string) bool {
	verb, ptr, _ := strings.Cut(op, ":")
	toks := splitPointer(ptr)
	switch {
	case verb == "add" && len(toks) == 1 && toks[0] == "conditions":
		if len(f.Conditions) >= flags.MaxConditions {
			f.place(solstice.FieldError{Pointer: "/conditions", Message: fmt.Sprintf("at most %d conditions", flags.MaxConditions)})
			return true
		}
		f.Conditions = append(f.Conditions, editorCondition{Op: string(flags.OpEquals)})
		renumberConditions(f.Conditions, "/conditions")
		f.Focus = fieldID(f.Conditions[len(f.Conditions)-1].Ptr + "/attribute")
		return true
	case verb == "remove" && len(toks) == 2 && toks[0] == "conditions":
		j, err := strconv.Atoi(toks[1])
		if err != nil || j < 0 || j >= len(f.Conditions) {
			return false
		}
		f.Conditions = slices.Delete(f.Conditions, j, j+1)
		renumberConditions(f.Conditions, "/conditions")
		f.Focus = fieldID("/conditions") + "-add"
		return true
	}
	return false
}

// validate checks the form's segment as the flags service would, placing
// every error. It returns the segment and whether it is valid.
func (f *segmentForm) validate() (flags.Segment, bool) {
	seg, fields := f.segment()
	if f.New && seg.Key == "new" {
		fields = append(fields, solstice.FieldError{Pointer: "/key", Message: `"new" is reserved by the web UI (its address creates segments): choose another key`})
	}
	for _, fe := range solstice.ErrorFields(flags.ValidateSegment(seg)) {
		if !coveredBy(fields, fe.Pointer) {
			fields = append(fields, fe)
		}
	}
	f.place(fields...)
	return seg, len(fields) == 0
}

// ---- handlers ----

// segmentRow is one segment in the list.
type segmentRow struct {
	Segment  flags.Segment
	URL      string
	Who      []string // its conditions in words
	Members  int
	UsedBy   []string
	Revision int64
}

// segmentAccess returns KindForbidden unless the user may change env's
// segments: the editor role, or in a protected environment the approver
// role (see the note at the top of this file).
func segmentAccess(c echo.Context, env flags.Environment) error {
	if !env.Protected {
		return require(c, env.Name, accounts.RoleEditor)
	}
	if require(c, env.Name, accounts.RoleApprover) != nil {
		return solstice.Errorf(solstice.KindForbidden,
			"%s is protected, and segment changes cannot go through change requests: changing its segments needs the approver role in %s", env.Name, env.Name)
	}
	return nil
}

// segmentUsers maps each segment key to the flags whose rules reference it.
func segmentUsers(states []flags.FlagState) map[string][]string {
	users := map[string][]string{}
	for _, st := range states {
		for _, r := range st.Rules {
			for _, c := range r.Conditions {
				if c.Segment != "" && !slices.Contains(users[c.Segment], st.Key) {
					users[c.Segment] = append(users[c.Segment], st.Key)
				}
			}
		}
	}
	return users
}

func (u *ui) usersOf(c echo.Context, env, key string) ([]string, error) {
	set, err := u.s.flags.Set(c.Request().Context(), env)
	if err != nil {
		return nil, err
	}
	return segmentUsers(set.Flags)[key], nil
}

func (u *ui) segmentList(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	segs, err := u.s.flags.ListSegments(ctx, env.Name)
	if err != nil {
		return err
	}
	set, err := u.s.flags.Set(ctx, env.Name)
	if err != nil {
		return err
	}
	users := segmentUsers(set.Flags)
	rows := make([]segmentRow, 0, len(segs))
	for _, sv := range segs {
		row := segmentRow{Segment: sv.Segment, URL: segmentURL(env.Name, sv.Segment.Key), Members: len(sv.Segment.Members),
			UsedBy: users[sv.Segment.Key], Revision: sv.Revision}
		for _, cond := range sv.Segment.Conditions {
			row.Who = append(row.Who, describeCondition(cond))
		}
		rows = append(rows, row)
	}
	whyNot := ""
	if err := segmentAccess(c, env); err != nil {
		whyNot = userMessage(err)
	}
	p := u.page(c, "Segments in "+env.Name)
	p.Nav = "segments"
	p.Data = map[string]any{"Env": env, "Rows": rows, "CanEdit": whyNot == "", "WhyNot": whyNot,
		"NewURL": segmentsURL(env.Name) + "/new", "Flags": "/env/" + url.PathEscape(env.Name) + "/flags"}
	return u.render(c, http.StatusOK, "segments", p)
}

func (u *ui) renderSegment(c echo.Context, status int, f *segmentForm) error {
	title := "New segment in " + f.Env.Name
	if !f.New {
		title = "Segment " + f.Key + " in " + f.Env.Name
	}
	if err := segmentAccess(c, f.Env); err != nil {
		f.CanEdit, f.WhyNot = false, userMessage(err)
	} else {
		f.CanEdit = true
	}
	p := u.page(c, title)
	p.Nav = "segments"
	p.Data = f
	return u.render(c, status, "segment", p)
}

func (u *ui) newSegmentPage(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	if err := segmentAccess(c, env); err != nil {
		return err
	}
	f := newSegmentForm(env)
	f.New = true
	f.Conditions = []editorCondition{{Op: string(flags.OpEquals)}}
	renumberConditions(f.Conditions, "/conditions")
	return u.renderSegment(c, http.StatusOK, f)
}

func (u *ui) segmentPage(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	sv, err := u.s.flags.GetSegment(c.Request().Context(), env.Name, c.Param("key"))
	if err != nil {
		return err
	}
	f := segmentFormOf(env, sv)
	if f.UsedBy, err = u.usersOf(c, env.Name, f.Key); err != nil {
		return err
	}
	return u.renderSegment(c, http.StatusOK, f)
}

func (u *ui) newSegmentSubmit(c echo.Context) error { return u.segmentSubmit(c, true) }

func (u *ui) editSegmentSubmit(c echo.Context) error { return u.segmentSubmit(c, false) }

// segmentSubmit handles the ops of the segment form: add or remove a
// condition, check, save.
func (u *ui) segmentSubmit(c echo.Context, isNew bool) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	if err := segmentAccess(c, env); err != nil {
		return err
	}
	form, err := c.FormParams()
	if err != nil {
		return badRequestf("could not read the form")
	}
	f := parseSegmentForm(env, form)
	f.New = isNew
	if !isNew {
		f.Key = c.Param("key") // the address names the segment; its key cannot change
		if f.UsedBy, err = u.usersOf(c, env.Name, f.Key); err != nil {
			return err
		}
	}
	switch op := form.Get("op"); op {
	case "check":
		if _, ok := f.validate(); ok {
			f.Notice = "No problems found. Nothing is saved yet."
		}
		return u.renderSegment(c, http.StatusOK, f)
	case "save":
		return u.saveSegment(c, f)
	default:
		if !f.apply(op) {
			return badRequestf("unknown segment form action " + strconv.Quote(op))
		}
		return u.renderSegment(c, http.StatusOK, f)
	}
}

// saveSegment validates and saves the form's segment as a new revision.
func (u *ui) saveSegment(c echo.Context, f *segmentForm) error {
	seg, ok := f.validate()
	if !ok {
		return u.renderSegment(c, http.StatusUnprocessableEntity, f)
	}
	ctx := c.Request().Context()
	rev, err := u.s.flags.PutSegment(ctx, f.Env.Name, seg, f.Base, f.Message)
	switch {
	case solstice.IsKind(err, solstice.KindInvalid):
		f.place(solstice.ErrorFields(err)...)
		if len(solstice.ErrorFields(err)) == 0 {
			f.place(solstice.FieldError{Message: userMessage(err)})
		}
		return u.renderSegment(c, http.StatusUnprocessableEntity, f)
	case solstice.IsKind(err, solstice.KindPreconditionFailed) && f.New:
		f.place(solstice.FieldError{Pointer: "/key", Message: fmt.Sprintf("%s already has a segment %q: choose another key, or edit that one", f.Env.Name, seg.Key)})
		return u.renderSegment(c, http.StatusConflict, f)
	case solstice.IsKind(err, solstice.KindPreconditionFailed):
		return u.segmentConflict(c, f, seg)
	case err != nil:
		return err
	}
	to := segmentURL(f.Env.Name, seg.Key)
	if len(rev.Diff) == 0 {
		return u.redirectFlash(c, to, "Nothing changed: the segment was already like this.", "")
	}
	return u.redirectFlash(c, to, fmt.Sprintf("Saved segment %s as revision %d of %s.", seg.Key, rev.Number, f.Env.Name), revisionURL(f.Env.Name, rev.Number))
}

// segmentConflict shows the form again, now based on the segment's current
// version, with what changed since the form was loaded and what saving it
// would now change.
func (u *ui) segmentConflict(c echo.Context, f *segmentForm, yours flags.Segment) error {
	ctx := c.Request().Context()
	cur, err := u.s.flags.GetSegment(ctx, f.Env.Name, f.Key)
	if solstice.IsKind(err, solstice.KindNotFound) {
		f.Base = 0
		f.place(solstice.FieldError{Message: "Someone deleted this segment while you were editing it. Nothing was saved; saving again creates it anew."})
		return u.renderSegment(c, http.StatusConflict, f)
	}
	if err != nil {
		return err
	}
	theirs, err := flags.CanonicalOf(cur.Segment)
	if err != nil {
		return err
	}
	mine, err := flags.CanonicalOf(yours)
	if err != nil {
		return err
	}
	var base json.RawMessage
	if objs, err := u.s.flags.Store().ObjectsAt(ctx, f.Env.Name, f.Base); err == nil {
		for _, o := range objs {
			if o.Kind == flags.KindSegment && o.Key == f.Key {
				base = o.Content
			}
		}
	}
	k := &conflict{Revision: cur.Revision, Theirs: sideBySide(base, theirs), Yours: sideBySide(theirs, mine)}
	if rev, err := u.s.flags.GetRevision(ctx, f.Env.Name, cur.Revision); err == nil {
		k.Author, k.When, k.Message = rev.Author, rev.CreatedAt, rev.Message
	}
	f.Conflict, f.Base = k, cur.Revision
	return u.renderSegment(c, http.StatusConflict, f)
}

// deleteSegment deletes a segment, which the flags service refuses while a
// flag's rules reference it.
func (u *ui) deleteSegment(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	if err := segmentAccess(c, env); err != nil {
		return err
	}
	ctx := c.Request().Context()
	key := c.Param("key")
	base, _ := strconv.ParseInt(c.FormValue("base"), 10, 64)
	rev, err := u.s.flags.DeleteSegment(ctx, env.Name, key, base)
	if err == nil {
		return u.redirectFlash(c, segmentsURL(env.Name), fmt.Sprintf("Deleted segment %s (revision %d of %s).", key, rev.Number, env.Name), revisionURL(env.Name, rev.Number))
	}
	status := http.StatusConflict
	msg := solstice.ErrorMessage(err)
	switch {
	case solstice.IsKind(err, solstice.KindConflict):
		msg = "Not deleted: " + msg + "."
	case solstice.IsKind(err, solstice.KindPreconditionFailed):
		msg = "Not deleted: the segment changed since you opened it. Here is its current version; delete again if you still mean to."
	default:
		return err
	}
	sv, gerr := u.s.flags.GetSegment(ctx, env.Name, key)
	if gerr != nil {
		return gerr
	}
	f := segmentFormOf(env, sv)
	if f.UsedBy, err = u.usersOf(c, env.Name, key); err != nil {
		return err
	}
	f.place(solstice.FieldError{Message: msg})
	return u.renderSegment(c, status, f)
}

// ---- addresses ----

func segmentsURL(env string) string { return "/env/" + url.PathEscape(env) + "/segments" }

func segmentURL(env, key string) string { return segmentsURL(env) + "/" + url.PathEscape(key) }
