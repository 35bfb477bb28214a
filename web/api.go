package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"sigs.k8s.io/yaml"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
)

// ---- flag definitions ----

func (s *Server) listFlags(c echo.Context) error {
	all, err := s.flags.Store().ListFlags(c.Request().Context())
	if err != nil {
		return err
	}
	tag, typ, q := c.QueryParam("tag"), c.QueryParam("type"), strings.ToLower(c.QueryParam("q"))
	out := make([]flags.Flag, 0, len(all))
	for _, f := range all {
		if tag != "" && !slices.Contains(f.Tags, tag) ||
			typ != "" && string(f.Type) != typ ||
			q != "" && !strings.Contains(strings.ToLower(f.Key+" "+f.Name+" "+f.Description), q) {
			continue
		}
		out = append(out, f)
	}
	return c.JSON(http.StatusOK, map[string]any{"flags": out})
}

func (s *Server) createFlag(c echo.Context) error {
	var in flags.NewFlag
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	f, err := s.flags.CreateFlag(c.Request().Context(), in)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/api/v1/flags/"+f.Key)
	c.Response().Header().Set("ETag", etag("v", f.Version))
	return c.JSON(http.StatusCreated, f)
}

func (s *Server) getFlag(c echo.Context) error {
	f, err := s.flags.Store().GetFlag(c.Request().Context(), c.Param("key"))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag("v", f.Version))
	return c.JSON(http.StatusOK, f)
}

func (s *Server) updateFlag(c echo.Context) error {
	expect, err := ifMatch(c, "v")
	if err != nil {
		return err
	}
	var p flags.FlagPatch
	if err := decodeJSON(c, &p); err != nil {
		return err
	}
	f, err := s.flags.UpdateFlag(c.Request().Context(), c.Param("key"), p, expect)
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag("v", f.Version))
	return c.JSON(http.StatusOK, f)
}

func (s *Server) deleteFlag(c echo.Context) error {
	expect, err := ifMatch(c, "v")
	if err != nil {
		return err
	}
	if err := s.flags.DeleteFlag(c.Request().Context(), c.Param("key"), expect); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

type promoteRequest struct {
	From   string `json:"from"`
	To     string `json:"to"`
	DryRun bool   `json:"dry_run,omitempty"`
	// ExpectRevision is the target configuration's revision (its ETag
	// without quotes and "r"); omitted, the promotion overwrites whatever the
	// target holds.
	ExpectRevision *int64 `json:"expect_revision,omitempty"`
	Message        string `json:"message,omitempty"`
}

func (s *Server) promote(c echo.Context) error {
	var in promoteRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	var fields []solstice.FieldError
	if in.From == "" {
		fields = append(fields, solstice.FieldError{Pointer: "/from", Message: "required"})
	}
	if in.To == "" {
		fields = append(fields, solstice.FieldError{Pointer: "/to", Message: "required"})
	}
	if len(fields) > 0 {
		return solstice.Invalid("invalid promotion", fields...)
	}
	if !in.DryRun {
		if err := s.checkProtected(c, in.To); err != nil {
			return err
		}
	}
	expect := flags.AnyVersion
	if in.ExpectRevision != nil {
		expect = *in.ExpectRevision
	}
	p, err := s.flags.Promote(c.Request().Context(), c.Param("key"), in.From, in.To, expect, in.DryRun, in.Message)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if p.Revision != nil {
		status = http.StatusCreated
	}
	return c.JSON(status, p)
}

// ---- environments ----

func (s *Server) listEnvironments(c echo.Context) error {
	envs, err := s.flags.Store().ListEnvironments(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"environments": envs})
}

func (s *Server) createEnvironment(c echo.Context) error {
	var in flags.NewEnvironment
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	env, err := s.flags.CreateEnvironment(c.Request().Context(), in)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/api/v1/environments/"+env.Name)
	return c.JSON(http.StatusCreated, env)
}

func (s *Server) getEnvironment(c echo.Context) error {
	env, err := s.flags.Store().GetEnvironment(c.Request().Context(), c.Param("env"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, env)
}

func (s *Server) updateEnvironment(c echo.Context) error {
	var in struct {
		Protected *bool `json:"protected"`
	}
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	if in.Protected == nil {
		return solstice.Invalid("nothing to update", solstice.FieldError{Pointer: "/protected", Message: "required"})
	}
	env, err := s.flags.SetProtected(c.Request().Context(), c.Param("env"), *in.Protected)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, env)
}

// ---- per-environment configuration ----

func (s *Server) listConfigs(c echo.Context) error {
	states, err := s.flags.ListConfigs(c.Request().Context(), c.Param("env"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"environment": c.Param("env"), "flags": states})
}

func (s *Server) getConfig(c echo.Context) error {
	fc, err := s.flags.GetConfig(c.Request().Context(), c.Param("env"), c.Param("key"))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag("r", fc.Revision))
	return c.JSON(http.StatusOK, fc)
}

// putConfigRequest is a flag's configuration plus an optional revision
// message.
type putConfigRequest struct {
	flags.Config
	Message string `json:"message,omitempty"`
}

func (s *Server) putConfig(c echo.Context) error {
	expect, err := ifMatch(c, "r")
	if err != nil {
		return err
	}
	var in putConfigRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	ctx := c.Request().Context()
	rev, err := s.flags.PutConfig(ctx, c.Param("env"), c.Param("key"), in.Config, expect, in.Message)
	if err != nil {
		return err
	}
	fc, err := s.flags.GetConfig(ctx, c.Param("env"), c.Param("key"))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag("r", fc.Revision))
	return c.JSON(http.StatusOK, writeResult("config", fc, rev))
}

// writeResult is the answer to a write: the object as it now stands, and the
// revision the write appended, or null with "changed": false when the
// content was already identical and nothing was appended.
func writeResult(name string, obj any, rev flags.Revision) map[string]any {
	out := map[string]any{name: obj, "changed": len(rev.Diff) > 0, "revision": nil}
	if len(rev.Diff) > 0 {
		out["revision"] = rev
	}
	return out
}

// ---- segments ----

func (s *Server) listSegments(c echo.Context) error {
	segs, err := s.flags.ListSegments(c.Request().Context(), c.Param("env"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"environment": c.Param("env"), "segments": segs})
}

func (s *Server) getSegment(c echo.Context) error {
	sv, err := s.flags.GetSegment(c.Request().Context(), c.Param("env"), c.Param("key"))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag("r", sv.Revision))
	return c.JSON(http.StatusOK, sv)
}

type putSegmentRequest struct {
	flags.Segment
	Message string `json:"message,omitempty"`
}

func (s *Server) putSegment(c echo.Context) error {
	ctx := c.Request().Context()
	env, key := c.Param("env"), c.Param("key")
	// Creating needs no If-Match; replacing an existing segment does.
	expect, err := optionalIfMatch(c, "r", 0)
	if err != nil {
		return err
	}
	if c.Request().Header.Get("If-Match") == "" {
		if _, err := s.flags.GetSegment(ctx, env, key); err == nil {
			return solstice.Errorf(solstice.KindPreconditionNeeded, "segment %q exists: send If-Match with its ETag to replace it", key)
		}
	}
	var in putSegmentRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	if in.Key == "" {
		in.Key = key
	}
	if in.Key != key {
		return solstice.Invalid("key mismatch", solstice.FieldError{Pointer: "/key", Message: fmt.Sprintf("is %q but the URL names %q", in.Key, key)})
	}
	rev, err := s.flags.PutSegment(ctx, env, in.Segment, expect, in.Message)
	if err != nil {
		return err
	}
	sv, err := s.flags.GetSegment(ctx, env, key)
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag("r", sv.Revision))
	status := http.StatusOK
	if len(rev.Diff) > 0 && rev.Diff[0].Op() == "create" { // this write created it
		status = http.StatusCreated
	}
	return c.JSON(status, writeResult("segment", sv, rev))
}

func (s *Server) deleteSegment(c echo.Context) error {
	expect, err := ifMatch(c, "r")
	if err != nil {
		return err
	}
	if _, err := s.flags.DeleteSegment(c.Request().Context(), c.Param("env"), c.Param("key"), expect); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// ---- revisions ----

func (s *Server) listRevisions(c echo.Context) error {
	before, err := queryInt(c, "before", 0)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", 50)
	if err != nil {
		return err
	}
	revs, err := s.flags.ListRevisions(c.Request().Context(), c.Param("env"), flags.RevisionFilter{BeforeNumber: before, Limit: int(min(limit, 500))})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"environment": c.Param("env"), "revisions": revs})
}

func (s *Server) getRevision(c echo.Context) error {
	n, err := pathInt(c, "n")
	if err != nil {
		return err
	}
	rev, err := s.flags.GetRevision(c.Request().Context(), c.Param("env"), n)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rev)
}

// diffRevision compares revision n with ?against= (default n-1).
func (s *Server) diffRevision(c echo.Context) error {
	n, err := pathInt(c, "n")
	if err != nil {
		return err
	}
	against, err := queryInt(c, "against", max(n-1, 0))
	if err != nil {
		return err
	}
	changes, err := s.flags.DiffRevisions(c.Request().Context(), c.Param("env"), against, n)
	if err != nil {
		return err
	}
	type fieldDiff struct {
		flags.Change
		Fields []flags.FieldChange `json:"fields"`
	}
	out := make([]fieldDiff, len(changes))
	for i, ch := range changes {
		fields, err := flags.DiffJSON(ch.Before, ch.After)
		if err != nil {
			return err
		}
		out[i] = fieldDiff{Change: ch, Fields: fields}
	}
	return c.JSON(http.StatusOK, map[string]any{"environment": c.Param("env"), "from": against, "to": n, "changes": out})
}

func (s *Server) revert(c echo.Context) error {
	n, err := pathInt(c, "n")
	if err != nil {
		return err
	}
	var in struct {
		Message string `json:"message,omitempty"`
	}
	if err := decodeOptionalJSON(c, &in); err != nil {
		return err
	}
	rev, err := s.flags.Revert(c.Request().Context(), c.Param("env"), n, in.Message)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, rev)
}

// ---- evaluation ----

type evaluateRequest struct {
	Flag    string        `json:"flag"`
	Context flags.Context `json:"context"`
}

type evaluateResponse struct {
	Flag         string          `json:"flag"`
	Value        any             `json:"value"`
	Variant      string          `json:"variant,omitempty"`
	Reason       flags.Reason    `json:"reason"`
	ErrorCode    flags.ErrorCode `json:"error_code,omitempty"`
	ErrorMessage string          `json:"error_message,omitempty"`
	Revision     int64           `json:"revision"`
	Explanation  explanation     `json:"explanation"`
}

type explanation struct {
	Text        string `json:"text"`
	RuleIndex   *int   `json:"rule_index,omitempty"`
	RuleID      string `json:"rule_id,omitempty"`
	BucketBy    string `json:"bucket_by,omitempty"`
	Bucket      *int64 `json:"bucket,omitempty"`
	TotalWeight int    `json:"total_weight,omitempty"`
	Missing     string `json:"missing_attribute,omitempty"`
}

func (s *Server) evaluate(c echo.Context) error {
	var in evaluateRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	if in.Flag == "" {
		return solstice.Invalid("invalid evaluation", solstice.FieldError{Pointer: "/flag", Message: "required"})
	}
	ctx := c.Request().Context()
	compiled, err := s.flags.Compiled(ctx, c.Param("env"))
	if err != nil {
		return err
	}
	r := flags.Evaluate(compiled, in.Flag, in.Context)
	return c.JSON(http.StatusOK, toEvaluateResponse(r, compiled.Revision()))
}

func toEvaluateResponse(r flags.Result, revision int64) evaluateResponse {
	out := evaluateResponse{
		Flag: r.Key, Value: r.Value, Variant: r.Variant, Reason: r.Reason, ErrorCode: r.ErrorCode,
		ErrorMessage: r.ErrorMessage, Revision: revision,
		Explanation: explanation{Text: flags.Explain(r), RuleID: r.RuleID, Missing: r.Missing},
	}
	if r.RuleIndex >= 0 {
		i := r.RuleIndex
		out.Explanation.RuleIndex = &i
	}
	if r.TotalWeight > 0 {
		b := int64(r.Bucket) //nolint:gosec // a bucket is below the total weight (at most 1,000,000)
		out.Explanation.Bucket, out.Explanation.TotalWeight, out.Explanation.BucketBy = &b, r.TotalWeight, r.BucketBy
	}
	return out
}

// ---- flags as code ----

func (s *Server) export(c echo.Context) error {
	doc, err := s.flags.Export(c.Request().Context(), c.Param("env"))
	if err != nil {
		return err
	}
	switch c.QueryParam("format") {
	case "", "json":
		return c.JSON(http.StatusOK, doc)
	case "yaml":
		b, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(b)
		if err != nil {
			return err
		}
		return c.Blob(http.StatusOK, "application/yaml", y)
	default:
		return badRequestf("format must be json or yaml")
	}
}

func (s *Server) apply(c echo.Context) error {
	dry, err := queryBool(c, "dry_run")
	if err != nil {
		return err
	}
	var doc flags.Document
	if err := decodeJSON(c, &doc); err != nil {
		return err
	}
	plan, err := s.flags.Apply(c.Request().Context(), c.Param("env"), doc, flags.ApplyOptions{DryRun: dry, Message: c.QueryParam("message")})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if plan.Revision != nil {
		status = http.StatusCreated
	}
	return c.JSON(status, plan)
}

// ---- audit and tokens ----

func (s *Server) listAudit(c echo.Context) error {
	f := solstice.AuditFilter{
		Environment: c.QueryParam("environment"), Resource: c.QueryParam("resource"),
		Action: c.QueryParam("action"), Actor: c.QueryParam("actor"),
	}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := c.QueryParam(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return badRequestf(fmt.Sprintf("query parameter %s must be an RFC 3339 time, got %q", name, v))
			}
			*dst = t
		}
	}
	before, err := queryInt(c, "before", 0)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", 100)
	if err != nil {
		return err
	}
	f.BeforeID, f.Limit = before, int(min(limit, 1000))
	entries, err := s.flags.Store().ListAudit(c.Request().Context(), f)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"entries": entries})
}

func (s *Server) listTokens(c echo.Context) error {
	ts, err := s.auth.List(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"tokens": ts})
}

func (s *Server) createToken(c echo.Context) error {
	var in auth.NewToken
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	ctx := c.Request().Context()
	if in.Kind == auth.KindServer && in.Environment != "" {
		if _, err := s.flags.Store().GetEnvironment(ctx, in.Environment); err != nil {
			return err
		}
	}
	created, err := s.auth.Create(ctx, in)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, created)
}

func (s *Server) revokeToken(c echo.Context) error {
	if err := s.auth.Revoke(c.Request().Context(), c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
