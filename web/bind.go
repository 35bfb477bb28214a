package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
)

// decodeJSON reads the request body strictly: JSON only, unknown fields
// rejected, exactly one value.
func decodeJSON(c echo.Context, v any) error { return decode(c, v, false) }

// decodeOptionalJSON is decodeJSON for bodies that may be empty (v is left
// as it is).
func decodeOptionalJSON(c echo.Context, v any) error { return decode(c, v, true) }

func decode(c echo.Context, v any, optional bool) error {
	if err := jsonContentType(c); err != nil {
		return err
	}
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return readError(err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return badRequestf("the request body is empty; a JSON document is expected")
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		// A type's UnmarshalJSON may name the invalid field itself (the
		// durations of a guardrails.Rule): a 422 with its pointer.
		if solstice.IsKind(err, solstice.KindInvalid) {
			return err
		}
		return jsonError(err)
	}
	if d.More() {
		return badRequestf("the request body holds more than one JSON value")
	}
	return nil
}

// decodeJSONStream is decodeJSON for large bodies (telemetry batches): it
// decodes as it reads, instead of reading the body whole into one buffer and
// decoding from a copy of it in another, with the same answers: 415, 413
// (the body is read to its end, or to the limit, before any other error is
// reported), 400 for an empty body, malformed JSON, an unknown field or a
// second value, and the KindInvalid errors of the value's UnmarshalJSON.
func decodeJSONStream(c echo.Context, v any) error {
	if err := jsonContentType(c); err != nil {
		return err
	}
	body := &readErrors{r: c.Request().Body}
	d := json.NewDecoder(body)
	d.DisallowUnknownFields()
	err := d.Decode(v)
	more := err == nil && d.More()
	if body.err == nil {
		// As io.ReadAll did: a body over the limit is a 413 whatever its
		// first bytes hold.
		_, _ = io.Copy(io.Discard, body) // its error is kept in body.err
	}
	switch {
	case body.err != nil:
		return readError(body.err)
	case more:
		return badRequestf("the request body holds more than one JSON value")
	case err == nil:
		return nil
	case errors.Is(err, io.EOF):
		return badRequestf("the request body is empty; a JSON document is expected")
	case solstice.IsKind(err, solstice.KindInvalid):
		return err
	}
	return jsonError(err)
}

// readErrors is a reader that keeps the first error of its reader other
// than io.EOF, so that decodeJSONStream can tell a failed read from
// malformed JSON.
type readErrors struct {
	r   io.Reader
	err error
}

func (r *readErrors) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil { //nolint:errorlint // io.Reader returns io.EOF itself, unwrapped
		r.err = err
	}
	return n, err
}

// jsonContentType refuses, with a 415, a request body declared as anything
// but JSON (a missing Content-Type is taken for JSON).
func jsonContentType(c echo.Context) error {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if ct != "" && !strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
		return echo.NewHTTPError(http.StatusUnsupportedMediaType, "the request body must be application/json")
	}
	return nil
}

// readError turns an error reading the request body into a 413 for a body
// over a limit, or a 400.
func readError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return solstice.Errorf(solstice.KindTooLarge, "the request body is over %d bytes", mbe.Limit)
	}
	var he *echo.HTTPError // Echo's body limit, for bodies without a Content-Length
	if errors.As(err, &he) && he.Code == http.StatusRequestEntityTooLarge {
		return solstice.Errorf(solstice.KindTooLarge, "the request body is over the %d-byte limit", DefaultBodyLimit)
	}
	return badRequestf("could not read the request body")
}

// jsonError turns a decoding error into a 400 naming the field.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		ptr := "/" + strings.ReplaceAll(te.Field, ".", "/")
		return badRequestf("a value has the wrong type", ProblemField{Pointer: ptr, Detail: fmt.Sprintf("expected %s, got JSON %s", te.Type, te.Value)})
	case errors.As(err, &se):
		return badRequestf(fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badRequestf("unknown field "+strconv.Quote(name), ProblemField{Pointer: "/" + name, Detail: "unknown field"})
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequestf("malformed JSON: unexpected end of input")
	}
	return badRequestf("malformed JSON: " + err.Error())
}

// etag formats a version as a strong entity tag with a prefix naming what it
// versions ("r" revision of a per-environment object, "v" flag definition).
func etag(prefix string, n int64) string { return `"` + prefix + strconv.FormatInt(n, 10) + `"` }

// ifMatch parses a required If-Match header holding one entity tag made by
// etag with the same prefix. A missing header is KindPreconditionNeeded (428),
// one that names another version is parsed and left to the domain to compare.
// "*" matches any current version (flags.AnyVersion): the write proceeds
// without an optimistic check, as RFC 9110 defines it.
func ifMatch(c echo.Context, prefix string) (int64, error) {
	h := strings.TrimSpace(c.Request().Header.Get("If-Match"))
	switch h {
	case "":
		return 0, solstice.Errorf(solstice.KindPreconditionNeeded, "this request needs an If-Match header with the ETag of the version you edited (GET it first)")
	case "*":
		return flags.AnyVersion, nil
	}
	return parseETag(h, prefix)
}

// optionalIfMatch is ifMatch where a missing header means def.
func optionalIfMatch(c echo.Context, prefix string, def int64) (int64, error) {
	if strings.TrimSpace(c.Request().Header.Get("If-Match")) == "" {
		return def, nil
	}
	return ifMatch(c, prefix)
}

func parseETag(h, prefix string) (int64, error) {
	s := strings.TrimPrefix(h, "W/")
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' || !strings.HasPrefix(s[1:], prefix) {
		return 0, solstice.Errorf(solstice.KindPreconditionFailed, "If-Match %s is not an ETag of this resource", h)
	}
	n, err := strconv.ParseInt(s[1+len(prefix):len(s)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, solstice.Errorf(solstice.KindPreconditionFailed, "If-Match %s is not an ETag of this resource", h)
	}
	return n, nil
}

// pathInt parses a positive integer path parameter.
func pathInt(c echo.Context, name string) (int64, error) {
	n, err := strconv.ParseInt(c.Param(name), 10, 64)
	if err != nil || n < 0 {
		return 0, badRequestf(fmt.Sprintf("%s must be a non-negative integer, got %q", name, c.Param(name)))
	}
	return n, nil
}

// queryInt parses an optional integer query parameter.
func queryInt(c echo.Context, name string, def int64) (int64, error) {
	v := c.QueryParam(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequestf(fmt.Sprintf("query parameter %s must be a non-negative integer, got %q", name, v))
	}
	return n, nil
}

func queryBool(c echo.Context, name string) (bool, error) {
	v := c.QueryParam(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequestf(fmt.Sprintf("query parameter %s must be true or false, got %q", name, v))
	}
	return b, nil
}
