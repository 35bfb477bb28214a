package flags

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/solsticehq/solstice"
)

// Limits enforced by validation. Compile does not recheck them, so a set
// stored under older limits still compiles after they change.
const (
	MaxNameLength        = 200       // characters of a flag's or segment's name
	MaxDescriptionLength = 2000      // characters of any description
	MaxTags              = 20        // tags per flag
	MaxVariants          = 100       // variants per flag
	MaxRules             = 500       // rules per flag configuration
	MaxConditions        = 100       // conditions per rule or segment
	MaxListValues        = 10000     // values of an in / not_in condition
	MaxAttributeLength   = 256       // bytes of a condition's attribute name
	MaxSplitFieldLength  = 128       // characters of a split's bucket_by and salt
	MaxMemberLength      = 256       // bytes of a segment member
	MaxTotalWeight       = 1_000_000 // sum of a split's weights
	MaxConfigBytes       = 1 << 20   // a configuration serialized as JSON
	MaxSchemaBytes       = 256 << 10 // a flag's value schema
)

// ValidKey reports whether key is a valid flag, segment, variant or rule
// key: 1 to 128 characters of lower-case ASCII letters, digits, '.', '_' and
// '-', starting with a letter or digit; that is ^[a-z0-9][a-z0-9._-]{0,127}$.
// Keys appear in URLs, metrics labels and Luau code unquoted, hence the
// narrow alphabet.
func ValidKey(key string) bool { return ValidName(key, 128, "._-") }

// validTag reports whether tag matches ^[a-z0-9][a-z0-9._:-]{0,63}$ (a key
// that may also hold ':', for "team:live-ops").
func validTag(tag string) bool { return ValidName(tag, 64, "._:-") }

// ValidName reports whether s is 1 to maxLen bytes of lower-case ASCII
// letters and digits, and, after the first byte, the punctuation in punct:
// the shape of every key and name in Solstice (flag and variant keys, tags,
// custom counter names, reject reasons).
func ValidName(s string, maxLen int, punct string) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && strings.IndexByte(punct, c) >= 0:
		default:
			return false
		}
	}
	return true
}

const keyRule = "must be 1 to 128 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"

// ValidateFlag checks a flag definition: its key (see ValidKey), a name of
// at most MaxNameLength characters, a description of at most
// MaxDescriptionLength, at most MaxTags distinct tags matching
// ^[a-z0-9][a-z0-9._:-]{0,63}$, one of the four types, and a schema only on
// object flags, which must compile (see CompileSchema).
//
// It returns nil or a KindInvalid *solstice.Error listing every problem
// with its JSON pointer into the flag ("/key", "/tags/2", "/schema",
// "/schema/properties/drops/type"...).
func ValidateFlag(f Flag) error {
	p := &problems{}
	switch {
	case f.Key == "":
		p.add("/key", "is required")
	case !ValidKey(f.Key):
		p.add("/key", keyRule)
	}
	switch {
	case strings.TrimSpace(f.Name) == "":
		p.add("/name", "is required")
	default:
		p.maxChars("/name", f.Name, MaxNameLength)
	}
	p.maxChars("/description", f.Description, MaxDescriptionLength)
	if len(f.Tags) > MaxTags {
		p.add("/tags", "at most %d tags are allowed, got %d", MaxTags, len(f.Tags))
	}
	seen := make(map[string]bool, len(f.Tags))
	for i, t := range f.Tags {
		tp := "/tags/" + strconv.Itoa(i)
		switch {
		case !validTag(t):
			p.add(tp, "must be 1 to 64 of a-z, 0-9, '.', '_', ':', '-', starting with a letter or digit")
		case seen[t]:
			p.add(tp, "tag %q is listed more than once", t)
		}
		seen[t] = true
	}
	switch {
	case f.Type == "":
		p.add("/type", "is required")
	case !validType(f.Type):
		p.add("/type", "must be one of boolean, string, number, object; got %q", f.Type)
	}
	if hasJSON(f.Schema) {
		if f.Type != TypeObject {
			p.add("/schema", "only object flags can have a schema")
		} else {
			compileSchemaField(p, "/schema", f.Schema)
		}
	}
	return p.err(fmt.Sprintf("invalid flag %q", f.Key))
}

// ValidateConfig checks c as the configuration of flag f in an environment
// whose segments are the keys of segments (those mapped to true). It checks
// everything Compile needs, plus: at most MaxVariants variants whose keys
// pass ValidKey, every object value valid against f.Schema, at most
// MaxRules rules with valid, unique IDs (a rule without an ID is named
// "rule-N", N counting from 1), conditions without stray fields, splits with
// bucket_by and salt of at most MaxSplitFieldLength characters, and the
// whole configuration at most MaxConfigBytes of JSON.
//
// It returns nil or a KindInvalid *solstice.Error listing every problem
// found with its JSON pointer into the configuration (a Config, or a
// FlagState: they share their pointers), e.g. "/variants/2/value/drops/0/weight"
// for a schema violation inside an object value, "/rules/0/conditions/1/value",
// "/split/weights".
func ValidateConfig(f Flag, c Config, segments map[string]bool) error {
	p := &problems{}
	cc := compiler{p: p, segments: func(key string) (*compiledSegment, bool) {
		return nil, segments[key]
	}}
	cf := cc.flag("", f.Key, f.Type, c)

	if len(c.Variants) > MaxVariants {
		p.add("/variants", "at most %d variants are allowed, got %d", MaxVariants, len(c.Variants))
	}
	for i, v := range c.Variants {
		vp := "/variants/" + strconv.Itoa(i)
		if v.Key != "" && !ValidKey(v.Key) {
			p.add(vp+"/key", keyRule)
		}
		p.maxChars(vp+"/description", v.Description, MaxDescriptionLength)
	}
	if len(c.Rules) > MaxRules {
		p.add("/rules", "at most %d rules are allowed, got %d", MaxRules, len(c.Rules))
	}
	ruleIDs := make(map[string]int, len(c.Rules))
	for i, r := range c.Rules {
		rp := "/rules/" + strconv.Itoa(i)
		id := r.ID
		if id == "" {
			id = defaultRuleID(i)
		} else if !ValidKey(id) {
			p.add(rp+"/id", keyRule)
		}
		if j, dup := ruleIDs[id]; dup {
			p.add(rp+"/id", "rule id %q is already used by rule #%d (a rule without an id is named rule-N)", id, j+1)
		} else {
			ruleIDs[id] = i
		}
		p.maxChars(rp+"/description", r.Description, MaxDescriptionLength)
		conditionPolicy(p, rp+"/conditions", r.Conditions)
		splitPolicy(p, rp+"/split", r.Split)
	}
	splitPolicy(p, "/split", c.Split)

	msg := fmt.Sprintf("invalid configuration of flag %q", f.Key)
	if f.Type == TypeObject && hasJSON(f.Schema) {
		sp := &problems{}
		if sch := compileSchemaField(sp, "/schema", f.Schema); sch != nil {
			for i, v := range c.Variants {
				if _, ok := cf.variants[i].value.(map[string]any); ok {
					p.fields = append(p.fields, validateValue(sch, "/variants/"+strconv.Itoa(i)+"/value", v.Value)...)
				}
			}
		} else {
			p.add("", "the flag's schema does not compile, so no value could be checked against it; fix the flag first")
		}
	}
	if raw, err := json.Marshal(c); err == nil && len(raw) > MaxConfigBytes {
		p.add("", "the configuration is %d bytes of JSON; the limit is %d", len(raw), MaxConfigBytes)
	}
	return p.err(msg)
}

// ValidateSegment checks a segment: its key (see ValidKey), name and
// description lengths, a members attribute of at most MaxAttributeLength
// bytes, at most MaxSegmentMembers non-empty members of at most
// MaxMemberLength bytes, and at most MaxConditions valid conditions, none of
// which may refer to a segment.
//
// It returns nil or a KindInvalid *solstice.Error listing every problem
// with its JSON pointer into the segment ("/members/3",
// "/conditions/0/value"...).
func ValidateSegment(s Segment) error {
	p := &problems{}
	cc := compiler{p: p}
	cc.segment("", s)
	if s.Key != "" && !ValidKey(s.Key) {
		p.add("/key", keyRule)
	}
	p.maxChars("/name", s.Name, MaxNameLength)
	p.maxChars("/description", s.Description, MaxDescriptionLength)
	if len(s.MembersAttribute) > MaxAttributeLength {
		p.add("/members_attribute", "must be at most %d bytes", MaxAttributeLength)
	}
	if len(s.Members) > MaxSegmentMembers {
		p.add("/members", "at most %d members are allowed, got %d", MaxSegmentMembers, len(s.Members))
	}
	for i, m := range s.Members {
		switch {
		case m == "":
			p.add("/members/"+strconv.Itoa(i), "must not be empty")
		case len(m) > MaxMemberLength:
			p.add("/members/"+strconv.Itoa(i), "must be at most %d bytes", MaxMemberLength)
		}
	}
	conditionPolicy(p, "/conditions", s.Conditions)
	return p.err(fmt.Sprintf("invalid segment %q", s.Key))
}

// conditionPolicy checks what the compiler does not: counts, lengths, and
// fields that the operator ignores (which signal a mistake).
func conditionPolicy(p *problems, ptr string, conds []Condition) {
	if len(conds) > MaxConditions {
		p.add(ptr, "at most %d conditions are allowed, got %d", MaxConditions, len(conds))
	}
	for i, c := range conds {
		cp := ptr + "/" + strconv.Itoa(i)
		info, known := operators[c.Op]
		if !known {
			continue // reported by the compiler
		}
		if len(c.Attribute) > MaxAttributeLength {
			p.add(cp+"/attribute", "must be at most %d bytes", MaxAttributeLength)
		}
		if info.segment {
			if c.Attribute != "" {
				p.add(cp+"/attribute", "is not used by %s: remove it", c.Op)
			}
			if hasJSON(c.Value) {
				p.add(cp+"/value", "is not used by %s: remove it", c.Op)
			}
			continue
		}
		if c.Segment != "" {
			p.add(cp+"/segment", "is only used by in_segment and not_in_segment: remove it")
		}
		if !info.value && hasJSON(c.Value) {
			p.add(cp+"/value", "is not used by %s: remove it", c.Op)
		}
		if c.Op == OpIn || c.Op == OpNotIn {
			var list []json.RawMessage
			if json.Unmarshal(c.Value, &list) == nil && len(list) > MaxListValues {
				p.add(cp+"/value", "at most %d values are allowed, got %d", MaxListValues, len(list))
			}
		}
	}
}

func splitPolicy(p *problems, ptr string, s *Split) {
	if s == nil {
		return
	}
	p.maxChars(ptr+"/bucket_by", s.BucketBy, MaxSplitFieldLength)
	p.maxChars(ptr+"/salt", s.Salt, MaxSplitFieldLength)
}

// hasJSON reports whether raw holds a value other than null.
func hasJSON(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s != "" && s != "null"
}

// problems collects the field errors of one document.
type problems struct {
	fields []solstice.FieldError
}

func (p *problems) add(pointer, format string, args ...any) {
	p.fields = append(p.fields, solstice.FieldError{Pointer: pointer, Message: fmt.Sprintf(format, args...)})
}

func (p *problems) maxChars(pointer, s string, limit int) {
	if n := utf8.RuneCountInString(s); n > limit {
		p.add(pointer, "must be at most %d characters, got %d", limit, n)
	}
}

// err returns nil without problems, else a KindInvalid error with the
// problems sorted by pointer (array indices numerically) and deduplicated.
func (p *problems) err(msg string) error {
	if len(p.fields) == 0 {
		return nil
	}
	fields := slices.Clone(p.fields)
	slices.SortStableFunc(fields, func(a, b solstice.FieldError) int { return comparePointers(a.Pointer, b.Pointer) })
	fields = slices.Compact(fields)
	return solstice.Invalid(msg, fields...)
}

// comparePointers orders JSON pointers token by token, comparing tokens that
// are both array indices as numbers ("/rules/2" before "/rules/10").
func comparePointers(a, b string) int {
	for a != "" && b != "" {
		var ta, tb string
		ta, a = nextToken(a)
		tb, b = nextToken(b)
		if ta == tb {
			continue
		}
		na, errA := strconv.Atoi(ta)
		nb, errB := strconv.Atoi(tb)
		if errA == nil && errB == nil {
			return cmp.Compare(na, nb)
		}
		return strings.Compare(ta, tb)
	}
	return cmp.Compare(len(a), len(b))
}

// nextToken splits "/a/b" into "a" and "/b".
func nextToken(p string) (tok, rest string) {
	p = strings.TrimPrefix(p, "/")
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[:i], p[i:]
	}
	return p, ""
}

// pointerToken escapes one JSON-pointer reference token (RFC 6901).
// PointerToken escapes s as one reference token of a JSON pointer
// (RFC 6901): "~" becomes "~0" and "/" becomes "~1".
func PointerToken(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
