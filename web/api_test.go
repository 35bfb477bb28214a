package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/store/storetest"
	"github.com/solsticehq/solstice/web"
)

// harness is a control plane on a real, migrated SQLite database behind a
// real HTTP server, publishing signed snapshots as the binary does.
type harness struct {
	t       *testing.T
	srv     *httptest.Server
	flags   *flags.Service
	auth    *auth.Service
	pub     *snapshot.Publisher
	keyring *snapshot.Keyring
	web     *web.Server
	admin   string // admin token secret
	editor  string
	viewer  string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	db := storetest.Open(t)
	var pub *snapshot.Publisher
	fs := flags.NewService(db, flags.OnRevision(func(ctx context.Context, env string, _ flags.Revision) {
		if _, err := pub.Publish(ctx, env); err != nil {
			t.Errorf("publish %s: %v", env, err)
		}
	}))
	keyring := snapshot.NewKeyring(t.TempDir(), snapshot.WithKeyringLogger(slog.New(slog.DiscardHandler)))
	pub = snapshot.NewPublisher(fs, db, keyring, snapshot.WithLogger(slog.New(slog.DiscardHandler)), snapshot.WithHeads(fs))
	as := auth.NewService(db, nil)
	ctx := context.Background()
	if err := fs.EnsureDefaultEnvironments(ctx); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, flags: fs, auth: as, pub: pub, keyring: keyring}
	for _, r := range []struct {
		role auth.Role
		dst  *string
	}{{auth.RoleAdmin, &h.admin}, {auth.RoleEditor, &h.editor}, {auth.RoleViewer, &h.viewer}} {
		c, err := as.Create(ctx, auth.NewToken{Name: string(r.role) + "-test", Kind: auth.KindAdmin, Role: r.role})
		if err != nil {
			t.Fatal(err)
		}
		*r.dst = c.Secret
	}
	h.web = web.New(web.Deps{Flags: fs, Auth: as, Logger: slog.New(slog.DiscardHandler), Publisher: pub})
	h.srv = httptest.NewServer(h.web)
	t.Cleanup(h.srv.Close)
	return h
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r response) problem(t *testing.T) web.Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, web.ProblemContentType) {
		t.Fatalf("Content-Type = %q, want %s; body %s", ct, web.ProblemContentType, r.body)
	}
	var p web.Problem
	r.json(t, &p)
	if p.Status != r.status || p.Type == "" || p.Title == "" {
		t.Fatalf("malformed problem %+v for status %d", p, r.status)
	}
	return p
}

// do sends a request with the given token and headers (name, value pairs).
// A string body is sent as is, an io.Reader body chunked (net/http cannot
// see its length), anything else as JSON.
func (h *harness) do(method, path, token string, body any, headers ...string) response {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case io.Reader:
		rd = b
	default:
		js, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func (h *harness) want(r response, status int) response {
	h.t.Helper()
	if r.status != status {
		h.t.Fatalf("status = %d, want %d; body: %s", r.status, status, r.body)
	}
	return r
}

const eventSchema = `{"type":"object","required":["event","xp"],"additionalProperties":false,
 "properties":{"event":{"type":"string"},"xp":{"type":"number","minimum":1,"maximum":5},
 "drops":{"type":"array","items":{"type":"object","required":["item","weight"],"properties":{"item":{"type":"string"},"weight":{"type":"integer","minimum":1}}}}}}`

func (h *harness) createEventFlag(key string) {
	h.t.Helper()
	h.want(h.do("POST", "/api/v1/flags", h.editor, fmt.Sprintf(`{"key":%q,"name":"Event","type":"object","schema":%s,
	  "variants":[{"key":"control","value":{"event":"none","xp":1}},{"key":"festival","value":{"event":"winter","xp":2,"drops":[{"item":"globe","weight":3}]}}]}`, key, eventSchema)), http.StatusCreated)
}

func TestAuthentication(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	server, err := h.auth.Create(ctx, auth.NewToken{Name: "gs", Kind: auth.KindServer, Environment: "production"})
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := h.auth.Create(ctx, auth.NewToken{Name: "old", Kind: auth.KindAdmin, Role: auth.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.auth.Revoke(ctx, revoked.Token.ID); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, path, token string
		body                      any
		status                    int
	}{
		{"no token", "GET", "/api/v1/flags", "", nil, 401},
		{"garbage token", "GET", "/api/v1/flags", "nope", nil, 401},
		{"unknown token", "GET", "/api/v1/flags", auth.AdminPrefix + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", nil, 401},
		{"revoked token", "GET", "/api/v1/flags", revoked.Secret, nil, 401},
		{"server key on admin API", "GET", "/api/v1/flags", server.Secret, nil, 403},
		{"viewer reads", "GET", "/api/v1/flags", h.viewer, nil, 200},
		{"viewer cannot write", "POST", "/api/v1/flags", h.viewer, `{"key":"x","type":"boolean"}`, 403},
		{"editor cannot manage tokens", "GET", "/api/v1/tokens", h.editor, nil, 403},
		{"admin manages tokens", "GET", "/api/v1/tokens", h.admin, nil, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.want(h.do(tc.method, tc.path, tc.token, tc.body), tc.status)
			if tc.status >= 400 {
				r.problem(t)
			}
			if tc.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func TestSchemaRejectionStoresNothing(t *testing.T) {
	h := newHarness(t)
	r := h.want(h.do("POST", "/api/v1/flags", h.editor, `{"key":"spring","name":"Spring","type":"object","schema":`+eventSchema+`,
	  "variants":[{"key":"a","value":{"event":"x","xp":1}},{"key":"b","value":{"event":"y","xp":9,"drops":[{"item":"z","weight":0}]}}]}`), 422)
	p := r.problem(t)
	pointers := map[string]bool{}
	for _, e := range p.Errors {
		pointers[e.Pointer] = true
	}
	for _, want := range []string{"/variants/1/value/xp", "/variants/1/value/drops/0/weight"} {
		if !pointers[want] {
			t.Errorf("errors %+v do not name %s", p.Errors, want)
		}
	}
	var list struct{ Flags []flags.Flag }
	h.want(h.do("GET", "/api/v1/flags", h.viewer, nil), 200).json(t, &list)
	if len(list.Flags) != 0 {
		t.Errorf("flags after a rejected create: %+v", list.Flags)
	}
	var revs struct{ Revisions []flags.Revision }
	h.want(h.do("GET", "/api/v1/environments/production/revisions", h.viewer, nil), 200).json(t, &revs)
	if len(revs.Revisions) != 0 {
		t.Errorf("revisions after a rejected create: %+v", revs.Revisions)
	}

	// A valid flag, then an invalid configuration: 422 and the configuration unchanged.
	h.createEventFlag("spring")
	get := h.want(h.do("GET", "/api/v1/environments/staging/flags/spring", h.viewer, nil), 200)
	var fc flags.FlagConfig
	get.json(t, &fc)
	bad := fc.Config
	bad.Variants = append([]flags.Variant(nil), bad.Variants...)
	bad.Variants[1].Value = json.RawMessage(`{"event":"winter","xp":"two"}`)
	r = h.want(h.do("PUT", "/api/v1/environments/staging/flags/spring", h.editor, bad, "If-Match", get.header.Get("ETag")), 422)
	if p := r.problem(t); len(p.Errors) == 0 || p.Errors[0].Pointer != "/variants/1/value/xp" {
		t.Errorf("errors = %+v, want /variants/1/value/xp first", p.Errors)
	}
	after := h.want(h.do("GET", "/api/v1/environments/staging/flags/spring", h.viewer, nil), 200)
	if after.header.Get("ETag") != get.header.Get("ETag") || !bytes.Equal(after.body, get.body) {
		t.Errorf("configuration changed by a rejected PUT:\n%s\n%s", get.body, after.body)
	}
}

func TestOptimisticConcurrency(t *testing.T) {
	h := newHarness(t)
	h.createEventFlag("ev")
	path := "/api/v1/environments/staging/flags/ev"
	get := h.want(h.do("GET", path, h.viewer, nil), 200)
	tag := get.header.Get("ETag")
	var fc flags.FlagConfig
	get.json(t, &fc)
	cfg := fc.Config
	cfg.Enabled = true

	h.want(h.do("PUT", path, h.editor, cfg), 428).problem(t)
	h.want(h.do("PUT", path, h.editor, cfg, "If-Match", `"r999"`), 412).problem(t)
	h.want(h.do("PUT", path, h.editor, cfg, "If-Match", `"v1"`), 412).problem(t)

	// Two editors race from the same ETag: exactly one wins.
	var wg sync.WaitGroup
	statuses := make([]int, 2)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := cfg
			c.DefaultVariant = []string{"control", "festival"}[i]
			statuses[i] = h.do("PUT", path, h.editor, c, "If-Match", tag).status
		}()
	}
	wg.Wait()
	ok, failed := 0, 0
	for _, s := range statuses {
		switch s {
		case 200:
			ok++
		case 412:
			failed++
		}
	}
	if ok != 1 || failed != 1 {
		t.Fatalf("racing PUTs got %v, want one 200 and one 412", statuses)
	}
	now := h.want(h.do("GET", path, h.viewer, nil), 200)
	if now.header.Get("ETag") == tag {
		t.Error("ETag did not change after a successful PUT")
	}
	var cur flags.FlagConfig
	now.json(t, &cur)

	// Writing the same configuration again appends nothing.
	var same struct {
		Changed  bool
		Revision *flags.Revision
	}
	r := h.want(h.do("PUT", path, h.editor, cur.Config, "If-Match", now.header.Get("ETag")), 200)
	r.json(t, &same)
	if same.Changed || same.Revision != nil || r.header.Get("ETag") != now.header.Get("ETag") {
		t.Errorf("identical PUT: changed %v, revision %+v, ETag %s → %s", same.Changed, same.Revision, now.header.Get("ETag"), r.header.Get("ETag"))
	}
	// If-Match: * writes whatever the current version is.
	c := cur.Config
	c.Enabled = !c.Enabled
	h.want(h.do("PUT", path, h.editor, c, "If-Match", "*"), 200).json(t, &same)
	if !same.Changed || same.Revision == nil {
		t.Errorf("PUT with If-Match *: %+v", same)
	}
}

func TestRevisionsAndRevert(t *testing.T) {
	h := newHarness(t)
	h.createEventFlag("ev")
	path := "/api/v1/environments/staging/flags/ev"
	get := h.want(h.do("GET", path, h.viewer, nil), 200)
	var original flags.FlagConfig
	get.json(t, &original)

	cfg := original.Config
	cfg.Enabled = true
	cfg.Split = &flags.Split{BucketBy: "userId", Weights: []flags.Weight{{Variant: "festival", Weight: 1000}, {Variant: "control", Weight: 9000}}}
	var put struct {
		Revision flags.Revision `json:"revision"`
	}
	h.want(h.do("PUT", path, h.editor, map[string]any{"enabled": true, "variants": cfg.Variants, "default_variant": "control",
		"off_variant": "control", "split": cfg.Split, "message": "10% festival"}, "If-Match", get.header.Get("ETag")), 200).json(t, &put)
	if put.Revision.Message != "10% festival" || put.Revision.Author != "token:editor-test" || len(put.Revision.Diff) != 1 {
		t.Errorf("revision = %+v", put.Revision)
	}

	var revs struct{ Revisions []flags.Revision }
	h.want(h.do("GET", "/api/v1/environments/staging/revisions", h.viewer, nil), 200).json(t, &revs)
	if len(revs.Revisions) != 2 || revs.Revisions[0].Number != 2 {
		t.Fatalf("revisions = %+v, want 2 newest first", revs.Revisions)
	}

	var diff struct {
		Changes []struct {
			Key    string
			Fields []flags.FieldChange
		}
	}
	h.want(h.do("GET", "/api/v1/environments/staging/revisions/2/diff", h.viewer, nil), 200).json(t, &diff)
	if len(diff.Changes) != 1 || diff.Changes[0].Key != "ev" {
		t.Fatalf("diff = %+v", diff)
	}
	fields := map[string]bool{}
	for _, f := range diff.Changes[0].Fields {
		fields[f.Pointer] = true
	}
	if !fields["/enabled"] || !fields["/split"] {
		t.Errorf("diff fields %v lack /enabled or /split", fields)
	}

	var rev flags.Revision
	h.want(h.do("POST", "/api/v1/environments/staging/revisions/1/revert", h.editor, `{"message":"undo"}`), 201).json(t, &rev)
	if rev.Number != 3 || rev.Message != "undo" {
		t.Errorf("revert revision = %+v", rev)
	}
	var back flags.FlagConfig
	h.want(h.do("GET", path, h.viewer, nil), 200).json(t, &back)
	if diff := cmp.Diff(original.Config, back.Config); diff != "" {
		t.Errorf("config after revert differs from revision 1 (-want +got):\n%s", diff)
	}
	// Reverting again to the same content changes nothing.
	h.want(h.do("POST", "/api/v1/environments/staging/revisions/1/revert", h.editor, nil), 409).problem(t)
	h.want(h.do("POST", "/api/v1/environments/staging/revisions/99/revert", h.editor, nil), 404).problem(t)
}

func TestEvaluateExplains(t *testing.T) {
	h := newHarness(t)
	h.createEventFlag("ev")
	path := "/api/v1/environments/development/flags/ev"
	get := h.want(h.do("GET", path, h.viewer, nil), 200)
	var fc flags.FlagConfig
	get.json(t, &fc)
	cfg := fc.Config
	cfg.Enabled = true
	cfg.Rules = []flags.Rule{{ID: "vip", Conditions: []flags.Condition{{Attribute: "tier", Op: flags.OpEquals, Value: json.RawMessage(`"vip"`)}}, Variant: "festival"}}
	cfg.Split = &flags.Split{BucketBy: "userId", Weights: []flags.Weight{{Variant: "festival", Weight: 50}, {Variant: "control", Weight: 50}}}
	h.want(h.do("PUT", path, h.editor, cfg, "If-Match", get.header.Get("ETag")), 200)

	type result struct {
		Value       map[string]any
		Variant     string
		Reason      string
		ErrorCode   string `json:"error_code"`
		Explanation struct {
			Text        string
			RuleID      string `json:"rule_id"`
			Bucket      *int64
			TotalWeight int    `json:"total_weight"`
			Missing     string `json:"missing_attribute"`
		}
	}
	eval := func(body string) result {
		var r result
		h.want(h.do("POST", "/api/v1/environments/development/evaluate", h.viewer, body), 200).json(t, &r)
		return r
	}
	vip := eval(`{"flag":"ev","context":{"targetingKey":"p1","tier":"vip"}}`)
	if vip.Reason != "TARGETING_MATCH" || vip.Variant != "festival" || vip.Explanation.RuleID != "vip" || vip.Value["event"] != "winter" {
		t.Errorf("vip = %+v", vip)
	}
	split := eval(`{"flag":"ev","context":{"targetingKey":"p1","userId":"u-7"}}`)
	if split.Reason != "SPLIT" || split.Explanation.Bucket == nil || split.Explanation.TotalWeight != 100 || split.Explanation.Text == "" {
		t.Errorf("split = %+v", split)
	}
	missing := eval(`{"flag":"ev","context":{"targetingKey":"p1"}}`)
	if missing.Reason != "DEFAULT" || missing.Variant != "control" || missing.Explanation.Missing != "userId" {
		t.Errorf("missing = %+v", missing)
	}
	unknown := eval(`{"flag":"nope","context":{}}`)
	if unknown.Reason != "ERROR" || unknown.ErrorCode != "FLAG_NOT_FOUND" {
		t.Errorf("unknown = %+v", unknown)
	}
	h.want(h.do("POST", "/api/v1/environments/nowhere/evaluate", h.viewer, `{"flag":"ev"}`), 404).problem(t)
}

func TestBadRequests(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name, method, path, body string
		status                   int
		pointer                  string
	}{
		{"unknown field", "POST", "/api/v1/flags", `{"key":"a","type":"boolean","colour":"red"}`, 400, "/colour"},
		{"malformed JSON", "POST", "/api/v1/flags", `{"key":`, 400, ""},
		{"wrong type", "POST", "/api/v1/flags", `{"key":7,"type":"boolean"}`, 400, "/key"},
		{"empty body", "POST", "/api/v1/flags", ``, 400, ""},
		{"two documents", "POST", "/api/v1/flags", `{"key":"a","type":"boolean"}{}`, 400, ""},
		{"bad key", "POST", "/api/v1/flags", `{"key":"Not Valid!","type":"boolean"}`, 422, "/key"},
		{"bad type", "POST", "/api/v1/flags", `{"key":"a","type":"list"}`, 422, "/type"},
		{"too large", "POST", "/api/v1/flags", `{"key":"a","type":"boolean","description":"` + strings.Repeat("x", 3<<20) + `"}`, 413, ""},
		{"unknown flag", "GET", "/api/v1/flags/nope", ``, 404, ""},
		{"unknown environment", "GET", "/api/v1/environments/nope/flags", ``, 404, ""},
		{"unknown route", "GET", "/api/v1/nothing-here", ``, 404, ""},
		{"bad revision number", "GET", "/api/v1/environments/staging/revisions/abc", ``, 400, ""},
		{"bad audit time", "GET", "/api/v1/audit?since=yesterday", ``, 400, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			} else if tc.method == "POST" {
				body = " "
			}
			p := h.want(h.do(tc.method, tc.path, h.admin, body), tc.status).problem(t)
			if tc.pointer != "" {
				found := false
				for _, e := range p.Errors {
					found = found || e.Pointer == tc.pointer
				}
				if !found {
					t.Errorf("errors %+v do not name %s", p.Errors, tc.pointer)
				}
			}
		})
	}
	var list struct{ Flags []flags.Flag }
	h.want(h.do("GET", "/api/v1/flags", h.viewer, nil), 200).json(t, &list)
	if len(list.Flags) != 0 {
		t.Errorf("bad requests created flags: %+v", list.Flags)
	}
}

func TestFlagDefinitionLifecycle(t *testing.T) {
	h := newHarness(t)
	h.createEventFlag("ev")
	get := h.want(h.do("GET", "/api/v1/flags/ev", h.viewer, nil), 200)
	if get.header.Get("ETag") != `"v1"` {
		t.Fatalf("ETag = %q", get.header.Get("ETag"))
	}
	h.want(h.do("PATCH", "/api/v1/flags/ev", h.editor, `{"name":"Winter event"}`), 428)
	upd := h.want(h.do("PATCH", "/api/v1/flags/ev", h.editor, `{"name":"Winter event","tags":["seasonal"]}`, "If-Match", `"v1"`), 200)
	var f flags.Flag
	upd.json(t, &f)
	if f.Name != "Winter event" || f.Version != 2 || upd.header.Get("ETag") != `"v2"` {
		t.Errorf("updated flag = %+v, ETag %s", f, upd.header.Get("ETag"))
	}
	// A schema that rejects existing values is refused, naming each value.
	p := h.want(h.do("PATCH", "/api/v1/flags/ev", h.editor, `{"schema":{"type":"object","properties":{"xp":{"maximum":1}}}}`, "If-Match", `"v2"`), 422).problem(t)
	if len(p.Errors) == 0 || !strings.HasPrefix(p.Errors[0].Pointer, "/environments/") {
		t.Errorf("errors = %+v", p.Errors)
	}
	// JSON null removes the schema.
	var plain flags.Flag
	h.want(h.do("PATCH", "/api/v1/flags/ev", h.editor, `{"schema":null}`, "If-Match", `"v2"`), 200).json(t, &plain)
	if plain.Schema != nil || plain.Version != 3 {
		t.Errorf("after removing the schema: %+v", plain)
	}
	var noSchema flags.Flag
	h.want(h.do("POST", "/api/v1/flags", h.editor, `{"key":"plain","type":"object","schema":null,"variants":[{"key":"a","value":{}}]}`), 201).json(t, &noSchema)
	if noSchema.Schema != nil {
		t.Errorf("schema null stored as %s", noSchema.Schema)
	}
	var tagged struct{ Flags []flags.Flag }
	h.want(h.do("GET", "/api/v1/flags?tag=seasonal", h.viewer, nil), 200).json(t, &tagged)
	if len(tagged.Flags) != 1 {
		t.Errorf("tag filter = %+v", tagged.Flags)
	}
	h.want(h.do("DELETE", "/api/v1/flags/ev", h.editor, nil, "If-Match", `"v1"`), 412)
	h.want(h.do("DELETE", "/api/v1/flags/ev", h.editor, nil, "If-Match", `"v3"`), 204)
	h.want(h.do("GET", "/api/v1/flags/ev", h.viewer, nil), 404)
	h.want(h.do("GET", "/api/v1/environments/staging/flags/ev", h.viewer, nil), 404)
	h.want(h.do("POST", "/api/v1/flags", h.editor, `{"key":"ev","type":"boolean"}`), 201)
	h.want(h.do("POST", "/api/v1/flags", h.editor, `{"key":"ev","type":"boolean"}`), 409).problem(t)
}

func TestSegmentsAndPromotion(t *testing.T) {
	h := newHarness(t)
	h.createEventFlag("ev")
	seg := `{"name":"Beta","members":["p1","p2"]}`
	h.want(h.do("PUT", "/api/v1/environments/staging/segments/beta", h.editor, seg), 201)
	h.want(h.do("PUT", "/api/v1/environments/staging/segments/beta", h.editor, seg), 428)
	get := h.want(h.do("GET", "/api/v1/environments/staging/segments/beta", h.viewer, nil), 200)
	h.want(h.do("PUT", "/api/v1/environments/staging/segments/beta", h.editor, `{"members":["p1","p2","p3"]}`, "If-Match", get.header.Get("ETag")), 200)
	h.want(h.do("PUT", "/api/v1/environments/staging/segments/beta", h.editor, `{"key":"other"}`, "If-Match", `"r1"`), 422)

	cfgGet := h.want(h.do("GET", "/api/v1/environments/staging/flags/ev", h.viewer, nil), 200)
	var fc flags.FlagConfig
	cfgGet.json(t, &fc)
	cfg := fc.Config
	cfg.Enabled = true
	cfg.Rules = []flags.Rule{{ID: "beta", Conditions: []flags.Condition{{Op: flags.OpInSegment, Segment: "beta"}}, Variant: "festival"}}
	h.want(h.do("PUT", "/api/v1/environments/staging/flags/ev", h.editor, cfg, "If-Match", cfgGet.header.Get("ETag")), 200)

	segNow := h.want(h.do("GET", "/api/v1/environments/staging/segments/beta", h.viewer, nil), 200)
	p := h.want(h.do("DELETE", "/api/v1/environments/staging/segments/beta", h.editor, nil, "If-Match", segNow.header.Get("ETag")), 409).problem(t)
	if !strings.Contains(p.Detail, "ev") {
		t.Errorf("conflict detail %q does not name the flag", p.Detail)
	}

	// Promotion to production fails (dry run included) while the segment is
	// missing there, then succeeds.
	h.want(h.do("POST", "/api/v1/flags/ev/promote", h.editor, `{"from":"staging","to":"production","dry_run":true}`), 422).problem(t)
	h.want(h.do("POST", "/api/v1/flags/ev/promote", h.admin, `{"from":"staging","to":"production"}`), 422).problem(t)
	// Production is protected: an editor token cannot change it directly
	// (in the UI the change would become a change request); an admin token
	// can, audited under its name.
	p = h.want(h.do("PUT", "/api/v1/environments/production/segments/beta", h.editor, seg), 403).problem(t)
	if !strings.Contains(p.Detail, "protected") {
		t.Errorf("403 detail %q does not say production is protected", p.Detail)
	}
	h.want(h.do("POST", "/api/v1/flags/ev/promote", h.editor, `{"from":"staging","to":"production"}`), 403).problem(t)
	h.want(h.do("PUT", "/api/v1/environments/production/segments/beta", h.admin, seg), 201)
	var plan flags.Promotion
	h.want(h.do("POST", "/api/v1/flags/ev/promote", h.editor, `{"from":"staging","to":"production","dry_run":true}`), 200).json(t, &plan)
	if !plan.DryRun || plan.Revision != nil || len(plan.Changes) == 0 {
		t.Errorf("dry run = %+v", plan)
	}
	h.want(h.do("POST", "/api/v1/flags/ev/promote", h.admin, `{"from":"staging","to":"production"}`), 201).json(t, &plan)
	if plan.Revision == nil || plan.Revision.Environment != "production" {
		t.Errorf("promotion = %+v", plan)
	}
	var prod flags.FlagConfig
	h.want(h.do("GET", "/api/v1/environments/production/flags/ev", h.viewer, nil), 200).json(t, &prod)
	if diff := cmp.Diff(cfg, prod.Config); diff != "" {
		t.Errorf("production after promotion (-want +got):\n%s", diff)
	}
	h.want(h.do("POST", "/api/v1/flags/ev/promote", h.admin, `{"from":"staging","to":"production"}`), 409)
	var audit struct{ Entries []solstice.AuditEntry }
	h.want(h.do("GET", "/api/v1/audit?action=flag_config.promote&environment=production", h.viewer, nil), 200).json(t, &audit)
	if len(audit.Entries) != 1 || !strings.HasPrefix(audit.Entries[0].Actor.Name, "token:") {
		t.Errorf("promotion audit = %+v, want one entry by the admin token", audit.Entries)
	}
}

func TestAuditAndExportApply(t *testing.T) {
	h := newHarness(t)
	h.createEventFlag("ev")
	var audit struct{ Entries []solstice.AuditEntry }
	h.want(h.do("GET", "/api/v1/audit?action=flag.create", h.viewer, nil), 200).json(t, &audit)
	if len(audit.Entries) != 1 || audit.Entries[0].Actor.Name != "token:editor-test" || audit.Entries[0].Actor.Address == "" {
		t.Fatalf("audit = %+v", audit.Entries)
	}

	exp := h.want(h.do("GET", "/api/v1/environments/staging/export", h.viewer, nil), 200)
	var doc flags.Document
	exp.json(t, &doc)
	if len(doc.Flags) != 1 {
		t.Fatalf("export = %s", exp.body)
	}
	doc.Flags[0].Enabled = true
	doc.Flags = append(doc.Flags, flags.DocumentFlag{Key: "new-one", Type: flags.TypeBoolean, Config: flags.Config{
		Enabled: true, Variants: flags.DefaultBooleanVariants(), DefaultVariant: "on", OffVariant: "off"}})
	var plan flags.Plan
	h.want(h.do("POST", "/api/v1/environments/staging/apply?dry_run=true", h.editor, doc), 200).json(t, &plan)
	if !plan.DryRun || len(plan.Objects) != 2 || len(plan.Definitions) != 1 {
		t.Fatalf("dry run plan = %+v", plan)
	}
	h.want(h.do("GET", "/api/v1/flags/new-one", h.viewer, nil), 404)
	h.want(h.do("POST", "/api/v1/environments/staging/apply", h.editor, doc), 201).json(t, &plan)
	if plan.Revision == nil {
		t.Fatalf("apply plan = %+v", plan)
	}
	var prod flags.FlagConfig
	h.want(h.do("GET", "/api/v1/environments/production/flags/new-one", h.viewer, nil), 200).json(t, &prod)
	if prod.Config.Enabled {
		t.Error("a flag created by apply is enabled outside the target environment")
	}
	// Applying the same document again changes nothing.
	var again flags.Plan
	h.want(h.do("POST", "/api/v1/environments/staging/apply", h.editor, doc), 200).json(t, &again)
	if !again.Empty() || again.Revision != nil {
		t.Errorf("second apply = %+v", again)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	h := newHarness(t)
	h.want(h.do("GET", "/healthz", "", nil), 200)
	h.want(h.do("GET", "/readyz", "", nil), 200)
	h.do("GET", "/api/v1/flags", h.viewer, nil)
	m := h.want(h.do("GET", "/metrics", "", nil), 200)
	if !strings.Contains(string(m.body), `solstice_http_requests_total{code="200",method="GET",route="/api/v1/flags"}`) {
		t.Errorf("metrics lack the request counter:\n%.2000s", m.body)
	}
}

func TestChunkedBodyOverLimit(t *testing.T) {
	h := newHarness(t)
	body := io.MultiReader(strings.NewReader(`{"key":"a","type":"boolean","description":"`), strings.NewReader(strings.Repeat("x", 3<<20)), strings.NewReader(`"}`))
	h.want(h.do("POST", "/api/v1/flags", h.editor, body), http.StatusRequestEntityTooLarge).problem(t)
}
