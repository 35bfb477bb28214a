package flags

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/solsticehq/solstice"
)

// Document is an environment's flags and segments as a file: what `solstice
// export` writes and `solstice apply` reads (YAML or JSON). Each flag carries
// its definition and its configuration in that environment.
type Document struct {
	Environment string         `json:"environment"`
	Revision    int64          `json:"revision,omitempty"` // informational: the revision exported
	Flags       []DocumentFlag `json:"flags"`
	Segments    []Segment      `json:"segments,omitempty"`
}

// DocumentFlag is one flag in a Document.
type DocumentFlag struct {
	Key         string          `json:"key"`
	Name        string          `json:"name,omitempty"`
	Description string          `json:"description,omitempty"`
	Tags        []string        `json:"tags,omitempty"`
	Type        Type            `json:"type"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Config
}

// Export returns env's current flags and segments as a Document. It returns
// KindNotFound for an unknown environment.
func (s *Service) Export(ctx context.Context, env string) (Document, error) {
	set, err := s.Set(ctx, env)
	if err != nil {
		return Document{}, err
	}
	defs, err := s.flagIndex(ctx)
	if err != nil {
		return Document{}, err
	}
	doc := Document{Environment: env, Revision: set.Revision, Flags: []DocumentFlag{}, Segments: set.Segments}
	for _, st := range set.Flags {
		f := defs[st.Key]
		doc.Flags = append(doc.Flags, DocumentFlag{
			Key: st.Key, Name: f.Name, Description: f.Description, Tags: f.Tags, Type: st.Type, Schema: f.Schema, Config: st.Config,
		})
	}
	return doc, nil
}

// Plan is what Apply changes (or, on a dry run, would change).
type Plan struct {
	Environment string          `json:"environment"`
	DryRun      bool            `json:"dry_run"`
	Definitions []PlannedChange `json:"definitions"` // flag definitions created or updated (all environments)
	Objects     []PlannedChange `json:"objects"`     // flag configurations and segments of the environment
	Revision    *Revision       `json:"revision,omitempty"`
}

// PlannedChange is one object's change in a Plan.
type PlannedChange struct {
	Kind   ObjectKind    `json:"kind"`
	Key    string        `json:"key"`
	Op     string        `json:"op"` // create, update
	Fields []FieldChange `json:"fields,omitempty"`
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Definitions) == 0 && len(p.Objects) == 0 }

// ApplyOptions tune Apply.
type ApplyOptions struct {
	DryRun  bool
	Message string
}

// Apply makes env's flags and segments match doc, as one revision of env:
// missing flags are created (disabled in every other environment), changed
// definitions are updated, configurations and segments are replaced. Flags
// and segments absent from doc are left alone. Everything is validated first
// and written in one transaction; with DryRun nothing is written. It returns
// KindInvalid (pointers into the document: /flags/N/..., /segments/N/...),
// KindNotFound for an unknown environment.
func (s *Service) Apply(ctx context.Context, env string, doc Document, opts ApplyOptions) (Plan, error) {
	plan := Plan{Environment: env, DryRun: opts.DryRun, Definitions: []PlannedChange{}, Objects: []PlannedChange{}}
	if doc.Environment != "" && doc.Environment != env {
		return plan, solstice.Invalid("the document is for another environment",
			solstice.FieldError{Pointer: "/environment", Message: fmt.Sprintf("is %q, applying to %q", doc.Environment, env)})
	}
	if _, err := s.store.GetEnvironment(ctx, env); err != nil {
		return plan, err
	}
	defs, err := s.flagIndex(ctx)
	if err != nil {
		return plan, err
	}
	cur, err := s.store.ListObjects(ctx, env, "")
	if err != nil {
		return plan, err
	}
	curIdx := indexObjects(cur)
	envs, err := s.store.ListEnvironments(ctx)
	if err != nil {
		return plan, err
	}

	var fields []solstice.FieldError
	prefix := func(p string, errs []solstice.FieldError) {
		for _, fe := range errs {
			fe.Pointer = p + fe.Pointer
			fields = append(fields, fe)
		}
	}
	segs := map[string]bool{}
	for _, o := range cur {
		if o.Kind == KindSegment {
			segs[o.Key] = true
		}
	}
	seenSeg := map[string]bool{}
	for i, seg := range doc.Segments {
		if seenSeg[seg.Key] {
			fields = append(fields, solstice.FieldError{Pointer: fmt.Sprintf("/segments/%d/key", i), Message: "duplicate segment"})
		}
		seenSeg[seg.Key] = true
		segs[seg.Key] = true
		prefix(fmt.Sprintf("/segments/%d", i), solstice.ErrorFields(ValidateSegment(seg)))
	}

	now := s.clock.Now().UTC()
	var w Write
	target := RevisionWrite{Environment: env, Author: solstice.ActorFrom(ctx).Name}
	others := map[string]*RevisionWrite{}
	seenFlag := map[string]bool{}
	for i, df := range doc.Flags {
		p := fmt.Sprintf("/flags/%d", i)
		if seenFlag[df.Key] {
			fields = append(fields, solstice.FieldError{Pointer: p + "/key", Message: "duplicate flag"})
			continue
		}
		seenFlag[df.Key] = true
		f, exists := defs[df.Key]
		want := Flag{Key: df.Key, Name: df.Name, Description: df.Description, Tags: df.Tags, Type: df.Type, Schema: df.Schema}
		if want.Name == "" {
			want.Name = want.Key
		}
		if err := ValidateFlag(want); err != nil {
			prefix(p, solstice.ErrorFields(err))
			continue
		}
		if want.Schema != nil {
			want.Schema, _ = Canonical(want.Schema)
		}
		if exists {
			if f.Type != want.Type {
				fields = append(fields, solstice.FieldError{Pointer: p + "/type", Message: fmt.Sprintf("flag %q is of type %s; a type cannot change", f.Key, f.Type)})
				continue
			}
			if ch := definitionChanges(f, want); len(ch) > 0 {
				upd := f
				upd.Name, upd.Description, upd.Tags, upd.Schema = want.Name, want.Description, want.Tags, want.Schema
				upd.Version, upd.UpdatedAt = f.Version+1, now
				w.UpdateFlags = append(w.UpdateFlags, FlagUpdate{Flag: upd, Expect: f.Version})
				w.Audit = append(w.Audit, s.audit(ctx, "flag.update", "", "flag/"+f.Key, map[string]string{"via": "apply"}))
				plan.Definitions = append(plan.Definitions, PlannedChange{Kind: KindFlag, Key: f.Key, Op: "update", Fields: ch})
				if upd.Schema != nil {
					if err := s.checkSchemaEverywhere(ctx, upd, env); err != nil {
						prefix("", solstice.ErrorFields(err))
					}
				}
				f = upd
			}
		} else {
			f = want
			f.Version, f.CreatedAt, f.UpdatedAt = 1, now, now
			w.CreateFlags = append(w.CreateFlags, f)
			w.Audit = append(w.Audit, s.audit(ctx, "flag.create", "", "flag/"+f.Key, map[string]string{"via": "apply"}))
			plan.Definitions = append(plan.Definitions, PlannedChange{Kind: KindFlag, Key: f.Key, Op: "create"})
		}
		if err := ValidateConfig(f, df.Config, segs); err != nil {
			prefix(p, solstice.ErrorFields(err))
			continue
		}
		content, err := stateContent(f, df.Config)
		if err != nil {
			return plan, err
		}
		if pc, changed, err := plannedObject(KindFlag, df.Key, curIdx, content); err != nil {
			return plan, err
		} else if changed {
			plan.Objects = append(plan.Objects, pc)
			target.Objects = append(target.Objects, ObjectWrite{Kind: KindFlag, Key: df.Key, Content: content, Expect: curIdx[objectID{KindFlag, df.Key}].Revision})
		}
		if !exists { // the new flag starts disabled everywhere else
			off := df.Config
			off.Enabled = false
			offContent, err := stateContent(f, off)
			if err != nil {
				return plan, err
			}
			for _, e := range envs {
				if e.Name == env {
					continue
				}
				rw := others[e.Name]
				if rw == nil {
					rw = &RevisionWrite{Environment: e.Name, Author: target.Author, Message: "Create flags (apply to " + env + ")"}
					others[e.Name] = rw
				}
				rw.Objects = append(rw.Objects, ObjectWrite{Kind: KindFlag, Key: df.Key, Content: offContent, Expect: 0})
			}
		}
	}
	for _, seg := range doc.Segments {
		content, err := CanonicalOf(seg)
		if err != nil {
			return plan, err
		}
		pc, changed, err := plannedObject(KindSegment, seg.Key, curIdx, content)
		if err != nil {
			return plan, err
		}
		if changed {
			plan.Objects = append(plan.Objects, pc)
			target.Objects = append(target.Objects, ObjectWrite{Kind: KindSegment, Key: seg.Key, Content: content, Expect: curIdx[objectID{KindSegment, seg.Key}].Revision})
		}
	}
	if len(fields) > 0 {
		return plan, solstice.Invalid("the document is invalid", fields...)
	}
	if opts.DryRun || plan.Empty() {
		return plan, nil
	}
	target.Message = opts.Message
	if target.Message == "" {
		target.Message = fmt.Sprintf("Apply %d flag(s) and %d segment(s)", len(doc.Flags), len(doc.Segments))
	}
	target.Audit = []solstice.AuditEntry{s.audit(ctx, "environment.apply", env, "environment/"+env, map[string]int{"objects": len(target.Objects)})}
	if len(target.Objects) > 0 {
		w.Revisions = append(w.Revisions, target)
	}
	for _, e := range envs { // deterministic order
		if rw := others[e.Name]; rw != nil {
			w.Revisions = append(w.Revisions, *rw)
		}
	}
	revs, err := s.write(ctx, w)
	if err != nil {
		return plan, err
	}
	if len(target.Objects) > 0 {
		plan.Revision = &revs[0]
	}
	return plan, nil
}

// plannedObject compares content with the current object and describes the
// change, if any.
func plannedObject(kind ObjectKind, key string, cur map[objectID]Object, content json.RawMessage) (PlannedChange, bool, error) {
	o, exists := cur[objectID{kind, key}]
	if exists && string(o.Content) == string(content) {
		return PlannedChange{}, false, nil
	}
	pc := PlannedChange{Kind: kind, Key: key, Op: "create"}
	if exists {
		pc.Op = "update"
	}
	var before json.RawMessage
	if exists {
		before = o.Content
	}
	ch, err := DiffJSON(before, content)
	if err != nil {
		return pc, false, err
	}
	pc.Fields = ch
	return pc, true, nil
}

// definitionChanges lists what differs between two definitions of one flag.
func definitionChanges(have, want Flag) []FieldChange {
	a, _ := json.Marshal(map[string]any{"name": have.Name, "description": have.Description, "tags": nonNil(have.Tags), "schema": have.Schema})
	b, _ := json.Marshal(map[string]any{"name": want.Name, "description": want.Description, "tags": nonNil(want.Tags), "schema": want.Schema})
	ch, _ := DiffJSON(a, b)
	return ch
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// Set returns the servable content the document describes.
func (d Document) Set() Set {
	s := Set{Environment: d.Environment, Revision: d.Revision, Flags: make([]FlagState, 0, len(d.Flags)), Segments: d.Segments}
	for _, f := range d.Flags {
		s.Flags = append(s.Flags, FlagState{Key: f.Key, Type: f.Type, Config: f.Config})
	}
	if s.Segments == nil {
		s.Segments = []Segment{}
	}
	return s
}
