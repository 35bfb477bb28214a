package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/solsticehq/solstice/flags"
)

// The config editor turns an object flag's JSON Schema into a form: one
// labelled input per value, named by its JSON pointer within the flag's
// configuration ("/variants/0/value/drops/1/weight"), so that the field
// errors of flags.ValidateConfig land next to the input they are about.
// The form covers the common subset of JSON Schema; a schema using anything
// else (oneOf, $ref, patternProperties...) is edited as raw JSON, which
// every value can also switch to.

// formNode is one input, or a group of them (an object's fieldset, an
// array's items).
type formNode struct {
	Ptr         string
	Name        string // the property name or item index
	Label       string
	Description string
	Kind        string // object, array, string, number, integer, boolean, enum
	Format      string
	Required    bool
	Value       string       // scalars: the input's value; enums: the chosen option's JSON
	Options     []formOption // enums
	Children    []*formNode
	Min, Max    string // numbers
	Item        bool   // an array item (removable)
}

type formOption struct {
	Value, Label string
}

// annotations are the keywords that constrain nothing the form must know.
var schemaAnnotations = []string{"$schema", "$id", "$comment", "title", "description", "default", "examples",
	"deprecated", "readOnly", "writeOnly"}

// constraints are keywords the form does not need to enforce: validation
// does.
var schemaConstraints = []string{"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
	"minLength", "maxLength", "pattern", "format", "minItems", "maxItems", "uniqueItems", "required"}

// formUnsupported returns why schema s cannot be edited as a form, or "".
func formUnsupported(s any) string {
	m, ok := s.(map[string]any)
	if !ok {
		return "the schema is not an object"
	}
	for k, v := range m {
		switch {
		case slices.Contains(schemaAnnotations, k), slices.Contains(schemaConstraints, k):
		case k == "type", k == "enum", k == "const", k == "properties", k == "items":
		case k == "additionalProperties" && v == false:
		default:
			return fmt.Sprintf("the schema uses %q", k)
		}
	}
	if _, hasEnum := m["enum"]; hasEnum {
		return ""
	}
	if _, hasConst := m["const"]; hasConst {
		return ""
	}
	typ, ok := schemaType(m)
	if !ok {
		return "a value has no single type"
	}
	switch typ {
	case "object":
		props, ok := m["properties"].(map[string]any)
		if !ok {
			return "an object has no properties listed"
		}
		for name, p := range props {
			if why := formUnsupported(p); why != "" {
				return fmt.Sprintf("%s (in %q)", why, name)
			}
		}
	case "array":
		if why := formUnsupported(m["items"]); why != "" {
			return why + " (in the items of a list)"
		}
	case "string", "number", "integer", "boolean":
	default:
		return fmt.Sprintf("the type %q", typ)
	}
	return ""
}

// schemaType returns the one non-null type of s.
func schemaType(s map[string]any) (string, bool) {
	switch t := s["type"].(type) {
	case string:
		return t, true
	case []any:
		var types []string
		for _, x := range t {
			if str, ok := x.(string); ok && str != "null" {
				types = append(types, str)
			}
		}
		if len(types) == 1 {
			return types[0], true
		}
	}
	return "", false
}

// valueFits reports whether v has no object keys that schema s does not
// describe: a form would silently drop them.
func valueFits(s map[string]any, v any) bool {
	if _, isEnum := s["enum"]; isEnum {
		return true
	}
	typ, _ := schemaType(s)
	switch typ {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return v == nil
		}
		props, _ := s["properties"].(map[string]any)
		for k, x := range m {
			p, ok := props[k].(map[string]any)
			if !ok || !valueFits(p, x) {
				return false
			}
		}
	case "array":
		items, _ := s["items"].(map[string]any)
		list, ok := v.([]any)
		if !ok {
			return v == nil
		}
		for _, x := range list {
			if !valueFits(items, x) {
				return false
			}
		}
	default:
		_, isMap := v.(map[string]any)
		_, isList := v.([]any)
		return !isMap && !isList
	}
	return true
}

// decodeSchema decodes a flag's schema, numbers as json.Number.
func decodeJSONValue(raw []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func requiredSet(s map[string]any) map[string]bool {
	out := map[string]bool{}
	if list, ok := s["required"].([]any); ok {
		for _, x := range list {
			if name, ok := x.(string); ok {
				out[name] = true
			}
		}
	}
	return out
}

// propertyOrder lists an object schema's properties: required ones first,
// then the others, each alphabetically (stored schemas are canonical JSON,
// so their own order is gone).
func propertyOrder(s map[string]any) []string {
	props, _ := s["properties"].(map[string]any)
	req := requiredSet(s)
	names := make([]string, 0, len(props))
	for n := range props {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if req[names[i]] != req[names[j]] {
			return req[names[i]]
		}
		return names[i] < names[j]
	})
	return names
}

func jsonText(v any) string {
	if v == nil {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func schemaString(s map[string]any, key string) string {
	switch v := s[key].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

// buildForm returns the form of value v under schema s at pointer ptr.
func buildForm(s map[string]any, v any, ptr, name string, required, item bool) *formNode {
	n := &formNode{Ptr: ptr, Name: name, Label: name, Description: schemaString(s, "description"), Required: required,
		Item: item, Format: schemaString(s, "format")}
	if t := schemaString(s, "title"); t != "" {
		n.Label = t
	}
	var options []any
	if e, ok := s["enum"].([]any); ok {
		options = e
	} else if cst, ok := s["const"]; ok {
		options = []any{cst}
	}
	if options != nil {
		n.Kind = "enum"
		if v != nil {
			n.Value = jsonText(v)
		}
		for _, o := range options {
			label := jsonText(o)
			if str, ok := o.(string); ok {
				label = str
			}
			n.Options = append(n.Options, formOption{Value: jsonText(o), Label: label})
		}
		return n
	}
	n.Kind, _ = schemaType(s)
	switch n.Kind {
	case "object":
		props, _ := s["properties"].(map[string]any)
		req := requiredSet(s)
		m, _ := v.(map[string]any)
		for _, p := range propertyOrder(s) {
			ps, _ := props[p].(map[string]any)
			n.Children = append(n.Children, buildForm(ps, m[p], ptr+"/"+flags.PointerToken(p), p, req[p], false))
		}
	case "array":
		items, _ := s["items"].(map[string]any)
		list, _ := v.([]any)
		for i, x := range list {
			n.Children = append(n.Children, buildForm(items, x, ptr+"/"+strconv.Itoa(i), "#"+strconv.Itoa(i+1), true, true))
		}
	case "boolean":
		if b, ok := v.(bool); ok {
			n.Value = strconv.FormatBool(b)
		}
	case "number", "integer":
		n.Min, n.Max = schemaString(s, "minimum"), schemaString(s, "maximum")
		if v != nil {
			if num, ok := v.(json.Number); ok {
				n.Value = num.String()
			} else if str, ok := v.(string); ok {
				n.Value = str // an input that did not parse, shown back as typed
			} else {
				n.Value = jsonText(v)
			}
		}
	default: // string
		if str, ok := v.(string); ok {
			n.Value = str
		} else if v != nil {
			n.Value = jsonText(v)
		}
	}
	return n
}

// lenField names the hidden input holding an array's length.
func lenField(ptr string) string { return "len:" + ptr }

// readForm reads the value at ptr under schema s back from a submitted
// form. It returns false when the value is absent (an empty optional
// input). Input that does not parse as its type is kept as the string
// typed, for validation to report at its pointer and the form to show
// back.
func readForm(s map[string]any, form url.Values, ptr string, required, item bool) (any, bool) {
	if _, isEnum := s["enum"]; isEnum {
		return readEnum(form, ptr)
	}
	if _, isConst := s["const"]; isConst {
		return readEnum(form, ptr)
	}
	typ, _ := schemaType(s)
	switch typ {
	case "object":
		props, _ := s["properties"].(map[string]any)
		req := requiredSet(s)
		m := map[string]any{}
		for _, p := range propertyOrder(s) {
			ps, _ := props[p].(map[string]any)
			if v, ok := readForm(ps, form, ptr+"/"+flags.PointerToken(p), req[p], false); ok {
				m[p] = v
			}
		}
		if len(m) == 0 && !required {
			return nil, false
		}
		return m, true
	case "array":
		items, _ := s["items"].(map[string]any)
		n, _ := strconv.Atoi(form.Get(lenField(ptr)))
		n = min(max(n, 0), 10000)
		list := make([]any, 0, n)
		for i := range n {
			v, _ := readForm(items, form, ptr+"/"+strconv.Itoa(i), true, true)
			list = append(list, v)
		}
		if n == 0 && !required {
			return nil, false
		}
		return list, true
	case "boolean":
		switch form.Get(ptr) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
		return nil, item
	case "number", "integer":
		str := strings.TrimSpace(form.Get(ptr))
		if str == "" {
			return nil, item
		}
		if json.Valid([]byte(str)) {
			if _, err := strconv.ParseFloat(str, 64); err == nil {
				return json.Number(str), true
			}
		}
		return str, true
	default: // string
		vals, ok := form[ptr]
		if !ok || len(vals) == 0 || vals[0] == "" && !required && !item {
			return nil, false
		}
		return vals[0], true
	}
}

func readEnum(form url.Values, ptr string) (any, bool) {
	raw := form.Get(ptr)
	if raw == "" {
		return nil, false
	}
	v, err := decodeJSONValue([]byte(raw))
	if err != nil {
		return raw, true
	}
	return v, true
}

// newItem returns the value a new list item starts with: the schema's
// default, or an empty value of its type.
func newItem(items map[string]any) any {
	if d, ok := items["default"]; ok {
		return d
	}
	switch t, _ := schemaType(items); t {
	case "object":
		return map[string]any{}
	case "array":
		return []any{}
	case "string":
		return ""
	}
	return nil
}

// splitPointer splits a JSON pointer into its unescaped tokens.
func splitPointer(ptr string) []string {
	if ptr == "" {
		return nil
	}
	toks := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	for i, t := range toks {
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return toks
}

// schemaAt returns the schema of the value at the relative pointer toks.
func schemaAt(s map[string]any, toks []string) (map[string]any, bool) {
	for _, t := range toks {
		typ, _ := schemaType(s)
		switch typ {
		case "object":
			props, _ := s["properties"].(map[string]any)
			next, ok := props[t].(map[string]any)
			if !ok {
				return nil, false
			}
			s = next
		case "array":
			next, ok := s["items"].(map[string]any)
			if !ok {
				return nil, false
			}
			s = next
		default:
			return nil, false
		}
	}
	return s, true
}

// editList applies fn to the list at the relative pointer toks of root,
// creating it (in an object) when absent, and returns the new root.
func editList(root any, toks []string, fn func([]any) []any) (any, bool) {
	if len(toks) == 0 {
		list, ok := root.([]any)
		if !ok && root != nil {
			return root, false
		}
		return fn(list), true
	}
	switch node := root.(type) {
	case map[string]any:
		child, ok := editList(node[toks[0]], toks[1:], fn)
		if ok {
			node[toks[0]] = child
		}
		return node, ok
	case []any:
		i, err := strconv.Atoi(toks[0])
		if err != nil || i < 0 || i >= len(node) {
			return root, false
		}
		child, ok := editList(node[i], toks[1:], fn)
		if ok {
			node[i] = child
		}
		return node, ok
	case nil:
		m := map[string]any{}
		child, ok := editList(nil, toks[1:], fn)
		if ok {
			m[toks[0]] = child
		}
		return m, ok
	}
	return root, false
}

// formPointers adds the pointer of every node of n to set.
func formPointers(n *formNode, set map[string]bool) {
	if n == nil {
		return
	}
	set[n.Ptr] = true
	for _, c := range n.Children {
		formPointers(c, set)
	}
}
