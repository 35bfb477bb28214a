// Package flags is the heart of Solstice: flags and their per-environment
// configuration, segments, revisions, validation, compilation and the pure
// evaluator shared by the control plane, the CLI and the game-server SDK.
//
// It imports neither Echo nor gorm nor database/sql: persistence is behind
// the Store interface declared here and implemented by package store.
package flags

import (
	"encoding/json"
	"time"
)

// Type is the type of a flag's values.
type Type string

// Flag types. Object flags carry structured JSON (seasonal-event configs:
// drop tables, multipliers, quest lists) and may be constrained by a JSON
// Schema.
const (
	TypeBoolean Type = "boolean"
	TypeString  Type = "string"
	TypeNumber  Type = "number"
	TypeObject  Type = "object"
)

// Flag is the environment-independent definition of a flag. Its type never
// changes after creation; everything that is served lives in Config, per
// environment.
type Flag struct {
	Key         string          `json:"key"`
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Tags        []string        `json:"tags,omitempty"`
	Type        Type            `json:"type"`
	Schema      json.RawMessage `json:"schema,omitempty"` // JSON Schema 2020-12 for every variant value (object flags)
	Version     int64           `json:"version"`          // bumped on every change of the definition; the ETag
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
}

// Config is a flag's configuration in one environment.
//
// Evaluation: when !Enabled the OffVariant is served (reason DISABLED).
// Otherwise the first rule whose conditions all match serves its variant
// (TARGETING_MATCH) or its split (SPLIT). When no rule matches, Split, if
// set, is applied (SPLIT); else DefaultVariant is served (STATIC when the
// flag has no rules, DEFAULT otherwise). A split whose bucketing attribute is
// missing from the context does not apply: DefaultVariant is served with
// reason DEFAULT.
type Config struct {
	Enabled        bool      `json:"enabled"`
	Variants       []Variant `json:"variants"`
	DefaultVariant string    `json:"default_variant"`
	OffVariant     string    `json:"off_variant"`
	Rules          []Rule    `json:"rules,omitempty"`
	Split          *Split    `json:"split,omitempty"` // the percentage rollout for everyone no rule matched
}

// Variant is a named value of a flag. Value must match the flag's Type (and
// Schema, if any).
type Variant struct {
	Key         string          `json:"key"`
	Value       json.RawMessage `json:"value"`
	Description string          `json:"description,omitempty"`
}

// Rule serves a variant or a split to contexts matching all its conditions.
// Exactly one of Variant and Split is set.
type Rule struct {
	ID          string      `json:"id,omitempty"` // stable name, shown in explanations; defaults to "rule-N"
	Description string      `json:"description,omitempty"`
	Conditions  []Condition `json:"conditions"` // ANDed; an empty list matches everyone
	Variant     string      `json:"variant,omitempty"`
	Split       *Split      `json:"split,omitempty"`
}

// Split assigns contexts to variants by weight, deterministically, with the
// flagd-compatible bucketing of the design notes: MurmurHash3 x86_32 (seed 0)
// of Salt+value(BucketBy), scaled into the total weight, variants walked in
// declaration order.
type Split struct {
	BucketBy string   `json:"bucket_by,omitempty"` // context attribute; default "targetingKey"
	Salt     string   `json:"salt,omitempty"`      // default: the flag key
	Weights  []Weight `json:"weights"`
}

// Weight is one variant's share of a split (integers, e.g. basis points
// summing to 10000).
type Weight struct {
	Variant string `json:"variant"`
	Weight  int    `json:"weight"`
}

// TargetingKey is the evaluation-context attribute holding the targeting key
// (OpenFeature's flattened-context name).
const TargetingKey = "targetingKey"

// Operator is a condition's comparison.
type Operator string

// Condition operators.
const (
	OpEquals       Operator = "eq"
	OpNotEquals    Operator = "neq"
	OpIn           Operator = "in"     // Value is an array
	OpNotIn        Operator = "not_in" // Value is an array
	OpLess         Operator = "lt"
	OpLessEq       Operator = "lte"
	OpGreater      Operator = "gt"
	OpGreaterEq    Operator = "gte"
	OpSemverEq     Operator = "semver_eq"
	OpSemverLess   Operator = "semver_lt"
	OpSemverLessEq Operator = "semver_lte"
	OpSemverGt     Operator = "semver_gt"
	OpSemverGtEq   Operator = "semver_gte"
	OpStartsWith   Operator = "starts_with"
	OpEndsWith     Operator = "ends_with"
	OpContains     Operator = "contains"
	OpBefore       Operator = "before" // RFC 3339 time
	OpAfter        Operator = "after"  // RFC 3339 time
	OpExists       Operator = "exists"
	OpNotExists    Operator = "not_exists"
	OpInSegment    Operator = "in_segment"     // Segment names the segment; Attribute unused
	OpNotInSegment Operator = "not_in_segment" // Segment names the segment; Attribute unused
)

// Condition tests one evaluation-context attribute, or membership of a
// segment.
type Condition struct {
	Attribute string          `json:"attribute,omitempty"`
	Op        Operator        `json:"op"`
	Value     json.RawMessage `json:"value,omitempty"`
	Segment   string          `json:"segment,omitempty"`
}

// MaxSegmentMembers bounds an explicit member list.
const MaxSegmentMembers = 10000

// Segment is a reusable, per-environment audience: a context is in the
// segment when its MembersAttribute value is listed in Members, or when it
// matches all Conditions (if any are given).
type Segment struct {
	Key              string      `json:"key"`
	Name             string      `json:"name,omitempty"`
	Description      string      `json:"description,omitempty"`
	Conditions       []Condition `json:"conditions,omitempty"`        // ANDed; may not reference segments
	MembersAttribute string      `json:"members_attribute,omitempty"` // default "targetingKey"
	Members          []string    `json:"members,omitempty"`           // explicit ids, at most MaxSegmentMembers
}

// FlagState is one flag as served in one environment: its key and type with
// that environment's configuration. An environment's flag set is a set of
// FlagStates plus segments; it is what revisions record and what snapshots
// carry.
type FlagState struct {
	Key  string `json:"key"`
	Type Type   `json:"type"`
	Config
}

// Set is the whole servable content of one environment at one revision.
type Set struct {
	Environment string      `json:"environment"`
	Revision    int64       `json:"revision"`
	Flags       []FlagState `json:"flags"`    // sorted by key
	Segments    []Segment   `json:"segments"` // sorted by key
}

// Environment is a deployment target (development, staging, production...)
// with its own flag configurations, segments, revisions and keys.
type Environment struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Protected   bool      `json:"protected"` // changes need a second person's approval (UI four-eyes)
	Head        int64     `json:"head"`      // the newest revision number; 0 before the first
	CreatedAt   time.Time `json:"created_at"`
}

// DefaultEnvironments exist in every installation.
var DefaultEnvironments = []string{"development", "staging", "production"}

// Revision is one immutable change of an environment's content.
type Revision struct {
	Environment string    `json:"environment"`
	Number      int64     `json:"number"` // 1, 2, 3... per environment
	Author      string    `json:"author"`
	Message     string    `json:"message"`
	CreatedAt   time.Time `json:"created_at"`
	Diff        []Change  `json:"diff"`
}

// ObjectKind names what a revision changes.
type ObjectKind string

// Revisioned object kinds.
const (
	KindFlag    ObjectKind = "flag"
	KindSegment ObjectKind = "segment"
)

// Change is one object's change within a revision. Before is nil for a
// creation, After is nil for a removal. Both are JSON documents (a FlagState
// or a Segment).
type Change struct {
	Kind   ObjectKind      `json:"kind"`
	Key    string          `json:"key"`
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
}

// Op returns "create", "update" or "delete".
func (c Change) Op() string {
	switch {
	case c.Before == nil:
		return "create"
	case c.After == nil:
		return "delete"
	default:
		return "update"
	}
}
