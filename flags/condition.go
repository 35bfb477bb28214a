package flags

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
)

// Condition semantics, decided once for every implementation:
//
//   - A missing attribute (absent from the context, or nil) makes every
//     attribute condition false except not_exists. In particular neq and
//     not_in are false for a missing attribute: "platform neq ios" does not
//     match a context that says nothing about the platform.
//   - eq, neq, in and not_in compare scalars: strings, booleans and numbers
//     (numerically, whatever their Go type). A value of another JSON type is
//     simply unequal, so "5" neq 5 is true. A context value that is not a
//     scalar (a map, a slice, a time.Time...) makes all four false.
//   - lt, lte, gt, gte need a number in the context; anything else (also a
//     numeric string) makes them false.
//   - starts_with, ends_with, contains need a string and are case-sensitive.
//   - semver_* parse the context value leniently (semver.NewVersion: "v1.2"
//     is 1.2.0); a value that does not parse makes them false.
//   - before and after take a time.Time, an RFC 3339 string or Unix seconds
//     (any number type, fractions allowed) and compare strictly.
//
// Numbers in contexts may be float64, float32, any int or uint type, or
// json.Number; strings must be of type string.

// compiledCondition is a Condition with its value parsed for its operator.
type compiledCondition struct {
	op   Operator
	attr string
	lit  scalar          // eq, neq
	set  *scalarSet      // in, not_in
	num  float64         // lt, lte, gt, gte
	str  string          // starts_with, ends_with, contains
	ver  *semver.Version // semver_*
	at   time.Time       // before, after
	seg  *compiledSegment
}

type scalarKind uint8

const (
	kindNone scalarKind = iota
	kindString
	kindNumber
	kindBool
)

// scalar is a string, number or boolean from a condition value or a context.
type scalar struct {
	kind scalarKind
	str  string
	num  float64
	b    bool
}

func (s scalar) equal(o scalar) bool {
	if s.kind != o.kind {
		return false
	}
	switch s.kind {
	case kindString:
		return s.str == o.str
	case kindNumber:
		return s.num == o.num
	case kindBool:
		return s.b == o.b
	}
	return false
}

// scalarSet is the value list of in and not_in, for O(1) lookups.
type scalarSet struct {
	strs              map[string]struct{}
	nums              map[float64]struct{}
	hasTrue, hasFalse bool
}

func (s *scalarSet) add(v scalar) {
	switch v.kind {
	case kindString:
		if s.strs == nil {
			s.strs = map[string]struct{}{}
		}
		s.strs[v.str] = struct{}{}
	case kindNumber:
		if s.nums == nil {
			s.nums = map[float64]struct{}{}
		}
		s.nums[v.num] = struct{}{}
	case kindBool:
		if v.b {
			s.hasTrue = true
		} else {
			s.hasFalse = true
		}
	}
}

func (s *scalarSet) contains(v scalar) bool {
	switch v.kind {
	case kindString:
		_, ok := s.strs[v.str]
		return ok
	case kindNumber:
		_, ok := s.nums[v.num]
		return ok
	case kindBool:
		if v.b {
			return s.hasTrue
		}
		return s.hasFalse
	}
	return false
}

// operatorInfo describes what an operator needs.
type operatorInfo struct {
	segment bool // refers to a segment, not an attribute
	value   bool // needs a value
}

var operators = map[Operator]operatorInfo{
	OpEquals: {value: true}, OpNotEquals: {value: true},
	OpIn: {value: true}, OpNotIn: {value: true},
	OpLess: {value: true}, OpLessEq: {value: true}, OpGreater: {value: true}, OpGreaterEq: {value: true},
	OpSemverEq: {value: true}, OpSemverLess: {value: true}, OpSemverLessEq: {value: true},
	OpSemverGt: {value: true}, OpSemverGtEq: {value: true},
	OpStartsWith: {value: true}, OpEndsWith: {value: true}, OpContains: {value: true},
	OpBefore: {value: true}, OpAfter: {value: true},
	OpExists: {}, OpNotExists: {},
	OpInSegment: {segment: true}, OpNotInSegment: {segment: true},
}

// condition checks c structurally and parses its value. ptr is the
// condition's JSON pointer.
func (cc *compiler) condition(ptr string, c Condition) compiledCondition {
	out := compiledCondition{op: c.Op, attr: c.Attribute}
	info, known := operators[c.Op]
	switch {
	case c.Op == "":
		cc.p.add(ptr+"/op", "is required")
		return out
	case !known:
		cc.p.add(ptr+"/op", "unknown operator %q", c.Op)
		return out
	case info.segment:
		switch {
		case cc.segments == nil:
			cc.p.add(ptr+"/op", "a segment's conditions cannot refer to segments")
		case c.Segment == "":
			cc.p.add(ptr+"/segment", "is required for %s", c.Op)
		default:
			seg, ok := cc.segments(c.Segment)
			if !ok {
				cc.p.add(ptr+"/segment", "unknown segment %q", c.Segment)
			}
			out.seg = seg
		}
		return out
	}
	if c.Attribute == "" {
		cc.p.add(ptr+"/attribute", "is required for %s", c.Op)
	}
	if !info.value {
		return out
	}
	vp := ptr + "/value"
	v, ok := cc.decodeJSON(vp, c.Value)
	if !ok {
		return out
	}
	switch c.Op {
	case OpEquals, OpNotEquals:
		out.lit, _ = cc.literal(vp, v)
	case OpIn, OpNotIn:
		list, ok := v.([]any)
		if !ok {
			cc.p.add(vp, "must be an array of strings, numbers or booleans, got %s", jsonKind(v))
			return out
		}
		if len(list) == 0 {
			cc.p.add(vp, "must list at least one value")
		}
		out.set = &scalarSet{}
		for i, e := range list {
			if s, ok := cc.literal(vp+"/"+strconv.Itoa(i), e); ok {
				out.set.add(s)
			}
		}
	case OpLess, OpLessEq, OpGreater, OpGreaterEq:
		if _, ok := v.(json.Number); !ok {
			cc.p.add(vp, "must be a number, got %s", jsonKind(v))
			return out
		}
		s, _ := cc.literal(vp, v)
		out.num = s.num
	case OpSemverEq, OpSemverLess, OpSemverLessEq, OpSemverGt, OpSemverGtEq:
		str, ok := v.(string)
		if !ok {
			cc.p.add(vp, "must be a semantic version string such as \"1.4.0\", got %s", jsonKind(v))
			return out
		}
		ver, err := semver.NewVersion(str)
		if err != nil {
			cc.p.add(vp, "%q is not a semantic version: %v", str, err)
			return out
		}
		out.ver = ver
	case OpBefore, OpAfter:
		str, ok := v.(string)
		if !ok {
			cc.p.add(vp, "must be an RFC 3339 time string such as \"2026-12-01T00:00:00Z\", got %s", jsonKind(v))
			return out
		}
		t, err := time.Parse(time.RFC3339, str)
		if err != nil {
			cc.p.add(vp, "%q is not an RFC 3339 time such as \"2026-12-01T00:00:00Z\"", str)
			return out
		}
		out.at = t
	case OpStartsWith, OpEndsWith, OpContains:
		str, ok := v.(string)
		if !ok {
			cc.p.add(vp, "must be a string, got %s", jsonKind(v))
		}
		out.str = str
	}
	return out
}

// literal converts a condition value decoded with UseNumber to a scalar,
// reporting anything else at ptr.
func (cc *compiler) literal(ptr string, v any) (scalar, bool) {
	switch x := v.(type) {
	case string:
		return scalar{kind: kindString, str: x}, true
	case bool:
		return scalar{kind: kindBool, b: x}, true
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || math.IsInf(f, 0) {
			cc.p.add(ptr, "number %s is out of range", x)
			return scalar{}, false
		}
		return scalar{kind: kindNumber, num: f}, true
	}
	cc.p.add(ptr, "must be a string, number or boolean, got %s", jsonKind(v))
	return scalar{}, false
}

// matchAll reports whether every condition matches ctx.
func matchAll(conds []compiledCondition, ctx Context) bool {
	for i := range conds {
		if !conds[i].match(ctx) {
			return false
		}
	}
	return true
}

// match reports whether the condition holds for ctx; see the semantics at
// the top of this file. It never panics on any context value.
func (c *compiledCondition) match(ctx Context) bool {
	switch c.op {
	case OpInSegment:
		return c.seg.contains(ctx)
	case OpNotInSegment:
		return !c.seg.contains(ctx)
	}
	v, ok := ctx[c.attr]
	if !ok || v == nil {
		return c.op == OpNotExists
	}
	switch c.op {
	case OpExists:
		return true
	case OpNotExists:
		return false
	case OpEquals:
		s, ok := contextScalar(v)
		return ok && s.equal(c.lit)
	case OpNotEquals:
		s, ok := contextScalar(v)
		return ok && !s.equal(c.lit)
	case OpIn:
		s, ok := contextScalar(v)
		return ok && c.set.contains(s)
	case OpNotIn:
		s, ok := contextScalar(v)
		return ok && !c.set.contains(s)
	case OpLess, OpLessEq, OpGreater, OpGreaterEq:
		n, ok := toFloat(v)
		if !ok {
			return false
		}
		switch c.op {
		case OpLess:
			return n < c.num
		case OpLessEq:
			return n <= c.num
		case OpGreater:
			return n > c.num
		default:
			return n >= c.num
		}
	case OpStartsWith, OpEndsWith, OpContains:
		s, ok := v.(string)
		if !ok {
			return false
		}
		switch c.op {
		case OpStartsWith:
			return strings.HasPrefix(s, c.str)
		case OpEndsWith:
			return strings.HasSuffix(s, c.str)
		default:
			return strings.Contains(s, c.str)
		}
	case OpSemverEq, OpSemverLess, OpSemverLessEq, OpSemverGt, OpSemverGtEq:
		ver, ok := toVersion(v)
		if !ok || c.ver == nil {
			return false
		}
		cmp := ver.Compare(c.ver)
		switch c.op {
		case OpSemverEq:
			return cmp == 0
		case OpSemverLess:
			return cmp < 0
		case OpSemverLessEq:
			return cmp <= 0
		case OpSemverGt:
			return cmp > 0
		default:
			return cmp >= 0
		}
	case OpBefore, OpAfter:
		t, ok := toTime(v)
		if !ok {
			return false
		}
		if c.op == OpBefore {
			return t.Before(c.at)
		}
		return t.After(c.at)
	}
	return false
}

// contains reports whether ctx is in the segment: its members attribute is
// listed, or it matches all of the segment's conditions (when it has any).
func (s *compiledSegment) contains(ctx Context) bool {
	if s == nil {
		return false
	}
	if len(s.members) > 0 && s.isMember(ctx[s.membersAttr]) {
		return true
	}
	return len(s.conds) > 0 && matchAll(s.conds, ctx)
}

// isMember reports whether v's identifier (see appendIdentifier) is listed.
func (s *compiledSegment) isMember(v any) bool {
	if str, ok := v.(string); ok { // the common case, without copying
		_, ok := s.members[str]
		return ok
	}
	var buf [24]byte // holds any formatted integer
	id, ok := appendIdentifier(buf[:0], v)
	if !ok {
		return false
	}
	_, ok = s.members[string(id)]
	return ok
}

// contextScalar converts a context value to a scalar for eq, neq, in and
// not_in.
func contextScalar(v any) (scalar, bool) {
	switch x := v.(type) {
	case string:
		return scalar{kind: kindString, str: x}, true
	case bool:
		return scalar{kind: kindBool, b: x}, true
	}
	if n, ok := toFloat(v); ok {
		return scalar{kind: kindNumber, num: n}, true
	}
	return scalar{}, false
}

// toFloat converts any Go number type (and json.Number) to float64.
func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, !math.IsNaN(x)
	case float32:
		return float64(x), !math.IsNaN(float64(x))
	case int:
		return float64(x), true
	case int8:
		return float64(x), true
	case int16:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint:
		return float64(x), true
	case uint8:
		return float64(x), true
	case uint16:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint64:
		return float64(x), true
	case uintptr:
		return float64(x), true
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		return f, err == nil && !math.IsNaN(f)
	}
	return 0, false
}

func toVersion(v any) (*semver.Version, bool) {
	switch x := v.(type) {
	case string:
		ver, err := semver.NewVersion(x)
		return ver, err == nil
	case *semver.Version:
		return x, x != nil
	case semver.Version:
		return &x, true
	}
	return nil, false
}

func toTime(v any) (time.Time, bool) {
	switch x := v.(type) {
	case time.Time:
		return x, true
	case *time.Time:
		if x == nil {
			return time.Time{}, false
		}
		return *x, true
	case string:
		t, err := time.Parse(time.RFC3339, x)
		return t, err == nil
	}
	f, ok := toFloat(v)
	if !ok || math.IsInf(f, 0) || math.Abs(f) > maxUnixSeconds {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// maxUnixSeconds keeps Unix-seconds conversions far from int64 overflow
// (about 317 million years either side of 1970).
const maxUnixSeconds = 1e16
