package flags

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// Compiled is one environment's flag set prepared for evaluation: every
// variant value decoded once, every condition value parsed once, variant
// names resolved to indices, segment member lists turned into sets. It is
// immutable and safe for concurrent use. A nil *Compiled is an empty set in
// which Evaluate finds no flag set at all (reason ERROR, code GENERAL).
type Compiled struct {
	env      string
	rev      int64
	flags    map[string]*compiledFlag
	keys     []string       // sorted
	source   Set            // a private deep copy of what was compiled
	segIndex map[string]int // segment key → index in source.Segments
}

type compiledFlag struct {
	src      int // index in Compiled.source.Flags
	typ      Type
	enabled  bool
	variants []compiledVariant
	def, off int // indices into variants
	rules    []compiledRule
	split    *compiledSplit // the default split; nil when none
	static   bool           // no rules and no split: the default is served with reason STATIC
}

type compiledVariant struct {
	key   string
	value any // bool, string, float64 or map[string]any (numbers within as float64)
}

type compiledRule struct {
	id      string
	conds   []compiledCondition
	variant int            // index into variants; -1 when the rule serves a split
	split   *compiledSplit // nil when the rule serves a variant
}

// compiledSplit is a split with its defaults filled in and its weights
// accumulated in declaration order.
type compiledSplit struct {
	bucketBy string
	salt     string
	variants []int // indices into the flag's variants, in declaration order
	cum      []int // cum[i] = sum of the weights of variants[0..i]
	total    int
}

type compiledSegment struct {
	membersAttr string
	members     map[string]struct{}
	conds       []compiledCondition
}

// Compile validates s structurally and prepares it for Evaluate. The checks
// are the ones evaluation depends on (types of values, references to
// variants and segments, condition values, split weights); the limits and
// naming rules of ValidateConfig and ValidateSegment, and value schemas, are
// not rechecked, so that a set stored under older limits still compiles.
//
// It returns a KindInvalid *solstice.Error, wrapped with the environment and
// revision, whose field errors point into s (for example
// "/flags/2/rules/0/conditions/1/value").
func Compile(s Set) (*Compiled, error) {
	p := &problems{}
	segs := make(map[string]*compiledSegment, len(s.Segments))
	segIndex := make(map[string]int, len(s.Segments))
	segCompiler := compiler{p: p} // segments may not refer to segments
	for i, sg := range s.Segments {
		base := "/segments/" + strconv.Itoa(i)
		cs := segCompiler.segment(base, sg)
		if sg.Key == "" {
			continue // reported by segment
		}
		if _, dup := segs[sg.Key]; dup {
			p.add(base+"/key", "segment %q is listed more than once", sg.Key)
			continue
		}
		segs[sg.Key] = cs
		segIndex[sg.Key] = i
	}
	cc := compiler{p: p, segments: func(key string) (*compiledSegment, bool) {
		cs, ok := segs[key]
		return cs, ok
	}}
	flags := make(map[string]*compiledFlag, len(s.Flags))
	keys := make([]string, 0, len(s.Flags))
	for i, fs := range s.Flags {
		base := "/flags/" + strconv.Itoa(i)
		cf := cc.flag(base, fs.Key, fs.Type, fs.Config)
		if fs.Key == "" {
			p.add(base+"/key", "is required")
			continue
		}
		if _, dup := flags[fs.Key]; dup {
			p.add(base+"/key", "flag %q is listed more than once", fs.Key)
			continue
		}
		cf.src = i
		flags[fs.Key] = cf
		keys = append(keys, fs.Key)
	}
	if err := p.err("the flag set is invalid"); err != nil {
		return nil, fmt.Errorf("compile %s revision %d: %w", s.Environment, s.Revision, err)
	}
	slices.Sort(keys)
	return &Compiled{env: s.Environment, rev: s.Revision, flags: flags, keys: keys, source: cloneSet(s), segIndex: segIndex}, nil
}

// Environment returns the name of the environment the set belongs to.
func (c *Compiled) Environment() string {
	if c == nil {
		return ""
	}
	return c.env
}

// Revision returns the content revision the set was compiled from.
func (c *Compiled) Revision() int64 {
	if c == nil {
		return 0
	}
	return c.rev
}

// Len returns the number of flags in the set.
func (c *Compiled) Len() int {
	if c == nil {
		return 0
	}
	return len(c.keys)
}

// Keys returns the keys of every flag in the set, sorted. The slice is the
// caller's.
func (c *Compiled) Keys() []string {
	if c == nil {
		return nil
	}
	return slices.Clone(c.keys)
}

// Flag returns a copy of the flag's configuration as it was compiled, and
// whether the set has a flag with that key.
func (c *Compiled) Flag(key string) (FlagState, bool) {
	if c == nil {
		return FlagState{}, false
	}
	f, ok := c.flags[key]
	if !ok {
		return FlagState{}, false
	}
	return cloneFlagState(c.source.Flags[f.src]), true
}

// Segment returns a copy of the segment as it was compiled, and whether the
// set has a segment with that key.
func (c *Compiled) Segment(key string) (Segment, bool) {
	if c == nil {
		return Segment{}, false
	}
	i, ok := c.segIndex[key]
	if !ok {
		return Segment{}, false
	}
	return cloneSegment(c.source.Segments[i]), true
}

// Set returns a copy of the whole set that was compiled.
func (c *Compiled) Set() Set {
	if c == nil {
		return Set{}
	}
	return cloneSet(c.source)
}

// compiler does the structural checks and the compilation shared by Compile
// and the Validate functions, so that whatever validates also compiles.
// Problems go to p with JSON pointers built from the base pointers passed in.
type compiler struct {
	p *problems
	// segments looks up a segment by key; nil means conditions may not
	// refer to segments at all (inside a segment). In validation the
	// returned segment may be nil: only its existence matters.
	segments func(key string) (*compiledSegment, bool)
}

func (cc *compiler) flag(base, key string, t Type, c Config) *compiledFlag {
	f := &compiledFlag{typ: t, enabled: c.Enabled, def: -1, off: -1}
	if !validType(t) {
		if t == "" {
			cc.p.add(base+"/type", "is required")
		} else {
			cc.p.add(base+"/type", "must be one of boolean, string, number, object; got %q", t)
		}
	}
	index := make(map[string]int, len(c.Variants))
	if len(c.Variants) == 0 {
		cc.p.add(base+"/variants", "must list at least one variant")
	}
	f.variants = make([]compiledVariant, len(c.Variants))
	for i, v := range c.Variants {
		vp := base + "/variants/" + strconv.Itoa(i)
		switch _, dup := index[v.Key]; {
		case v.Key == "":
			cc.p.add(vp+"/key", "is required")
		case dup:
			cc.p.add(vp+"/key", "variant %q is declared more than once", v.Key)
		default:
			index[v.Key] = i
		}
		f.variants[i] = compiledVariant{key: v.Key}
		if validType(t) {
			f.variants[i].value = cc.value(vp+"/value", t, v.Value)
		}
	}
	f.def = cc.variantRef(base+"/default_variant", c.DefaultVariant, index)
	f.off = cc.variantRef(base+"/off_variant", c.OffVariant, index)

	f.rules = make([]compiledRule, len(c.Rules))
	for i, r := range c.Rules {
		rp := base + "/rules/" + strconv.Itoa(i)
		cr := compiledRule{id: r.ID, variant: -1}
		if cr.id == "" {
			cr.id = defaultRuleID(i)
		}
		cr.conds = cc.conditions(rp+"/conditions", r.Conditions)
		switch {
		case r.Variant != "" && r.Split != nil:
			cc.p.add(rp, "set either variant or split, not both")
		case r.Variant != "":
			cr.variant = cc.variantRef(rp+"/variant", r.Variant, index)
		case r.Split != nil:
			cr.split = cc.split(rp+"/split", r.Split, key, index)
		default:
			cc.p.add(rp, "set a variant or a split to serve")
		}
		f.rules[i] = cr
	}
	if c.Split != nil {
		f.split = cc.split(base+"/split", c.Split, key, index)
	}
	f.static = len(c.Rules) == 0 && c.Split == nil
	return f
}

// defaultRuleID names the rule at index i (0-based) when it has no ID:
// "rule-1" is the first rule, matching the 1-based numbering of Explain.
func defaultRuleID(i int) string { return "rule-" + strconv.Itoa(i+1) }

func (cc *compiler) variantRef(ptr, name string, index map[string]int) int {
	if name == "" {
		cc.p.add(ptr, "is required")
		return -1
	}
	i, ok := index[name]
	if !ok {
		cc.p.add(ptr, "unknown variant %q", name)
		return -1
	}
	return i
}

func (cc *compiler) split(ptr string, s *Split, flagKey string, index map[string]int) *compiledSplit {
	cs := &compiledSplit{bucketBy: s.BucketBy, salt: s.Salt}
	if cs.bucketBy == "" {
		cs.bucketBy = TargetingKey
	}
	if cs.salt == "" {
		cs.salt = flagKey
	}
	if len(s.Weights) == 0 {
		cc.p.add(ptr+"/weights", "must list at least one variant")
		return cs
	}
	seen := make(map[string]bool, len(s.Weights))
	ok := true
	for i, w := range s.Weights {
		wp := ptr + "/weights/" + strconv.Itoa(i)
		vi := cc.variantRef(wp+"/variant", w.Variant, index)
		switch {
		case vi < 0:
			ok = false
		case seen[w.Variant]:
			cc.p.add(wp+"/variant", "variant %q is listed more than once", w.Variant)
			ok = false
		}
		seen[w.Variant] = true
		switch {
		case w.Weight < 0:
			cc.p.add(wp+"/weight", "must not be negative")
			ok = false
			continue
		case w.Weight > MaxTotalWeight:
			cc.p.add(wp+"/weight", "must be at most %d", MaxTotalWeight)
			ok = false
			continue
		}
		cs.total += w.Weight // each at most MaxTotalWeight: the sum cannot overflow
		cs.variants = append(cs.variants, vi)
		cs.cum = append(cs.cum, cs.total)
	}
	switch {
	case !ok: // already reported
	case cs.total == 0:
		cc.p.add(ptr+"/weights", "the weights must add up to more than 0")
	case cs.total > MaxTotalWeight:
		cc.p.add(ptr+"/weights", "the weights add up to %d; the limit is %d", cs.total, MaxTotalWeight)
	}
	return cs
}

func (cc *compiler) segment(base string, s Segment) *compiledSegment {
	cs := &compiledSegment{membersAttr: s.MembersAttribute}
	if s.Key == "" {
		cc.p.add(base+"/key", "is required")
	}
	if cs.membersAttr == "" {
		cs.membersAttr = TargetingKey
	}
	cs.members = make(map[string]struct{}, len(s.Members))
	for _, m := range s.Members {
		if m != "" { // an empty identifier is a missing one: it never matches
			cs.members[m] = struct{}{}
		}
	}
	inner := compiler{p: cc.p} // no segment lookups: segments cannot refer to segments
	cs.conds = inner.conditions(base+"/conditions", s.Conditions)
	return cs
}

func (cc *compiler) conditions(ptr string, conds []Condition) []compiledCondition {
	if len(conds) == 0 {
		return nil
	}
	out := make([]compiledCondition, len(conds))
	for i, c := range conds {
		out[i] = cc.condition(ptr+"/"+strconv.Itoa(i), c)
	}
	return out
}

// value decodes a variant value and checks it against the flag's type.
// Numbers become float64 everywhere (also inside objects), so a number that
// does not fit a float64 is reported at its own pointer.
func (cc *compiler) value(ptr string, t Type, raw json.RawMessage) any {
	v, ok := cc.decodeJSON(ptr, raw)
	if !ok {
		return nil
	}
	switch t {
	case TypeBoolean:
		if b, ok := v.(bool); ok {
			return b
		}
		cc.p.add(ptr, "must be true or false (the flag is boolean), got %s", jsonKind(v))
	case TypeString:
		if s, ok := v.(string); ok {
			return s
		}
		cc.p.add(ptr, "must be a string (the flag is string), got %s", jsonKind(v))
	case TypeNumber:
		if _, ok := v.(json.Number); ok {
			return cc.numbers(ptr, v)
		}
		cc.p.add(ptr, "must be a number (the flag is number), got %s", jsonKind(v))
	case TypeObject:
		if _, ok := v.(map[string]any); ok {
			return cc.numbers(ptr, v)
		}
		cc.p.add(ptr, "must be a JSON object (the flag is object), got %s", jsonKind(v))
	}
	return nil
}

// decodeJSON decodes raw, keeping numbers as json.Number. An empty value or
// JSON null is reported as missing.
func (cc *compiler) decodeJSON(ptr string, raw json.RawMessage) (any, bool) {
	if len(bytes.TrimSpace(raw)) == 0 {
		cc.p.add(ptr, "is required")
		return nil, false
	}
	if !json.Valid(raw) {
		cc.p.add(ptr, "is not valid JSON")
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil { // cannot happen after json.Valid
		cc.p.add(ptr, "is not valid JSON: %v", err)
		return nil, false
	}
	if v == nil {
		cc.p.add(ptr, "is required (got null)")
		return nil, false
	}
	return v, true
}

// numbers replaces every json.Number in v by its float64, reporting numbers
// a float64 cannot hold.
func (cc *compiler) numbers(ptr string, v any) any {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || math.IsInf(f, 0) {
			cc.p.add(ptr, "number %s is out of range", x)
			return 0.0
		}
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = cc.numbers(ptr+"/"+PointerToken(k), e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = cc.numbers(ptr+"/"+strconv.Itoa(i), e)
		}
		return x
	default:
		return v
	}
}

// jsonKind names the JSON type of a value decoded with UseNumber.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func validType(t Type) bool {
	switch t {
	case TypeBoolean, TypeString, TypeNumber, TypeObject:
		return true
	}
	return false
}

func cloneSet(s Set) Set {
	out := s
	out.Flags = make([]FlagState, len(s.Flags))
	for i, f := range s.Flags {
		out.Flags[i] = cloneFlagState(f)
	}
	out.Segments = make([]Segment, len(s.Segments))
	for i, sg := range s.Segments {
		out.Segments[i] = cloneSegment(sg)
	}
	return out
}

func cloneFlagState(f FlagState) FlagState {
	out := f
	out.Variants = slices.Clone(f.Variants)
	for i := range out.Variants {
		out.Variants[i].Value = bytes.Clone(f.Variants[i].Value)
	}
	out.Rules = slices.Clone(f.Rules)
	for i := range out.Rules {
		out.Rules[i].Conditions = cloneConditions(f.Rules[i].Conditions)
		out.Rules[i].Split = cloneSplit(f.Rules[i].Split)
	}
	out.Split = cloneSplit(f.Split)
	return out
}

func cloneSplit(s *Split) *Split {
	if s == nil {
		return nil
	}
	out := *s
	out.Weights = slices.Clone(s.Weights)
	return &out
}

func cloneConditions(cs []Condition) []Condition {
	out := slices.Clone(cs)
	for i := range out {
		out[i].Value = bytes.Clone(cs[i].Value)
	}
	return out
}

func cloneSegment(s Segment) Segment {
	out := s
	out.Conditions = cloneConditions(s.Conditions)
	out.Members = slices.Clone(s.Members)
	return out
}
