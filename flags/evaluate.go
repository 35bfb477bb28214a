package flags

import "github.com/twmb/murmur3"

// Context is an OpenFeature flattened evaluation context: attribute names to
// values, with the targeting key under TargetingKey. Values are strings,
// booleans, numbers of any Go number type or json.Number, time.Time, or
// anything else (which conditions treat as a mismatch). Evaluate only reads
// it.
type Context map[string]any

// Reason says why a value was served, in OpenFeature's vocabulary plus
// DISABLED.
type Reason string

// Evaluation reasons.
const (
	ReasonStatic         Reason = "STATIC"          // the flag has no rules and no split: its default variant
	ReasonTargetingMatch Reason = "TARGETING_MATCH" // a rule matched and served its variant
	ReasonSplit          Reason = "SPLIT"           // a split (a rule's or the default one) picked the variant
	ReasonDisabled       Reason = "DISABLED"        // the flag is disabled: its off variant
	ReasonDefault        Reason = "DEFAULT"         // nothing applied: the default variant
	ReasonError          Reason = "ERROR"           // no value could be served; see ErrorCode
)

// ErrorCode is OpenFeature's error vocabulary.
type ErrorCode string

// Error codes. Evaluate produces FLAG_NOT_FOUND and GENERAL with reason
// ERROR, and TARGETING_KEY_MISSING and INVALID_CONTEXT alongside a served
// default (reason DEFAULT); EvaluateAs adds TYPE_MISMATCH. PARSE_ERROR is
// for the SDK, when a snapshot cannot be read.
const (
	CodeFlagNotFound        ErrorCode = "FLAG_NOT_FOUND"
	CodeTypeMismatch        ErrorCode = "TYPE_MISMATCH"
	CodeParseError          ErrorCode = "PARSE_ERROR"
	CodeTargetingKeyMissing ErrorCode = "TARGETING_KEY_MISSING"
	CodeInvalidContext      ErrorCode = "INVALID_CONTEXT"
	CodeGeneral             ErrorCode = "GENERAL"
)

// Result is the outcome of one evaluation, with what is needed to explain it
// (see Explain). Filling it allocates nothing.
type Result struct {
	Key          string    `json:"key"`
	Type         Type      `json:"type,omitempty"`
	Value        any       `json:"value"` // bool, string, float64 or map[string]any; shared: do not modify
	Variant      string    `json:"variant,omitempty"`
	Reason       Reason    `json:"reason"`
	ErrorCode    ErrorCode `json:"error_code,omitempty"`
	ErrorMessage string    `json:"error_message,omitempty"`

	// RuleIndex is the 0-based index of the rule that matched (also when
	// its split then did not apply), -1 when none did; RuleID is its ID.
	RuleIndex int    `json:"rule_index"`
	RuleID    string `json:"rule_id,omitempty"`
	// For a split that was applied (or that could not be, see Missing):
	// the bucketing attribute, the hash, the bucket and the total weight.
	BucketBy    string `json:"bucket_by,omitempty"`
	Hash        uint32 `json:"hash,omitempty"`
	Bucket      uint64 `json:"bucket,omitempty"`
	TotalWeight int    `json:"total_weight,omitempty"`
	// Missing is the bucketing attribute a split needed but the context
	// lacked (or held in a form that cannot be bucketed).
	Missing string `json:"missing,omitempty"`
}

// Evaluate serves flag key of c to ctx:
//
//   - a disabled flag serves its off variant (DISABLED);
//   - otherwise the first rule whose conditions all match serves its
//     variant (TARGETING_MATCH) or its split (SPLIT);
//   - when no rule matches, the default split, if any, applies (SPLIT);
//   - otherwise the default variant is served: STATIC when the flag has no
//     rules and no split, DEFAULT when it has.
//
// A split whose bucketing attribute is missing or cannot be bucketed does
// not apply: the default variant is served with reason DEFAULT and Missing
// set; when that attribute is the targeting key, ErrorCode is also set
// (TARGETING_KEY_MISSING when absent or empty, INVALID_CONTEXT when of a
// kind that cannot be bucketed) for the OpenFeature provider.
//
// Evaluate returns no error: an unknown key gives reason ERROR with code
// FLAG_NOT_FOUND, a nil c reason ERROR with code GENERAL. It never panics
// on any context and does not allocate (bucketing strings over 256 bytes
// and semantic-version or time strings in the context excepted).
func Evaluate(c *Compiled, key string, ctx Context) Result {
	r := Result{Key: key, RuleIndex: -1}
	if c == nil {
		r.Reason, r.ErrorCode, r.ErrorMessage = ReasonError, CodeGeneral, "no flag set is loaded"
		return r
	}
	f, ok := c.flags[key]
	if !ok {
		r.Reason, r.ErrorCode, r.ErrorMessage = ReasonError, CodeFlagNotFound, "flag not found"
		return r
	}
	r.Type = f.typ
	if !f.enabled {
		f.serve(&r, f.off, ReasonDisabled)
		return r
	}
	for i := range f.rules {
		rule := &f.rules[i]
		if !matchAll(rule.conds, ctx) {
			continue
		}
		r.RuleIndex, r.RuleID = i, rule.id
		if rule.split == nil {
			f.serve(&r, rule.variant, ReasonTargetingMatch)
		} else {
			f.applySplit(&r, rule.split, ctx)
		}
		return r
	}
	switch {
	case f.split != nil:
		f.applySplit(&r, f.split, ctx)
	case f.static:
		f.serve(&r, f.def, ReasonStatic)
	default:
		f.serve(&r, f.def, ReasonDefault)
	}
	return r
}

// EvaluateAs is Evaluate for a caller that needs a value of type t: when the
// flag exists but is of another type, the result has reason ERROR, code
// TYPE_MISMATCH and no value or variant. It returns no error otherwise
// different from Evaluate's.
func EvaluateAs(c *Compiled, key string, t Type, ctx Context) Result {
	r := Evaluate(c, key, ctx)
	if r.Reason != ReasonError && r.Type != t {
		r.Value, r.Variant = nil, ""
		r.Reason, r.ErrorCode, r.ErrorMessage = ReasonError, CodeTypeMismatch, typeMismatch[r.Type]
	}
	return r
}

// typeMismatch holds EvaluateAs's messages, built once.
var typeMismatch = map[Type]string{
	TypeBoolean: "the flag is of type boolean",
	TypeString:  "the flag is of type string",
	TypeNumber:  "the flag is of type number",
	TypeObject:  "the flag is of type object",
}

func (f *compiledFlag) serve(r *Result, variant int, reason Reason) {
	v := &f.variants[variant]
	r.Variant, r.Value, r.Reason = v.key, v.value, reason
}

func (f *compiledFlag) applySplit(r *Result, s *compiledSplit, ctx Context) {
	r.BucketBy = s.bucketBy
	var buf [hashBufSize]byte
	b := append(buf[:0], s.salt...)
	b, st := bucketID(b, ctx, s.bucketBy)
	if st != idOK {
		r.Missing = s.bucketBy
		if s.bucketBy == TargetingKey {
			if st == idMissing {
				r.ErrorCode, r.ErrorMessage = CodeTargetingKeyMissing, "the split needs a targeting key"
			} else {
				r.ErrorCode, r.ErrorMessage = CodeInvalidContext, "the targeting key must be a string or an integer"
			}
		}
		f.serve(r, f.def, ReasonDefault)
		return
	}
	r.Hash = murmur3.Sum32(b)
	r.TotalWeight = s.total
	r.Bucket = Bucket(r.Hash, s.total)
	f.serve(r, s.variants[s.pick(r.Bucket)], ReasonSplit)
}
