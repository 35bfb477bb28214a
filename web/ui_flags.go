package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/review"
)

// home sends the user to the dashboard of the environment last visited.
// (It does not build a page: that would consume the flash message meant
// for the page it redirects to.)
func (u *ui) home(c echo.Context) error {
	envs, err := u.s.flags.Store().ListEnvironments(c.Request().Context())
	if err != nil {
		return err
	}
	env := u.lastEnv(c, envs)
	if env == "" {
		return solstice.Errorf(solstice.KindNotFound, "there are no environments yet")
	}
	return u.redirect(c, "/env/"+url.PathEscape(env))
}

// ---- dashboard ----

type dashboardData struct {
	Env      flags.Environment
	Snapshot int64
	Flags    int
	Live     []flags.FlagState // enabled flags
	Splits   int               // enabled flags serving a percentage split
	Changes  []review.ChangeRequest
	Fleet    fleetSummary
	Recent   []flags.Revision
	// Live operations (nil when the feature is not enabled on this
	// server): events not ended yet, plans under way, open incidents.
	Guardrails bool
	Rollouts   bool
	Events     []eventSummary
	Plans      []planRow
	Incidents  []incidentItem
	// MoreIncidents: there are more open incidents than Incidents lists.
	MoreIncidents bool
}

type fleetSummary struct {
	Servers   int
	Converged bool
	Versions  int
	Lagging   int
}

func (u *ui) dashboard(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	set, err := u.s.flags.Set(ctx, env.Name)
	if err != nil {
		return err
	}
	d := dashboardData{Env: env, Flags: len(set.Flags)}
	for _, st := range set.Flags {
		if st.Enabled {
			d.Live = append(d.Live, st)
			if st.Split != nil || slices.ContainsFunc(st.Rules, func(r flags.Rule) bool { return r.Split != nil }) {
				d.Splits++
			}
		}
	}
	if d.Changes, err = u.rev.List(ctx, review.Filter{Environment: env.Name, Status: review.StatusOpen, Limit: 20}); err != nil {
		return err
	}
	if d.Recent, err = u.s.flags.ListRevisions(ctx, env.Name, flags.RevisionFilter{Limit: 10}); err != nil {
		return err
	}
	rep := u.fleetReport(env.Name)
	d.Snapshot = rep.Newest
	d.Fleet = fleetSummary{Servers: rep.Servers, Converged: rep.Converged, Versions: len(rep.Versions), Lagging: len(rep.Lagging)}
	d.Guardrails, d.Rollouts = u.s.guardrails != nil, u.s.rollouts != nil
	if d.Events, err = u.openEvents(ctx, env.Name, 5); err != nil {
		return err
	}
	if d.Plans, err = u.activeRollouts(ctx, env.Name); err != nil {
		return err
	}
	if d.Incidents, err = u.openIncidents(ctx, env.Name, 11); err != nil {
		return err
	}
	if len(d.Incidents) > 10 {
		d.Incidents, d.MoreIncidents = d.Incidents[:10], true
	}
	p := u.page(c, env.Name)
	p.Nav, p.Data = "dashboard", d
	return u.render(c, http.StatusOK, "dashboard", p)
}

// ---- flag list ----

type flagRow struct {
	Flag     flags.Flag
	State    *flags.FlagState // nil when the flag has no configuration here
	Revision int64
	Changed  time.Time // when its configuration here last changed, if known
}

type flagListData struct {
	Env   flags.Environment
	Rows  []flagRow
	Total int
	Tags  []string
	Q     string
	Tag   string
	Type  string
	State string // "", "on", "off"
	Since string // "", "1d", "7d", "30d"
	Types []flags.Type
}

var changedWindows = map[string]time.Duration{"1d": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour}

func (u *ui) flagList(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	d := flagListData{Env: env, Q: strings.TrimSpace(c.QueryParam("q")), Tag: c.QueryParam("tag"), Type: c.QueryParam("type"),
		State: c.QueryParam("state"), Since: c.QueryParam("changed"),
		Types: []flags.Type{flags.TypeBoolean, flags.TypeString, flags.TypeNumber, flags.TypeObject}}
	all, err := u.s.flags.Store().ListFlags(ctx)
	if err != nil {
		return err
	}
	objs, err := u.s.flags.Store().ListObjects(ctx, env.Name, flags.KindFlag)
	if err != nil {
		return err
	}
	states := map[string]flags.Object{}
	for _, o := range objs {
		states[o.Key] = o
	}
	window, hasWindow := changedWindows[d.Since]
	times, err := u.revisionTimes(c, env.Name, time.Now().Add(-max(window, 30*24*time.Hour)))
	if err != nil {
		return err
	}
	tags := map[string]bool{}
	q := strings.ToLower(d.Q)
	for _, f := range all {
		for _, t := range f.Tags {
			tags[t] = true
		}
		row := flagRow{Flag: f}
		if o, ok := states[f.Key]; ok {
			var st flags.FlagState
			if err := json.Unmarshal(o.Content, &st); err == nil {
				row.State = &st
			}
			row.Revision, row.Changed = o.Revision, times[o.Revision]
		}
		switch {
		case q != "" && !strings.Contains(strings.ToLower(f.Key+" "+f.Name+" "+f.Description+" "+strings.Join(f.Tags, " ")), q),
			d.Tag != "" && !slices.Contains(f.Tags, d.Tag),
			d.Type != "" && string(f.Type) != d.Type,
			d.State == "on" && (row.State == nil || !row.State.Enabled),
			d.State == "off" && row.State != nil && row.State.Enabled,
			hasWindow && (row.Changed.IsZero() || time.Since(row.Changed) > window):
			continue
		}
		d.Rows = append(d.Rows, row)
	}
	d.Total = len(all)
	for t := range tags {
		d.Tags = append(d.Tags, t)
	}
	sort.Strings(d.Tags)
	p := u.page(c, "Flags in "+env.Name)
	p.Nav, p.Data = "flags", d
	return u.render(c, http.StatusOK, "flags", p)
}

// revisionTimes maps the revisions of env made since the given time to
// their creation times.
func (u *ui) revisionTimes(c echo.Context, env string, since time.Time) (map[int64]time.Time, error) {
	times := map[int64]time.Time{}
	var before int64
	for {
		revs, err := u.s.flags.ListRevisions(c.Request().Context(), env, flags.RevisionFilter{BeforeNumber: before, Limit: 500})
		if err != nil {
			return nil, err
		}
		for _, r := range revs {
			times[r.Number] = r.CreatedAt
			if r.CreatedAt.Before(since) {
				return times, nil
			}
		}
		if len(revs) < 500 {
			return times, nil
		}
		before = revs[len(revs)-1].Number
	}
}

// ---- one flag in one environment ----

type variantView struct {
	Key, Description, JSON string
	Default, Off           bool
}

type ruleView struct {
	Number      int
	ID          string
	Description string
	Conditions  []string
	Serves      string
	Split       *splitView
}

type splitView struct {
	BucketBy string
	Salt     string
	Rows     []weightView
	Total    int
}

type weightView struct {
	Variant string
	Weight  int
	Percent string
	Share   float64 // 0..1, for the bar
}

type configData struct {
	Env      flags.Environment
	Config   flags.FlagConfig
	Variants []variantView
	Rules    []ruleView
	Split    *splitView
	History  []flags.Revision
	Open     []review.ChangeRequest
	Others   []string // environments to promote from
	// Guardrails watching the flag here, with their pages.
	Guardrails []guardrailLink
	Author     string
	Changed    time.Time
}

type guardrailLink struct{ Key, URL string }

func describeSplit(s *flags.Split, flagKey string) *splitView {
	if s == nil {
		return nil
	}
	v := &splitView{BucketBy: s.BucketBy, Salt: s.Salt}
	if v.BucketBy == "" {
		v.BucketBy = flags.TargetingKey
	}
	if v.Salt == "" {
		v.Salt = flagKey
	}
	for _, w := range s.Weights {
		v.Total += w.Weight
	}
	for _, w := range s.Weights {
		wv := weightView{Variant: w.Variant, Weight: w.Weight}
		if v.Total > 0 {
			wv.Share = float64(w.Weight) / float64(v.Total)
			wv.Percent = strconv.FormatFloat(100*wv.Share, 'f', -1, 64) + "%"
		}
		v.Rows = append(v.Rows, wv)
	}
	return v
}

// describeCondition renders a condition as a line for people.
func describeCondition(c flags.Condition) string {
	switch c.Op {
	case flags.OpInSegment:
		return "in segment " + c.Segment
	case flags.OpNotInSegment:
		return "not in segment " + c.Segment
	case flags.OpExists, flags.OpNotExists:
		return c.Attribute + " " + strings.ReplaceAll(string(c.Op), "_", " ")
	}
	return fmt.Sprintf("%s %s %s", c.Attribute, strings.ReplaceAll(string(c.Op), "_", " "), string(c.Value))
}

func (u *ui) configView(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	fc, err := u.s.flags.GetConfig(ctx, env.Name, c.Param("key"))
	if err != nil {
		return err
	}
	d := configData{Env: env, Config: fc, Split: describeSplit(fc.Config.Split, fc.Flag.Key)}
	for _, v := range fc.Config.Variants {
		d.Variants = append(d.Variants, variantView{Key: v.Key, Description: v.Description, JSON: prettyJSON(v.Value),
			Default: v.Key == fc.Config.DefaultVariant, Off: v.Key == fc.Config.OffVariant})
	}
	for i, r := range fc.Config.Rules {
		rv := ruleView{Number: i + 1, ID: r.ID, Description: r.Description, Serves: r.Variant, Split: describeSplit(r.Split, fc.Flag.Key)}
		if rv.ID == "" {
			rv.ID = fmt.Sprintf("rule-%d", i+1)
		}
		for _, cond := range r.Conditions {
			rv.Conditions = append(rv.Conditions, describeCondition(cond))
		}
		d.Rules = append(d.Rules, rv)
	}
	revs, err := u.s.flags.ListRevisions(ctx, env.Name, flags.RevisionFilter{Limit: 200})
	if err != nil {
		return err
	}
	for _, r := range revs {
		if slices.ContainsFunc(r.Diff, func(ch flags.Change) bool { return ch.Kind == flags.KindFlag && ch.Key == fc.Flag.Key }) {
			d.History = append(d.History, r)
			if r.Number == fc.Revision {
				d.Author, d.Changed = r.Author, r.CreatedAt
			}
			if len(d.History) == 10 {
				break
			}
		}
	}
	if d.Open, err = u.rev.List(ctx, review.Filter{Environment: env.Name, Flag: fc.Flag.Key, Status: review.StatusOpen}); err != nil {
		return err
	}
	envs, err := u.s.flags.Store().ListEnvironments(ctx)
	if err != nil {
		return err
	}
	for _, e := range envs {
		if e.Name != env.Name {
			d.Others = append(d.Others, e.Name)
		}
	}
	if u.s.guardrails != nil {
		defs, err := u.s.guardrails.List(ctx, env.Name, fc.Flag.Key)
		if err != nil {
			return err
		}
		for _, def := range defs {
			d.Guardrails = append(d.Guardrails, guardrailLink{Key: def.Key, URL: guardrailURL(env.Name, def.Flag, def.Key)})
		}
	}
	p := u.page(c, fc.Flag.Key+" in "+env.Name)
	p.Nav, p.Data = "flags", d
	return u.render(c, http.StatusOK, "config", p)
}

// toggle is the kill switch. Turning a flag off applies at once in every
// environment; turning it on in a protected environment becomes a change
// request.
//
// NOTE: switching off is exempt from four-eyes on purpose. It serves the
// flag's off variant, the value designed to be safe, and its point is to
// act at once when a change hurts players; waiting for a second person
// would defeat it. The revision and audit entry still record who did it.
func (u *ui) toggle(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	if err := require(c, env.Name, accounts.RoleEditor); err != nil {
		return err
	}
	ctx := c.Request().Context()
	key := c.Param("key")
	on := c.FormValue("to") == "on"
	word := map[bool]string{true: "on", false: "off"}[on]
	back := safeNext(c.FormValue("return"))
	if back == "/" {
		back = configURL(env.Name, key)
	}
	for attempt := 0; ; attempt++ {
		fc, err := u.s.flags.GetConfig(ctx, env.Name, key)
		if err != nil {
			return err
		}
		if fc.Config.Enabled == on {
			return u.redirectFlash(c, back, fmt.Sprintf("%s is already %s in %s.", key, word, env.Name), "")
		}
		cfg := fc.Config
		cfg.Enabled = on
		if on && env.Protected {
			cr, err := u.rev.ProposeConfig(ctx, env.Name, key, cfg, fc.Revision, "Turn on "+key)
			if err != nil {
				return err
			}
			return u.redirectFlash(c, changeURL(cr.ID), fmt.Sprintf("Change request #%d created: turning %s on in %s needs another approver.", cr.ID, key, env.Name), "")
		}
		msg := "Turn on " + key
		if !on {
			msg = "Turn off " + key + " (kill switch)"
		}
		// Only the enabled bit changes, on top of the current content; the
		// expectation guards the moment between reading and writing.
		rev, err := u.s.flags.PutConfig(ctx, env.Name, key, cfg, fc.Revision, msg)
		if solstice.IsKind(err, solstice.KindPreconditionFailed) && attempt < 2 {
			continue
		}
		if err != nil {
			return err
		}
		return u.redirectFlash(c, back, fmt.Sprintf("%s is now %s in %s (revision %d).", key, strings.ToUpper(word), env.Name, rev.Number), revisionURL(env.Name, rev.Number))
	}
}

// ---- promotion ----

type promoteData struct {
	Env    flags.Environment
	Key    string
	From   string
	Others []string
	Base   int64
	Diff   []diffRow
	Same   bool
	Errors []formError
}

func (u *ui) promoteState(c echo.Context, from string) (*promoteData, flags.FlagConfig, error) {
	env, err := u.environment(c)
	if err != nil {
		return nil, flags.FlagConfig{}, err
	}
	ctx := c.Request().Context()
	key := c.Param("key")
	d := &promoteData{Env: env, Key: key, From: from}
	envs, err := u.s.flags.Store().ListEnvironments(ctx)
	if err != nil {
		return nil, flags.FlagConfig{}, err
	}
	for _, e := range envs {
		if e.Name != env.Name {
			d.Others = append(d.Others, e.Name)
		}
	}
	if d.From == "" && len(d.Others) > 0 {
		d.From = d.Others[0]
		if slices.Contains(d.Others, "staging") {
			d.From = "staging"
		}
	}
	dst, err := u.s.flags.GetConfig(ctx, env.Name, key)
	if err != nil {
		return nil, flags.FlagConfig{}, err
	}
	src, err := u.s.flags.GetConfig(ctx, d.From, key)
	if err != nil {
		return nil, flags.FlagConfig{}, err
	}
	before, err := review.StateOf(dst.Flag, dst.Config)
	if err != nil {
		return nil, flags.FlagConfig{}, err
	}
	after, err := review.StateOf(src.Flag, src.Config)
	if err != nil {
		return nil, flags.FlagConfig{}, err
	}
	d.Base, d.Diff, d.Same = dst.Revision, sideBySide(before, after), string(before) == string(after)
	return d, src, nil
}

func (u *ui) promotePage(c echo.Context) error {
	d, _, err := u.promoteState(c, c.QueryParam("from"))
	if err != nil {
		return err
	}
	p := u.page(c, "Promote "+d.Key+" to "+d.Env.Name)
	p.Nav, p.Data = "flags", d
	return u.render(c, http.StatusOK, "promote", p)
}

func (u *ui) promote(c echo.Context) error {
	d, src, err := u.promoteState(c, c.FormValue("from"))
	if err != nil {
		return err
	}
	if err := require(c, d.Env.Name, accounts.RoleEditor); err != nil {
		return err
	}
	ctx := c.Request().Context()
	base, _ := strconv.ParseInt(c.FormValue("base"), 10, 64)
	msg := strings.TrimSpace(c.FormValue("message"))
	if msg == "" {
		msg = fmt.Sprintf("Promote %s from %s", d.Key, d.From)
	}
	if d.Env.Protected {
		var cr review.ChangeRequest
		if cr, err = u.rev.ProposeConfig(ctx, d.Env.Name, d.Key, src.Config, base, msg); err == nil {
			return u.redirectFlash(c, changeURL(cr.ID), fmt.Sprintf("Change request #%d created: promoting %s to %s needs another approver.", cr.ID, d.Key, d.Env.Name), "")
		}
	} else {
		var pr flags.Promotion
		if pr, err = u.s.flags.Promote(ctx, d.Key, d.From, d.Env.Name, base, false, msg); err == nil {
			n := pr.Revision.Number
			return u.redirectFlash(c, configURL(d.Env.Name, d.Key), fmt.Sprintf("Promoted %s from %s as revision %d.", d.Key, d.From, n), revisionURL(d.Env.Name, n))
		}
	}
	msgs, status, ok := promoteErrors(err)
	if !ok {
		return err
	}
	d.Errors = msgs
	p := u.page(c, "Promote "+d.Key+" to "+d.Env.Name)
	p.Nav, p.Data = "flags", d
	return u.render(c, status, "promote", p)
}

// promoteErrors turns a failed promotion into messages for its page, which
// shows the current diff again; ok is false for failures the page cannot
// explain (the caller returns those).
func promoteErrors(err error) (msgs []formError, status int, ok bool) {
	switch solstice.ErrorKind(err) {
	case solstice.KindPreconditionFailed:
		return []formError{{Message: "The target changed while you were looking: the diff below is now current. Check it and promote again."}}, http.StatusConflict, true
	case solstice.KindInvalid:
		status = http.StatusUnprocessableEntity
	case solstice.KindConflict:
		status = http.StatusConflict
	default:
		return nil, 0, false
	}
	return append([]formError{{Message: userMessage(err)}}, fieldErrors(err)...), status, true
}

// ---- one flag in every environment ----

type overviewRow struct {
	Env      flags.Environment
	State    *flags.FlagState
	Revision int64
}

type overviewData struct {
	Flag   flags.Flag
	Schema string
	Rows   []overviewRow
}

func (u *ui) flagOverview(c echo.Context) error {
	ctx := c.Request().Context()
	f, err := u.s.flags.Store().GetFlag(ctx, c.Param("key"))
	if err != nil {
		return err
	}
	envs, err := u.s.flags.Store().ListEnvironments(ctx)
	if err != nil {
		return err
	}
	d := overviewData{Flag: f, Schema: prettyJSON(f.Schema)}
	sess := sessionOf(c)
	for _, e := range envs {
		if !sess.user.Can(e.Name, accounts.RoleViewer) {
			continue
		}
		row := overviewRow{Env: e}
		if o, err := u.s.flags.Store().GetObject(ctx, e.Name, flags.KindFlag, f.Key); err == nil {
			var st flags.FlagState
			if json.Unmarshal(o.Content, &st) == nil {
				row.State, row.Revision = &st, o.Revision
			}
		}
		d.Rows = append(d.Rows, row)
	}
	p := u.page(c, f.Key)
	p.Nav, p.Data = "flags", d
	return u.render(c, http.StatusOK, "overview", p)
}

// ---- creating and defining flags ----

type newFlagData struct {
	Key, Name, Description, Tags, Type, Schema, Value string
	Errors                                            map[string]string
	Summary                                           []formError
	Types                                             []flags.Type
}

func (u *ui) newFlagPage(c echo.Context) error {
	if err := require(c, accounts.AllEnvironments, accounts.RoleEditor); err != nil {
		return err
	}
	return u.renderNewFlag(c, http.StatusOK, &newFlagData{Type: string(flags.TypeBoolean)})
}

func (u *ui) renderNewFlag(c echo.Context, status int, d *newFlagData) error {
	d.Types = []flags.Type{flags.TypeBoolean, flags.TypeString, flags.TypeNumber, flags.TypeObject}
	p := u.page(c, "New flag")
	p.Nav, p.Data = "flags", d
	return u.render(c, status, "newflag", p)
}

// splitTags reads a comma- or space-separated tag list.
func splitTags(s string) []string {
	var tags []string
	for _, t := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		if t = strings.TrimSpace(t); t != "" && !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	return tags
}

// groupErrors maps field errors to the inputs of a form: each error goes to
// the first input whose pointer prefixes it (inputs lists pointer prefixes
// and the input each stands for).
func groupErrors(err error, inputs [][2]string) (map[string]string, []formError) {
	m := map[string]string{}
	var summary []formError
	for _, f := range solstice.ErrorFields(err) {
		input := ""
		for _, in := range inputs {
			if f.Pointer == in[0] || strings.HasPrefix(f.Pointer, in[0]+"/") {
				input = in[1]
				break
			}
		}
		msg := f.Message
		if input != "" && f.Pointer != inputs[slices.IndexFunc(inputs, func(in [2]string) bool { return in[1] == input })][0] {
			msg = f.Pointer + ": " + msg
		}
		if m[input] != "" {
			m[input] += "; "
		}
		m[input] += msg
		summary = append(summary, formError{Pointer: input, Message: describeField(f)})
	}
	if err != nil {
		summary = append([]formError{{Message: userMessage(err)}}, summary...)
	}
	return m, summary
}

var newFlagInputs = [][2]string{{"/key", "key"}, {"/name", "name"}, {"/description", "description"}, {"/tags", "tags"},
	{"/type", "type"}, {"/schema", "schema"}, {"/variants/0/value", "value"}, {"/variants", "value"}, {"/default_variant", "value"}}

func (u *ui) createFlag(c echo.Context) error {
	if err := require(c, accounts.AllEnvironments, accounts.RoleEditor); err != nil {
		return err
	}
	d := &newFlagData{Key: strings.TrimSpace(c.FormValue("key")), Name: strings.TrimSpace(c.FormValue("name")),
		Description: strings.TrimSpace(c.FormValue("description")), Tags: c.FormValue("tags"), Type: c.FormValue("type"),
		Schema: c.FormValue("schema"), Value: c.FormValue("value"), Errors: map[string]string{}}
	in := flags.NewFlag{Key: d.Key, Name: d.Name, Description: d.Description, Tags: splitTags(d.Tags), Type: flags.Type(d.Type)}
	if s := strings.TrimSpace(d.Schema); s != "" && in.Type == flags.TypeObject {
		if err := checkJSON(s); err != nil {
			d.Errors["schema"] = err.Error()
		}
		in.Schema = json.RawMessage(s)
	}
	value := strings.TrimSpace(d.Value)
	switch in.Type {
	case flags.TypeBoolean: // on and off
	case flags.TypeString:
		b, _ := json.Marshal(d.Value)
		in.Variants = []flags.Variant{{Key: "default", Value: b}}
	case flags.TypeNumber, flags.TypeObject:
		if err := checkJSON(value); err != nil || value == "" {
			d.Errors["value"] = "a JSON value is required"
			if err != nil && value != "" {
				d.Errors["value"] = err.Error()
			}
		}
		in.Variants = []flags.Variant{{Key: "default", Value: json.RawMessage(value)}}
	}
	if len(d.Errors) > 0 {
		for k, v := range d.Errors {
			d.Summary = append(d.Summary, formError{Pointer: k, Message: k + ": " + v})
		}
		return u.renderNewFlag(c, http.StatusUnprocessableEntity, d)
	}
	f, err := u.s.flags.CreateFlag(c.Request().Context(), in)
	switch {
	case solstice.IsKind(err, solstice.KindInvalid), solstice.IsKind(err, solstice.KindConflict):
		d.Errors, d.Summary = groupErrors(err, newFlagInputs)
		if solstice.IsKind(err, solstice.KindConflict) {
			d.Errors["key"] = solstice.ErrorMessage(err)
		}
		return u.renderNewFlag(c, http.StatusUnprocessableEntity, d)
	case err != nil:
		return err
	}
	return u.redirectFlash(c, "/flags/"+f.Key, fmt.Sprintf("Created %s. It is off in every environment: edit its configuration in one, then turn it on.", f.Key), "")
}

type settingsData struct {
	Flag                            flags.Flag
	Name, Description, Tags, Schema string
	Version                         int64
	Errors                          map[string]string
	Summary                         []formError
	Conflict                        []diffRow
}

func (u *ui) settingsPage(c echo.Context) error {
	if err := require(c, accounts.AllEnvironments, accounts.RoleEditor); err != nil {
		return err
	}
	f, err := u.s.flags.Store().GetFlag(c.Request().Context(), c.Param("key"))
	if err != nil {
		return err
	}
	d := &settingsData{Flag: f, Name: f.Name, Description: f.Description, Tags: strings.Join(f.Tags, ", "),
		Schema: prettyJSON(f.Schema), Version: f.Version}
	return u.renderSettings(c, http.StatusOK, d)
}

func (u *ui) renderSettings(c echo.Context, status int, d *settingsData) error {
	p := u.page(c, "Settings of "+d.Flag.Key)
	p.Nav, p.Data = "flags", d
	return u.render(c, status, "settings", p)
}

var settingsInputs = [][2]string{{"/name", "name"}, {"/description", "description"}, {"/tags", "tags"}, {"/schema", "schema"}, {"/environments", "schema"}}

func (u *ui) saveSettings(c echo.Context) error {
	if err := require(c, accounts.AllEnvironments, accounts.RoleEditor); err != nil {
		return err
	}
	ctx := c.Request().Context()
	f, err := u.s.flags.Store().GetFlag(ctx, c.Param("key"))
	if err != nil {
		return err
	}
	d := &settingsData{Flag: f, Name: strings.TrimSpace(c.FormValue("name")), Description: strings.TrimSpace(c.FormValue("description")),
		Tags: c.FormValue("tags"), Schema: c.FormValue("schema"), Errors: map[string]string{}}
	d.Version, _ = strconv.ParseInt(c.FormValue("version"), 10, 64)
	tags := splitTags(d.Tags)
	patch := flags.FlagPatch{Name: &d.Name, Description: &d.Description, Tags: &tags}
	if f.Type == flags.TypeObject {
		s := strings.TrimSpace(d.Schema)
		switch {
		case s == "":
			patch.Schema = json.RawMessage("null")
		case checkJSON(s) != nil:
			d.Errors["schema"] = checkJSON(s).Error()
			d.Summary = []formError{{Pointer: "schema", Message: "schema: " + d.Errors["schema"]}}
			return u.renderSettings(c, http.StatusUnprocessableEntity, d)
		default:
			patch.Schema = json.RawMessage(s)
		}
	}
	nf, err := u.s.flags.UpdateFlag(ctx, f.Key, patch, d.Version)
	switch {
	case solstice.IsKind(err, solstice.KindInvalid):
		d.Errors, d.Summary = groupErrors(err, settingsInputs)
		return u.renderSettings(c, http.StatusUnprocessableEntity, d)
	case solstice.IsKind(err, solstice.KindPreconditionFailed):
		// Show what changed; the form keeps the user's values on top of
		// the current version.
		mine := f
		mine.Name, mine.Description, mine.Tags = d.Name, d.Description, tags
		if s := strings.TrimSpace(d.Schema); s != "" {
			mine.Schema = json.RawMessage(s)
		} else {
			mine.Schema = nil
		}
		cur, _ := json.Marshal(definitionView(f))
		yours, _ := json.Marshal(definitionView(mine))
		d.Conflict, d.Version = sideBySide(cur, yours), f.Version
		d.Summary = []formError{{Message: "Someone changed this flag's definition since you opened this page. Compare, then save again to apply your version."}}
		return u.renderSettings(c, http.StatusConflict, d)
	case err != nil:
		return err
	}
	return u.redirectFlash(c, "/flags/"+nf.Key, fmt.Sprintf("Saved the definition of %s (version %d).", nf.Key, nf.Version), "")
}

// definitionView is the part of a flag's definition its settings edit.
func definitionView(f flags.Flag) map[string]any {
	return map[string]any{"name": f.Name, "description": f.Description, "tags": f.Tags, "schema": f.Schema}
}
