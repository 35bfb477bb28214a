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
//
// Targeting rules are edited as a form (an ordered list of rules, each with
// condition rows and serving a variant or a split) or, for power users, as
// the raw JSON list. The modes convert into each other without loss: a rule
// list the form cannot show exactly stays raw, with the reason.

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
	Message  string

	RulesMode string       // "form" or "raw"
	RuleList  []editorRule // form mode
	Rules     string       // raw mode: the JSON list as typed
	RulesWhy  string       // why the rules cannot be shown in the form ("" if they can)
	Segments  []string     // the environment's segment keys: the pickers' options

	Errors   map[string][]placedError
	Summary  []formError
	Notice   string
	Conflict *conflict
	Focus    string // the HTML id of the control to focus after an action

	schema map[string]any
	noForm string        // why no value of this flag can be a form ("" if they can)
	stored *flags.Config // the configuration as stored now, if known (see keepStored)
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
	e.RulesMode = "form"
	if why := rulesFit(c.Rules, e.VariantKeys()); why != "" {
		e.RulesMode, e.RulesWhy, e.Rules = "raw", why, rulesJSON(c.Rules)
	} else {
		e.RuleList = rulesToForm(c.Rules)
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
	e.Message = strings.TrimSpace(form.Get("message"))
	// NOTE: the raw textarea is on the page only in raw mode, so its
	// presence is the mode: no hidden field can disagree with it.
	if _, ok := form["/rules"]; ok {
		e.RulesMode, e.Rules = "raw", form.Get("/rules")
	} else {
		e.RulesMode, e.RuleList = "form", parseRules(form)
	}
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

// alignWeights makes the rows of every split (the flag's and the rules')
// follow the variants; see alignRows.
func (e *editor) alignWeights() {
	keys := e.VariantKeys()
	e.Weights = alignRows(e.Weights, keys, e.SplitOn)
	for i := range e.RuleList {
		r := &e.RuleList[i]
		r.Weights = alignRows(r.Weights, keys, r.Serve == "split")
	}
}

// alignRows returns a split's rows for the variant keys: the rows given, in
// their order, for the variants that still exist, then a row of weight 0 for
// each variant not listed yet. While the split is off, its rows are an even
// split of 10000, ready for when it is turned on.
//
// NOTE: the order is kept because it is part of the bucketing (variants are
// walked in the split's order): sorting the rows into variant order would
// move players between variants.
func alignRows(rows []editorWeight, keys []string, on bool) []editorWeight {
	out := make([]editorWeight, 0, len(keys))
	seen := map[string]bool{}
	for _, w := range rows {
		if slices.Contains(keys, w.Variant) && !seen[w.Variant] {
			seen[w.Variant] = true
			out = append(out, w)
		}
	}
	for _, k := range keys {
		if !seen[k] {
			out = append(out, editorWeight{Variant: k, Weight: "0"})
		}
	}
	for i := range out {
		out[i].Index = i
		if !on {
			share := 10000 / len(out)
			if i == 0 {
				share += 10000 - share*len(out)
			}
			out[i].Weight = strconv.Itoa(share)
		}
	}
	return out
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
	renumberRules(e.RuleList)
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
	case op == "raw:/rules":
		return e.rulesToRaw()
	case op == "form:/rules":
		return e.rulesToFormMode()
	case strings.HasPrefix(op, "up:/rules/"), strings.HasPrefix(op, "down:/rules/"):
		return e.moveRule(op)
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
// value edited as a form, or the rules and their conditions.
func (e *editor) editList(op string) bool {
	add := strings.HasPrefix(op, "add:")
	toks := splitPointer(op[strings.IndexByte(op, ':')+1:])
	if len(toks) > 0 && toks[0] == "rules" {
		return e.editRules(add, toks[1:])
	}
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
		if e.stored != nil && sameJSON(normalSplit(s), normalSplit(e.stored.Split)) {
			c.Split = e.stored.Split
		}
	}
	if e.RulesMode == "raw" {
		rules, err := decodeRules(e.Rules)
		if err != nil {
			bad("/rules", err.Error())
		}
		c.Rules = rules
	} else {
		c.Rules = e.formRules(bad)
	}
	return c, fields
}

// decodeRules reads a raw JSON list of rules ("" is no rules).
func decodeRules(text string) ([]flags.Rule, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, nil
	}
	d := json.NewDecoder(strings.NewReader(text))
	d.DisallowUnknownFields()
	var rules []flags.Rule
	if err := d.Decode(&rules); err != nil {
		return nil, fmt.Errorf("not a valid list of rules: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if d.More() {
		return nil, fmt.Errorf("not a valid list of rules: more than one JSON value")
	}
	return rules, nil
}

// rulesJSON is the raw-mode text of rules ("" for none).
func rulesJSON(rules []flags.Rule) string {
	if len(rules) == 0 {
		return ""
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // the template escapes; "<" reads better than "\u003c"
	enc.SetIndent("", "  ")
	if err := enc.Encode(rules); err != nil {
		return ""
	}
	return strings.TrimRight(buf.String(), "\n")
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
	for _, r := range e.RuleList {
		for _, suffix := range []string{"", "/id", "/description", "/conditions", "/variant", "/split",
			"/split/bucket_by", "/split/salt", "/split/weights"} {
			set[r.Ptr+suffix] = true
		}
		for _, cond := range r.Conditions {
			conditionPointers(cond.Ptr, set)
		}
		for j := range r.Weights {
			set[r.Ptr+"/split/weights/"+strconv.Itoa(j)] = true
			set[r.Ptr+"/split/weights/"+strconv.Itoa(j)+"/weight"] = true
		}
	}
	return set
}

// place shows field errors at their inputs, or at the nearest enclosing
// group that is on the page, and lists them all in the summary.
func (e *editor) place(fields ...solstice.FieldError) {
	placeFields(e.pointers(), e.Errors, &e.Summary, fields...)
}

// placeFields puts each field error at its pointer in errs when set has an
// input there, else at the nearest ancestor that set has (the root "" at
// worst), and adds it to the summary.
func placeFields(set map[string]bool, errs map[string][]placedError, summary *[]formError, fields ...solstice.FieldError) {
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
		errs[at] = append(errs[at], pe)
		*summary = append(*summary, formError{Pointer: at, Message: describeField(f)})
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
// placing every error (a reference to a segment the environment does not
// have among them). It returns the configuration and whether it is valid.
func validate(e *editor) (flags.Config, bool) {
	cfg, fields := e.config()
	known := map[string]bool{}
	for _, k := range e.Segments {
		known[k] = true
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

// ---- targeting rules ----

// editorRule is one rule in the rules form.
type editorRule struct {
	Index       int
	Ptr         string // "/rules/N"
	ID          string
	Description string
	Conditions  []editorCondition
	Serve       string // "variant" or "split"
	Variant     string
	BucketBy    string
	Salt        string
	Weights     []editorWeight
}

// Total sums the rule's split weights that parse.
func (r editorRule) Total() int {
	total := 0
	for _, w := range r.Weights {
		if n, err := strconv.Atoi(strings.TrimSpace(w.Weight)); err == nil && n > 0 {
			total += n
		}
	}
	return total
}

// editorCondition is one condition row, of a rule or a segment. Value is
// the text typed, read according to the operator (see conditionToModel).
type editorCondition struct {
	Index     int
	Ptr       string // "/rules/N/conditions/M", or "/conditions/M" in a segment
	Attribute string
	Op        string
	Value     string
	Segment   string
}

// opInfo is an operator as the forms offer it. Kind says how its value is
// typed: "scalar" (text, number or boolean), "list" (several of those),
// "number", "text", "semver", "time", "none" (no value) or "segment".
type opInfo struct {
	Op    flags.Operator
	Label string
	Kind  string
}

// opGroup is a group of the operator select.
type opGroup struct {
	Label string
	Ops   []opInfo
}

// operatorGroups are every operator flags.Condition supports, grouped for
// the select. The segment group comes last: a segment's own conditions
// cannot use it.
var operatorGroups = []opGroup{
	{"Compare", []opInfo{{flags.OpEquals, "is", "scalar"}, {flags.OpNotEquals, "is not", "scalar"},
		{flags.OpIn, "is one of", "list"}, {flags.OpNotIn, "is none of", "list"}}},
	{"Numbers", []opInfo{{flags.OpLess, "less than", "number"}, {flags.OpLessEq, "at most", "number"},
		{flags.OpGreater, "greater than", "number"}, {flags.OpGreaterEq, "at least", "number"}}},
	{"Text", []opInfo{{flags.OpStartsWith, "starts with", "text"}, {flags.OpEndsWith, "ends with", "text"},
		{flags.OpContains, "contains", "text"}}},
	{"Versions", []opInfo{{flags.OpSemverEq, "version is", "semver"}, {flags.OpSemverLess, "version below", "semver"},
		{flags.OpSemverLessEq, "version at most", "semver"}, {flags.OpSemverGt, "version above", "semver"},
		{flags.OpSemverGtEq, "version at least", "semver"}}},
	{"Time", []opInfo{{flags.OpBefore, "before", "time"}, {flags.OpAfter, "after", "time"}}},
	{"Presence", []opInfo{{flags.OpExists, "is set", "none"}, {flags.OpNotExists, "is not set", "none"}}},
	{"Segments", []opInfo{{flags.OpInSegment, "in segment", "segment"}, {flags.OpNotInSegment, "not in segment", "segment"}}},
}

// opKind returns how op's value is typed, or "" for an unknown operator.
func opKind(op flags.Operator) string {
	for _, g := range operatorGroups {
		for _, o := range g.Ops {
			if o.Op == op {
				return o.Kind
			}
		}
	}
	return ""
}

// conditionFromModel returns the row showing c. Values are shown as typed:
// text bare unless it would read as something else (then quoted as JSON),
// lists one value per line.
func conditionFromModel(c flags.Condition) editorCondition {
	ec := editorCondition{Attribute: c.Attribute, Op: string(c.Op), Segment: c.Segment}
	if !hasValue(c.Value) {
		return ec
	}
	switch opKind(c.Op) {
	case "list":
		ec.Value = formatList(c.Value)
	case "scalar":
		ec.Value = formatScalar(c.Value, false)
	case "text", "semver", "time":
		// A one-line input cannot hold a line break: such text is shown as
		// JSON, which conditionFits then finds does not read back.
		if err := json.Unmarshal(c.Value, &ec.Value); err != nil || strings.ContainsAny(ec.Value, "\r\n") {
			ec.Value = jsonCompact(c.Value)
		}
	default: // number, an unknown operator, or a value the operator does not take
		ec.Value = jsonCompact(c.Value)
	}
	return ec
}

// conditionToModel reads a row back, reporting what cannot be read at the
// row's pointers. Fields the operator does not use are left out.
func conditionToModel(ec editorCondition, bad func(ptr, msg string)) flags.Condition {
	op := flags.Operator(strings.TrimSpace(ec.Op))
	c := flags.Condition{Op: op}
	kind := opKind(op)
	if kind == "segment" {
		c.Segment = strings.TrimSpace(ec.Segment)
		return c
	}
	c.Attribute = strings.TrimSpace(ec.Attribute)
	vp := ec.Ptr + "/value"
	text := strings.TrimSpace(ec.Value)
	switch kind {
	case "none":
	case "scalar":
		if text == "" {
			bad(vp, `is required: text, a number or true/false (type "" for empty text)`)
			return c
		}
		c.Value = parseScalar(text)
	case "list":
		list, err := parseList(text)
		if err != nil {
			bad(vp, err.Error())
			return c
		}
		c.Value = list
	case "number":
		if !isJSONNumber(text) {
			bad(vp, "must be a number, such as 30 or 2.5")
			c.Value = quoteJSON(text)
			return c
		}
		c.Value = json.RawMessage(text)
	case "text":
		c.Value = quoteJSON(ec.Value) // spaces at either end may matter in starts_with and ends_with
	case "semver", "time":
		c.Value = quoteJSON(text)
	default: // unknown: the flags service names the operator; keep the value
		c.Segment = strings.TrimSpace(ec.Segment)
		if text != "" {
			c.Value = parseScalar(text)
		}
	}
	return c
}

func hasValue(raw json.RawMessage) bool {
	t := strings.TrimSpace(string(raw))
	return t != "" && t != "null"
}

// quoteJSON returns s as a JSON string, without HTML escaping (the
// templates escape what they show).
func quoteJSON(s string) json.RawMessage {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimRight(buf.Bytes(), "\n")
}

func isJSONNumber(s string) bool {
	return s != "" && (s[0] == '-' || s[0] >= '0' && s[0] <= '9') && json.Valid([]byte(s))
}

// parseScalar reads a typed value: JSON when it is JSON (42, true, "42"),
// else the text itself.
func parseScalar(text string) json.RawMessage {
	if json.Valid([]byte(text)) {
		return json.RawMessage(text)
	}
	return quoteJSON(text)
}

// formatScalar shows a scalar value for typing it again: text bare when
// parseScalar would read it back as the same text, else as JSON.
func formatScalar(raw json.RawMessage, inList bool) string {
	v, err := decodeJSONValue(raw)
	if err != nil {
		return string(raw)
	}
	s, ok := v.(string)
	if !ok {
		return jsonCompact(raw)
	}
	if s == "" || s != strings.TrimSpace(s) || strings.HasPrefix(s, `"`) || strings.ContainsAny(s, "\r\n") ||
		json.Valid([]byte(s)) || inList && (strings.Contains(s, ",") || strings.HasPrefix(s, "[")) {
		return string(quoteJSON(s))
	}
	return s
}

// formatList shows a list of scalars one per line; anything else as JSON.
func formatList(raw json.RawMessage) string {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return jsonCompact(raw)
	}
	lines := make([]string, len(items))
	for i, it := range items {
		v, err := decodeJSONValue(it)
		if err != nil {
			return jsonCompact(raw)
		}
		switch v.(type) {
		case string, json.Number, bool:
		default:
			return jsonCompact(raw)
		}
		lines[i] = formatScalar(it, true)
	}
	return strings.Join(lines, "\n")
}

// parseList reads the values of in and not_in: separated by commas or new
// lines, each read as parseScalar does, quoted ("a, b") to hold a comma; or
// a JSON array.
func parseList(text string) (json.RawMessage, error) {
	if strings.HasPrefix(text, "[") {
		if !json.Valid([]byte(text)) {
			return nil, fmt.Errorf("starts like a JSON list but is not valid JSON")
		}
		return json.RawMessage(text), nil
	}
	items := []json.RawMessage{}
	const seps = ",\r\n"
	for i := 0; i < len(text); {
		switch c := text[i]; {
		case strings.IndexByte(seps+" \t", c) >= 0:
			i++
		case c == '"':
			j := i + 1
			for j < len(text) && text[j] != '"' {
				if text[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(text) {
				return nil, fmt.Errorf("the quoted value %s has no closing quote", text[i:])
			}
			q := text[i : j+1]
			if !json.Valid([]byte(q)) {
				return nil, fmt.Errorf("%s is not valid quoted text", q)
			}
			items = append(items, json.RawMessage(q))
			i = j + 1
			for i < len(text) && (text[i] == ' ' || text[i] == '\t') {
				i++
			}
			if i < len(text) && strings.IndexByte(seps, text[i]) < 0 {
				return nil, fmt.Errorf("put a comma or a new line after the quoted value %s", q)
			}
		default:
			j := i
			for j < len(text) && strings.IndexByte(seps, text[j]) < 0 {
				j++
			}
			items = append(items, parseScalar(strings.TrimSpace(text[i:j])))
			i = j
		}
	}
	b, err := json.Marshal(items)
	if err != nil {
		return nil, fmt.Errorf("cannot be encoded as JSON: %w", err)
	}
	return b, nil
}

// rulesToForm returns the form rows of rules.
func rulesToForm(rules []flags.Rule) []editorRule {
	out := make([]editorRule, 0, len(rules))
	for _, r := range rules {
		er := editorRule{ID: r.ID, Description: r.Description, Serve: "variant", Variant: r.Variant}
		for _, c := range r.Conditions {
			er.Conditions = append(er.Conditions, conditionFromModel(c))
		}
		if r.Split != nil {
			er.Serve, er.BucketBy, er.Salt = "split", r.Split.BucketBy, r.Split.Salt
			for _, w := range r.Split.Weights {
				er.Weights = append(er.Weights, editorWeight{Variant: w.Variant, Weight: strconv.Itoa(w.Weight)})
			}
		}
		out = append(out, er)
	}
	renumberRules(out)
	return out
}

// renumberRules sets the indexes and pointers of rules, their conditions
// and their split rows from their positions.
func renumberRules(rules []editorRule) {
	for i := range rules {
		r := &rules[i]
		r.Index, r.Ptr = i, "/rules/"+strconv.Itoa(i)
		renumberConditions(r.Conditions, r.Ptr+"/conditions")
		for j := range r.Weights {
			r.Weights[j].Index = j
		}
	}
}

func renumberConditions(conds []editorCondition, listPtr string) {
	for j := range conds {
		conds[j].Index, conds[j].Ptr = j, listPtr+"/"+strconv.Itoa(j)
	}
}

// parseRules reads the rules form back.
func parseRules(form url.Values) []editorRule {
	n, _ := strconv.Atoi(form.Get("rules"))
	var rules []editorRule
	for i := range min(max(n, 0), flags.MaxRules+1) {
		ptr := "/rules/" + strconv.Itoa(i)
		r := editorRule{ID: strings.TrimSpace(form.Get(ptr + "/id")), Description: form.Get(ptr + "/description"),
			Serve: form.Get("serve:" + ptr), Variant: form.Get(ptr + "/variant"),
			BucketBy: strings.TrimSpace(form.Get(ptr + "/split/bucket_by")), Salt: strings.TrimSpace(form.Get(ptr + "/split/salt"))}
		if r.Serve != "split" {
			r.Serve = "variant"
		}
		r.Conditions = parseConditions(form, ptr+"/conditions")
		for j := 0; j <= flags.MaxVariants; j++ {
			p := ptr + "/split/weights/" + strconv.Itoa(j)
			v, ok := form[p+"/variant"]
			if !ok {
				break
			}
			r.Weights = append(r.Weights, editorWeight{Variant: v[0], Weight: strings.TrimSpace(form.Get(p + "/weight"))})
		}
		rules = append(rules, r)
	}
	renumberRules(rules)
	return rules
}

// parseConditions reads the condition rows of the list at listPtr back.
func parseConditions(form url.Values, listPtr string) []editorCondition {
	n, _ := strconv.Atoi(form.Get(lenField(listPtr)))
	var conds []editorCondition
	for j := range min(max(n, 0), flags.MaxConditions+1) {
		p := listPtr + "/" + strconv.Itoa(j)
		conds = append(conds, editorCondition{Attribute: strings.TrimSpace(form.Get(p + "/attribute")), Op: form.Get(p + "/op"),
			Value: form.Get(p + "/value"), Segment: strings.TrimSpace(form.Get(p + "/segment"))})
	}
	renumberConditions(conds, listPtr)
	return conds
}

// rulesFromForm returns the rules the form holds, reporting what cannot be
// read (a weight that is not a whole number, a value its operator cannot
// take) through bad.
func rulesFromForm(list []editorRule, bad func(ptr, msg string)) []flags.Rule {
	if len(list) == 0 {
		return nil
	}
	rules := make([]flags.Rule, 0, len(list))
	for _, r := range list {
		fr := flags.Rule{ID: r.ID, Description: r.Description, Conditions: make([]flags.Condition, 0, len(r.Conditions))}
		for _, c := range r.Conditions {
			fr.Conditions = append(fr.Conditions, conditionToModel(c, bad))
		}
		if r.Serve == "split" {
			s := &flags.Split{BucketBy: r.BucketBy, Salt: r.Salt}
			for j, w := range r.Weights {
				n, err := strconv.Atoi(strings.TrimSpace(w.Weight))
				if err != nil {
					bad(r.Ptr+"/split/weights/"+strconv.Itoa(j)+"/weight", "must be a whole number (basis points: 10000 is everyone)")
				}
				s.Weights = append(s.Weights, flags.Weight{Variant: w.Variant, Weight: n})
			}
			fr.Split = s
		} else {
			fr.Variant = r.Variant
		}
		rules = append(rules, fr)
	}
	return rules
}

// rulesFit returns why the form cannot show rules exactly (a rule serving
// both a variant and a split, a split naming undeclared variants, a value
// its operator does not take...), or "" when the form round-trips them.
// Split rows of weight 0 do not count: they never serve anyone.
func rulesFit(rules []flags.Rule, variants []string) string {
	form := rulesToForm(rules)
	for i := range form {
		form[i].Weights = alignRows(form[i].Weights, variants, form[i].Serve == "split")
	}
	unreadable := false
	back := rulesFromForm(form, func(string, string) { unreadable = true })
	for i, r := range rules {
		b := back[i]
		switch {
		case r.Variant != "" && r.Split != nil:
			return fmt.Sprintf("rule %d sets both a variant and a split", i+1)
		case r.Split != nil && (!oneLine(r.Split.BucketBy) || !oneLine(r.Split.Salt)):
			return fmt.Sprintf("the bucketing attribute or salt of rule %d has spaces around it or a line break", i+1)
		case !sameJSON(normalSplit(r.Split), normalSplit(b.Split)):
			return fmt.Sprintf("the split of rule %d names a variant that is not declared, or one twice", i+1)
		}
		if j := unfitCondition(r.Conditions); j >= 0 {
			return fmt.Sprintf("condition %d of rule %d has a value or field its operator %q does not take, or an attribute with spaces around it or a line break", j+1, i+1, r.Conditions[j].Op)
		}
		if r.ID != b.ID || r.Description != b.Description || r.Variant != b.Variant || strings.ContainsAny(r.Description, "\r\n") {
			return fmt.Sprintf("rule %d has an ID or description the form cannot show exactly", i+1)
		}
	}
	if unreadable {
		return "a value cannot be shown exactly"
	}
	return ""
}

// oneLine reports whether a one-line input shows s exactly, as its form
// reads it back: no line break, no spaces around it.
func oneLine(s string) bool { return s == strings.TrimSpace(s) && !strings.ContainsAny(s, "\r\n") }

// unfitCondition returns the index of the first condition the form cannot
// show exactly (a condition row would read back as something else), or -1.
func unfitCondition(conds []flags.Condition) int {
	for j, c := range conds {
		ok := !strings.ContainsAny(c.Attribute, "\r\n")
		back := conditionToModel(conditionFromModel(c), func(string, string) { ok = false })
		if !ok || !sameJSON(c, back) {
			return j
		}
	}
	return -1
}

// formRules returns the rules of the form (see rulesFromForm), each rule
// the form left as it is stored in its stored form.
//
// NOTE: the form writes some things in one way only (an empty condition
// list as [], a split with a row for every variant), while the API takes
// others that mean the same (null, a split leaving variants out). Keeping
// the stored rule when the form's means the same makes saving an untouched
// form change nothing, rather than write a revision of no consequence.
func (e *editor) formRules(bad func(ptr, msg string)) []flags.Rule {
	rules := rulesFromForm(e.RuleList, bad)
	if e.stored == nil {
		return rules
	}
	for i := range rules {
		if i < len(e.stored.Rules) && sameJSON(normalRule(rules[i]), normalRule(e.stored.Rules[i])) {
			rules[i] = e.stored.Rules[i]
		}
	}
	return rules
}

// normalRule is r with the differences that do not change what it serves
// removed: conditions null or empty, split rows of weight 0.
func normalRule(r flags.Rule) flags.Rule {
	if r.Conditions == nil {
		r.Conditions = []flags.Condition{}
	}
	r.Split = normalSplit(r.Split)
	return r
}

// normalSplit drops the rows of weight 0, which serve nobody.
func normalSplit(s *flags.Split) *flags.Split {
	if s == nil {
		return nil
	}
	n := &flags.Split{BucketBy: s.BucketBy, Salt: s.Salt, Weights: []flags.Weight{}}
	for _, w := range s.Weights {
		if w.Weight != 0 {
			n.Weights = append(n.Weights, w)
		}
	}
	return n
}

// sameJSON reports whether a and b are the same JSON document.
func sameJSON(a, b any) bool {
	ca, errA := flags.CanonicalOf(a)
	cb, errB := flags.CanonicalOf(b)
	return errA == nil && errB == nil && bytes.Equal(ca, cb)
}

// rulesToRaw switches the rules to raw JSON, unless the form holds
// something JSON cannot say as typed.
func (e *editor) rulesToRaw() bool {
	if e.RulesMode != "form" {
		return false
	}
	var fields []solstice.FieldError
	rules := e.formRules(func(ptr, msg string) { fields = append(fields, solstice.FieldError{Pointer: ptr, Message: msg}) })
	if len(fields) > 0 {
		e.place(append(fields, solstice.FieldError{Pointer: "/rules", Message: "fix the rules before switching them to JSON"})...)
		return true
	}
	e.RulesMode, e.Rules, e.RuleList, e.RulesWhy = "raw", rulesJSON(rules), nil, ""
	e.Focus = fieldID("/rules")
	e.rebuild()
	return true
}

// rulesToFormMode switches raw rules to the form, unless they are not
// valid JSON or the form cannot show them exactly.
func (e *editor) rulesToFormMode() bool {
	if e.RulesMode != "raw" {
		return false
	}
	rules, err := decodeRules(e.Rules)
	if err != nil {
		e.place(solstice.FieldError{Pointer: "/rules", Message: "fix the JSON before switching to the form: " + err.Error()})
		return true
	}
	if why := rulesFit(rules, e.VariantKeys()); why != "" {
		e.place(solstice.FieldError{Pointer: "/rules", Message: "the form cannot show these rules as they are (" + why + "): edit them as JSON"})
		return true
	}
	e.RulesMode, e.RuleList, e.Rules, e.RulesWhy = "form", rulesToForm(rules), "", ""
	e.Focus = fieldID("/rules") + "-mode"
	e.rebuild()
	return true
}

// moveRule moves a rule one place up or down ("up:/rules/N").
func (e *editor) moveRule(op string) bool {
	verb, ptr, _ := strings.Cut(op, ":")
	toks := splitPointer(ptr)
	if e.RulesMode != "form" || len(toks) != 2 {
		return false
	}
	i, err := strconv.Atoi(toks[1])
	if err != nil || i < 0 || i >= len(e.RuleList) {
		return false
	}
	j := i + 1
	if verb == "up" {
		j = i - 1
	}
	if j < 0 || j >= len(e.RuleList) {
		return true // already first (last): nothing to do
	}
	e.RuleList[i], e.RuleList[j] = e.RuleList[j], e.RuleList[i]
	e.rebuild()
	// Keep the focus on the button pressed, in the rule's new place, so that
	// pressing it again keeps moving the rule; at the end, on the other one.
	switch {
	case verb == "up" && j == 0:
		verb = "down"
	case verb == "down" && j == len(e.RuleList)-1:
		verb = "up"
	}
	e.Focus = fieldID(e.RuleList[j].Ptr) + "-" + verb
	return true
}

// editRules adds or removes a rule (toks: [] or [N]) or a condition of a
// rule (toks: [N "conditions"] or [N "conditions" M]).
func (e *editor) editRules(add bool, toks []string) bool {
	if e.RulesMode != "form" {
		return false
	}
	if len(toks) == 0 {
		if !add {
			return false
		}
		if len(e.RuleList) >= flags.MaxRules {
			e.place(solstice.FieldError{Pointer: "/rules", Message: fmt.Sprintf("at most %d rules", flags.MaxRules)})
			return true
		}
		r := editorRule{Serve: "variant", Conditions: []editorCondition{{Op: string(flags.OpEquals)}}}
		if keys := e.VariantKeys(); len(keys) > 0 {
			r.Variant = keys[0]
		}
		e.RuleList = append(e.RuleList, r)
		e.rebuild()
		e.Focus = fieldID(e.RuleList[len(e.RuleList)-1].Conditions[0].Ptr + "/attribute")
		return true
	}
	i, err := strconv.Atoi(toks[0])
	if err != nil || i < 0 || i >= len(e.RuleList) {
		return false
	}
	r := &e.RuleList[i]
	switch {
	case len(toks) == 1 && !add:
		e.RuleList = slices.Delete(e.RuleList, i, i+1)
		e.Focus = fieldID("/rules") + "-add"
	case len(toks) == 2 && toks[1] == "conditions" && add:
		if len(r.Conditions) >= flags.MaxConditions {
			e.place(solstice.FieldError{Pointer: r.Ptr + "/conditions", Message: fmt.Sprintf("at most %d conditions", flags.MaxConditions)})
			return true
		}
		r.Conditions = append(r.Conditions, editorCondition{Op: string(flags.OpEquals)})
		renumberRules(e.RuleList)
		e.Focus = fieldID(r.Conditions[len(r.Conditions)-1].Ptr + "/attribute")
	case len(toks) == 3 && toks[1] == "conditions" && !add:
		j, err := strconv.Atoi(toks[2])
		if err != nil || j < 0 || j >= len(r.Conditions) {
			return false
		}
		r.Conditions = slices.Delete(r.Conditions, j, j+1)
		e.Focus = fieldID(r.Ptr+"/conditions") + "-add"
	default:
		return false
	}
	e.rebuild()
	return true
}

// conditionPointers adds the pointers a condition row has inputs for.
func conditionPointers(ptr string, set map[string]bool) {
	for _, suffix := range []string{"", "/attribute", "/op", "/value", "/segment"} {
		set[ptr+suffix] = true
	}
}

// conditionForm is what the "condition" template gets: one row with its
// errors, the operators offered and the segments to pick from.
type conditionForm struct {
	editorCondition
	Rule        int // the rule's number, from 1; 0 for a segment's condition
	SegmentOps  bool
	Segments    []string
	SegmentsURL string
	errs        map[string][]placedError
	focus       string
}

// CondForm returns the view of condition c of rule r.
func (e *editor) CondForm(r editorRule, c editorCondition) conditionForm {
	return conditionForm{editorCondition: c, Rule: r.Index + 1, SegmentOps: true, Segments: e.Segments,
		SegmentsURL: segmentsURL(e.Env.Name), errs: e.Errors, focus: e.Focus}
}

// Groups returns the operators offered.
func (c conditionForm) Groups() []opGroup {
	if c.SegmentOps {
		return operatorGroups
	}
	return operatorGroups[:len(operatorGroups)-1]
}

// Errs returns the errors at the row's pointer plus suffix.
func (c conditionForm) Errs(suffix string) errView {
	return errView{ID: fieldID(c.Ptr + suffix), Errs: c.errs[c.Ptr+suffix]}
}

// Invalid reports whether errors are shown at the row's pointer plus suffix.
func (c conditionForm) Invalid(suffix string) bool { return len(c.errs[c.Ptr+suffix]) > 0 }

// Focused reports whether the input at the row's pointer plus suffix is to
// be focused.
func (c conditionForm) Focused(suffix string) bool {
	return c.focus != "" && c.focus == fieldID(c.Ptr+suffix)
}

// Kind is how the row's value is typed (see opInfo), "" for an unknown
// operator.
func (c conditionForm) Kind() string { return opKind(flags.Operator(c.Op)) }

// KnownSegment reports whether the row's segment exists (or none is set).
func (c conditionForm) KnownSegment() bool {
	return c.Segment == "" || slices.Contains(c.Segments, c.Segment)
}

// Placeholder is an example value for the row's operator.
func (c conditionForm) Placeholder() string {
	switch c.Kind() {
	case "list":
		return "gold\nplatinum"
	case "number":
		return "30"
	case "text":
		return "eu-"
	case "semver":
		return "1.4.0"
	case "time":
		return "2026-12-01T00:00:00Z"
	}
	return "gold"
}

// Attributes lists attribute names to suggest: the well-known ones and
// those the rules already use.
func (e *editor) Attributes() []string {
	names := []string{flags.TargetingKey, "userId", "serverId", "matchId", "platform", "country", "appVersion"}
	for _, r := range e.RuleList {
		for _, c := range r.Conditions {
			if c.Attribute != "" && !slices.Contains(names, c.Attribute) {
				names = append(names, c.Attribute)
			}
		}
	}
	return names
}

// IsVariant reports whether key is one of the variants' keys.
func (e *editor) IsVariant(key string) bool { return slices.Contains(e.VariantKeys(), key) }

// FocusOn reports whether the control with HTML id is to be focused.
func (e *editor) FocusOn(id string) bool { return e.Focus != "" && e.Focus == id }

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
	e := newEditor(env, fc)
	if e.Segments, err = u.segmentKeys(c, env.Name); err != nil {
		return err
	}
	return u.renderEditor(c, http.StatusOK, e)
}

// segmentKeys returns the keys of env's segments.
func (u *ui) segmentKeys(c echo.Context, env string) ([]string, error) {
	segs, err := u.s.flags.ListSegments(c.Request().Context(), env)
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(segs))
	for i, sv := range segs {
		keys[i] = sv.Segment.Key
	}
	return keys, nil
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
	e.stored = &fc.Config
	if e.Segments, err = u.segmentKeys(c, env.Name); err != nil {
		return err
	}
	op := form.Get("op")
	switch op {
	case "check":
		if _, ok := validate(e); ok {
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
	cfg, ok := validate(e)
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
