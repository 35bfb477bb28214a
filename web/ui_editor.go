package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/review"
)

// The configuration editor of one flag in one environment. Everything it
// does happens on the server: the buttons that add a variant or a list
// item, switch a value to raw JSON or check the configuration submit the
// whole form with an "op", and the server answers with the form as it now
// stands. Only "save" writes, through flags.Service.PutConfig (or, in a
// protected environment, review.Service.ProposeConfig), with the revision
// the form was loaded from as the expectation: a form edited from a stale
// version gets a conflict with the diff, never a lost update.

// editorVariant is one variant in the editor.
type editorVariant struct {
	Index       int
	Ptr         string // "/variants/N"
	Key         string
	Description string
	Mode        string // "form" or "raw" for object flags; "scalar" for the others
	Text        string // raw mode: the JSON typed; scalars: the input's value
	Form        *formNode
	Why         string // why form mode is unavailable
	value       any    // form mode: the decoded value
}

// editorWeight is one row of the split editor.
type editorWeight struct {
	Index   int
	Variant string
	Weight  string
}

// placedError is a field error shown at an input; At is the error's own
// pointer when the input is an ancestor of it.
type placedError struct {
	At      string
	Message string
}

// conflict is what the editor shows when the configuration changed since
// the form was loaded.
type conflict struct {
	Revision int64
	Author   string
	When     time.Time
	Message  string
	Theirs   []diffRow // the form's version → the current one
	Yours    []diffRow // the current version → the form
}

// editor is the state of the configuration editor.
type editor struct {
	Env      flags.Environment
	Flag     flags.Flag
	Base     int64
	Enabled  bool
	Variants []editorVariant
	Default  string
	Off      string
	SplitOn  bool
	BucketBy string
	Salt     string
	Weights  []editorWeight
	Rules    string
	Message  string

	Errors   map[string][]placedError
	Summary  []formError
	Notice   string
	Conflict *conflict

	schema map[string]any
	noForm string // why no value of this flag can be a form ("" if they can)
}

// ErrorsAt returns the errors placed at the input ptr.
func (e *editor) ErrorsAt(ptr string) []placedError { return e.Errors[ptr] }

// VariantKeys lists the variant keys, for the selects.
func (e *editor) VariantKeys() []string {
	keys := make([]string, 0, len(e.Variants))
	for _, v := range e.Variants {
		if v.Key != "" && !slices.Contains(keys, v.Key) {
			keys = append(keys, v.Key)
		}
	}
	return keys
}

// TotalWeight sums the split's weights that parse.
func (e *editor) TotalWeight() int {
	total := 0
	for _, w := range e.Weights {
		if n, err := strconv.Atoi(strings.TrimSpace(w.Weight)); err == nil && n > 0 {
			total += n
		}
	}
	return total
}

func newEditorBase(env flags.Environment, f flags.Flag) *editor {
	e := &editor{Env: env, Flag: f, Errors: map[string][]placedError{}}
	if f.Type == flags.TypeObject {
		e.noForm = "the flag has no schema"
		if len(f.Schema) > 0 {
			s, err := decodeJSONValue(f.Schema)
			if m, ok := s.(map[string]any); err == nil && ok {
				e.schema = m
				e.noForm = formUnsupported(m)
				if t, _ := schemaType(m); e.noForm == "" && t != "object" {
					e.noForm = "the schema does not describe an object"
				}
			} else {
				e.noForm = "the schema cannot be read"
			}
		}
	}
	return e
}

// newEditor returns the editor of a stored configuration.
func newEditor(env flags.Environment, fc flags.FlagConfig) *editor {
	e := newEditorBase(env, fc.Flag)
	c := fc.Config
	e.Base, e.Enabled, e.Default, e.Off = fc.Revision, c.Enabled, c.DefaultVariant, c.OffVariant
	for i, v := range c.Variants {
		ev := editorVariant{Index: i, Ptr: "/variants/" + strconv.Itoa(i), Key: v.Key, Description: v.Description}
		switch fc.Flag.Type {
		case flags.TypeObject:
			ev.Text = prettyJSON(v.Value)
			ev.Mode = "raw"
			if val, err := decodeJSONValue(v.Value); err == nil {
				ev.value = val
				if e.noForm == "" && valueFits(e.schema, val) {
					ev.Mode = "form"
				}
			}
		case flags.TypeString:
			ev.Mode = "scalar"
			var s string
			if json.Unmarshal(v.Value, &s) == nil {
				ev.Text = s
			}
		default:
			ev.Mode, ev.Text = "scalar", string(v.Value)
		}
		e.Variants = append(e.Variants, ev)
	}
	if c.Split != nil {
		e.SplitOn, e.BucketBy, e.Salt = true, c.Split.BucketBy, c.Split.Salt
		for i, w := range c.Split.Weights {
			e.Weights = append(e.Weights, editorWeight{Index: i, Variant: w.Variant, Weight: strconv.Itoa(w.Weight)})
		}
	}
	if len(c.Rules) > 0 {
		b, err := json.MarshalIndent(c.Rules, "", "  ")
		if err == nil {
			e.Rules = string(b)
		}
	}
	e.alignWeights()
	e.rebuild()
	return e
}

// parseEditor reads the editor back from a submitted form.
func parseEditor(env flags.Environment, f flags.Flag, form url.Values) *editor {
	e := newEditorBase(env, f)
	e.Base, _ = strconv.ParseInt(form.Get("base"), 10, 64)
	e.Enabled = form.Get("enabled") == "true"
	e.Default, e.Off = form.Get("/default_variant"), form.Get("/off_variant")
	e.SplitOn = form.Get("split") == "on"
	e.BucketBy, e.Salt = strings.TrimSpace(form.Get("/split/bucket_by")), strings.TrimSpace(form.Get("/split/salt"))
	e.Rules, e.Message = form.Get("/rules"), strings.TrimSpace(form.Get("message"))
	n, _ := strconv.Atoi(form.Get("variants"))
	for i := range min(max(n, 0), flags.MaxVariants+1) {
		ptr := "/variants/" + strconv.Itoa(i)
		ev := editorVariant{Index: i, Ptr: ptr, Key: strings.TrimSpace(form.Get(ptr + "/key")), Description: form.Get(ptr + "/description")}
		switch {
		case f.Type != flags.TypeObject:
			ev.Mode, ev.Text = "scalar", form.Get(ptr+"/value")
		case form.Get("mode:"+ptr) == "form" && e.noForm == "":
			ev.Mode = "form"
			ev.value, _ = readForm(e.schema, form, ptr+"/value", true, false)
		default:
			ev.Mode, ev.Text = "raw", form.Get(ptr+"/value")
		}
		e.Variants = append(e.Variants, ev)
	}
	for j := 0; ; j++ {
		p := "/split/weights/" + strconv.Itoa(j)
		v, ok := form[p+"/variant"]
		if !ok || j > flags.MaxVariants {
			break
		}
		e.Weights = append(e.Weights, editorWeight{Index: j, Variant: v[0], Weight: strings.TrimSpace(form.Get(p + "/weight"))})
	}
	e.rebuild()
	return e
}

// alignWeights makes the split rows follow the variants: one row per
// variant key, in variant order, keeping the weights already given. While
// the split is off, its rows are an even split of 10000, ready for when it
// is turned on.
func (e *editor) alignWeights() {
	given := map[string]string{}
	for _, w := range e.Weights {
		given[w.Variant] = w.Weight
	}
	keys := e.VariantKeys()
	rows := make([]editorWeight, 0, len(keys))
	for i, k := range keys {
		w, ok := given[k]
		switch {
		case !e.SplitOn:
			share := 10000 / len(keys)
			if i == 0 {
				share += 10000 - share*len(keys)
			}
			w = strconv.Itoa(share)
		case !ok:
			w = "0"
		}
		rows = append(rows, editorWeight{Index: i, Variant: k, Weight: w})
	}
	e.Weights = rows
}

// rebuild renumbers the variants and regenerates their forms from their
// values.
func (e *editor) rebuild() {
	for i := range e.Variants {
		v := &e.Variants[i]
		v.Index, v.Ptr = i, "/variants/"+strconv.Itoa(i)
		v.Why = e.noForm
		if v.Mode == "form" {
			v.Form = buildForm(e.schema, v.value, v.Ptr+"/value", "Value", true, false)
		} else {
			v.Form = nil
		}
	}
}

// apply performs a non-saving op. It returns false for an unknown op.
func (e *editor) apply(op string) bool {
	idx := func(s string) (int, bool) {
		i, err := strconv.Atoi(s)
		return i, err == nil && i >= 0 && i < len(e.Variants)
	}
	switch {
	case op == "add-variant":
		if len(e.Variants) >= flags.MaxVariants {
			e.place(solstice.FieldError{Pointer: "/variants", Message: fmt.Sprintf("at most %d variants", flags.MaxVariants)})
			return true
		}
		v := editorVariant{Key: fmt.Sprintf("variant-%d", len(e.Variants)+1)}
		switch e.Flag.Type {
		case flags.TypeObject:
			v.Mode, v.Text = "raw", "{}"
			if e.noForm == "" {
				v.Mode, v.value = "form", map[string]any{}
			}
		case flags.TypeBoolean:
			v.Mode, v.Text = "scalar", "false"
		case flags.TypeNumber:
			v.Mode, v.Text = "scalar", "0"
		default:
			v.Mode = "scalar"
		}
		e.Variants = append(e.Variants, v)
	case strings.HasPrefix(op, "remove-variant:"):
		i, ok := idx(strings.TrimPrefix(op, "remove-variant:"))
		if !ok {
			return false
		}
		e.Variants = slices.Delete(e.Variants, i, i+1)
	case strings.HasPrefix(op, "raw:"):
		i, ok := idx(strings.TrimPrefix(op, "raw:"))
		if !ok || e.Variants[i].Mode != "form" {
			return false
		}
		v := &e.Variants[i]
		b, _ := json.MarshalIndent(v.value, "", "  ")
		v.Mode, v.Text = "raw", string(b)
	case strings.HasPrefix(op, "form:"):
		i, ok := idx(strings.TrimPrefix(op, "form:"))
		if !ok || e.Variants[i].Mode != "raw" || e.noForm != "" {
			return false
		}
		v := &e.Variants[i]
		val, err := decodeJSONValue([]byte(v.Text))
		switch {
		case err != nil:
			e.place(solstice.FieldError{Pointer: v.Ptr + "/value", Message: "fix the JSON before switching to the form: " + err.Error()})
		case !valueFits(e.schema, val):
			e.place(solstice.FieldError{Pointer: v.Ptr + "/value", Message: "this value has fields the schema does not describe: edit it as JSON"})
		default:
			v.Mode, v.value = "form", val
		}
	case strings.HasPrefix(op, "add:"), strings.HasPrefix(op, "remove:"):
		return e.editList(op)
	default:
		return false
	}
	e.rebuild()
	return true
}

// editList adds an item to, or removes one from, a list inside a variant
// value edited as a form.
func (e *editor) editList(op string) bool {
	add := strings.HasPrefix(op, "add:")
	toks := splitPointer(op[strings.IndexByte(op, ':')+1:])
	if len(toks) < 3 || toks[0] != "variants" || toks[2] != "value" {
		return false
	}
	i, err := strconv.Atoi(toks[1])
	if err != nil || i < 0 || i >= len(e.Variants) || e.Variants[i].Mode != "form" {
		return false
	}
	rel := toks[3:]
	remove := -1
	if !add {
		if len(rel) == 0 {
			return false
		}
		if remove, err = strconv.Atoi(rel[len(rel)-1]); err != nil {
			return false
		}
		rel = rel[:len(rel)-1]
	}
	listSchema, ok := schemaAt(e.schema, rel)
	if t, _ := schemaType(listSchema); !ok || t != "array" {
		return false
	}
	items, _ := listSchema["items"].(map[string]any)
	v := &e.Variants[i]
	root, ok := editList(v.value, rel, func(list []any) []any {
		if add {
			return append(list, newItem(items))
		}
		if remove >= 0 && remove < len(list) {
			return slices.Delete(list, remove, remove+1)
		}
		return list
	})
	if !ok {
		return false
	}
	v.value = root
	e.rebuild()
	return true
}

// config returns the configuration the editor holds, with the errors of
// anything that could not be read (invalid JSON, a weight that is not a
// whole number).
func (e *editor) config() (flags.Config, []solstice.FieldError) {
	var fields []solstice.FieldError
	bad := func(ptr, msg string) { fields = append(fields, solstice.FieldError{Pointer: ptr, Message: msg}) }
	c := flags.Config{Enabled: e.Enabled, DefaultVariant: e.Default, OffVariant: e.Off}
	for _, v := range e.Variants {
		fv := flags.Variant{Key: v.Key, Description: v.Description}
		vp := v.Ptr + "/value"
		switch {
		case v.Mode == "form":
			b, err := json.Marshal(v.value)
			if err != nil {
				bad(vp, "cannot be encoded as JSON")
			}
			fv.Value = b
		case v.Mode == "raw":
			text := strings.TrimSpace(v.Text)
			if text == "" {
				bad(vp, "a JSON value is required")
			} else if err := checkJSON(text); err != nil {
				bad(vp, err.Error())
			} else {
				fv.Value = json.RawMessage(text)
			}
		case e.Flag.Type == flags.TypeString:
			b, _ := json.Marshal(v.Text)
			fv.Value = b
		case e.Flag.Type == flags.TypeBoolean:
			if v.Text != "true" && v.Text != "false" {
				bad(vp, "must be true or false")
			}
			fv.Value = json.RawMessage(v.Text)
		default: // number
			text := strings.TrimSpace(v.Text)
			if _, err := strconv.ParseFloat(text, 64); err != nil || !json.Valid([]byte(text)) {
				bad(vp, "must be a number")
			} else {
				fv.Value = json.RawMessage(text)
			}
		}
		c.Variants = append(c.Variants, fv)
	}
	if e.SplitOn {
		s := &flags.Split{BucketBy: e.BucketBy, Salt: e.Salt}
		for j, w := range e.Weights {
			n, err := strconv.Atoi(w.Weight)
			if err != nil {
				bad("/split/weights/"+strconv.Itoa(j)+"/weight", "must be a whole number (basis points: 10000 is everyone)")
			}
			s.Weights = append(s.Weights, flags.Weight{Variant: w.Variant, Weight: n})
		}
		c.Split = s
	}
	if text := strings.TrimSpace(e.Rules); text != "" {
		d := json.NewDecoder(strings.NewReader(text))
		d.DisallowUnknownFields()
		if err := d.Decode(&c.Rules); err != nil {
			bad("/rules", "not a valid list of rules: "+strings.TrimPrefix(err.Error(), "json: "))
			c.Rules = nil
		}
	}
	return c, fields
}

// checkJSON returns a readable error for text that is not one JSON value.
func checkJSON(text string) error {
	d := json.NewDecoder(strings.NewReader(text))
	var v any
	if err := d.Decode(&v); err != nil {
		var se *json.SyntaxError
		if ok := asSyntax(err, &se); ok {
			line := 1 + strings.Count(text[:min(int(se.Offset), len(text))], "\n")
			return fmt.Errorf("not valid JSON (line %d): %w", line, se)
		}
		return fmt.Errorf("not valid JSON: %w", err)
	}
	if d.More() {
		return fmt.Errorf("not valid JSON: more than one value")
	}
	return nil
}

func asSyntax(err error, target **json.SyntaxError) bool {
	se, ok := err.(*json.SyntaxError) //nolint:errorlint // json.Decoder returns it unwrapped
	if ok {
		*target = se
	}
	return ok
}

// pointers returns every pointer the editor renders an input or a group
// for: where field errors can be shown.
func (e *editor) pointers() map[string]bool {
	set := map[string]bool{"": true, "/variants": true, "/default_variant": true, "/off_variant": true, "/split": true,
		"/split/bucket_by": true, "/split/salt": true, "/split/weights": true, "/rules": true, "/message": true, "/enabled": true}
	for _, v := range e.Variants {
		for _, suffix := range []string{"", "/key", "/description", "/value"} {
			set[v.Ptr+suffix] = true
		}
		formPointers(v.Form, set)
	}
	for j := range e.Weights {
		set["/split/weights/"+strconv.Itoa(j)] = true
		set["/split/weights/"+strconv.Itoa(j)+"/weight"] = true
	}
	return set
}

// place shows field errors at their inputs, or at the nearest enclosing
// group that is on the page, and lists them all in the summary.
func (e *editor) place(fields ...solstice.FieldError) {
	set := e.pointers()
	for _, f := range fields {
		at := f.Pointer
		for !set[at] {
			i := strings.LastIndexByte(at, '/')
			if i < 0 {
				at = ""
				break
			}
			at = at[:i]
		}
		pe := placedError{Message: f.Message}
		if at != f.Pointer {
			pe.At = f.Pointer
		}
		e.Errors[at] = append(e.Errors[at], pe)
		e.Summary = append(e.Summary, formError{Pointer: at, Message: describeField(f)})
	}
}

// describeField names a field error for the summary.
func describeField(f solstice.FieldError) string {
	if f.Pointer == "" {
		return f.Message
	}
	return strings.TrimPrefix(f.Pointer, "/") + ": " + f.Message
}

// validate checks the editor's configuration as the flags service would,
// placing every error. It returns the configuration and whether it is
// valid.
func (u *ui) validate(c echo.Context, e *editor) (flags.Config, bool) {
	cfg, fields := e.config()
	segs, err := u.s.flags.ListSegments(c.Request().Context(), e.Env.Name)
	known := map[string]bool{}
	if err == nil {
		for _, sv := range segs {
			known[sv.Segment.Key] = true
		}
	}
	for _, f := range solstice.ErrorFields(flags.ValidateConfig(e.Flag, cfg, known)) {
		if !coveredBy(fields, f.Pointer) {
			fields = append(fields, f)
		}
	}
	e.place(fields...)
	return cfg, len(fields) == 0
}

// coveredBy reports whether a reading error already explains ptr.
func coveredBy(fields []solstice.FieldError, ptr string) bool {
	for _, f := range fields {
		if ptr == f.Pointer || strings.HasPrefix(ptr, f.Pointer+"/") {
			return true
		}
	}
	return false
}

// ---- handlers ----

func (u *ui) editorConfig(c echo.Context) (flags.Environment, flags.FlagConfig, error) {
	env, err := u.environment(c)
	if err != nil {
		return env, flags.FlagConfig{}, err
	}
	if err := require(c, env.Name, accounts.RoleEditor); err != nil {
		return env, flags.FlagConfig{}, err
	}
	fc, err := u.s.flags.GetConfig(c.Request().Context(), env.Name, c.Param("key"))
	return env, fc, err
}

func (u *ui) editPage(c echo.Context) error {
	env, fc, err := u.editorConfig(c)
	if err != nil {
		return err
	}
	return u.renderEditor(c, http.StatusOK, newEditor(env, fc))
}

func (u *ui) renderEditor(c echo.Context, status int, e *editor) error {
	p := u.page(c, "Edit "+e.Flag.Key+" in "+e.Env.Name)
	p.Nav = "flags"
	p.Data = e
	return u.render(c, status, "edit", p)
}

func (u *ui) editSubmit(c echo.Context) error {
	env, fc, err := u.editorConfig(c)
	if err != nil {
		return err
	}
	form, err := c.FormParams()
	if err != nil {
		return badRequestf("could not read the form")
	}
	e := parseEditor(env, fc.Flag, form)
	op := form.Get("op")
	switch op {
	case "check":
		if _, ok := u.validate(c, e); ok {
			e.Notice = "No problems found. Nothing is saved yet."
		}
		e.alignWeights()
		return u.renderEditor(c, http.StatusOK, e)
	case "save":
		return u.saveConfig(c, e)
	}
	if !e.apply(op) {
		return badRequestf("unknown editor action " + strconv.Quote(op))
	}
	e.alignWeights()
	e.rebuild()
	return u.renderEditor(c, http.StatusOK, e)
}

// saveConfig validates and saves (or proposes) the editor's configuration.
func (u *ui) saveConfig(c echo.Context, e *editor) error {
	cfg, ok := u.validate(c, e)
	e.alignWeights()
	if !ok {
		return u.renderEditor(c, http.StatusUnprocessableEntity, e)
	}
	ctx := c.Request().Context()
	key := e.Flag.Key
	if e.Env.Protected {
		cr, err := u.rev.ProposeConfig(ctx, e.Env.Name, key, cfg, e.Base, e.Message)
		if err != nil {
			return u.saveFailed(c, e, cfg, err)
		}
		return u.redirectFlash(c, changeURL(cr.ID), fmt.Sprintf("Change request #%d created: %s is protected, so another approver must approve it before it applies.", cr.ID, e.Env.Name), "")
	}
	rev, err := u.s.flags.PutConfig(ctx, e.Env.Name, key, cfg, e.Base, e.Message)
	if err != nil {
		return u.saveFailed(c, e, cfg, err)
	}
	to := configURL(e.Env.Name, key)
	if len(rev.Diff) == 0 {
		return u.redirectFlash(c, to, "Nothing changed: the configuration was already like this.", "")
	}
	return u.redirectFlash(c, to, fmt.Sprintf("Saved as revision %d of %s.", rev.Number, e.Env.Name), revisionURL(e.Env.Name, rev.Number))
}

// saveFailed shows why a save did not happen: field errors inline, or the
// conflict with what changed meanwhile.
func (u *ui) saveFailed(c echo.Context, e *editor, cfg flags.Config, err error) error {
	switch {
	case solstice.IsKind(err, solstice.KindInvalid):
		e.place(solstice.ErrorFields(err)...)
		if len(solstice.ErrorFields(err)) == 0 {
			e.place(solstice.FieldError{Message: userMessage(err)})
		}
		return u.renderEditor(c, http.StatusUnprocessableEntity, e)
	case solstice.IsKind(err, solstice.KindPreconditionFailed):
		return u.renderConflict(c, e, cfg)
	case solstice.IsKind(err, solstice.KindConflict):
		e.place(solstice.FieldError{Message: solstice.ErrorMessage(err)})
		return u.renderEditor(c, http.StatusConflict, e)
	}
	return err
}

// renderConflict shows the editor again, now based on the current
// configuration, with what changed since the form was loaded and what
// saving the form would now change.
func (u *ui) renderConflict(c echo.Context, e *editor, yours flags.Config) error {
	ctx := c.Request().Context()
	cur, err := u.s.flags.GetConfig(ctx, e.Env.Name, e.Flag.Key)
	if err != nil {
		return err
	}
	theirs, err := review.StateOf(cur.Flag, cur.Config)
	if err != nil {
		return err
	}
	mine, err := review.StateOf(cur.Flag, yours)
	if err != nil {
		return err
	}
	var base json.RawMessage
	if objs, err := u.s.flags.Store().ObjectsAt(ctx, e.Env.Name, e.Base); err == nil {
		for _, o := range objs {
			if o.Kind == flags.KindFlag && o.Key == e.Flag.Key {
				base = o.Content
			}
		}
	}
	k := &conflict{Revision: cur.Revision, Theirs: sideBySide(base, theirs), Yours: sideBySide(theirs, mine)}
	if rev, err := u.s.flags.GetRevision(ctx, e.Env.Name, cur.Revision); err == nil {
		k.Author, k.When, k.Message = rev.Author, rev.CreatedAt, rev.Message
	}
	e.Conflict, e.Base, e.Enabled = k, cur.Revision, cur.Config.Enabled
	return u.renderEditor(c, http.StatusConflict, e)
}

// ---- addresses ----

func configURL(env, key string) string {
	return "/env/" + url.PathEscape(env) + "/flags/" + url.PathEscape(key)
}

func revisionURL(env string, n int64) string {
	return "/env/" + url.PathEscape(env) + "/history/" + strconv.FormatInt(n, 10)
}

func changeURL(id int64) string { return "/changes/" + strconv.FormatInt(id, 10) }

// fieldID returns the HTML id of the input for a JSON pointer.
func fieldID(ptr string) string {
	var b bytes.Buffer
	b.WriteString("f")
	for _, r := range ptr {
		switch {
		case r == '/':
			b.WriteString("_")
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, ".%x.", r)
		}
	}
	return b.String()
}
