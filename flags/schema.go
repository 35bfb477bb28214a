package flags

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"

	"github.com/solsticehq/solstice"
)

// schemaURL is the location a flag's schema is compiled under. It names
// nothing real: relative references resolve against it and are refused like
// every other reference outside the document.
const schemaURL = "https://schemas.solstice.invalid/flag-value.json"

// CompileSchema compiles raw, a flag's value schema, as JSON Schema (draft
// 2020-12 unless its "$schema" names another draft the library embeds:
// 4, 6, 7, 2019-09). References must stay inside the document: nothing is
// ever loaded from the network or the file system. "format" is asserted
// (NOTE: JSON Schema 2020-12 makes it an annotation by default, but a
// designer who writes "format": "date-time" means it).
//
// It returns a KindInvalid *solstice.Error when raw is empty, over
// MaxSchemaBytes, not JSON, not a valid schema (field errors point into raw,
// for example "/properties/drops/type") or refers to another document.
func CompileSchema(raw json.RawMessage) (*jsonschema.Schema, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, solstice.Invalid("compile schema: the schema is empty")
	}
	if len(raw) > MaxSchemaBytes {
		return nil, solstice.Invalid(fmt.Sprintf("compile schema: the schema is %d bytes; the limit is %d", len(raw), MaxSchemaBytes))
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, solstice.Invalid(fmt.Sprintf("compile schema: not valid JSON: %v", err))
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(refusingLoader{})
	c.AssertFormat()
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("compile schema: add resource: %w", err)
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, schemaError(err)
	}
	return sch, nil
}

// refusingLoader keeps schema compilation offline and off the file system.
type refusingLoader struct{}

func (refusingLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s is outside the schema: only references within the schema itself are allowed", url)
}

// schemaError turns a compilation error into a KindInvalid error. A schema
// that fails its metaschema yields one field error per failing keyword.
func schemaError(err error) error {
	var sve *jsonschema.SchemaValidationError
	var ve *jsonschema.ValidationError
	if errors.As(err, &sve) && errors.As(sve.Err, &ve) {
		return solstice.Invalid("compile schema: not a valid JSON Schema", validationFields("", ve)...)
	}
	var le *jsonschema.LoadURLError
	if errors.As(err, &le) {
		return solstice.Invalid(fmt.Sprintf("compile schema: %v", le.Err))
	}
	return solstice.Invalid(fmt.Sprintf("compile schema: %v", err))
}

// validateValue validates raw against sch and returns one field error per
// failing keyword, pointing at the failing value: base (the value's
// pointer) followed by the location within the value.
func validateValue(sch *jsonschema.Schema, base string, raw json.RawMessage) []solstice.FieldError {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return []solstice.FieldError{{Pointer: base, Message: "is not valid JSON"}}
	}
	err = sch.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []solstice.FieldError{{Pointer: base, Message: err.Error()}}
	}
	return validationFields(base, ve)
}

// validationFields flattens a validation error tree to the failures of
// individual keywords ("minimum: got -1, want 0"), one field error each. An
// anyOf or oneOf that no alternative satisfied is reported through the
// alternative that got deepest into the value, the likeliest intent; when
// none got past the value itself, as one error listing every alternative's
// complaint.
func validationFields(base string, ve *jsonschema.ValidationError) []solstice.FieldError {
	var out []solstice.FieldError
	seen := map[solstice.FieldError]bool{}
	report := func(loc []string, msg string) {
		fe := solstice.FieldError{Pointer: base + instancePointer(loc), Message: msg}
		if !seen[fe] {
			seen[fe] = true
			out = append(out, fe)
		}
	}
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			report(e.InstanceLocation, kindMessage(e.ErrorKind))
			return
		}
		switch e.ErrorKind.(type) {
		case *kind.AnyOf, *kind.OneOf:
			best, depth := e.Causes[0], leafDepth(e.Causes[0])
			for _, c := range e.Causes[1:] {
				if d := leafDepth(c); d > depth {
					best, depth = c, d
				}
			}
			if depth > len(e.InstanceLocation) {
				walk(best)
				return
			}
			var msgs []string
			for _, c := range e.Causes {
				msgs = append(msgs, leafMessages(c)...)
			}
			report(e.InstanceLocation, strings.Join(msgs, "; or "))
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return out
}

// leafDepth is the deepest instance location among e's leaves.
func leafDepth(e *jsonschema.ValidationError) int {
	if len(e.Causes) == 0 {
		return len(e.InstanceLocation)
	}
	d := 0
	for _, c := range e.Causes {
		d = max(d, leafDepth(c))
	}
	return d
}

func leafMessages(e *jsonschema.ValidationError) []string {
	if len(e.Causes) == 0 {
		return []string{kindMessage(e.ErrorKind)}
	}
	var out []string
	for _, c := range e.Causes {
		out = append(out, leafMessages(c)...)
	}
	return out
}

// kindMessage renders an error kind in English without importing
// golang.org/x/text: a lone ValidationError's basic output carries exactly
// its kind's message.
func kindMessage(k jsonschema.ErrorKind) string {
	out := (&jsonschema.ValidationError{ErrorKind: k}).BasicOutput()
	if out.Error == nil {
		return "is invalid"
	}
	return out.Error.String()
}

func instancePointer(tokens []string) string {
	var b []byte
	for _, t := range tokens {
		b = append(b, '/')
		b = append(b, PointerToken(t)...)
	}
	return string(b)
}

// compileSchemaField compiles a flag's schema for validation, reporting
// problems under ptr.
func compileSchemaField(p *problems, ptr string, raw json.RawMessage) *jsonschema.Schema {
	sch, err := CompileSchema(raw)
	if err == nil {
		return sch
	}
	var se *solstice.Error
	if !errors.As(err, &se) {
		p.add(ptr, "cannot be compiled: %v", err)
		return nil
	}
	if len(se.Fields) == 0 {
		p.add(ptr, "%s", strings.TrimPrefix(se.Message, "compile schema: "))
		return nil
	}
	fields := se.Fields
	for _, f := range fields {
		p.add(ptr+f.Pointer, "%s", f.Message)
	}
	return nil
}
