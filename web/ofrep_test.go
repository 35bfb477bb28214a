package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/snapshot/snapshottest"
)

// ofrepClient is a minimal OFREP client written from the OFREP OpenAPI
// document (open-feature/protocol service/openapi.yaml) and from what the
// OpenFeature OFREP providers send: POST to /ofrep/v1/evaluate/flags/{key}
// or /ofrep/v1/evaluate/flags, Content-Type: application/json, the key as
// Authorization: Bearer or X-API-Key, the body {"context": {...}} with the
// targeting key under "targetingKey", and If-None-Match with the last ETag
// when polling the bulk endpoint.
type ofrepClient struct {
	h    *harness
	cred []string // credential header name and value; nil for none
}

func (h *harness) ofrepBearer(key string) ofrepClient {
	return ofrepClient{h: h, cred: []string{"Authorization", "Bearer " + key}}
}

func (h *harness) ofrepAPIKey(key string) ofrepClient {
	return ofrepClient{h: h, cred: []string{"X-API-Key", key}}
}

// post sends body as is; headers (name, value pairs) are set after the
// defaults, and an empty value removes the header.
func (c ofrepClient) post(path string, body []byte, headers ...string) response {
	c.h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.h.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		c.h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	headers = append(slices.Clone(c.cred), headers...)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.h.t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	if cerr := res.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		c.h.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func evaluationRequest(t *testing.T, evalCtx map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"context": evalCtx})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// evaluate is the single-flag evaluation a server provider makes.
func (c ofrepClient) evaluate(key string, evalCtx map[string]any) (response, ofrepResult) {
	c.h.t.Helper()
	r := c.post("/ofrep/v1/evaluate/flags/"+key, evaluationRequest(c.h.t, evalCtx))
	return r, r.ofrep(c.h.t)
}

// bulk is the bulk evaluation a client provider polls, with the ETag it
// holds ("" for none).
func (c ofrepClient) bulk(evalCtx map[string]any, etag string) (response, map[string]ofrepResult) {
	c.h.t.Helper()
	r := c.post("/ofrep/v1/evaluate/flags", evaluationRequest(c.h.t, evalCtx), "If-None-Match", etag)
	if r.status != http.StatusOK {
		return r, nil
	}
	var body struct{ Flags []ofrepResult }
	r.json(c.h.t, &body)
	byKey := make(map[string]ofrepResult, len(body.Flags))
	for _, f := range body.Flags {
		byKey[f.Key] = f
	}
	return r, byKey
}

// ofrepResult is an evaluation success or failure, as the spec's schemas
// name their members.
type ofrepResult struct {
	Key          string          `json:"key"`
	Value        json.RawMessage `json:"value"`
	Reason       string          `json:"reason"`
	Variant      string          `json:"variant"`
	Metadata     map[string]any  `json:"metadata"`
	ErrorCode    string          `json:"errorCode"`
	ErrorDetails string          `json:"errorDetails"`
}

// ofrep decodes an OFREP answer, which must be application/json whatever
// its status (304 has no body).
func (r response) ofrep(t *testing.T) ofrepResult {
	t.Helper()
	var out ofrepResult
	if r.status == http.StatusNotModified {
		return out
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q, want application/json; body %s", ct, r.body)
	}
	r.json(t, &out)
	return out
}

// loadOFREPFlags applies a document covering every flag type and reason to
// env, with chat enabled or not.
func (h *harness) loadOFREPFlags(env string, chat bool) {
	h.t.Helper()
	v := func(key string, value any) flags.Variant {
		b, err := json.Marshal(value)
		if err != nil {
			h.t.Fatal(err)
		}
		return flags.Variant{Key: key, Value: b}
	}
	static := func(key string, t flags.Type, on, off any) flags.DocumentFlag {
		return flags.DocumentFlag{Key: key, Type: t, Config: flags.Config{Enabled: true,
			Variants: []flags.Variant{v("on", on), v("off", off)}, DefaultVariant: "on", OffVariant: "off"}}
	}
	chatFlag := static("chat", flags.TypeBoolean, true, false)
	chatFlag.Enabled = chat
	shop := static("shop-v2", flags.TypeBoolean, true, false)
	shop.Enabled = false
	pvp := static("pvp", flags.TypeBoolean, true, false)
	pvp.DefaultVariant = "off"
	pvp.Rules = []flags.Rule{{ID: "eu", Conditions: []flags.Condition{{Attribute: "country", Op: flags.OpIn, Value: json.RawMessage(`["DE","FR"]`)}}, Variant: "on"}}
	lounge := static("vip-lounge", flags.TypeBoolean, true, false)
	lounge.DefaultVariant = "off"
	lounge.Rules = []flags.Rule{{Conditions: []flags.Condition{{Op: flags.OpInSegment, Segment: "vips"}}, Variant: "on"}}
	matchmaker := static("matchmaker", flags.TypeString, "elo", "classic")
	matchmaker.DefaultVariant = "off"
	matchmaker.Split = &flags.Split{Weights: []flags.Weight{{Variant: "on", Weight: 50}, {Variant: "off", Weight: 50}}}
	seasonXP := static("season-xp", flags.TypeNumber, 1.5, 1)
	seasonXP.DefaultVariant = "off"
	seasonXP.Split = &flags.Split{BucketBy: "userId", Weights: []flags.Weight{{Variant: "on", Weight: 10}, {Variant: "off", Weight: 90}}}
	doc := flags.Document{Environment: env, Flags: []flags.DocumentFlag{
		chatFlag, shop, pvp, lounge, matchmaker, seasonXP,
		static("greeting", flags.TypeString, "hello", "bye"),
		static("party-size", flags.TypeNumber, 4, 2),
		static("drop-rate", flags.TypeNumber, 0.35, 0.1),
		static("winter-event", flags.TypeObject,
			map[string]any{"event": "winter", "xp": 2, "drops": []any{map[string]any{"item": "globe", "weight": 3}}, "banner": "<b>Snow & Ice</b>"},
			map[string]any{"event": "none"}),
	}, Segments: []flags.Segment{{Key: "vips", Members: []string{"p-vip"}}}}
	ctx := solstice.WithActor(context.Background(), solstice.System("test"))
	if _, err := h.flags.Apply(ctx, env, doc, flags.ApplyOptions{Message: "OFREP flags"}); err != nil {
		h.t.Fatalf("load flags into %s: %v", env, err)
	}
}

// ofrepFlagKeys are the flags loadOFREPFlags loads, sorted.
var ofrepFlagKeys = []string{"chat", "drop-rate", "greeting", "matchmaker", "party-size", "pvp", "season-xp", "shop-v2", "vip-lounge", "winter-event"}

func (h *harness) revision(env string) int64 {
	h.t.Helper()
	c, err := h.flags.Compiled(context.Background(), env)
	if err != nil {
		h.t.Fatal(err)
	}
	return c.Revision()
}

func TestOFREPEvaluatesEveryType(t *testing.T) {
	h := newHarness(t)
	h.loadOFREPFlags("staging", true)
	key := h.newServerKey("staging")
	wantMeta := map[string]any{"flagSetId": "staging", "version": strconv.FormatInt(h.revision("staging"), 10)}
	player := map[string]any{"targetingKey": "p-1", "country": "US"}
	tests := []struct {
		flag    string
		evalCtx map[string]any
		value   string // the value's exact JSON
		reason  string
		variant string
	}{
		{"chat", player, `true`, "STATIC", "on"},
		{"greeting", player, `"hello"`, "STATIC", "on"},
		{"party-size", player, `4`, "STATIC", "on"},
		{"drop-rate", player, `0.35`, "STATIC", "on"},
		{"winter-event", player, `{"banner":"\u003cb\u003eSnow \u0026 Ice\u003c/b\u003e","drops":[{"item":"globe","weight":3}],"event":"winter","xp":2}`, "STATIC", "on"},
		{"shop-v2", player, `false`, "DISABLED", "off"},
		{"pvp", map[string]any{"targetingKey": "p-1", "country": "FR"}, `true`, "TARGETING_MATCH", "on"},
		{"pvp", player, `false`, "DEFAULT", "off"},
		{"vip-lounge", map[string]any{"targetingKey": "p-vip"}, `true`, "TARGETING_MATCH", "on"},
		{"matchmaker", player, ``, "SPLIT", ""}, // value and variant: whichever the bucket says
		{"season-xp", player, `1`, "DEFAULT", "off"},
	}
	for _, client := range []struct {
		name string
		c    ofrepClient
	}{{"bearer", h.ofrepBearer(key)}, {"X-API-Key", h.ofrepAPIKey(key)}} {
		for _, tc := range tests {
			t.Run(client.name+"/"+tc.flag+"/"+tc.reason, func(t *testing.T) {
				r, got := client.c.evaluate(tc.flag, tc.evalCtx)
				h.want(r, http.StatusOK)
				if got.Key != tc.flag || got.Reason != tc.reason || got.ErrorCode != "" {
					t.Errorf("got %+v, want key %s reason %s", got, tc.flag, tc.reason)
				}
				if tc.value != "" && (string(got.Value) != tc.value || got.Variant != tc.variant) {
					t.Errorf("value %s variant %q, want %s %q", got.Value, got.Variant, tc.value, tc.variant)
				}
				if diff := cmp.Diff(wantMeta, got.Metadata); diff != "" {
					t.Errorf("metadata (-want +got):\n%s", diff)
				}
			})
		}
	}
	// The split serves a variant with its value, the same one every time.
	_, a := h.ofrepBearer(key).evaluate("matchmaker", player)
	_, b := h.ofrepBearer(key).evaluate("matchmaker", player)
	if want := map[string]string{"on": `"elo"`, "off": `"classic"`}[a.Variant]; string(a.Value) != want || cmp.Diff(a, b) != "" {
		t.Errorf("split answers %+v then %+v", a, b)
	}
	// Decoded as the Go provider decodes numbers, the integer is an integer.
	_, size := h.ofrepBearer(key).evaluate("party-size", player)
	var n any
	if err := json.Unmarshal(size.Value, &n); err != nil || n != 4.0 {
		t.Errorf("party-size decodes to %v (%v)", n, err)
	}
}

func TestOFREPErrors(t *testing.T) {
	h := newHarness(t)
	h.loadOFREPFlags("staging", true)
	ctx := context.Background()
	key := h.newServerKey("staging")
	revoked, err := h.auth.Create(ctx, auth.NewToken{Name: "old", Kind: auth.KindServer, Environment: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.auth.Revoke(ctx, revoked.Token.ID); err != nil {
		t.Fatal(err)
	}
	const flagPath, bulkPath = "/ofrep/v1/evaluate/flags/matchmaker", "/ofrep/v1/evaluate/flags"
	valid := `{"context":{"targetingKey":"p-1"}}`
	tests := []struct {
		name, path string
		cred       ofrepClient
		body       string
		headers    []string
		status     int
		code       string
	}{
		{"flag not found", "/ofrep/v1/evaluate/flags/nope", h.ofrepBearer(key), valid, nil, 404, "FLAG_NOT_FOUND"},
		{"targeting key missing", flagPath, h.ofrepBearer(key), `{"context":{"country":"DE"}}`, nil, 400, "TARGETING_KEY_MISSING"},
		{"no context at all", flagPath, h.ofrepBearer(key), `{}`, nil, 400, "TARGETING_KEY_MISSING"},
		{"targeting key cannot be bucketed", flagPath, h.ofrepBearer(key), `{"context":{"targetingKey":true}}`, nil, 400, "INVALID_CONTEXT"},
		{"context is an array", flagPath, h.ofrepBearer(key), `{"context":["p-1"]}`, nil, 400, "INVALID_CONTEXT"},
		{"context is a string", bulkPath, h.ofrepBearer(key), `{"context":"p-1"}`, nil, 400, "INVALID_CONTEXT"},
		{"body too large", flagPath, h.ofrepBearer(key), `{"context":{"targetingKey":"` + strings.Repeat("x", 70<<10) + `"}}`, nil, 400, "INVALID_CONTEXT"},
		{"malformed JSON", flagPath, h.ofrepBearer(key), `{"context":`, nil, 400, "PARSE_ERROR"},
		{"malformed JSON, bulk", bulkPath, h.ofrepBearer(key), `{"context":{]}`, nil, 400, "PARSE_ERROR"},
		{"empty body", flagPath, h.ofrepBearer(key), ``, nil, 400, "PARSE_ERROR"},
		{"body not an object", bulkPath, h.ofrepBearer(key), `[]`, nil, 400, "PARSE_ERROR"},
		{"misspelt context", flagPath, h.ofrepBearer(key), `{"contxt":{"targetingKey":"p-1"}}`, nil, 400, "PARSE_ERROR"},
		{"two documents", flagPath, h.ofrepBearer(key), valid + `{}`, nil, 400, "PARSE_ERROR"},
		{"trailing brace", flagPath, h.ofrepBearer(key), valid + `}`, nil, 400, "PARSE_ERROR"},
		{"not JSON", flagPath, h.ofrepBearer(key), valid, []string{"Content-Type", "text/plain"}, 400, "PARSE_ERROR"},
		{"no key", flagPath, ofrepClient{h: h}, valid, nil, 401, "GENERAL"},
		{"no key, bulk", bulkPath, ofrepClient{h: h}, valid, nil, 401, "GENERAL"},
		{"unknown key", flagPath, h.ofrepAPIKey(auth.ServerPrefix + "nope"), valid, nil, 401, "GENERAL"},
		{"revoked key", bulkPath, h.ofrepBearer(revoked.Secret), valid, nil, 401, "GENERAL"},
		{"admin token", flagPath, h.ofrepBearer(h.admin), valid, nil, 403, "GENERAL"},
		{"admin token, bulk", bulkPath, h.ofrepAPIKey(h.admin), valid, nil, 403, "GENERAL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.want(tc.cred.post(tc.path, []byte(tc.body), tc.headers...), tc.status)
			got := r.ofrep(t)
			if got.ErrorCode != tc.code || got.ErrorDetails == "" || got.Value != nil {
				t.Errorf("body %s, want errorCode %s with details", r.body, tc.code)
			}
			// evaluationFailure and flagNotFound name the flag; bulkEvaluationFailure names none.
			if wantKey := strings.TrimPrefix(strings.TrimPrefix(tc.path, bulkPath), "/"); got.Key != wantKey {
				t.Errorf("key = %q, want %q", got.Key, wantKey)
			}
			if tc.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

// TestOFREPLenientWhereClientsNeedIt: requests real providers send are read.
func TestOFREPLenientWhereClientsNeedIt(t *testing.T) {
	h := newHarness(t)
	h.loadOFREPFlags("staging", true)
	c := h.ofrepBearer(h.newServerKey("staging"))
	tests := []struct {
		name, body string
		headers    []string
	}{
		{"no Content-Type (Go bulk provider)", `{"context":{"targetingKey":"p-1"}}`, []string{"Content-Type", ""}},
		{"charset (JS providers)", `{"context":{"targetingKey":"p-1"}}`, []string{"Content-Type", "application/json; charset=utf-8"}},
		{"no context (JS providers)", `{}`, nil},
		{"null context (Go provider, nil map)", `{"context":null}`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.want(c.post("/ofrep/v1/evaluate/flags/chat?ignored=1", []byte(tc.body), tc.headers...), 200)
			if got := r.ofrep(t); string(got.Value) != "true" {
				t.Errorf("chat = %s", r.body)
			}
			h.want(c.post("/ofrep/v1/evaluate/flags", []byte(tc.body), tc.headers...), 200)
		})
	}
}

// TestOFREPKeyScopesEnvironment: the environment is the key's; a key never
// sees another environment's configuration.
func TestOFREPKeyScopesEnvironment(t *testing.T) {
	h := newHarness(t)
	h.loadOFREPFlags("staging", true)
	h.loadOFREPFlags("production", false)
	staging, production := h.ofrepBearer(h.newServerKey("staging")), h.ofrepAPIKey(h.newServerKey("production"))
	player := map[string]any{"targetingKey": "p-1"}

	_, s := staging.evaluate("chat", player)
	_, p := production.evaluate("chat", player)
	if s.Reason != "STATIC" || string(s.Value) != "true" || s.Metadata["flagSetId"] != "staging" {
		t.Errorf("staging key: %+v", s)
	}
	if p.Reason != "DISABLED" || string(p.Value) != "false" || p.Metadata["flagSetId"] != "production" {
		t.Errorf("production key: %+v", p)
	}
	sr, sb := staging.bulk(player, "")
	_, pb := production.bulk(player, "")
	if sb["chat"].Reason != "STATIC" || pb["chat"].Reason != "DISABLED" {
		t.Errorf("bulk chat: staging %+v, production %+v", sb["chat"], pb["chat"])
	}
	// A tag of one environment is not a tag of the other.
	h.want(production.post("/ofrep/v1/evaluate/flags", evaluationRequest(t, player), "If-None-Match", sr.header.Get("ETag")), 200)
}

func TestOFREPBulkETag(t *testing.T) {
	h := newHarness(t)
	h.loadOFREPFlags("staging", true)
	c := h.ofrepBearer(h.newServerKey("staging"))
	player := map[string]any{"country": "DE", "userId": "u-3"}

	r, got := c.bulk(player, "")
	h.want(r, 200)
	tag := r.header.Get("ETag")
	if !strings.HasPrefix(tag, `"r`) || !strings.HasSuffix(tag, `"`) {
		t.Fatalf("ETag = %q", tag)
	}
	var order struct{ Flags []ofrepResult }
	r.json(t, &order)
	keys := make([]string, len(order.Flags))
	for i, f := range order.Flags {
		keys[i] = f.Key
	}
	if !slices.Equal(keys, ofrepFlagKeys) {
		t.Errorf("bulk flags %v, want %v", keys, ofrepFlagKeys)
	}
	// Without a targeting key the split fails and everything else succeeds.
	if mm := got["matchmaker"]; mm.ErrorCode != "TARGETING_KEY_MISSING" || mm.ErrorDetails == "" || mm.Value != nil || mm.Reason != "" {
		t.Errorf("matchmaker = %+v", mm)
	}
	if pvp := got["pvp"]; pvp.Reason != "TARGETING_MATCH" || string(pvp.Value) != "true" || pvp.Metadata["flagSetId"] != "staging" {
		t.Errorf("pvp = %+v", pvp)
	}

	notModified := func(ifNoneMatch string, evalCtx map[string]any) {
		t.Helper()
		r := h.want(c.post("/ofrep/v1/evaluate/flags", evaluationRequest(t, evalCtx), "If-None-Match", ifNoneMatch), 304)
		if r.header.Get("ETag") != tag || len(r.body) != 0 {
			t.Errorf("304: ETag %q, body %q", r.header.Get("ETag"), r.body)
		}
	}
	notModified(tag, player)
	notModified("W/"+tag, player)
	notModified(`"other", `+tag, player)
	// The same context written differently is the same context.
	h.want(c.post("/ofrep/v1/evaluate/flags", []byte(`{ "context" : {"userId":"u-3",  "country":"DE"} }`), "If-None-Match", tag), 304)

	// Another context is another answer.
	r2, _ := c.bulk(map[string]any{"country": "JP", "userId": "u-3"}, tag)
	h.want(r2, 200)
	if r2.header.Get("ETag") == tag {
		t.Error("two contexts share an ETag")
	}

	// A change is a new revision: the old tag no longer matches.
	h.toggle("staging", "chat")
	r3, after := c.bulk(player, tag)
	h.want(r3, 200)
	if r3.header.Get("ETag") == tag || after["chat"].Reason != "DISABLED" || string(after["chat"].Value) != "false" {
		t.Errorf("after a change: ETag %s (was %s), chat %+v", r3.header.Get("ETag"), tag, after["chat"])
	}
	if v := after["chat"].Metadata["version"]; v != strconv.FormatInt(h.revision("staging"), 10) {
		t.Errorf("metadata version %v after the change", v)
	}
	notModifiedAfter := h.want(c.post("/ofrep/v1/evaluate/flags", evaluationRequest(t, player), "If-None-Match", r3.header.Get("ETag")), 304)
	if notModifiedAfter.header.Get("ETag") != r3.header.Get("ETag") {
		t.Errorf("304 ETag %q, want %q", notModifiedAfter.header.Get("ETag"), r3.header.Get("ETag"))
	}
}

// TestOFREPAgreesWithEvaluate compares OFREP, single and bulk, with the admin
// API's evaluate endpoint for random contexts: same value, variant and
// reason, and an OFREP failure exactly where evaluation reports an error.
func TestOFREPAgreesWithEvaluate(t *testing.T) {
	h := newHarness(t)
	h.loadOFREPFlags("staging", true)
	c := h.ofrepAPIKey(h.newServerKey("staging"))
	rng := rand.New(rand.NewPCG(4, 3))
	pick := func(vs ...any) any { return vs[rng.IntN(len(vs))] }
	absent := struct{}{}
	for i := range 25 {
		evalCtx := map[string]any{}
		for attr, v := range map[string]any{
			"targetingKey": pick(absent, fmt.Sprintf("p-%d", rng.IntN(1000)), "p-vip", float64(rng.IntN(1000)), true, ""),
			"country":      pick(absent, "DE", "FR", "US", "JP", 49.0),
			"userId":       pick(absent, fmt.Sprintf("u-%d", rng.IntN(1000))),
			"level":        pick(absent, float64(rng.IntN(60)), "high"),
		} {
			if v != absent {
				evalCtx[attr] = v
			}
		}
		_, bulk := c.bulk(evalCtx, "")
		for _, key := range append(slices.Clone(ofrepFlagKeys), "nope") {
			var want struct {
				Value     json.RawMessage
				Variant   string
				Reason    string
				ErrorCode string `json:"error_code"`
			}
			h.want(h.do("POST", "/api/v1/environments/staging/evaluate", h.viewer, map[string]any{"flag": key, "context": evalCtx}), 200).json(t, &want)
			r, got := c.evaluate(key, evalCtx)
			where := fmt.Sprintf("context %d %v, flag %s", i, evalCtx, key)
			switch want.ErrorCode {
			case "":
				h.want(r, 200)
				if string(got.Value) != string(want.Value) || got.Variant != want.Variant || got.Reason != want.Reason {
					t.Errorf("%s: OFREP %s %s %s, evaluate %s %s %s", where, got.Value, got.Variant, got.Reason, want.Value, want.Variant, want.Reason)
				}
			case "FLAG_NOT_FOUND":
				h.want(r, 404)
			default:
				h.want(r, 400)
				if got.ErrorCode != want.ErrorCode {
					t.Errorf("%s: OFREP errorCode %s, evaluate %s", where, got.ErrorCode, want.ErrorCode)
				}
			}
			if key == "nope" {
				if _, ok := bulk[key]; ok {
					t.Errorf("%s: bulk has an unknown flag", where)
				}
				continue
			}
			if diff := cmp.Diff(got, bulk[key]); diff != "" {
				t.Errorf("%s: bulk entry differs from the single evaluation (-single +bulk):\n%s", where, diff)
			}
		}
	}
}

// TestOFREPBulkIsWhatEncodingJSONWrites pins the bulk body, assembled from
// parts encoded once per revision, byte for byte to encoding/json's rendering
// of the same answers, for a generated set of seasonal-event objects,
// numbers, strings and booleans with rules, segments and splits.
func TestOFREPBulkIsWhatEncodingJSONWrites(t *testing.T) {
	p := newBenchPlane(t, 300)
	compiled, err := p.flags.Compiled(context.Background(), p.env)
	if err != nil {
		t.Fatal(err)
	}
	member := snapshottest.GenerateSet(300).Segments[1].Members[0]
	type metadata struct {
		FlagSetID string `json:"flagSetId"`
		Version   string `json:"version"`
	}
	type entry struct {
		Key          string    `json:"key"`
		Value        any       `json:"value,omitempty"`
		Reason       string    `json:"reason,omitempty"`
		Variant      string    `json:"variant,omitempty"`
		Metadata     *metadata `json:"metadata,omitempty"`
		ErrorCode    string    `json:"errorCode,omitempty"`
		ErrorDetails string    `json:"errorDetails,omitempty"`
	}
	meta := &metadata{FlagSetID: p.env, Version: strconv.FormatInt(compiled.Revision(), 10)}
	for _, evalCtx := range []flags.Context{
		{"targetingKey": "player-1", "country": "DE", "platform": "pc"},
		{"targetingKey": member, "country": "US", "platform": "ps5"},
		{"country": "FR"},
		{"targetingKey": 2.5},
	} {
		var want struct {
			Flags []entry `json:"flags"`
		}
		for _, key := range compiled.Keys() {
			r := flags.Evaluate(compiled, key, evalCtx)
			if r.ErrorCode != "" {
				want.Flags = append(want.Flags, entry{Key: key, ErrorCode: string(r.ErrorCode), ErrorDetails: r.ErrorMessage})
				continue
			}
			want.Flags = append(want.Flags, entry{Key: key, Value: r.Value, Reason: string(r.Reason), Variant: r.Variant, Metadata: meta})
		}
		wantBody, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		body, err := json.Marshal(map[string]any{"context": evalCtx})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/ofrep/v1/evaluate/flags", bytes.NewReader(body))
		req.Header.Set("X-API-Key", p.serverKey)
		w := httptest.NewRecorder()
		p.server.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			t.Fatalf("context %v: %d %s", evalCtx, w.Code, w.Body)
		}
		if got := w.Body.Bytes(); !bytes.Equal(got, wantBody) {
			i := 0
			for i < min(len(got), len(wantBody)) && got[i] == wantBody[i] {
				i++
			}
			t.Errorf("context %v: the body differs from encoding/json's at byte %d:\n got %.200s\nwant %.200s", evalCtx, i, got[max(i-100, 0):], wantBody[max(i-100, 0):])
		}
	}
}

// TestOFREPBulkUnderConcurrentChanges polls while the flag set changes: every
// answer is one revision throughout (its ETag and every entry's version
// agree), and no poller ever sees an older revision than one it has seen.
func TestOFREPBulkUnderConcurrentChanges(t *testing.T) {
	h := newHarness(t)
	h.loadOFREPFlags("staging", true)
	c := h.ofrepBearer(h.newServerKey("staging"))
	body := evaluationRequest(t, map[string]any{"targetingKey": "p-1"})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			var seen int64
			for range 15 {
				res, err := http.DefaultClient.Do(c.request(body))
				if err != nil {
					errs <- err
					return
				}
				var got struct{ Flags []ofrepResult }
				err = json.NewDecoder(res.Body).Decode(&got)
				_ = res.Body.Close()
				if err != nil {
					errs <- err
					return
				}
				tag := res.Header.Get("ETag")
				rev, _, _ := strings.Cut(strings.TrimPrefix(tag, `"r`), "-")
				for _, f := range got.Flags {
					if f.ErrorCode == "" && f.Metadata["version"] != rev {
						errs <- fmt.Errorf("ETag %s but %s has version %v", tag, f.Key, f.Metadata["version"])
						return
					}
				}
				n, err := strconv.ParseInt(rev, 10, 64)
				if err != nil || n < seen {
					errs <- fmt.Errorf("revision %s after %d", rev, seen)
					return
				}
				seen = n
			}
		})
	}
	for range 5 {
		h.toggle("staging", "chat")
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// request is a bulk evaluation request, for callers off the test goroutine.
func (c ofrepClient) request(body []byte) *http.Request {
	req, err := http.NewRequest(http.MethodPost, c.h.srv.URL+"/ofrep/v1/evaluate/flags", bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(c.cred[0], c.cred[1])
	return req
}
