package flags

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/solsticehq/solstice"
)

// maxJSONDepth bounds the nesting of documents Canonical accepts. Flag
// configurations nest about ten levels deep; the bound only stops a hostile
// document from making the decoder work for nothing.
const maxJSONDepth = 512

// Canonical returns raw re-encoded in Solstice's canonical form: compact (no
// insignificant whitespace), object keys sorted by their UTF-16 code units as
// encoding/json sorts them, strings escaped by encoding/json without HTML
// escaping, and every number kept exactly as it was written (1.0 stays 1.0,
// 1e400 stays 1e400: Canonical does not interpret numbers, validation does).
// Two documents that differ only in whitespace or key order are byte-equal
// once canonical, which is what lets revisions compare objects byte for byte.
//
// It returns a KindInvalid *solstice.Error when raw is not exactly one valid
// JSON value, is not valid UTF-8, repeats a key within an object (the field
// error names the repeated key by its JSON pointer), or nests deeper than 512
// levels.
func Canonical(raw json.RawMessage) (json.RawMessage, error) {
	if !utf8.Valid(raw) {
		return nil, solstice.Invalid("canonical JSON: the document is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := decodeStrict(dec, "", 0)
	if err != nil {
		return nil, canonicalError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, solstice.Invalid("canonical JSON: unexpected data after the top-level value")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only a malformed json.Number could fail here, and the decoder
		// produced every number; report it as the input's fault anyway.
		return nil, solstice.Invalid(fmt.Sprintf("canonical JSON: %v", err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// CanonicalOf marshals v with encoding/json and returns the canonical form of
// the result (see Canonical). It returns the marshalling error wrapped (an
// internal error: v is a Go value, not client input) or, when v marshals to
// JSON with a repeated key (a custom MarshalJSON), Canonical's KindInvalid
// error.
func CanonicalOf(v any) (json.RawMessage, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("canonical JSON of %T: %w", v, err)
	}
	return Canonical(raw)
}

// jsonPathError is a problem at a JSON pointer within a document.
type jsonPathError struct {
	pointer string
	msg     string
}

func (e *jsonPathError) Error() string { return e.msg + " at " + strconv.Quote(e.pointer) }

func canonicalError(err error) error {
	var pe *jsonPathError
	if errors.As(err, &pe) {
		return solstice.Invalid("canonical JSON: invalid document",
			solstice.FieldError{Pointer: pe.pointer, Message: pe.msg})
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return solstice.Invalid(fmt.Sprintf("canonical JSON: %v (at byte %d)", se, se.Offset))
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return solstice.Invalid("canonical JSON: unexpected end of the document")
	}
	return solstice.Invalid(fmt.Sprintf("canonical JSON: %v", err))
}

// decodeStrict decodes one JSON value token by token, rejecting repeated
// object keys (which encoding/json would silently resolve to the last one,
// and other languages to the first) and excessive nesting. ptr is the JSON
// pointer of the value being decoded.
func decodeStrict(dec *json.Decoder, ptr string, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	if depth >= maxJSONDepth {
		return nil, &jsonPathError{pointer: ptr, msg: fmt.Sprintf("nested deeper than %d levels", maxJSONDepth)}
	}
	switch d {
	case '{':
		obj := map[string]any{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k, ok := kt.(string)
			if !ok { // the decoder reports this as a syntax error first
				return nil, fmt.Errorf("object key is %T, want string", kt)
			}
			kp := ptr + "/" + PointerToken(k)
			if _, dup := obj[k]; dup {
				return nil, &jsonPathError{pointer: kp, msg: fmt.Sprintf("key %q appears more than once", k)}
			}
			v, err := decodeStrict(dec, kp, depth+1)
			if err != nil {
				return nil, err
			}
			obj[k] = v
		}
		if _, err := dec.Token(); err != nil { // '}'
			return nil, err
		}
		return obj, nil
	case '[':
		arr := []any{}
		for dec.More() {
			v, err := decodeStrict(dec, ptr+"/"+strconv.Itoa(len(arr)), depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return nil, err
		}
		return arr, nil
	default:
		return nil, fmt.Errorf("unexpected %q", d)
	}
}
