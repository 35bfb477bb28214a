package flags

import (
	"encoding/json"
	"math"
	"math/bits"
	"strconv"

	"github.com/twmb/murmur3"
)

// BucketHash returns the MurmurHash3 x86_32 (seed 0) of key's bytes: the
// hash step of bucketing. It cannot fail.
func BucketHash(key string) uint32 { return murmur3.StringSum32(key) }

// Bucket scales a bucketing hash into [0, totalWeight):
// (uint64(h) * uint64(totalWeight)) >> 32. It returns 0 when totalWeight is
// not positive. It cannot fail.
func Bucket(h uint32, totalWeight int) uint64 {
	if totalWeight <= 0 {
		return 0
	}
	// The 128-bit product keeps this exact for any totalWeight; below 2^32
	// it equals (uint64(h) * uint64(totalWeight)) >> 32.
	hi, lo := bits.Mul64(uint64(h), uint64(totalWeight))
	return hi<<32 | lo>>32
}

// BucketString returns the bucket of the bucketing string key within
// totalWeight. It cannot fail.
//
// Bucketing is an exact contract shared with game servers written in other
// languages and with flagd's fractional operator (v2); see "Bucketing" in
// the design notes and testdata/bucketing_vectors.json. For a split with
// salt S (default: the flag key) over the value V of its bucketing
// attribute (default: the targeting key):
//
//	h      = MurmurHash3 x86_32, seed 0, over the UTF-8 bytes of S+V
//	bucket = (uint64(h) * uint64(totalWeight)) >> 32
//
// and the first variant, in declaration order, whose cumulative weight
// exceeds bucket wins.
//
// V is formed from the context value as follows (NOTE: decided here for
// every implementation): a string is used as is; an integer (any Go int or
// uint type, or a float64, float32 or json.Number holding an integral value
// within ±2^53) is written in base 10 without exponent or fraction, and
// without sign for zero ("42", "-7", "0"). An absent attribute, nil, the
// empty string, or a value of any other kind (booleans, fractions, objects)
// means the split does not apply.
func BucketString(key string, totalWeight int) uint64 {
	return Bucket(BucketHash(key), totalWeight)
}

// hashBufSize is the stack buffer for salt+value in Evaluate; longer
// bucketing strings make one allocation.
const hashBufSize = 256

// pick returns the index into s.variants of the variant owning bucket.
func (s *compiledSplit) pick(bucket uint64) int {
	for i, cum := range s.cum {
		if bucket < uint64(cum) { //nolint:gosec // cumulative weights are validated non-negative
			return i
		}
	}
	return len(s.cum) - 1 // unreachable: bucket < total = the last cum
}

// idStatus tells why a bucketing attribute could not be used.
type idStatus uint8

const (
	idOK      idStatus = iota
	idMissing          // absent, nil or ""
	idInvalid          // present but of a kind that cannot be bucketed
)

// bucketID appends the bucketing form of ctx[attr] to b (see the rules at
// the top of this file).
func bucketID(b []byte, ctx Context, attr string) ([]byte, idStatus) {
	v, ok := ctx[attr]
	if !ok || v == nil || v == "" {
		return b, idMissing
	}
	b, ok = appendIdentifier(b, v)
	if !ok {
		return b, idInvalid
	}
	return b, idOK
}

// maxExactFloat is 2^53: every integer of at most this magnitude is exact in
// a float64.
const maxExactFloat = 1 << 53

// appendIdentifier appends the identifier form of v — a string as is, an
// integral number in base 10 — and reports whether v has one. It is shared
// by bucketing and segment membership so both see the same identifier.
func appendIdentifier(b []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case string:
		return append(b, x...), x != ""
	case int:
		return strconv.AppendInt(b, int64(x), 10), true
	case int8:
		return strconv.AppendInt(b, int64(x), 10), true
	case int16:
		return strconv.AppendInt(b, int64(x), 10), true
	case int32:
		return strconv.AppendInt(b, int64(x), 10), true
	case int64:
		return strconv.AppendInt(b, x, 10), true
	case uint:
		return strconv.AppendUint(b, uint64(x), 10), true
	case uint8:
		return strconv.AppendUint(b, uint64(x), 10), true
	case uint16:
		return strconv.AppendUint(b, uint64(x), 10), true
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10), true
	case uint64:
		return strconv.AppendUint(b, x, 10), true
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return strconv.AppendInt(b, i, 10), true
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return b, false
		}
		return appendIntegralFloat(b, f)
	case float64:
		return appendIntegralFloat(b, x)
	case float32:
		return appendIntegralFloat(b, float64(x))
	}
	return b, false
}

func appendIntegralFloat(b []byte, f float64) ([]byte, bool) {
	if f != math.Trunc(f) || math.Abs(f) > maxExactFloat { // also rejects NaN and ±Inf
		return b, false
	}
	return strconv.AppendInt(b, int64(f), 10), true
}
