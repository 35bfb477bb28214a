package web_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"

	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/rollout"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/telemetry"
	"github.com/solsticehq/solstice/web"
)

// The tests in this file keep docs/openapi.yaml honest: every route has an
// operation and every operation a route, each API operation declares its
// problem responses (OFREP operations their OFREP error bodies) and the
// credentials the router enforces, and real responses of a scenario that
// calls every operation match the documented status codes, headers and
// schemas.

const openapiPath = "../docs/openapi.yaml"

// apiDoc is the part of the OpenAPI document the tests read.
type apiDoc struct {
	Paths      map[string]map[string]json.RawMessage `json:"paths"` // path → method (or "parameters") → operation
	Components struct {
		Responses map[string]apiResponse `json:"responses"`
		Headers   map[string]apiHeader   `json:"headers"`
	} `json:"components"`

	raw any // the whole document, for the schema compiler
}

type apiOperation struct {
	OperationID string                 `json:"operationId"`
	Security    *[]map[string][]string `json:"security"`
	RequestBody *struct {
		Content map[string]apiMedia `json:"content"`
	} `json:"requestBody"`
	Responses map[string]apiResponse `json:"responses"`
}

type apiResponse struct {
	Ref     string               `json:"$ref"`
	Headers map[string]apiHeader `json:"headers"`
	Content map[string]apiMedia  `json:"content"`
}

type apiHeader struct {
	Ref      string `json:"$ref"`
	Required bool   `json:"required"`
}

type apiMedia struct {
	Schema struct {
		Ref string `json:"$ref"`
	} `json:"schema"`
	Example  json.RawMessage `json:"example"`
	Examples map[string]struct {
		Ref   string          `json:"$ref"`
		Value json.RawMessage `json:"value"`
	} `json:"examples"`
}

// loadAPIDoc parses docs/openapi.yaml.
func loadAPIDoc(t *testing.T) *apiDoc {
	t.Helper()
	b, err := os.ReadFile(openapiPath)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatalf("%s: %v", openapiPath, err)
	}
	var d apiDoc
	if err := json.Unmarshal(js, &d); err != nil {
		t.Fatalf("%s: %v", openapiPath, err)
	}
	if d.raw, err = jsonschema.UnmarshalJSON(bytes.NewReader(js)); err != nil {
		t.Fatalf("%s: %v", openapiPath, err)
	}
	return &d
}

var openapiMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// operations returns every documented operation by "METHOD /path/{param}".
func (d *apiDoc) operations(t *testing.T) map[string]apiOperation {
	t.Helper()
	ops := map[string]apiOperation{}
	for path, item := range d.Paths {
		for method, raw := range item {
			if !slices.Contains(openapiMethods, method) {
				continue
			}
			var op apiOperation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			ops[strings.ToUpper(method)+" "+path] = op
		}
	}
	return ops
}

// response returns the documented response of op for status, following a
// $ref, and the JSON pointer of the response object in the document.
func (d *apiDoc) response(op apiOperation, opPointer, status string) (apiResponse, string, bool) {
	r, ok := op.Responses[status]
	if !ok {
		return apiResponse{}, "", false
	}
	ptr := opPointer + "/responses/" + pointerToken(status)
	if name, ok := strings.CutPrefix(r.Ref, "#/components/responses/"); ok {
		r, ok = d.Components.Responses[name]
		return r, "/components/responses/" + pointerToken(name), ok
	}
	return r, ptr, true
}

// header follows a header's $ref and returns it with the JSON pointer of
// its schema; responsePtr is the pointer of the response holding it.
func (d *apiDoc) header(h apiHeader, responsePtr, name string) (apiHeader, string) {
	if ref, ok := strings.CutPrefix(h.Ref, "#/components/headers/"); ok {
		return d.Components.Headers[ref], "/components/headers/" + pointerToken(ref) + "/schema"
	}
	return h, responsePtr + "/headers/" + pointerToken(name) + "/schema"
}

func pointerToken(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// echoPath turns an Echo route path into an OpenAPI path template.
var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

func echoPath(p string) string { return echoParam.ReplaceAllString(p, "{$1}") }

func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	doc := loadAPIDoc(t)
	documented := doc.operations(t)
	routed := map[string]bool{}
	// NOTE: the game-server routes exist only with a publisher and a
	// telemetry service, the guardrail routes only with a guardrail
	// service; listing routes never calls them, so unconfigured ones will
	// do.
	deps := web.Deps{Publisher: new(snapshot.Publisher), Telemetry: new(telemetry.Service), Guardrails: new(guardrails.Service), Rollouts: new(rollout.Service)}
	for _, r := range web.New(deps).Echo().Routes() {
		if r.Method == echo.RouteNotFound { // the API group's catch-all 404, not an operation
			continue
		}
		routed[r.Method+" "+echoPath(r.Path)] = true
	}
	if len(routed) == 0 {
		t.Fatal("the server registers no routes")
	}
	for op := range routed {
		if _, ok := documented[op]; !ok {
			t.Errorf("route %s is not in %s", op, openapiPath)
		}
	}
	for op := range documented {
		if !routed[op] {
			t.Errorf("%s documents %s, which is not a route", openapiPath, op)
		}
	}
}

func TestOpenAPIOperationsDeclareProblems(t *testing.T) {
	doc := loadAPIDoc(t)
	ids := map[string]string{}
	for name, op := range doc.operations(t) {
		if op.OperationID == "" {
			t.Errorf("%s has no operationId", name)
		} else if other, dup := ids[op.OperationID]; dup {
			t.Errorf("%s and %s share operationId %s", name, other, op.OperationID)
		}
		ids[op.OperationID] = name
		if op.Security != nil && len(*op.Security) == 0 {
			// NOTE: /healthz, /readyz and /metrics take no input and no
			// credentials; they have no 4xx to document.
			continue
		}
		if strings.HasPrefix(name, "HEAD ") {
			// Answers to HEAD have no body, problems included.
			continue
		}
		if strings.HasPrefix(name, "POST /ofrep/") {
			checkOFREPErrors(t, doc, name, op)
			continue
		}
		problems := 0
		for status := range op.Responses {
			r, _, _ := doc.response(op, "", status)
			if _, ok := r.Content[web.ProblemContentType]; ok && strings.HasPrefix(status, "4") {
				problems++
			}
		}
		if problems == 0 {
			t.Errorf("%s declares no 4xx %s response", name, web.ProblemContentType)
		}
		for _, s := range []string{"401", "403"} {
			if _, ok := op.Responses[s]; !ok {
				t.Errorf("%s does not declare %s", name, s)
			}
		}
		if op.RequestBody != nil {
			for _, s := range []string{"400", "413", "415"} {
				if _, ok := op.Responses[s]; !ok {
					t.Errorf("%s reads a body but does not declare %s", name, s)
				}
			}
		}
	}
}

// ofrepErrorSchemas are the schemas of OFREP's error bodies.
var ofrepErrorSchemas = []string{"OFREPEvaluationFailure", "OFREPFlagNotFound", "OFREPFlagGeneralError", "OFREPBulkEvaluationFailure", "OFREPBulkGeneralError"}

// checkOFREPErrors checks the error responses of an OFREP operation: OFREP
// clients read errorCode and errorDetails from an application/json body, so
// every error is one of OFREP's error schemas, except 413, which the global
// body limit answers as a problem before the request reaches OFREP.
func checkOFREPErrors(t *testing.T, doc *apiDoc, name string, op apiOperation) {
	t.Helper()
	for _, s := range []string{"400", "401", "403", "413", "500"} {
		if _, ok := op.Responses[s]; !ok {
			t.Errorf("%s does not declare %s", name, s)
		}
	}
	for status := range op.Responses {
		if status < "400" {
			continue
		}
		r, _, _ := doc.response(op, "", status)
		if status == "413" {
			if _, ok := r.Content[web.ProblemContentType]; !ok {
				t.Errorf("%s: 413 comes from the body limit, as %s; got %v", name, web.ProblemContentType, sortedKeys(r.Content))
			}
			continue
		}
		m, ok := r.Content["application/json"]
		if !ok || len(r.Content) != 1 {
			t.Errorf("%s: %s must be an OFREP error body, application/json only; got %v", name, status, sortedKeys(r.Content))
			continue
		}
		if ref, _ := strings.CutPrefix(m.Schema.Ref, "#/components/schemas/"); !slices.Contains(ofrepErrorSchemas, ref) {
			t.Errorf("%s: %s has schema %q, want one of %v", name, status, m.Schema.Ref, ofrepErrorSchemas)
		}
	}
}

// operationRole returns the role named by op's bearerAuth requirement.
func operationRole(t *testing.T, name string, op apiOperation) string {
	t.Helper()
	if op.Security == nil || len(*op.Security) != 1 || len((*op.Security)[0]["bearerAuth"]) != 1 {
		t.Fatalf("%s: want security [{bearerAuth: [role]}], got %v", name, op.Security)
	}
	return (*op.Security)[0]["bearerAuth"][0]
}

// samplePath fills a path template with parameters that exist or are at
// least well formed.
func samplePath(template string) string {
	return strings.NewReplacer("{env}", "staging", "{key}", "nope", "{guardrail}", "nope", "{n}", "1", "{id}", "tok_nope").Replace(template)
}

// TestOpenAPIRoles checks the credentials each operation documents against
// what the router enforces: for the admin API, one role below is refused and
// the role itself is not; for game-server endpoints, only the environment's
// own server key is accepted; OFREP takes any server key, whose environment
// it evaluates in, and answers in OFREP's application/json, refusals included.
func TestOpenAPIRoles(t *testing.T) {
	doc := loadAPIDoc(t)
	h := newHarness(t)
	h.withGuardrails(guardrailSetup{telemetry: h.withTelemetry()})
	server, stagingKey := h.newServerKey("production"), h.newServerKey("staging")
	h.want(h.do("POST", "/api/v1/flags", h.editor, `{"key":"double-xp","type":"boolean"}`), http.StatusCreated) // for OFREP to evaluate
	tokens := map[string]string{"viewer": h.viewer, "editor": h.editor, "admin": h.admin}
	below := map[string]string{"editor": "viewer", "admin": "editor"}
	for name, op := range doc.operations(t) {
		method, template, _ := strings.Cut(name, " ")
		switch {
		case template == "/v1/telemetry":
			// Like OFREP, telemetry takes the environment from the key: any
			// server key is accepted.
			if op.Security == nil || len(*op.Security) == 0 || (*op.Security)[0]["serverKey"] == nil {
				t.Errorf("%s: want security [{serverKey: []}, ...], got %v", name, op.Security)
			}
			t.Run(op.OperationID, func(t *testing.T) {
				for i, tc := range []struct {
					who    string
					header []string
					want   int
				}{
					{"no key", nil, http.StatusUnauthorized},
					{"an admin token", []string{"Authorization", "Bearer " + h.admin}, http.StatusForbidden},
					{"a server key", []string{"Authorization", "Bearer " + stagingKey}, http.StatusOK},
					{"another environment's server key", []string{"Authorization", "Bearer " + server}, http.StatusOK},
					{"a server key as X-API-Key", []string{"X-API-Key", stagingKey}, http.StatusOK},
				} {
					if r := h.do(method, template, "", telemetryBatch(fmt.Sprint("roles-", i)), tc.header...); r.status != tc.want {
						t.Errorf("with %s: status %d, want %d: %s", tc.who, r.status, tc.want, r.body)
					}
				}
			})
			continue
		case strings.HasPrefix(template, "/v1/"):
			if op.Security == nil || len(*op.Security) == 0 || (*op.Security)[0]["serverKey"] == nil {
				t.Errorf("%s: want security [{serverKey: []}, ...], got %v", name, op.Security)
			}
			t.Run(op.OperationID, func(t *testing.T) {
				path := samplePath(template) // staging
				for _, tc := range []struct {
					who    string
					header []string
					want   int
				}{
					{"no key", nil, http.StatusUnauthorized},
					{"an admin token", []string{"Authorization", "Bearer " + h.admin}, http.StatusForbidden},
					{"another environment's key", []string{"Authorization", "Bearer " + server}, http.StatusForbidden},
					{"its key", []string{"Authorization", "Bearer " + stagingKey}, http.StatusOK},
					{"its key as X-API-Key", []string{"X-API-Key", stagingKey}, http.StatusOK},
				} {
					if r := h.do(method, path, "", nil, tc.header...); r.status != tc.want {
						t.Errorf("with %s: status %d, want %d", tc.who, r.status, tc.want)
					}
				}
			})
			continue
		case strings.HasPrefix(template, "/ofrep/"):
			if op.Security == nil || len(*op.Security) == 0 || (*op.Security)[0]["serverKey"] == nil {
				t.Errorf("%s: want security [{serverKey: []}, ...], got %v", name, op.Security)
			}
			t.Run(op.OperationID, func(t *testing.T) {
				path := strings.ReplaceAll(template, "{key}", "double-xp")
				const body = `{"context":{"targetingKey":"p-1"}}`
				for _, tc := range []struct {
					who    string
					header []string
					want   int
				}{
					{"no key", nil, http.StatusUnauthorized},
					{"an admin token", []string{"Authorization", "Bearer " + h.admin}, http.StatusForbidden},
					{"a server key", []string{"Authorization", "Bearer " + stagingKey}, http.StatusOK},
					{"a server key as X-API-Key", []string{"X-API-Key", stagingKey}, http.StatusOK},
				} {
					r := h.do(method, path, "", body, tc.header...)
					if r.status != tc.want {
						t.Errorf("with %s: status %d, want %d: %s", tc.who, r.status, tc.want, r.body)
					}
					if mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type")); mt != "application/json" {
						t.Errorf("with %s: Content-Type %q, want application/json", tc.who, r.header.Get("Content-Type"))
					}
				}
			})
			continue
		case !strings.HasPrefix(template, "/api/"):
			if op.Security == nil || len(*op.Security) != 0 {
				t.Errorf("%s needs no credentials: document security: []", name)
			}
			continue
		}
		role := operationRole(t, name, op)
		if tokens[role] == "" {
			t.Errorf("%s: unknown role %q", name, role)
			continue
		}
		t.Run(op.OperationID, func(t *testing.T) {
			path := samplePath(template)
			if r := h.do(method, path, "", nil); r.status != http.StatusUnauthorized {
				t.Errorf("without a token: status %d, want 401", r.status)
			}
			if r := h.do(method, path, server, nil); r.status != http.StatusForbidden {
				t.Errorf("with a server key: status %d, want 403", r.status)
			}
			if lower := below[role]; lower != "" {
				if r := h.do(method, path, tokens[lower], nil); r.status != http.StatusForbidden {
					t.Errorf("documented role %s, but a token with role %s got %d, not 403: %s", role, lower, r.status, r.body)
				}
			}
			if r := h.do(method, path, tokens[role], nil); r.status == http.StatusUnauthorized || r.status == http.StatusForbidden {
				t.Errorf("documented role %s, but a token with that role got %d: %s", role, r.status, r.body)
			}
		})
	}
}

// apiContract calls operations and checks every response against the
// document: the status is declared, the media type and headers are the
// documented ones and the body matches the schema.
type apiContract struct {
	t         *testing.T
	h         *harness
	doc       *apiDoc
	ops       map[string]apiOperation
	compiler  *jsonschema.Compiler
	schemas   map[string]*jsonschema.Schema
	exercised map[string]bool
}

const openapiURL = "https://solstice.invalid/openapi.json"

func newAPIContract(t *testing.T, h *harness) *apiContract {
	doc := loadAPIDoc(t)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(openapiURL, doc.raw); err != nil {
		t.Fatal(err)
	}
	return &apiContract{t: t, h: h, doc: doc, ops: doc.operations(t), compiler: c, schemas: map[string]*jsonschema.Schema{}, exercised: map[string]bool{}}
}

// schema compiles the schema at a JSON pointer into the document.
func (c *apiContract) schema(ptr string) *jsonschema.Schema {
	c.t.Helper()
	if s, ok := c.schemas[ptr]; ok {
		return s
	}
	s, err := c.compiler.Compile(openapiURL + "#" + (&url.URL{Path: ptr}).EscapedPath())
	if err != nil {
		c.t.Fatalf("compile the schema at %s: %v", ptr, err)
	}
	c.schemas[ptr] = s
	return s
}

func (c *apiContract) validate(what, ptr string, body []byte) {
	c.t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		c.t.Errorf("%s: body is not JSON: %v\n%s", what, err, body)
		return
	}
	if err := c.schema(ptr).Validate(v); err != nil {
		c.t.Errorf("%s does not match %s:\n%v\nbody: %s", what, ptr, err, body)
	}
}

// validateHeader checks a header value against its schema, as a string or,
// failing that, as the number it spells (Solstice-Snapshot-Version).
func (c *apiContract) validateHeader(what, ptr, value string) {
	c.t.Helper()
	sch := c.schema(ptr)
	err := sch.Validate(value)
	if err != nil {
		if n, nerr := jsonschema.UnmarshalJSON(strings.NewReader(value)); nerr == nil && sch.Validate(n) == nil {
			return
		}
		c.t.Errorf("%s = %q does not match %s: %v", what, value, ptr, err)
	}
}

// example returns a documented request example of an operation.
func (c *apiContract) example(opName, name string) string {
	c.t.Helper()
	op := c.ops[opName]
	if op.RequestBody == nil {
		c.t.Fatalf("%s has no request body", opName)
	}
	m := op.RequestBody.Content["application/json"]
	if name == "" {
		if m.Example == nil {
			c.t.Fatalf("%s has no request example", opName)
		}
		return string(m.Example)
	}
	ex, ok := m.Examples[name]
	if !ok {
		c.t.Fatalf("%s has no request example %q", opName, name)
	}
	if ref, ok := strings.CutPrefix(ex.Ref, "#/components/examples/"); ok {
		ex.Value = c.componentExample(ref)
	}
	return string(ex.Value)
}

func (c *apiContract) componentExample(name string) json.RawMessage {
	c.t.Helper()
	raw := c.doc.raw.(map[string]any)["components"].(map[string]any)["examples"].(map[string]any)[name].(map[string]any)["value"]
	b, err := json.Marshal(raw)
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}

// call sends method template, its path parameters filled in from params in
// order (a parameter starting with "?" is the query string), and checks the
// response against the document. headers are name, value pairs.
func (c *apiContract) call(method, template string, params []string, token string, body any, want int, headers ...string) response {
	c.t.Helper()
	name := method + " " + template
	op, ok := c.ops[name]
	if !ok {
		c.t.Fatalf("%s is not documented", name)
	}
	c.exercised[name] = true
	path, rawQuery := template, ""
	for _, p := range params {
		if q, ok := strings.CutPrefix(p, "?"); ok {
			rawQuery = q
			continue
		}
		i, j := strings.Index(path, "{"), strings.Index(path, "}")
		if i < 0 {
			c.t.Fatalf("%s: more parameters than the path has", name)
		}
		path = path[:i] + url.PathEscape(p) + path[j+1:]
	}
	if strings.Contains(path, "{") {
		c.t.Fatalf("%s: missing path parameters", name)
	}
	if rawQuery != "" {
		path += "?" + rawQuery
	}
	r := c.send(method, path, token, body, headers...)
	what := fmt.Sprintf("%s %s → %d", method, path, r.status)
	if r.status != want {
		c.t.Fatalf("%s, want %d: %s", what, want, r.body)
	}
	status := fmt.Sprint(r.status)
	resp, ptr, ok := c.doc.response(op, "/paths/"+pointerToken(template)+"/"+strings.ToLower(method), status)
	if !ok {
		c.t.Errorf("%s: status %d is not documented", what, r.status)
		return r
	}
	for name, hd := range resp.Headers {
		hd, schemaPtr := c.doc.header(hd, ptr, name)
		v := r.header.Get(name)
		switch {
		case v == "" && hd.Required:
			c.t.Errorf("%s: documented header %s is missing", what, name)
		case v != "":
			c.validateHeader(what+" header "+name, schemaPtr, v)
		}
	}
	if len(resp.Content) == 0 {
		if len(r.body) != 0 {
			c.t.Errorf("%s: documented without a body, got %s", what, r.body)
		}
		return r
	}
	mt, _, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if err != nil {
		c.t.Errorf("%s: Content-Type %q: %v", what, r.header.Get("Content-Type"), err)
		return r
	}
	if _, ok := resp.Content[mt]; !ok {
		c.t.Errorf("%s: Content-Type %s is not documented (%v)", what, mt, sortedKeys(resp.Content))
		return r
	}
	if mt == "application/json" || strings.HasSuffix(mt, "+json") {
		c.validate(what, ptr+"/content/"+pointerToken(mt)+"/schema", r.body)
	}
	if mt == web.ProblemContentType {
		c.checkTitle(what, resp.Content[mt], r.body)
	}
	return r
}

// checkTitle compares a problem's title with the documented examples of its
// response: one problem type, one title, whether the router or the domain
// raised it.
func (c *apiContract) checkTitle(what string, m apiMedia, body []byte) {
	c.t.Helper()
	examples := []json.RawMessage{m.Example}
	for _, e := range m.Examples {
		examples = append(examples, e.Value)
	}
	var titles []string
	for _, ex := range examples {
		var p struct{ Title string }
		if ex != nil && json.Unmarshal(ex, &p) == nil && p.Title != "" && !slices.Contains(titles, p.Title) {
			titles = append(titles, p.Title)
		}
	}
	var got struct{ Title string }
	if json.Unmarshal(body, &got) == nil && len(titles) > 0 && !slices.Contains(titles, got.Title) {
		c.t.Errorf("%s: problem title %q, documented %q", what, got.Title, titles)
	}
}

// chunked is a request body sent without Content-Length.
type chunked string

// send is harness.do, and sends a chunked body without Content-Length.
func (c *apiContract) send(method, path, token string, body any, headers ...string) response {
	c.t.Helper()
	if b, ok := body.(chunked); ok {
		// Behind io.MultiReader net/http cannot see the length, so it sends the body chunked.
		body = io.MultiReader(strings.NewReader(string(b)))
	}
	return c.h.do(method, path, token, body, headers...)
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// query marks a call parameter as the query string.
func query(s string) []string { return []string{"?" + s} }

// TestOpenAPIContract walks through every operation, mostly with the
// document's own request examples, and checks each response against the
// document.
func TestOpenAPIContract(t *testing.T) {
	h := newHarness(t)
	g := h.withGuardrails(guardrailSetup{telemetry: h.withTelemetry(telemetry.WithRateLimit(1e-3, 8))})
	c := newAPIContract(t, h)
	ed, vw, ad := h.editor, h.viewer, h.admin
	etag := func(r response) string { return r.header.Get("ETag") }
	// wantUnchanged checks the answer to a write that changed nothing.
	wantUnchanged := func(r response) {
		t.Helper()
		var out struct {
			Changed  *bool
			Revision json.RawMessage
		}
		r.json(t, &out)
		if out.Changed == nil || *out.Changed || string(out.Revision) != "null" {
			t.Errorf(`an identical write answered %s, want "changed": false and "revision": null`, r.body)
		}
	}

	c.call("GET", "/healthz", nil, "", nil, 200)
	c.call("GET", "/readyz", nil, "", nil, 200)
	c.call("GET", "/metrics", nil, "", nil, 200)

	// Game servers.
	sk := h.newServerKey("production")
	snap := "/v1/snapshots/{env}"
	bearer := []string{"Authorization", "Bearer " + sk}
	first := c.call("GET", snap, []string{"production"}, "", nil, 200, append(bearer, "Solstice-Server-Id", "gs-eu-1")...)
	c.call("GET", snap, []string{"production"}, "", nil, 304, append(bearer, "If-None-Match", etag(first))...)
	c.call("GET", snap, []string{"production", "?wait=10ms"}, "", nil, 304, append(bearer, "If-None-Match", etag(first))...)
	c.call("GET", snap, []string{"production", "?wait=soon"}, "", nil, 400, bearer...)
	c.call("GET", snap, []string{"production"}, "", nil, 401)
	c.call("GET", snap, []string{"production"}, ad, nil, 403)
	c.call("GET", snap, []string{"nowhere"}, ad, nil, 404)
	c.call("HEAD", snap, []string{"production"}, "", nil, 200, bearer...)
	c.call("HEAD", snap, []string{"production"}, "", nil, 304, append(bearer, "If-None-Match", etag(first))...)
	c.call("HEAD", snap, []string{"production"}, "", nil, 401)

	// Telemetry, at telemetryNow, with a rate of 8 batches per key and no refill.
	tel := "/v1/telemetry"
	batch := c.example("POST "+tel, "batch")
	c.validate("the batch example", "/components/schemas/TelemetryBatch", []byte(batch))
	c.validate("the heartbeat example", "/components/schemas/TelemetryBatch", []byte(c.example("POST "+tel, "heartbeat")))
	var res telemetry.Result
	c.call("POST", tel, nil, sk, batch, 200).json(t, &res)
	if res.Duplicate || res.NewExposures != 2 {
		t.Errorf("the documented batch got %+v, want accepted with 2 new exposures", res)
	}
	c.call("POST", tel, nil, "", batch, 200, "X-API-Key", sk).json(t, &res)
	if !res.Duplicate || res.NewExposures != 0 {
		t.Errorf("the documented batch again got %+v, want a duplicate", res)
	}
	c.call("POST", tel, nil, sk, c.example("POST "+tel, "heartbeat"), 200)
	c.call("POST", tel, nil, sk, strings.Replace(batch, `"snapshot_version":3`, `"snapshot_version":4`, 1), 409)
	p := c.call("POST", tel, nil, sk, strings.Replace(batch, `"2026-03-01T12:29:00Z"`, `"2026-03-01T12:40:00Z"`, 1), 422).problem(t)
	if len(p.Errors) == 0 || p.Errors[0].Pointer != "/windows/0/start" {
		t.Errorf("a window in the future got errors %+v, want /windows/0/start", p.Errors)
	}
	c.call("POST", tel, nil, sk, `{"batch_id":"x","server_id":"gs","colour":"red"}`, 400)
	c.call("POST", tel, nil, sk, batch, 415, "Content-Type", "text/plain")
	c.call("POST", tel, nil, sk, `{"batch_id":"x","server_id":"`+strings.Repeat("x", telemetry.MaxBatchBytes)+`"}`, 413)
	c.call("POST", tel, nil, sk, batch, 429) // the ninth batch of the key
	c.call("POST", tel, nil, "", batch, 401)
	c.call("POST", tel, nil, ad, batch, 403)

	// Flag definitions.
	c.call("GET", "/api/v1/flags", nil, "", nil, 401)
	c.call("POST", "/api/v1/flags", nil, vw, `{"key":"x","type":"boolean"}`, 403)
	c.call("POST", "/api/v1/flags", nil, ed, c.example("POST /api/v1/flags", "seasonalEvent"), 201)
	c.call("POST", "/api/v1/flags", nil, ed, c.example("POST /api/v1/flags", "boolean"), 201)
	p = c.call("POST", "/api/v1/flags", nil, ed, c.example("POST /api/v1/flags", "invalidValue"), 422).problem(t)
	if len(p.Errors) != 1 || p.Errors[0].Pointer != "/variants/1/value/xp" {
		t.Errorf("the documented invalid example got errors %+v, want /variants/1/value/xp", p.Errors)
	}
	c.call("POST", "/api/v1/flags", nil, ed, c.example("POST /api/v1/flags", "seasonalEvent"), 409)
	c.call("POST", "/api/v1/flags", nil, ed, `{"key":"a","type":"boolean","colour":"red"}`, 400)
	c.call("POST", "/api/v1/flags", nil, ed, `{"key":"a","type":"boolean"}`, 415, "Content-Type", "text/plain")
	c.call("POST", "/api/v1/flags", nil, ed, `{"key":"a","description":"`+strings.Repeat("x", web.DefaultBodyLimit)+`"}`, 413)
	c.call("POST", "/api/v1/flags", nil, ed, chunked(`{"key":"a","description":"`+strings.Repeat("x", web.DefaultBodyLimit)+`"}`), 413)
	c.call("GET", "/api/v1/flags", query("tag=seasonal"), vw, nil, 200)

	wf := c.call("GET", "/api/v1/flags/{key}", []string{"winter-festival"}, vw, nil, 200)
	c.call("GET", "/api/v1/flags/{key}", []string{"nope"}, vw, nil, 404)
	patch := c.example("PATCH /api/v1/flags/{key}", "rename")
	c.call("PATCH", "/api/v1/flags/{key}", []string{"winter-festival"}, ed, patch, 428)
	c.call("PATCH", "/api/v1/flags/{key}", []string{"winter-festival"}, ed, patch, 412, "If-Match", `"v9"`)
	c.call("PATCH", "/api/v1/flags/{key}", []string{"winter-festival"}, ed, patch, 200, "If-Match", etag(wf))

	// Environments.
	c.call("GET", "/api/v1/environments", nil, vw, nil, 200)
	c.call("POST", "/api/v1/environments", nil, ed, `{"name":"qa"}`, 403)
	c.call("POST", "/api/v1/environments", nil, ad, c.example("POST /api/v1/environments", ""), 201)
	c.call("POST", "/api/v1/environments", nil, ad, c.example("POST /api/v1/environments", ""), 409)
	c.call("POST", "/api/v1/environments", nil, ad, `{"name":"Q A"}`, 422)
	c.call("GET", "/api/v1/environments/{env}", []string{"qa"}, vw, nil, 200)
	c.call("PATCH", "/api/v1/environments/{env}", []string{"qa"}, ad, c.example("PATCH /api/v1/environments/{env}", ""), 200)
	c.call("GET", "/api/v1/environments/{env}/fleet", []string{"production"}, vw, nil, 200)
	c.call("GET", "/api/v1/environments/{env}/fleet", []string{"production", "?stale_after=-1s"}, vw, nil, 400)

	// Segments and configurations in development.
	seg := "/api/v1/environments/{env}/segments/{key}"
	c.call("PUT", seg, []string{"development", "beta-testers"}, ed, c.example("PUT "+seg, "members"), 201)
	c.call("PUT", seg, []string{"development", "beta-testers"}, ed, c.example("PUT "+seg, "members"), 428)
	s := c.call("GET", seg, []string{"development", "beta-testers"}, vw, nil, 200)
	c.call("PUT", seg, []string{"development", "beta-testers"}, ed, `{"key":"other"}`, 422, "If-Match", etag(s))
	c.call("GET", "/api/v1/environments/{env}/segments", []string{"development"}, vw, nil, 200)

	cfg := "/api/v1/environments/{env}/flags/{key}"
	got := c.call("GET", cfg, []string{"development", "winter-festival"}, vw, nil, 200)
	put := c.example("PUT "+cfg, "")
	c.call("PUT", cfg, []string{"development", "winter-festival"}, ed, put, 428)
	c.call("PUT", cfg, []string{"development", "winter-festival"}, ed, put, 412, "If-Match", `"v1"`)
	got = c.call("PUT", cfg, []string{"development", "winter-festival"}, ed, put, 200, "If-Match", etag(got))
	wantUnchanged(c.call("PUT", cfg, []string{"development", "winter-festival"}, ed, put, 200, "If-Match", etag(got)))
	wantUnchanged(c.call("PUT", cfg, []string{"development", "winter-festival"}, ed, put, 200, "If-Match", "*"))
	c.call("PUT", cfg, []string{"development", "winter-festival"}, ed, `{"variants":[{"key":"a","value":{"xp":9}}],"default_variant":"b","off_variant":"a"}`, 422, "If-Match", etag(got))
	c.call("GET", "/api/v1/environments/{env}/flags", []string{"development"}, vw, nil, 200)

	s = c.call("GET", seg, []string{"development", "beta-testers"}, vw, nil, 200)
	c.call("PUT", seg, []string{"development", "beta-testers"}, ed, c.example("PUT "+seg, "conditions"), 200, "If-Match", etag(s))
	s = c.call("GET", seg, []string{"development", "beta-testers"}, vw, nil, 200)
	wantUnchanged(c.call("PUT", seg, []string{"development", "beta-testers"}, ed, c.example("PUT "+seg, "conditions"), 200, "If-Match", etag(s)))
	c.call("DELETE", seg, []string{"development", "beta-testers"}, ed, nil, 428)
	c.call("DELETE", seg, []string{"development", "beta-testers"}, ed, nil, 409, "If-Match", etag(s)) // still used by winter-festival
	c.call("PUT", seg, []string{"development", "unused"}, ed, `{"members":["p-1"]}`, 201)
	c.call("PUT", seg, []string{"development", "unused"}, ed, `{"members":["p-1","p-2"]}`, 200, "If-Match", "*")
	c.call("PUT", seg, []string{"development", "anyone"}, ed, `{"members":["p-1"]}`, 201, "If-Match", "*")
	s = c.call("GET", seg, []string{"development", "unused"}, vw, nil, 200)
	c.call("DELETE", seg, []string{"development", "unused"}, ed, nil, 204, "If-Match", etag(s))

	// Evaluation.
	eval := "/api/v1/environments/{env}/evaluate"
	c.call("POST", eval, []string{"development"}, vw, c.example("POST "+eval, ""), 200)
	c.call("POST", eval, []string{"development"}, vw, `{"flag":"winter-festival","context":{"targetingKey":"player-1"}}`, 200)
	c.call("POST", eval, []string{"development"}, vw, `{"flag":"winter-festivl","context":{}}`, 200)
	c.call("POST", eval, []string{"development"}, vw, `{"context":{}}`, 422)
	c.call("POST", eval, []string{"nowhere"}, vw, `{"flag":"winter-festival"}`, 404)

	// Promotion: staging gets a rollout without segments, then production.
	got = c.call("GET", cfg, []string{"staging", "winter-festival"}, vw, nil, 200)
	c.call("PUT", cfg, []string{"staging", "winter-festival"}, ed, `{"enabled":true,"variants":[{"key":"control","value":{"event":"none","xp":1}},{"key":"festival","value":{"event":"winter","xp":2}}],
	  "default_variant":"control","off_variant":"control","split":{"bucket_by":"userId","weights":[{"variant":"festival","weight":1000},{"variant":"control","weight":9000}]},"message":"10% festival"}`, 200, "If-Match", etag(got))
	promote := "/api/v1/flags/{key}/promote"
	c.call("POST", promote, []string{"winter-festival"}, ed, c.example("POST "+promote, ""), 200)
	c.call("POST", promote, []string{"winter-festival"}, ed, `{"from":"development","to":"production","dry_run":true}`, 422) // segment missing there
	c.call("POST", promote, []string{"winter-festival"}, ed, `{"from":"staging","to":"production"}`, 403)                    // production is protected
	c.call("POST", promote, []string{"winter-festival"}, ad, `{"from":"development","to":"production"}`, 422)
	c.call("POST", promote, []string{"winter-festival"}, ad, `{"from":"staging","to":"production","expect_revision":99}`, 412)
	c.call("POST", promote, []string{"winter-festival"}, ad, `{"from":"staging","to":"production","message":"Ship it"}`, 201)
	c.call("POST", promote, []string{"winter-festival"}, ad, `{"from":"staging","to":"production"}`, 409)

	// OFREP, with production's server key: winter-festival is split on
	// userId there, double-xp disabled.
	one, all := "/ofrep/v1/evaluate/flags/{key}", "/ofrep/v1/evaluate/flags"
	huge := `{"context":{"targetingKey":"` + strings.Repeat("x", web.DefaultBodyLimit) + `"}}`
	var split struct{ Reason string }
	c.call("POST", one, []string{"winter-festival"}, sk, c.example("POST "+one, "player"), 200).json(t, &split)
	if split.Reason != "SPLIT" {
		t.Errorf("OFREP reason %q for the documented example, want SPLIT", split.Reason)
	}
	c.call("POST", one, []string{"double-xp"}, "", `{}`, 200, "X-API-Key", sk)
	c.call("POST", one, []string{"winter-festivl"}, sk, `{"context":{}}`, 404)
	c.call("POST", one, []string{"winter-festival"}, sk, `{"contxt":{}}`, 400)
	c.call("POST", one, []string{"winter-festival"}, sk, `{"context":"p-42"}`, 400)
	c.call("POST", one, []string{"winter-festival"}, "", `{}`, 401)
	c.call("POST", one, []string{"winter-festival"}, ad, `{}`, 403)
	c.call("POST", one, []string{"winter-festival"}, sk, huge, 413)
	b := c.call("POST", all, nil, sk, c.example("POST "+all, "player"), 200)
	c.call("POST", all, nil, sk, c.example("POST "+all, "player"), 304, "If-None-Match", etag(b))
	c.call("POST", all, nil, sk, `{"context":[]}`, 400)
	c.call("POST", all, nil, "", `{}`, 401)
	c.call("POST", all, nil, ad, `{}`, 403)
	c.call("POST", all, nil, sk, huge, 413)

	// Revisions.
	c.call("GET", "/api/v1/environments/{env}/revisions", []string{"staging"}, vw, nil, 200)
	c.call("GET", "/api/v1/environments/{env}/revisions", []string{"staging", "?limit=x"}, vw, nil, 400)
	c.call("GET", "/api/v1/environments/{env}/revisions/{n}", []string{"staging", "1"}, vw, nil, 200)
	c.call("GET", "/api/v1/environments/{env}/revisions/{n}", []string{"staging", "abc"}, vw, nil, 400)
	c.call("GET", "/api/v1/environments/{env}/revisions/{n}", []string{"staging", "99"}, vw, nil, 404)
	c.call("GET", "/api/v1/environments/{env}/revisions/{n}/diff", []string{"staging", "3"}, vw, nil, 200)
	c.call("GET", "/api/v1/environments/{env}/revisions/{n}/diff", []string{"staging", "3", "?against=0"}, vw, nil, 200)
	revert := "/api/v1/environments/{env}/revisions/{n}/revert"
	c.call("POST", revert, []string{"staging", "2"}, ed, c.example("POST "+revert, ""), 201)
	c.call("POST", revert, []string{"staging", "2"}, ed, nil, 409)
	c.call("POST", revert, []string{"staging", "99"}, ed, nil, 404)

	// Flags as code.
	exp := "/api/v1/environments/{env}/export"
	c.call("GET", exp, []string{"staging"}, vw, nil, 200)
	c.call("GET", exp, []string{"staging", "?format=yaml"}, vw, nil, 200)
	c.call("GET", exp, []string{"staging", "?format=xml"}, vw, nil, 400)
	apply := "/api/v1/environments/{env}/apply"
	doc := c.example("POST "+apply, "staging")
	c.call("POST", apply, []string{"staging", "?dry_run=true"}, ed, doc, 200)
	c.call("POST", apply, []string{"staging", "?dry_run=maybe"}, ed, doc, 400)
	c.call("POST", apply, []string{"production"}, ed, doc, 403)                  // production is protected
	c.call("POST", apply, []string{"production", "?dry_run=true"}, ed, doc, 422) // the document names staging
	c.call("POST", apply, []string{"staging", "?message=Sync%20from%20git"}, ed, doc, 201)
	c.call("POST", apply, []string{"staging"}, ed, doc, 200) // nothing left to change
	c.call("POST", apply, []string{"staging"}, ed, "environment: staging\n", 415, "Content-Type", "application/yaml")

	// Guardrails and incidents, on production's winter-festival (10%
	// festival since the promotion).
	gr := "/api/v1/environments/{env}/flags/{key}/guardrails/{guardrail}"
	rr, ceiling := []string{"production", "winter-festival", "reject-rate"}, []string{"production", "winter-festival", "ceiling"}
	for _, name := range []string{"rejectRate", "ceiling", "retention"} {
		c.validate("the guardrail example "+name, "/components/schemas/GuardrailRule", []byte(c.example("PUT "+gr, name)))
	}
	for ex, schema := range map[string]string{"RejectRateGuardrail": "GuardrailDefinition", "HealthyGuardrail": "GuardrailDetail",
		"TripIncident": "IncidentRecord", "ResumedState": "GuardrailState"} {
		c.validate("the example "+ex, "/components/schemas/"+schema, c.componentExample(ex))
	}
	rule := c.example("PUT "+gr, "rejectRate")
	d := c.call("PUT", gr, rr, ed, rule, 201)
	c.call("PUT", gr, rr, ed, rule, 428)
	c.call("PUT", gr, rr, ed, rule, 409, "If-Match", `"g0"`)
	c.call("PUT", gr, rr, ed, rule, 412, "If-Match", `"g9"`)
	c.call("PUT", gr, rr, ed, rule, 412, "If-Match", `"r1"`)
	d = c.call("PUT", gr, rr, ed, rule, 200, "If-Match", etag(d))
	if etag(d) != `"g2"` {
		t.Errorf("replacing a guardrail answered ETag %s, want \"g2\"", etag(d))
	}
	c.call("PUT", gr, rr, ed, rule, 200, "If-Match", "*")
	c.call("PUT", gr, ceiling, ed, c.example("PUT "+gr, "ceiling"), 201)
	p = c.call("PUT", gr, []string{"production", "winter-festival", "other"}, ed, strings.Replace(rule, `"festival"`, `"winter"`, 1), 422).problem(t)
	if len(p.Errors) != 1 || p.Errors[0].Pointer != "/treatment" {
		t.Errorf("an unknown treatment got errors %+v, want /treatment", p.Errors)
	}
	p = c.call("PUT", gr, []string{"production", "winter-festival", "other"}, ed, `{"metric":{"kind":"reject_rate"},"comparison":{"kind":"relative_to_control","margin":-1},"treatment":"festival","control":"control","tau":2}`, 422).problem(t)
	if got := fmt.Sprint(problemPointers(p)); got != "[/comparison/margin /tau]" {
		t.Errorf("an invalid rule got errors at %s, want /comparison/margin /tau", got)
	}
	c.call("PUT", gr, rr, ed, strings.Replace(rule, "{", `{"key":"other",`, 1), 422, "If-Match", "*")
	c.call("PUT", gr, []string{"production", "winter-festival", "other"}, ed, `{"metric":{"kind":"reject_rate"},"colour":"red"}`, 400)
	c.call("PUT", gr, []string{"production", "winter-festival", "other"}, ed, rule, 415, "Content-Type", "text/plain")
	c.call("PUT", gr, []string{"production", "winter-festival", "other"}, ed, `{"treatment":"`+strings.Repeat("x", web.DefaultBodyLimit)+`"}`, 413)
	c.call("PUT", gr, []string{"production", "nope", "reject-rate"}, ed, rule, 404)
	c.call("PUT", gr, rr, vw, rule, 403)
	c.call("PUT", gr, rr, "", rule, 401)
	c.call("GET", gr, rr, vw, nil, 200)
	c.call("GET", gr, []string{"production", "winter-festival", "nope"}, vw, nil, 404)
	c.call("GET", gr, rr, "", nil, 401)
	c.call("GET", "/api/v1/environments/{env}/guardrails", []string{"production"}, vw, nil, 200)
	c.call("GET", "/api/v1/environments/{env}/guardrails", []string{"nowhere"}, vw, nil, 404)
	c.call("GET", "/api/v1/environments/{env}/flags/{key}/guardrails", []string{"production", "winter-festival"}, vw, nil, 200)
	c.call("GET", "/api/v1/environments/{env}/flags/{key}/guardrails", []string{"staging", "winter-festival"}, vw, nil, 200)
	c.call("GET", "/api/v1/environments/{env}/flags/{key}/guardrails", []string{"production", "nope"}, vw, nil, 404)
	c.call("POST", gr+"/resume", rr, ed, nil, 404) // never evaluated
	g.counters.set(armCounters(g.clock.Now(), 0.1, 100, 100))
	g.tick()
	c.call("GET", gr, rr, vw, nil, 200)
	c.call("POST", gr+"/resume", rr, ed, nil, 409) // not tripped
	g.clock.advance(time.Minute)
	g.counters.set(armCounters(g.clock.Now(), 0.1, 300, 100))
	g.tick()
	c.call("GET", gr, rr, vw, nil, 200)
	c.call("GET", gr+"/series", rr, vw, nil, 200)
	c.call("GET", gr+"/series", []string{"production", "winter-festival", "reject-rate", "?points=5"}, vw, nil, 200)
	c.call("GET", gr+"/series", []string{"production", "winter-festival", "reject-rate", "?points=0"}, vw, nil, 400)
	c.call("GET", gr+"/series", []string{"production", "winter-festival", "nope"}, vw, nil, 404)
	c.call("GET", gr+"/series", rr, "", nil, 401)

	inc := "/api/v1/incidents"
	var incs struct{ Incidents []struct{ Number int64 } }
	c.call("GET", inc, query("unacked=true&environment=production&event=trip"), vw, nil, 200).json(t, &incs)
	if len(incs.Incidents) != 1 {
		t.Fatalf("the trip raised %d incidents, want 1", len(incs.Incidents))
	}
	n := fmt.Sprint(incs.Incidents[0].Number)
	c.call("GET", inc, nil, vw, nil, 200)
	c.call("GET", inc, query("flag=winter-festival&guardrail=reject-rate&event=trip,resume&limit=10&before=99"), vw, nil, 200)
	c.call("GET", inc, query("event=rollback"), vw, nil, 400)
	c.call("GET", inc, query("guardrail=reject-rate"), vw, nil, 400)
	c.call("GET", inc, query("unacked=maybe"), vw, nil, 400)
	c.call("GET", inc, query("environment=nowhere"), vw, nil, 404)
	c.call("GET", inc, nil, "", nil, 401)
	c.call("GET", inc+"/{n}", []string{n}, vw, nil, 200)
	c.call("GET", inc+"/{n}", []string{"999"}, vw, nil, 404)
	c.call("GET", inc+"/{n}", []string{"abc"}, vw, nil, 400)
	c.call("POST", inc+"/{n}/ack", []string{n}, ed, nil, 200)
	c.call("POST", inc+"/{n}/ack", []string{n}, ed, nil, 200)
	c.call("POST", inc+"/{n}/ack", []string{n}, vw, nil, 403)
	c.call("POST", inc+"/{n}/ack", []string{"999"}, ed, nil, 404)
	c.call("POST", inc+"/{n}/ack", []string{"abc"}, ed, nil, 400)
	c.call("POST", inc+"/{n}/resume", []string{n}, vw, nil, 403)
	c.call("POST", inc+"/{n}/resume", []string{n}, ed, nil, 200)
	c.call("POST", inc+"/{n}/resume", []string{n}, ed, nil, 409)
	c.call("POST", inc+"/{n}/resume", []string{"999"}, ed, nil, 404)
	c.call("POST", inc+"/{n}/resume", []string{"abc"}, ed, nil, 400)
	c.call("GET", inc, query("event=resume"), vw, nil, 200)
	g.clock.advance(time.Minute)
	g.tick() // the same harm trips test 2; the rollback is already in force
	c.call("POST", gr+"/resume", rr, ed, nil, 200)
	c.call("POST", gr+"/resume", rr, vw, nil, 403)
	c.call("POST", gr+"/resume", []string{"production", "winter-festival", "nope"}, ed, nil, 404)
	c.call("GET", inc, query("flag=winter-festival"), vw, nil, 200)

	cur := c.call("GET", gr, rr, vw, nil, 200)
	c.call("DELETE", gr, rr, ed, nil, 428)
	c.call("DELETE", gr, rr, ed, nil, 412, "If-Match", `"g1"`)
	c.call("DELETE", gr, rr, vw, nil, 403, "If-Match", etag(cur))
	c.call("DELETE", gr, rr, ed, nil, 204, "If-Match", etag(cur))
	c.call("DELETE", gr, rr, ed, nil, 404, "If-Match", "*")
	c.call("GET", gr, rr, vw, nil, 404)
	c.call("GET", inc+"/{n}", []string{n}, vw, nil, 200) // incidents outlive their guardrail

	// Audit and tokens.
	c.call("GET", "/api/v1/audit", nil, vw, nil, 200)
	c.call("GET", "/api/v1/audit", query("action=flag_config.promote&environment=production"), vw, nil, 200)
	c.call("GET", "/api/v1/audit", query("since=yesterday"), vw, nil, 400)
	c.call("GET", "/api/v1/tokens", nil, ed, nil, 403)
	c.call("GET", "/api/v1/tokens", nil, ad, nil, 200)
	var created struct{ Token struct{ ID string } }
	c.call("POST", "/api/v1/tokens", nil, ad, c.example("POST /api/v1/tokens", "admin"), 201).json(t, &created)
	c.call("POST", "/api/v1/tokens", nil, ad, c.example("POST /api/v1/tokens", "server"), 201)
	c.call("POST", "/api/v1/tokens", nil, ad, `{"name":"gs","kind":"server","environment":"nowhere"}`, 404)
	c.call("POST", "/api/v1/tokens", nil, ad, `{"name":"gs","kind":"server"}`, 422)
	c.call("DELETE", "/api/v1/tokens/{id}", []string{created.Token.ID}, ad, nil, 204)
	c.call("DELETE", "/api/v1/tokens/{id}", []string{created.Token.ID}, ad, nil, 409)
	c.call("DELETE", "/api/v1/tokens/{id}", []string{"tok_nope"}, ad, nil, 404)

	// "schema": null means no schema, at creation and in a PATCH; If-Match: *
	// skips the version check.
	var def struct{ Schema json.RawMessage }
	c.call("POST", "/api/v1/flags", nil, ed, `{"key":"spring-event","type":"object","schema":null,"variants":[{"key":"a","value":{}}]}`, 201).json(t, &def)
	if def.Schema != nil {
		t.Errorf(`created with "schema": null, the flag has schema %s`, def.Schema)
	}
	c.call("PATCH", "/api/v1/flags/{key}", []string{"spring-event"}, ed, `{"schema":{"type":"object"}}`, 200, "If-Match", "*").json(t, &def)
	if def.Schema == nil {
		t.Error("PATCH with a schema and If-Match: * left the flag without one")
	}
	def.Schema = nil
	c.call("PATCH", "/api/v1/flags/{key}", []string{"spring-event"}, ed, c.example("PATCH /api/v1/flags/{key}", "removeSchema"), 200, "If-Match", "*").json(t, &def)
	if def.Schema != nil {
		t.Errorf(`PATCH with "schema": null left schema %s`, def.Schema)
	}
	c.call("DELETE", "/api/v1/flags/{key}", []string{"spring-event"}, ed, nil, 204, "If-Match", "*")

	// Deleting a flag.
	dx := c.call("GET", "/api/v1/flags/{key}", []string{"double-xp"}, vw, nil, 200)
	c.call("DELETE", "/api/v1/flags/{key}", []string{"double-xp"}, ed, nil, 428)
	c.call("DELETE", "/api/v1/flags/{key}", []string{"double-xp"}, ed, nil, 412, "If-Match", `"r1"`)
	c.call("DELETE", "/api/v1/flags/{key}", []string{"double-xp"}, ed, nil, 204, "If-Match", etag(dx))

	exerciseRolloutAPI(t, c)
	for name := range c.ops {
		if !c.exercised[name] {
			t.Errorf("%s is documented but no step of TestOpenAPIContract calls it", name)
		}
	}
}
