package web

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/solsticehq/solstice"
)

// ProblemContentType is the media type of error responses (RFC 9457).
const ProblemContentType = "application/problem+json"

// Problem is an RFC 9457 problem details document. Type is stable and
// machine-readable; Detail is for people; Errors name each invalid field by
// JSON pointer.
type Problem struct {
	Type     string         `json:"type"`
	Title    string         `json:"title"`
	Status   int            `json:"status"`
	Detail   string         `json:"detail,omitempty"`
	Instance string         `json:"instance,omitempty"`
	Errors   []ProblemField `json:"errors,omitempty"`
}

// ProblemField is one invalid value of a request.
type ProblemField struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

// problemTypes maps error kinds to their stable problem type, title and
// status. This table is the only place kinds become HTTP.
var problemTypes = map[solstice.Kind]struct {
	typ, title string
	status     int
}{
	solstice.KindInvalid:            {"urn:solstice:problem:validation-failed", "Validation failed", http.StatusUnprocessableEntity},
	solstice.KindNotFound:           {"urn:solstice:problem:not-found", "Not found", http.StatusNotFound},
	solstice.KindConflict:           {"urn:solstice:problem:conflict", "Conflict", http.StatusConflict},
	solstice.KindPreconditionFailed: {"urn:solstice:problem:precondition-failed", "Precondition failed", http.StatusPreconditionFailed},
	solstice.KindPreconditionNeeded: {"urn:solstice:problem:precondition-required", "Precondition required", http.StatusPreconditionRequired},
	solstice.KindUnauthorized:       {"urn:solstice:problem:unauthorized", "Unauthorized", http.StatusUnauthorized},
	solstice.KindForbidden:          {"urn:solstice:problem:forbidden", "Forbidden", http.StatusForbidden},
	solstice.KindTooLarge:           {"urn:solstice:problem:too-large", "Request too large", http.StatusRequestEntityTooLarge},
	solstice.KindRateLimited:        {"urn:solstice:problem:rate-limited", "Too many requests", http.StatusTooManyRequests},
	solstice.KindInternal:           {"urn:solstice:problem:internal", "Internal error", http.StatusInternalServerError},
}

// badRequest is the problem type of a request that could not be read at all
// (malformed JSON, unknown fields, a bad path parameter).
const badRequest = "urn:solstice:problem:bad-request"

// errorHandler renders every error as problem+json. Echo's own errors
// (routing, body limit) are found with errors.As, so wrapping them is safe.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		p := problemFor(err)
		p.Instance = c.Request().URL.Path
		if p.Status >= 500 {
			log.ErrorContext(c.Request().Context(), "request failed", "method", c.Request().Method, "path", p.Instance, "err", err)
		}
		if p.Status == http.StatusUnauthorized {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="solstice"`)
		}
		c.Response().Header().Set(echo.HeaderContentType, ProblemContentType)
		c.Response().WriteHeader(p.Status)
		if c.Request().Method == http.MethodHead {
			return
		}
		_ = c.JSON(p.Status, p)
	}
}

func problemFor(err error) Problem {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		p := Problem{Type: badRequest, Title: "Bad request", Status: he.Code}
		kinds := map[int]solstice.Kind{
			http.StatusNotFound: solstice.KindNotFound, http.StatusRequestEntityTooLarge: solstice.KindTooLarge,
			http.StatusUnauthorized: solstice.KindUnauthorized, http.StatusForbidden: solstice.KindForbidden,
			http.StatusTooManyRequests: solstice.KindRateLimited,
		}
		switch {
		case he.Code == http.StatusMethodNotAllowed:
			p.Type, p.Title = "urn:solstice:problem:method-not-allowed", "Method not allowed"
		case he.Code == http.StatusUnsupportedMediaType:
			p.Type, p.Title = "urn:solstice:problem:unsupported-media-type", "Unsupported media type"
		case kinds[he.Code] != "":
			t := problemTypes[kinds[he.Code]]
			p.Type, p.Title = t.typ, t.title
		case he.Code >= 500:
			t := problemTypes[solstice.KindInternal]
			p.Type, p.Title = t.typ, t.title
		}
		if msg, ok := he.Message.(string); ok && he.Code < 500 {
			p.Detail = msg
		}
		return p
	}
	var re *requestError
	if errors.As(err, &re) {
		return Problem{Type: badRequest, Title: "Bad request", Status: http.StatusBadRequest, Detail: re.msg, Errors: re.fields}
	}
	kind := solstice.ErrorKind(err)
	t, ok := problemTypes[kind]
	if !ok {
		t = problemTypes[solstice.KindInternal]
	}
	p := Problem{Type: t.typ, Title: t.title, Status: t.status, Detail: solstice.ErrorMessage(err)}
	for _, f := range solstice.ErrorFields(err) {
		p.Errors = append(p.Errors, ProblemField{Pointer: f.Pointer, Detail: f.Message})
	}
	if kind == solstice.KindInvalid && len(p.Errors) > 0 {
		var e *solstice.Error
		if errors.As(err, &e) {
			p.Detail = e.Message
		}
	}
	return p
}

// requestError is a request that could not be decoded (400).
type requestError struct {
	msg    string
	fields []ProblemField
}

func (e *requestError) Error() string { return e.msg }

func badRequestf(msg string, fields ...ProblemField) error {
	return &requestError{msg: msg, fields: fields}
}
