package flags

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/solsticehq/solstice"
)

// Service is the one domain service every write path goes through: the API,
// the UI, the CLI, flags-as-code and background jobs. It validates, appends a
// revision, records the audit entry in the same transaction, and then tells
// its listeners (the snapshot publisher) that an environment changed.
type Service struct {
	store     Store
	clock     solstice.Clock
	listeners []func(ctx context.Context, env string, rev Revision)

	mu       sync.Mutex
	compiled map[string]*Compiled // per environment, at its head revision
}

// ServiceOption configures a Service.
type ServiceOption func(*Service)

// WithClock sets the clock used for timestamps.
func WithClock(c solstice.Clock) ServiceOption { return func(s *Service) { s.clock = c } }

// OnRevision registers f to be called after every revision is committed.
// Listeners run synchronously, after the transaction, and must not fail.
func OnRevision(f func(ctx context.Context, env string, rev Revision)) ServiceOption {
	return func(s *Service) { s.listeners = append(s.listeners, f) }
}

// NewService returns a Service over store.
func NewService(store Store, opts ...ServiceOption) *Service {
	s := &Service{store: store, clock: solstice.WallClock, compiled: map[string]*Compiled{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Store returns the underlying store, for read paths that need nothing more.
func (s *Service) Store() Store { return s.store }

func (s *Service) write(ctx context.Context, w Write) ([]Revision, error) {
	revs, err := s.store.Write(ctx, w)
	if err != nil {
		return nil, err
	}
	for _, r := range revs {
		if len(r.Diff) == 0 {
			continue
		}
		for _, l := range s.listeners {
			l(ctx, r.Environment, r)
		}
	}
	return revs, nil
}

func (s *Service) audit(ctx context.Context, action, env, resource string, details any) solstice.AuditEntry {
	e := solstice.AuditEntry{
		Time:        s.clock.Now().UTC(),
		Actor:       solstice.ActorFrom(ctx),
		Action:      action,
		Environment: env,
		Resource:    resource,
	}
	if details != nil {
		if b, err := json.Marshal(details); err == nil {
			e.Details = b
		}
	}
	return e
}

// ---- environments ----

// EnsureDefaultEnvironments creates the default environments that do not
// exist yet. It is idempotent.
func (s *Service) EnsureDefaultEnvironments(ctx context.Context) error {
	existing, err := s.store.ListEnvironments(ctx)
	if err != nil {
		return err
	}
	var w Write
	for _, name := range DefaultEnvironments {
		if slices.ContainsFunc(existing, func(e Environment) bool { return e.Name == name }) {
			continue
		}
		w.CreateEnvironments = append(w.CreateEnvironments, Environment{
			Name: name, Protected: name == "production", CreatedAt: s.clock.Now().UTC(),
		})
		w.Audit = append(w.Audit, s.audit(ctx, "environment.create", name, "environment/"+name, nil))
	}
	if len(w.CreateEnvironments) == 0 {
		return nil
	}
	_, err = s.write(ctx, w)
	if solstice.IsKind(err, solstice.KindConflict) { // another process created them first
		return nil
	}
	return err
}

// NewEnvironment is the input of CreateEnvironment.
type NewEnvironment struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Protected   bool   `json:"protected,omitempty"`
	// CopyFrom names an environment whose flag configurations and segments
	// the new one starts with, as its first revision. Without it, every
	// existing flag starts disabled with the variants of its configuration in
	// the first default environment that has one.
	CopyFrom string `json:"copy_from,omitempty"`
}

// CreateEnvironment creates an environment. It returns KindInvalid for a bad
// name, KindConflict when it exists and KindNotFound for an unknown CopyFrom.
func (s *Service) CreateEnvironment(ctx context.Context, in NewEnvironment) (Environment, error) {
	if !ValidKey(in.Name) {
		return Environment{}, solstice.Invalid("invalid environment", solstice.FieldError{Pointer: "/name", Message: keyRule})
	}
	env := Environment{Name: in.Name, Description: in.Description, Protected: in.Protected, CreatedAt: s.clock.Now().UTC()}
	w := Write{
		CreateEnvironments: []Environment{env},
		Audit:              []solstice.AuditEntry{s.audit(ctx, "environment.create", in.Name, "environment/"+in.Name, in)},
	}
	var objects []ObjectWrite
	if in.CopyFrom != "" {
		src, err := s.store.ListObjects(ctx, in.CopyFrom, "")
		if err != nil {
			return Environment{}, err
		}
		if _, err := s.store.GetEnvironment(ctx, in.CopyFrom); err != nil {
			return Environment{}, err
		}
		for _, o := range src {
			objects = append(objects, ObjectWrite{Kind: o.Kind, Key: o.Key, Content: o.Content})
		}
	} else {
		states, err := s.templateStates(ctx)
		if err != nil {
			return Environment{}, err
		}
		for _, st := range states {
			st.Enabled = false
			content, err := CanonicalOf(st)
			if err != nil {
				return Environment{}, err
			}
			objects = append(objects, ObjectWrite{Kind: KindFlag, Key: st.Key, Content: content})
		}
	}
	if len(objects) > 0 {
		msg := "Initial configuration"
		if in.CopyFrom != "" {
			msg = "Copied from " + in.CopyFrom
		}
		w.Revisions = []RevisionWrite{{Environment: in.Name, Author: solstice.ActorFrom(ctx).Name, Message: msg, Objects: objects}}
	}
	if _, err := s.write(ctx, w); err != nil {
		return Environment{}, err
	}
	return s.store.GetEnvironment(ctx, in.Name)
}

// templateStates returns, for every flag, its configuration in the first
// default environment that has one.
func (s *Service) templateStates(ctx context.Context) ([]FlagState, error) {
	seen := map[string]bool{}
	var out []FlagState
	envs, err := s.store.ListEnvironments(ctx)
	if err != nil {
		return nil, err
	}
	order := slices.Clone(DefaultEnvironments)
	for _, e := range envs {
		if !slices.Contains(order, e.Name) {
			order = append(order, e.Name)
		}
	}
	for _, env := range order {
		objs, err := s.store.ListObjects(ctx, env, KindFlag)
		if solstice.IsKind(err, solstice.KindNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			if seen[o.Key] {
				continue
			}
			var st FlagState
			if err := json.Unmarshal(o.Content, &st); err != nil {
				return nil, fmt.Errorf("decode flag %q in %q: %w", o.Key, env, err)
			}
			seen[o.Key] = true
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// SetProtected changes whether an environment needs four-eyes approval.
func (s *Service) SetProtected(ctx context.Context, name string, protected bool) (Environment, error) {
	env, err := s.store.GetEnvironment(ctx, name)
	if err != nil {
		return Environment{}, err
	}
	env.Protected = protected
	w := Write{
		UpdateEnvironments: []Environment{env},
		Audit:              []solstice.AuditEntry{s.audit(ctx, "environment.update", name, "environment/"+name, map[string]bool{"protected": protected})},
	}
	if _, err := s.write(ctx, w); err != nil {
		return Environment{}, err
	}
	return env, nil
}

// ---- flag definitions ----

// NewFlag is the input of CreateFlag: the definition and the configuration
// every environment starts with (disabled).
type NewFlag struct {
	Key            string          `json:"key"`
	Name           string          `json:"name"`
	Description    string          `json:"description,omitempty"`
	Tags           []string        `json:"tags,omitempty"`
	Type           Type            `json:"type"`
	Schema         json.RawMessage `json:"schema,omitempty"`
	Variants       []Variant       `json:"variants,omitempty"`        // boolean flags default to on=true, off=false
	DefaultVariant string          `json:"default_variant,omitempty"` // default: the first variant
	OffVariant     string          `json:"off_variant,omitempty"`     // default: "off" for booleans, else the default variant
}

// DefaultBooleanVariants are the variants of a boolean flag created without
// any.
func DefaultBooleanVariants() []Variant {
	return []Variant{{Key: "on", Value: json.RawMessage("true")}, {Key: "off", Value: json.RawMessage("false")}}
}

// InitialConfig returns the disabled configuration a new flag starts with in
// every environment.
func (in NewFlag) InitialConfig() Config {
	c := Config{Variants: in.Variants, DefaultVariant: in.DefaultVariant, OffVariant: in.OffVariant}
	if len(c.Variants) == 0 && in.Type == TypeBoolean {
		c.Variants = DefaultBooleanVariants()
		if c.DefaultVariant == "" {
			c.DefaultVariant = "on"
		}
		if c.OffVariant == "" {
			c.OffVariant = "off"
		}
	}
	if c.DefaultVariant == "" && len(c.Variants) > 0 {
		c.DefaultVariant = c.Variants[0].Key
	}
	if c.OffVariant == "" {
		c.OffVariant = c.DefaultVariant
	}
	return c
}

// CreateFlag creates a flag and its initial, disabled configuration in every
// environment (one revision each), atomically. It returns KindInvalid with
// field errors for a bad definition or variant (including JSON Schema
// violations, pointed at /variants/N/value/...), KindConflict when the key
// exists.
func (s *Service) CreateFlag(ctx context.Context, in NewFlag) (Flag, error) {
	now := s.clock.Now().UTC()
	f := Flag{
		Key: in.Key, Name: in.Name, Description: in.Description, Tags: in.Tags, Type: in.Type,
		Version: 1, CreatedAt: now, UpdatedAt: now,
	}
	if len(in.Schema) > 0 && !isJSONNull(in.Schema) {
		f.Schema = in.Schema
	}
	if f.Name == "" {
		f.Name = f.Key
	}
	if err := ValidateFlag(f); err != nil {
		return Flag{}, err
	}
	if f.Schema != nil {
		schema, err := Canonical(f.Schema)
		if err != nil {
			return Flag{}, solstice.Invalid("invalid schema", solstice.FieldError{Pointer: "/schema", Message: err.Error()})
		}
		f.Schema = schema
	}
	cfg := in.InitialConfig()
	if err := ValidateConfig(f, cfg, nil); err != nil {
		return Flag{}, err
	}
	if _, err := s.store.GetFlag(ctx, f.Key); err == nil {
		return Flag{}, solstice.Errorf(solstice.KindConflict, "flag %q already exists", f.Key)
	}
	envs, err := s.store.ListEnvironments(ctx)
	if err != nil {
		return Flag{}, err
	}
	content, err := stateContent(f, cfg)
	if err != nil {
		return Flag{}, err
	}
	w := Write{
		CreateFlags: []Flag{f},
		Audit:       []solstice.AuditEntry{s.audit(ctx, "flag.create", "", "flag/"+f.Key, f)},
	}
	for _, e := range envs {
		w.Revisions = append(w.Revisions, RevisionWrite{
			Environment: e.Name,
			Author:      solstice.ActorFrom(ctx).Name,
			Message:     fmt.Sprintf("Create flag %s", f.Key),
			Objects:     []ObjectWrite{{Kind: KindFlag, Key: f.Key, Content: content, Expect: 0}},
		})
	}
	if _, err := s.write(ctx, w); err != nil {
		return Flag{}, err
	}
	return s.store.GetFlag(ctx, f.Key)
}

// isJSONNull reports whether raw is the JSON literal null.
func isJSONNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func stateContent(f Flag, c Config) (json.RawMessage, error) {
	c = normalizeConfig(c)
	return CanonicalOf(FlagState{Key: f.Key, Type: f.Type, Config: c})
}

// normalizeConfig canonicalizes variant values so that equal configurations
// are equal byte for byte.
func normalizeConfig(c Config) Config {
	vs := make([]Variant, len(c.Variants))
	for i, v := range c.Variants {
		if cv, err := Canonical(v.Value); err == nil {
			v.Value = cv
		}
		vs[i] = v
	}
	c.Variants = vs
	return c
}

// FlagPatch is the input of UpdateFlag; nil fields are left unchanged. The
// type of a flag cannot change.
type FlagPatch struct {
	Name        *string   `json:"name,omitempty"`
	Description *string   `json:"description,omitempty"`
	Tags        *[]string `json:"tags,omitempty"`
	// Schema replaces the value schema; JSON null removes it, absent keeps it.
	Schema json.RawMessage `json:"schema,omitempty"`
}

// UpdateFlag changes a flag's definition if its version is expect. A new
// schema must accept every variant value in every environment; otherwise
// KindInvalid names each failing value. It returns KindNotFound,
// KindPreconditionFailed on a stale version, KindInvalid.
func (s *Service) UpdateFlag(ctx context.Context, key string, p FlagPatch, expect int64) (Flag, error) {
	f, err := s.store.GetFlag(ctx, key)
	if err != nil {
		return Flag{}, err
	}
	if expect != AnyVersion && f.Version != expect {
		return Flag{}, solstice.Errorf(solstice.KindPreconditionFailed, "flag %q is at version %d, not %d: reload and retry", key, f.Version, expect)
	}
	before := f
	if p.Name != nil {
		f.Name = *p.Name
	}
	if p.Description != nil {
		f.Description = *p.Description
	}
	if p.Tags != nil {
		f.Tags = *p.Tags
	}
	switch {
	case isJSONNull(p.Schema):
		f.Schema = nil
	case p.Schema != nil:
		f.Schema = p.Schema
	}
	if err := ValidateFlag(f); err != nil {
		return Flag{}, err
	}
	if f.Schema != nil {
		if f.Schema, err = Canonical(f.Schema); err != nil {
			return Flag{}, solstice.Invalid("invalid schema", solstice.FieldError{Pointer: "/schema", Message: err.Error()})
		}
		if err := s.checkSchemaEverywhere(ctx, f, ""); err != nil {
			return Flag{}, err
		}
	}
	f.Version++
	f.UpdatedAt = s.clock.Now().UTC()
	w := Write{
		UpdateFlags: []FlagUpdate{{Flag: f, Expect: before.Version}},
		Audit:       []solstice.AuditEntry{s.audit(ctx, "flag.update", "", "flag/"+key, p)},
	}
	if _, err := s.write(ctx, w); err != nil {
		return Flag{}, err
	}
	return s.store.GetFlag(ctx, key)
}

// checkSchemaEverywhere validates f's configuration in every environment
// but skip against f.Schema, prefixing pointers with /environments/{env}.
func (s *Service) checkSchemaEverywhere(ctx context.Context, f Flag, skip string) error {
	envs, err := s.store.ListEnvironments(ctx)
	if err != nil {
		return err
	}
	var fields []solstice.FieldError
	for _, e := range envs {
		if e.Name == skip {
			continue
		}
		st, _, err := s.flagState(ctx, e.Name, f.Key)
		if solstice.IsKind(err, solstice.KindNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := ValidateConfig(f, st.Config, nil); err != nil {
			for _, fe := range solstice.ErrorFields(err) {
				if strings.HasPrefix(fe.Pointer, "/rules") { // segment references are not checked here
					continue
				}
				fe.Pointer = "/environments/" + e.Name + fe.Pointer
				fields = append(fields, fe)
			}
		}
	}
	if len(fields) > 0 {
		return solstice.Invalid("the new schema rejects existing variant values", fields...)
	}
	return nil
}

// DeleteFlag deletes a flag's definition if its version is expect, and
// removes its configuration from every environment (one revision each).
// History keeps the old configurations. It returns KindNotFound or
// KindPreconditionFailed.
func (s *Service) DeleteFlag(ctx context.Context, key string, expect int64) error {
	f, err := s.store.GetFlag(ctx, key)
	if err != nil {
		return err
	}
	if expect != AnyVersion && f.Version != expect {
		return solstice.Errorf(solstice.KindPreconditionFailed, "flag %q is at version %d, not %d: reload and retry", key, f.Version, expect)
	}
	envs, err := s.store.ListEnvironments(ctx)
	if err != nil {
		return err
	}
	w := Write{
		DeleteFlags: []FlagDelete{{Key: key, Expect: f.Version}},
		Audit:       []solstice.AuditEntry{s.audit(ctx, "flag.delete", "", "flag/"+key, nil)},
	}
	for _, e := range envs {
		if _, err := s.store.GetObject(ctx, e.Name, KindFlag, key); err != nil {
			if solstice.IsKind(err, solstice.KindNotFound) {
				continue
			}
			return err
		}
		w.Revisions = append(w.Revisions, RevisionWrite{
			Environment: e.Name, Author: solstice.ActorFrom(ctx).Name,
			Message: "Delete flag " + key,
			Objects: []ObjectWrite{{Kind: KindFlag, Key: key, Content: nil, Expect: AnyVersion}},
		})
	}
	_, err = s.write(ctx, w)
	return err
}

// ---- per-environment configuration ----

// FlagConfig is a flag's configuration in one environment with the revision
// that last changed it (its ETag).
type FlagConfig struct {
	Environment string `json:"environment"`
	Flag        Flag   `json:"flag"`
	Config      Config `json:"config"`
	Revision    int64  `json:"revision"`
}

func (s *Service) flagState(ctx context.Context, env, key string) (FlagState, int64, error) {
	o, err := s.store.GetObject(ctx, env, KindFlag, key)
	if err != nil {
		return FlagState{}, 0, err
	}
	var st FlagState
	if err := json.Unmarshal(o.Content, &st); err != nil {
		return FlagState{}, 0, fmt.Errorf("decode flag %q in %q: %w", key, env, err)
	}
	return st, o.Revision, nil
}

// GetConfig returns a flag's configuration in env. It returns KindNotFound
// for an unknown environment or flag.
func (s *Service) GetConfig(ctx context.Context, env, key string) (FlagConfig, error) {
	if _, err := s.store.GetEnvironment(ctx, env); err != nil {
		return FlagConfig{}, err
	}
	f, err := s.store.GetFlag(ctx, key)
	if err != nil {
		return FlagConfig{}, err
	}
	st, rev, err := s.flagState(ctx, env, key)
	if err != nil {
		return FlagConfig{}, err
	}
	return FlagConfig{Environment: env, Flag: f, Config: st.Config, Revision: rev}, nil
}

// PutConfig replaces a flag's configuration in env as a new revision, if the
// configuration is still at revision expect. It returns the new revision (its
// number is the configuration's new ETag) or KindNotFound, KindInvalid (with
// field errors), KindPreconditionFailed. An identical configuration appends
// nothing and returns the current head with an empty diff.
func (s *Service) PutConfig(ctx context.Context, env, key string, c Config, expect int64, message string) (Revision, error) {
	if _, err := s.store.GetEnvironment(ctx, env); err != nil {
		return Revision{}, err
	}
	f, err := s.store.GetFlag(ctx, key)
	if err != nil {
		return Revision{}, err
	}
	segs, err := s.segmentKeys(ctx, env)
	if err != nil {
		return Revision{}, err
	}
	if err := ValidateConfig(f, c, segs); err != nil {
		return Revision{}, err
	}
	content, err := stateContent(f, c)
	if err != nil {
		return Revision{}, err
	}
	if message == "" {
		message = "Update flag " + key
	}
	return s.commit(ctx, env, message, []ObjectWrite{{Kind: KindFlag, Key: key, Content: content, Expect: expect}},
		s.audit(ctx, "flag_config.update", env, "flag/"+key, nil))
}

// commit appends one revision to env and returns it.
func (s *Service) commit(ctx context.Context, env, message string, objects []ObjectWrite, audit ...solstice.AuditEntry) (Revision, error) {
	revs, err := s.write(ctx, Write{Revisions: []RevisionWrite{{
		Environment: env, Author: solstice.ActorFrom(ctx).Name, Message: message, Objects: objects, Audit: audit,
	}}})
	if err != nil {
		return Revision{}, err
	}
	return revs[0], nil
}

// ListConfigs returns every flag's state in env, sorted by key.
func (s *Service) ListConfigs(ctx context.Context, env string) ([]FlagState, error) {
	set, err := s.Set(ctx, env)
	if err != nil {
		return nil, err
	}
	return set.Flags, nil
}

// ---- segments ----

func (s *Service) segmentKeys(ctx context.Context, env string) (map[string]bool, error) {
	objs, err := s.store.ListObjects(ctx, env, KindSegment)
	if err != nil {
		return nil, err
	}
	keys := make(map[string]bool, len(objs))
	for _, o := range objs {
		keys[o.Key] = true
	}
	return keys, nil
}

// SegmentVersion is a segment with the revision that last changed it.
type SegmentVersion struct {
	Segment  Segment `json:"segment"`
	Revision int64   `json:"revision"`
}

// GetSegment returns one segment of env, or KindNotFound.
func (s *Service) GetSegment(ctx context.Context, env, key string) (SegmentVersion, error) {
	o, err := s.store.GetObject(ctx, env, KindSegment, key)
	if err != nil {
		return SegmentVersion{}, err
	}
	var seg Segment
	if err := json.Unmarshal(o.Content, &seg); err != nil {
		return SegmentVersion{}, fmt.Errorf("decode segment %q in %q: %w", key, env, err)
	}
	return SegmentVersion{Segment: seg, Revision: o.Revision}, nil
}

// ListSegments returns the segments of env, sorted by key.
func (s *Service) ListSegments(ctx context.Context, env string) ([]SegmentVersion, error) {
	if _, err := s.store.GetEnvironment(ctx, env); err != nil {
		return nil, err
	}
	objs, err := s.store.ListObjects(ctx, env, KindSegment)
	if err != nil {
		return nil, err
	}
	out := make([]SegmentVersion, 0, len(objs))
	for _, o := range objs {
		var seg Segment
		if err := json.Unmarshal(o.Content, &seg); err != nil {
			return nil, fmt.Errorf("decode segment %q in %q: %w", o.Key, env, err)
		}
		out = append(out, SegmentVersion{Segment: seg, Revision: o.Revision})
	}
	return out, nil
}

// PutSegment creates (expect 0) or replaces (expect = its revision) a
// segment of env as a new revision. It returns KindInvalid,
// KindPreconditionFailed or KindNotFound.
func (s *Service) PutSegment(ctx context.Context, env string, seg Segment, expect int64, message string) (Revision, error) {
	if _, err := s.store.GetEnvironment(ctx, env); err != nil {
		return Revision{}, err
	}
	if err := ValidateSegment(seg); err != nil {
		return Revision{}, err
	}
	content, err := CanonicalOf(seg)
	if err != nil {
		return Revision{}, err
	}
	if message == "" {
		message = "Update segment " + seg.Key
	}
	return s.commit(ctx, env, message, []ObjectWrite{{Kind: KindSegment, Key: seg.Key, Content: content, Expect: expect}},
		s.audit(ctx, "segment.update", env, "segment/"+seg.Key, nil))
}

// DeleteSegment removes a segment of env as a new revision. It returns
// KindConflict when a flag's rules still reference it (naming them),
// KindNotFound or KindPreconditionFailed.
func (s *Service) DeleteSegment(ctx context.Context, env, key string, expect int64) (Revision, error) {
	if _, err := s.store.GetObject(ctx, env, KindSegment, key); err != nil {
		return Revision{}, err
	}
	set, err := s.Set(ctx, env)
	if err != nil {
		return Revision{}, err
	}
	if users := segmentUsers(set.Flags, key); len(users) > 0 {
		return Revision{}, solstice.Errorf(solstice.KindConflict, "segment %q is used by flags %s: remove those rules first", key, strings.Join(users, ", "))
	}
	return s.commit(ctx, env, "Delete segment "+key, []ObjectWrite{{Kind: KindSegment, Key: key, Expect: expect}},
		s.audit(ctx, "segment.delete", env, "segment/"+key, nil))
}

// segmentUsers returns the keys of flags whose rules reference segment key.
func segmentUsers(states []FlagState, key string) []string {
	var users []string
	for _, st := range states {
		if slices.Contains(referencedSegments(st.Config), key) {
			users = append(users, st.Key)
		}
	}
	return users
}

func referencedSegments(c Config) []string {
	var out []string
	for _, r := range c.Rules {
		for _, cond := range r.Conditions {
			if cond.Segment != "" && !slices.Contains(out, cond.Segment) {
				out = append(out, cond.Segment)
			}
		}
	}
	return out
}

// ---- whole sets, compilation, evaluation ----

// Heads returns the head revision of every environment.
func (s *Service) Heads(ctx context.Context) (map[string]int64, error) {
	envs, err := s.store.ListEnvironments(ctx)
	if err != nil {
		return nil, err
	}
	heads := make(map[string]int64, len(envs))
	for _, e := range envs {
		heads[e.Name] = e.Head
	}
	return heads, nil
}

// Set returns the current content of env. It returns KindNotFound for an
// unknown environment.
func (s *Service) Set(ctx context.Context, env string) (Set, error) {
	e, err := s.store.GetEnvironment(ctx, env)
	if err != nil {
		return Set{}, err
	}
	objs, err := s.store.ListObjects(ctx, env, "")
	if err != nil {
		return Set{}, err
	}
	set, err := decodeSet(env, objs)
	if err != nil {
		return Set{}, err
	}
	set.Revision = e.Head
	return set, nil
}

func decodeSet(env string, objs []Object) (Set, error) {
	set := Set{Environment: env, Flags: []FlagState{}, Segments: []Segment{}}
	for _, o := range objs {
		switch o.Kind {
		case KindFlag:
			var st FlagState
			if err := json.Unmarshal(o.Content, &st); err != nil {
				return Set{}, fmt.Errorf("decode flag %q in %q: %w", o.Key, env, err)
			}
			set.Flags = append(set.Flags, st)
		case KindSegment:
			var seg Segment
			if err := json.Unmarshal(o.Content, &seg); err != nil {
				return Set{}, fmt.Errorf("decode segment %q in %q: %w", o.Key, env, err)
			}
			set.Segments = append(set.Segments, seg)
		}
	}
	sort.Slice(set.Flags, func(i, j int) bool { return set.Flags[i].Key < set.Flags[j].Key })
	sort.Slice(set.Segments, func(i, j int) bool { return set.Segments[i].Key < set.Segments[j].Key })
	return set, nil
}

// Compiled returns env's compiled flag set at its head revision, compiling
// it at most once per revision.
func (s *Service) Compiled(ctx context.Context, env string) (*Compiled, error) {
	e, err := s.store.GetEnvironment(ctx, env)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	c := s.compiled[env]
	s.mu.Unlock()
	if c != nil && c.Revision() == e.Head {
		return c, nil
	}
	set, err := s.Set(ctx, env)
	if err != nil {
		return nil, err
	}
	c, err = Compile(set) // its errors name the environment and revision
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if old := s.compiled[env]; old == nil || old.Revision() < c.Revision() {
		s.compiled[env] = c
	}
	s.mu.Unlock()
	return c, nil
}

// Evaluate evaluates one flag in env for ctx against the current
// configuration. It returns KindNotFound for an unknown environment; an
// unknown flag is a Result with reason ERROR and FLAG_NOT_FOUND.
func (s *Service) Evaluate(ctx context.Context, env, key string, evalCtx Context) (Result, error) {
	c, err := s.Compiled(ctx, env)
	if err != nil {
		return Result{}, err
	}
	return Evaluate(c, key, evalCtx), nil
}

// ---- revisions ----

// ListRevisions returns env's revisions, newest first.
func (s *Service) ListRevisions(ctx context.Context, env string, f RevisionFilter) ([]Revision, error) {
	if _, err := s.store.GetEnvironment(ctx, env); err != nil {
		return nil, err
	}
	return s.store.ListRevisions(ctx, env, f)
}

// GetRevision returns revision n of env, or KindNotFound.
func (s *Service) GetRevision(ctx context.Context, env string, n int64) (Revision, error) {
	return s.store.GetRevision(ctx, env, n)
}

// DiffRevisions returns the changes that take env's content from revision a
// to revision b (either may be older), sorted by kind and key. It returns
// KindNotFound for a revision that does not exist.
func (s *Service) DiffRevisions(ctx context.Context, env string, a, b int64) ([]Change, error) {
	e, err := s.store.GetEnvironment(ctx, env)
	if err != nil {
		return nil, err
	}
	for _, n := range []int64{a, b} {
		if n < 0 || n > e.Head {
			return nil, solstice.Errorf(solstice.KindNotFound, "revision %d of %q not found (head is %d)", n, env, e.Head)
		}
	}
	from, err := s.store.ObjectsAt(ctx, env, a)
	if err != nil {
		return nil, err
	}
	to, err := s.store.ObjectsAt(ctx, env, b)
	if err != nil {
		return nil, err
	}
	return diffObjects(from, to), nil
}

type objectID struct {
	kind ObjectKind
	key  string
}

func indexObjects(objs []Object) map[objectID]Object {
	m := make(map[objectID]Object, len(objs))
	for _, o := range objs {
		m[objectID{o.Kind, o.Key}] = o
	}
	return m
}

// diffObjects returns the changes from one object list to another.
func diffObjects(from, to []Object) []Change {
	a, b := indexObjects(from), indexObjects(to)
	var out []Change
	for id, x := range a {
		y, ok := b[id]
		switch {
		case !ok:
			out = append(out, Change{Kind: id.kind, Key: id.key, Before: x.Content})
		case string(x.Content) != string(y.Content):
			out = append(out, Change{Kind: id.kind, Key: id.key, Before: x.Content, After: y.Content})
		}
	}
	for id, y := range b {
		if _, ok := a[id]; !ok {
			out = append(out, Change{Kind: id.kind, Key: id.key, After: y.Content})
		}
	}
	sortChanges(out)
	return out
}

func sortChanges(cs []Change) {
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Kind != cs[j].Kind {
			return cs[i].Kind < cs[j].Kind
		}
		return cs[i].Key < cs[j].Key
	})
}

// Revert appends a new revision to env that restores its content as it was
// right after revision n. Flags that no longer exist are not brought back;
// flags created after n are disabled rather than removed, since they still
// exist in other environments. The restored content is validated like any
// other write (a schema changed since n may reject old values). It returns
// KindNotFound, KindInvalid, or KindConflict when there is nothing to revert.
func (s *Service) Revert(ctx context.Context, env string, n int64, message string) (Revision, error) {
	e, err := s.store.GetEnvironment(ctx, env)
	if err != nil {
		return Revision{}, err
	}
	if n < 1 || n > e.Head {
		return Revision{}, solstice.Errorf(solstice.KindNotFound, "revision %d of %q not found (head is %d)", n, env, e.Head)
	}
	old, err := s.store.ObjectsAt(ctx, env, n)
	if err != nil {
		return Revision{}, err
	}
	cur, err := s.store.ListObjects(ctx, env, "")
	if err != nil {
		return Revision{}, err
	}
	defs, err := s.flagIndex(ctx)
	if err != nil {
		return Revision{}, err
	}
	target, err := revertTarget(old, cur, defs)
	if err != nil {
		return Revision{}, err
	}
	if err := validateSet(env, target, defs); err != nil {
		return Revision{}, err
	}
	changes := diffObjects(cur, target)
	if len(changes) == 0 {
		return Revision{}, solstice.Errorf(solstice.KindConflict, "%s already has the content of revision %d: nothing to revert", env, n)
	}
	if message == "" {
		message = fmt.Sprintf("Revert to revision %d", n)
	}
	objects := make([]ObjectWrite, len(changes))
	for i, c := range changes {
		objects[i] = ObjectWrite{Kind: c.Kind, Key: c.Key, Content: c.After, Expect: currentRevision(cur, c)}
	}
	return s.commit(ctx, env, message, objects, s.audit(ctx, "revision.revert", env, fmt.Sprintf("revision/%d", n), map[string]int64{"to": n}))
}

func currentRevision(cur []Object, c Change) int64 {
	for _, o := range cur {
		if o.Kind == c.Kind && o.Key == c.Key {
			return o.Revision
		}
	}
	return 0
}

func (s *Service) flagIndex(ctx context.Context) (map[string]Flag, error) {
	fs, err := s.store.ListFlags(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[string]Flag, len(fs))
	for _, f := range fs {
		m[f.Key] = f
	}
	return m, nil
}

// revertTarget computes the content a revert to old produces, given the
// current objects and the flag definitions that exist now.
func revertTarget(old, cur []Object, defs map[string]Flag) ([]Object, error) {
	oldIdx := indexObjects(old)
	var target []Object
	for _, o := range old {
		if o.Kind == KindFlag {
			var st FlagState
			if err := json.Unmarshal(o.Content, &st); err != nil {
				return nil, fmt.Errorf("decode flag %q: %w", o.Key, err)
			}
			if f, ok := defs[o.Key]; !ok || f.Type != st.Type {
				continue // deleted (or re-created with another type) since
			}
		}
		target = append(target, o)
	}
	for _, o := range cur {
		if o.Kind != KindFlag {
			continue
		}
		if _, ok := oldIdx[objectID{o.Kind, o.Key}]; ok {
			continue
		}
		var st FlagState
		if err := json.Unmarshal(o.Content, &st); err != nil {
			return nil, fmt.Errorf("decode flag %q: %w", o.Key, err)
		}
		st.Enabled = false
		content, err := CanonicalOf(st)
		if err != nil {
			return nil, err
		}
		target = append(target, Object{Kind: KindFlag, Key: o.Key, Content: content})
	}
	// Keep segments that a surviving configuration still references.
	set, err := decodeSet("", target)
	if err != nil {
		return nil, err
	}
	for _, o := range cur {
		if o.Kind != KindSegment {
			continue
		}
		if _, ok := oldIdx[objectID{o.Kind, o.Key}]; ok {
			continue
		}
		if len(segmentUsers(set.Flags, o.Key)) > 0 {
			target = append(target, o)
		}
	}
	return target, nil
}

// validateSet checks every object of a prospective environment content, with
// pointers prefixed by /flags/{key} and /segments/{key}.
func validateSet(env string, objs []Object, defs map[string]Flag) error {
	set, err := decodeSet(env, objs)
	if err != nil {
		return err
	}
	segs := map[string]bool{}
	var fields []solstice.FieldError
	for _, seg := range set.Segments {
		segs[seg.Key] = true
		for _, fe := range solstice.ErrorFields(ValidateSegment(seg)) {
			fe.Pointer = "/segments/" + seg.Key + fe.Pointer
			fields = append(fields, fe)
		}
	}
	for _, st := range set.Flags {
		f, ok := defs[st.Key]
		if !ok {
			fields = append(fields, solstice.FieldError{Pointer: "/flags/" + st.Key, Message: "no such flag"})
			continue
		}
		for _, fe := range solstice.ErrorFields(ValidateConfig(f, st.Config, segs)) {
			fe.Pointer = "/flags/" + st.Key + fe.Pointer
			fields = append(fields, fe)
		}
	}
	if len(fields) > 0 {
		return solstice.Invalid("the resulting configuration is invalid", fields...)
	}
	return nil
}

// ---- promotion ----

// Promotion is the plan (dry run) or result of promoting a flag's
// configuration from one environment to another.
type Promotion struct {
	Flag     string        `json:"flag"`
	From     string        `json:"from"`
	To       string        `json:"to"`
	DryRun   bool          `json:"dry_run"`
	Changes  []FieldChange `json:"changes"`            // what changes in the target
	Revision *Revision     `json:"revision,omitempty"` // the revision appended (not on a dry run)
}

// Promote copies a flag's configuration from one environment to another as
// one revision of the target (or only reports the diff, with dryRun). The
// segments its rules reference must exist in the target. expect is the
// target configuration's revision (AnyVersion to skip the check). It returns
// KindNotFound, KindInvalid, KindPreconditionFailed, or KindConflict when the
// target already has that configuration.
func (s *Service) Promote(ctx context.Context, key, from, to string, expect int64, dryRun bool, message string) (Promotion, error) {
	if from == to {
		return Promotion{}, solstice.Invalid("cannot promote an environment onto itself", solstice.FieldError{Pointer: "/to", Message: "must differ from the source environment"})
	}
	src, err := s.GetConfig(ctx, from, key)
	if err != nil {
		return Promotion{}, err
	}
	dst, err := s.GetConfig(ctx, to, key)
	if err != nil {
		return Promotion{}, err
	}
	before, err := stateContent(dst.Flag, dst.Config)
	if err != nil {
		return Promotion{}, err
	}
	after, err := stateContent(src.Flag, src.Config)
	if err != nil {
		return Promotion{}, err
	}
	changes, err := DiffJSON(before, after)
	if err != nil {
		return Promotion{}, err
	}
	p := Promotion{Flag: key, From: from, To: to, DryRun: dryRun, Changes: changes}
	if len(changes) == 0 {
		return p, solstice.Errorf(solstice.KindConflict, "flag %q is already identical in %s and %s", key, from, to)
	}
	if expect != AnyVersion && expect != dst.Revision {
		return p, solstice.Errorf(solstice.KindPreconditionFailed, "flag %q in %s is at revision %d, not %d: reload and retry", key, to, dst.Revision, expect)
	}
	segs, err := s.segmentKeys(ctx, to)
	if err != nil {
		return p, err
	}
	if err := ValidateConfig(src.Flag, src.Config, segs); err != nil {
		return p, err
	}
	if dryRun {
		return p, nil
	}
	if message == "" {
		message = fmt.Sprintf("Promote %s from %s", key, from)
	}
	rev, err := s.commit(ctx, to, message, []ObjectWrite{{Kind: KindFlag, Key: key, Content: after, Expect: dst.Revision}},
		s.audit(ctx, "flag_config.promote", to, "flag/"+key, map[string]string{"from": from}))
	if err != nil {
		return p, err
	}
	p.Revision = &rev
	return p, nil
}
