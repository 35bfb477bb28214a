package web

// OFREP, the OpenFeature Remote Evaluation Protocol, served by the control
// plane to anything that speaks it (OpenFeature's OFREP providers, curl),
// with a game server's environment-scoped server key.
//
// Followed: the OFREP OpenAPI document, open-feature/protocol
// service/openapi.yaml (info.version 0.1.0, the revision with the "OFREP
// Core" and "OFREP Extensions" tags, commit 05d5b22c): the paths /ofrep/v1/evaluate/flags/{key} and
// /ofrep/v1/evaluate/flags and the schemas evaluationRequest,
// serverEvaluationSuccess, evaluationFailure, flagNotFound,
// generalErrorResponse, bulkEvaluationRequest, bulkEvaluationSuccess and
// bulkEvaluationFailure; its ADRs service/adrs/0003 (no flag type in a
// request or a response, so the server never reports TYPE_MISMATCH: the
// provider does) and 0005 (an optional ETag on bulk evaluation, answered
// with 304); guideline/dynamic-context-provider.md and
// provider/specs/client.md (what providers do with each status, If-None-Match
// when polling). What real clients send was checked against
// open-feature/go-sdk-contrib providers/ofrep (internal/outbound/http.go,
// internal/evaluate/resolver.go and bulk_evaluator.go) and
// open-feature/js-sdk-contrib libs/shared/ofrep-core (api/ofrep-api.ts).

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
)

// ofrepMaxBody caps an OFREP request body: an evaluation context is a few
// attributes, never kilobytes of them.
const ofrepMaxBody = 64 << 10

// ofrepFlagRoute is the single-flag route as registered under /ofrep/v1.
const ofrepFlagRoute = "/ofrep/v1/evaluate/flags/:key"

// ofrep serves OFREP. It keeps, for each environment, the fixed parts of
// every flag's answer encoded once per revision (ofrepSet), so that a bulk
// evaluation only evaluates and copies bytes.
type ofrep struct {
	s     *Server
	mu    sync.Mutex           // guards sets
	sets  map[string]*ofrepSet // by environment
	build sync.Mutex           // one set is built at a time, so a new revision is encoded once
	bufs  sync.Pool            // *[]byte response bodies
}

func newOFREP(s *Server) *ofrep {
	return &ofrep{s: s, sets: map[string]*ofrepSet{}, bufs: sync.Pool{New: func() any { return new([]byte) }}}
}

// serverKey authenticates a server key (Bearer or X-API-Key) as the
// snapshot endpoint does, but takes the environment from the key: OFREP
// paths name none. 401 for a missing, unknown or revoked key; 403 for an
// admin token, which names no environment.
func (o *ofrep) serverKey(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		t, err := o.s.serverCredential(c)
		if err != nil {
			return err
		}
		if t.Kind != auth.KindServer || t.Environment == "" {
			return solstice.Errorf(solstice.KindForbidden, "OFREP takes a server key, which names the environment to evaluate in; an admin token names none")
		}
		actAsServer(c, t)
		return next(c)
	}
}

// evaluateFlag is POST /ofrep/v1/evaluate/flags/{key}: 200 with
// serverEvaluationSuccess, 404 with flagNotFound, 400 with
// evaluationFailure for a request that cannot be read or a context the flag
// cannot be evaluated for (TARGETING_KEY_MISSING, INVALID_CONTEXT).
//
// NOTE: Evaluate serves the default variant with TARGETING_KEY_MISSING or
// INVALID_CONTEXT when a split lacks its bucketing key; over OFREP that is an
// evaluationFailure, as the spec's enum has it, so the caller's code default
// is used: what an OpenFeature SDK does with any provider error.
func (o *ofrep) evaluateFlag(c echo.Context) error {
	key := c.Param("key")
	evalCtx, err := readEvaluationRequest(c)
	if err != nil {
		return err
	}
	set, err := o.set(c)
	if err != nil {
		return err
	}
	r := flags.Evaluate(set.compiled, key, evalCtx)
	switch r.ErrorCode {
	case "":
	case flags.CodeFlagNotFound:
		return &ofrepError{status: http.StatusNotFound, code: r.ErrorCode,
			details: fmt.Sprintf("flag %q does not exist in environment %q", key, set.env)}
	case flags.CodeGeneral:
		return fmt.Errorf("OFREP evaluation of %q in %s: %s", key, set.env, r.ErrorMessage)
	default:
		return &ofrepError{status: http.StatusBadRequest, code: r.ErrorCode, details: r.ErrorMessage}
	}
	f, ok := set.flag(key)
	if !ok {
		return fmt.Errorf("OFREP: flag %q evaluated but not encoded in %s revision %d", key, set.env, set.rev)
	}
	bp := o.bufs.Get().(*[]byte)
	defer o.bufs.Put(bp)
	var msgs messageJSON
	*bp = f.appendResult((*bp)[:0], &r, &msgs)
	return writeJSON(c, http.StatusOK, *bp)
}

// evaluateFlags is POST /ofrep/v1/evaluate/flags: every flag of the key's
// environment evaluated for the context, each a success or an
// evaluationFailure in bulkEvaluationSuccess.flags (sorted by key), with an
// ETag; 304 when If-None-Match holds it; 400 with bulkEvaluationFailure for a
// request that cannot be read.
func (o *ofrep) evaluateFlags(c echo.Context) error {
	evalCtx, err := readEvaluationRequest(c)
	if err != nil {
		return err
	}
	set, err := o.set(c)
	if err != nil {
		return err
	}
	tag, err := set.etag(evalCtx)
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", tag)
	if etagMatches(c.Request().Header.Get("If-None-Match"), tag) {
		return c.NoContent(http.StatusNotModified)
	}
	bp := o.bufs.Get().(*[]byte)
	defer o.bufs.Put(bp)
	b := append((*bp)[:0], `{"flags":[`...)
	var msgs messageJSON
	for i := range set.flags {
		f := &set.flags[i]
		if i > 0 {
			b = append(b, ',')
		}
		r := flags.Evaluate(set.compiled, f.key, evalCtx)
		b = f.appendResult(b, &r, &msgs)
	}
	b = append(b, "]}"...)
	*bp = b
	return writeJSON(c, http.StatusOK, b)
}

// readEvaluationRequest reads an evaluationRequest (bulkEvaluationRequest has
// the same shape): a JSON object whose only member is an optional context
// object. Its errors are 400 evaluation failures: PARSE_ERROR for a body
// that is not such an object, INVALID_CONTEXT for a context that is not a
// JSON object or a body over ofrepMaxBody.
//
// NOTE: lenient only where real clients need it: no Content-Type (the Go
// provider's bulk requests send none), a missing context (the JS providers
// send {} when there is none) and a null one (the Go provider marshals a nil
// map) mean an empty context. Members other than context are refused, since
// no client sends any and a misspelt "context" would otherwise evaluate an
// empty context without a word.
func readEvaluationRequest(c echo.Context) (flags.Context, error) {
	req := c.Request()
	if ct := req.Header.Get(echo.HeaderContentType); ct != "" {
		mt, _, _ := strings.Cut(ct, ";")
		if !strings.EqualFold(strings.TrimSpace(mt), echo.MIMEApplicationJSON) {
			return nil, badEvaluation(flags.CodeParseError, "the request body must be application/json, not %s", mt)
		}
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, ofrepMaxBody+1))
	switch {
	case err != nil:
		return nil, badEvaluation(flags.CodeParseError, "could not read the request body")
	case len(body) > ofrepMaxBody:
		return nil, badEvaluation(flags.CodeInvalidContext, "the request body is over %d bytes", ofrepMaxBody)
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, badEvaluation(flags.CodeParseError, `the request body must be a JSON object: {"context": {"targetingKey": "..."}}`)
	}
	var in struct {
		Context any `json:"context"`
	}
	d := json.NewDecoder(bytes.NewReader(trimmed))
	d.DisallowUnknownFields()
	if err := d.Decode(&in); err != nil {
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return nil, badEvaluation(flags.CodeParseError, `unknown member %s: an evaluation request has only "context"`, name)
		}
		return nil, badEvaluation(flags.CodeParseError, "malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if int(d.InputOffset()) != len(trimmed) {
		return nil, badEvaluation(flags.CodeParseError, "the request body holds more than one JSON value")
	}
	switch v := in.Context.(type) {
	case nil:
		return flags.Context{}, nil
	case map[string]any:
		return v, nil
	default:
		return nil, badEvaluation(flags.CodeInvalidContext, "context must be a JSON object, got %s", jsonTypeName(v))
	}
}

func jsonTypeName(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}

// ofrepError is an OFREP error answer: its status and the errorCode and
// errorDetails of its body.
type ofrepError struct {
	status  int
	code    flags.ErrorCode
	details string
}

func (e *ofrepError) Error() string { return string(e.code) + ": " + e.details }

func badEvaluation(code flags.ErrorCode, format string, args ...any) *ofrepError {
	return &ofrepError{status: http.StatusBadRequest, code: code, details: fmt.Sprintf(format, args...)}
}

// ofrepErrorBody is evaluationFailure and flagNotFound (with key, on the
// single-flag route) or bulkEvaluationFailure (without).
type ofrepErrorBody struct {
	Key          string          `json:"key,omitempty"`
	ErrorCode    flags.ErrorCode `json:"errorCode"`
	ErrorDetails string          `json:"errorDetails,omitempty"`
}

// renderErrors renders the errors of the OFREP routes in OFREP's shapes instead of
// problem+json: OFREP clients read errorCode and errorDetails.
//
// NOTE: the spec gives 401, 403 and 429 no body and 500 generalErrorResponse
// ({errorDetails}). Every error here carries errorCode and errorDetails (and
// key on the single-flag route): a superset of generalErrorResponse, and the
// shape the JS providers require of any error body before they surface its
// details. There is no rate limiting in Solstice yet, so no Retry-After.
func (o *ofrep) renderErrors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if err == nil || c.Response().Committed {
			return err
		}
		oe := o.failure(c, err)
		body := ofrepErrorBody{ErrorCode: oe.code, ErrorDetails: oe.details}
		if c.Path() == ofrepFlagRoute {
			body.Key = c.Param("key")
		}
		if oe.status == http.StatusUnauthorized {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="solstice"`)
		}
		return c.JSON(oe.status, body)
	}
}

// failure maps err to its OFREP answer: kinds a client can act on keep their
// status with GENERAL; anything else is logged and answered 500 without
// details.
func (o *ofrep) failure(c echo.Context, err error) *ofrepError {
	var oe *ofrepError
	if errors.As(err, &oe) {
		return oe
	}
	var he *echo.HTTPError
	if errors.As(err, &he) && he.Code < 500 {
		msg, _ := he.Message.(string)
		return &ofrepError{status: he.Code, code: flags.CodeGeneral, details: msg}
	}
	switch solstice.ErrorKind(err) {
	case solstice.KindUnauthorized:
		return &ofrepError{status: http.StatusUnauthorized, code: flags.CodeGeneral, details: solstice.ErrorMessage(err)}
	case solstice.KindForbidden:
		return &ofrepError{status: http.StatusForbidden, code: flags.CodeGeneral, details: solstice.ErrorMessage(err)}
	case solstice.KindRateLimited:
		return &ofrepError{status: http.StatusTooManyRequests, code: flags.CodeGeneral, details: solstice.ErrorMessage(err)}
	}
	req := c.Request()
	o.s.log.ErrorContext(req.Context(), "request failed", "method", req.Method, "path", req.URL.Path, "err", err)
	return &ofrepError{status: http.StatusInternalServerError, code: flags.CodeGeneral, details: "internal error; the server log has the details"}
}

func writeJSON(c echo.Context, status int, body []byte) error {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	h.Set(echo.HeaderContentLength, strconv.Itoa(len(body)))
	c.Response().WriteHeader(status)
	_, err := c.Response().Write(body)
	return err
}

// set returns the OFREP encoding of the current flag set of the
// environment of the request's server key, building it on the first request
// after a new revision.
func (o *ofrep) set(c echo.Context) (*ofrepSet, error) {
	t, _ := c.Request().Context().Value(serverKeyKey{}).(auth.Token)
	compiled, err := o.s.flags.Compiled(c.Request().Context(), t.Environment)
	if err != nil {
		return nil, err
	}
	env, rev := compiled.Environment(), compiled.Revision()
	current := func() *ofrepSet {
		o.mu.Lock()
		defer o.mu.Unlock()
		if cur := o.sets[env]; cur != nil && cur.rev == rev {
			return cur
		}
		return nil
	}
	if set := current(); set != nil {
		return set, nil
	}
	o.build.Lock()
	defer o.build.Unlock()
	if set := current(); set != nil {
		return set, nil // built while this request waited
	}
	set, err := newOFREPSet(compiled)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	if cur := o.sets[env]; cur == nil || cur.rev < rev {
		o.sets[env] = set
	}
	o.mu.Unlock()
	return set, nil
}

// ofrepSet is a compiled flag set prepared for OFREP: for each flag and each
// of its variants, the bytes of a success entry around its reason.
type ofrepSet struct {
	env      string
	rev      int64
	compiled *flags.Compiled
	flags    []ofrepFlag // sorted by key
	tagSeed  []byte      // what the ETag hashes before the context
}

type ofrepFlag struct {
	key      string
	keyJSON  []byte
	variants []ofrepVariant
}

// ofrepVariant is a success entry, {"key":…,"value":…,"reason":"R",
// "variant":…,"metadata":{…}}, split around R: head ends with `"reason":"`,
// tail starts with the quote that closes R.
type ofrepVariant struct {
	name       string
	head, tail []byte
}

// newOFREPSet encodes every variant value of c once. Values are decoded as
// flags.Compile decodes them (numbers as float64) and encoded by
// encoding/json, so they are byte for byte what the admin evaluate endpoint
// shows.
//
// NOTE: encoding values per request (with encoding/json on each Result.Value)
// costs most of a bulk evaluation: seasonal-event objects of twenty fields
// are re-sorted and re-encoded for every poll. Encoded once per revision,
// a bulk answer is evaluation plus copying (see BenchmarkOFREPBulk).
//
// Each entry carries metadata with OpenFeature's well-known flag metadata
// keys (specification appendix D): flagSetId, the environment, and version,
// the revision that served the value, which telemetry hooks record.
func newOFREPSet(c *flags.Compiled) (*ofrepSet, error) {
	env, rev := c.Environment(), c.Revision()
	envJSON, err := json.Marshal(env)
	if err != nil {
		return nil, err
	}
	tail := fmt.Appendf(nil, `,"metadata":{"flagSetId":%s,"version":"%d"}}`, envJSON, rev)
	set := &ofrepSet{env: env, rev: rev, compiled: c,
		tagSeed: fmt.Appendf(nil, "ofrep/1\x00%s\x00%d\x00", env, rev)}
	for _, key := range c.Keys() {
		fs, _ := c.Flag(key)
		keyJSON, err := json.Marshal(key)
		if err != nil {
			return nil, err
		}
		f := ofrepFlag{key: key, keyJSON: keyJSON, variants: make([]ofrepVariant, len(fs.Variants))}
		for i, v := range fs.Variants {
			var value any
			if err := json.Unmarshal(v.Value, &value); err != nil {
				return nil, fmt.Errorf("encode variant %q of %q in %s revision %d for OFREP: %w", v.Key, key, env, rev, err)
			}
			valueJSON, err := json.Marshal(value)
			if err != nil {
				return nil, fmt.Errorf("encode variant %q of %q in %s revision %d for OFREP: %w", v.Key, key, env, rev, err)
			}
			nameJSON, err := json.Marshal(v.Key)
			if err != nil {
				return nil, err
			}
			head := slices.Concat([]byte(`{"key":`), keyJSON, []byte(`,"value":`), valueJSON, []byte(`,"reason":"`))
			f.variants[i] = ofrepVariant{name: v.Key, head: head, tail: slices.Concat([]byte(`","variant":`), nameJSON, tail)}
		}
		set.flags = append(set.flags, f)
	}
	return set, nil
}

func (set *ofrepSet) flag(key string) (*ofrepFlag, bool) {
	i, ok := slices.BinarySearchFunc(set.flags, key, func(f ofrepFlag, k string) int { return strings.Compare(f.key, k) })
	if !ok {
		return nil, false
	}
	return &set.flags[i], true
}

// etag returns the entity tag of the bulk evaluation of set for evalCtx.
//
// NOTE: the tag is derived from what determines the body rather than from
// the body. flags.Evaluate is a pure function of the compiled set and the
// context (it reads no clock), and a compiled set is named by its
// environment and revision; so a hash of those two, the canonical context
// (encoding/json sorts map keys, and contexts are decoded the same way every
// time) and the format of the answer names the body exactly. A poll whose
// tag matches is answered 304 before anything is evaluated, which saves the
// server's CPU as well as the bandwidth a body hash would save. A revision
// that changes nothing for this context still changes the tag: one
// unnecessary 200, never a stale 304. The revision is in the tag, readable,
// for whoever debugs a poller.
func (set *ofrepSet) etag(evalCtx flags.Context) (string, error) {
	canonical := []byte("{}")
	if len(evalCtx) > 0 {
		b, err := json.Marshal(evalCtx)
		if err != nil {
			return "", fmt.Errorf("canonical OFREP context: %w", err)
		}
		canonical = b
	}
	h := sha256.New()
	h.Write(set.tagSeed)
	h.Write(canonical)
	var sum [sha256.Size]byte
	tag := make([]byte, 0, 64)
	tag = append(tag, `"r`...)
	tag = strconv.AppendInt(tag, set.rev, 10)
	tag = append(tag, '-')
	tag = hex.AppendEncode(tag, h.Sum(sum[:0])[:16])
	tag = append(tag, '"')
	return string(tag), nil
}

// appendResult appends r, an evaluation of f, as OFREP has it: a success
// entry, or an evaluationFailure for a result with an error code.
func (f *ofrepFlag) appendResult(b []byte, r *flags.Result, msgs *messageJSON) []byte {
	if r.ErrorCode == "" {
		for i := range f.variants {
			if v := &f.variants[i]; v.name == r.Variant {
				b = append(b, v.head...)
				b = append(b, ofrepReason(r.Reason)...)
				return append(b, v.tail...)
			}
		}
		// Cannot happen: the set was encoded from the set evaluated.
		return f.appendFailure(b, flags.CodeGeneral, "internal error: variant not encoded", msgs)
	}
	return f.appendFailure(b, r.ErrorCode, r.ErrorMessage, msgs)
}

func (f *ofrepFlag) appendFailure(b []byte, code flags.ErrorCode, msg string, msgs *messageJSON) []byte {
	b = append(b, `{"key":`...)
	b = append(b, f.keyJSON...)
	b = append(b, `,"errorCode":"`...)
	b = append(b, code...)
	b = append(b, `","errorDetails":`...)
	b = append(b, msgs.json(msg)...)
	return append(b, '}')
}

// ofrepReason is OFREP's name for an evaluation reason: OpenFeature's
// reasons are Solstice's, and anything else is UNKNOWN.
//
// NOTE: DEFAULT is served as DEFAULT, an OpenFeature reason; the spec lists
// reasons as examples, not as a closed set.
func ofrepReason(r flags.Reason) string {
	switch r {
	case flags.ReasonStatic, flags.ReasonTargetingMatch, flags.ReasonSplit, flags.ReasonDisabled, flags.ReasonDefault:
		return string(r)
	}
	return "UNKNOWN"
}

// messageJSON memoizes the JSON encoding of the last error message: a bulk
// evaluation repeats the same few messages for every flag that fails.
type messageJSON struct {
	msg     string
	encoded []byte
}

func (d *messageJSON) json(msg string) []byte {
	if d.encoded == nil || d.msg != msg {
		b, err := json.Marshal(msg)
		if err != nil { // cannot happen for a string
			b = []byte(`""`)
		}
		d.msg, d.encoded = msg, b
	}
	return d.encoded
}
