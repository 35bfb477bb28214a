package flags

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the computed fields of golden files in testdata")

// bucketingVectors is testdata/bucketing_vectors.json, the vectors other
// implementations (the Luau module, anything else) test against.
type bucketingVectors struct {
	Comment []string        `json:"comment"`
	Scaling []scalingVector `json:"scaling"`
	Splits  []splitVector   `json:"splits"`
}

type scalingVector struct {
	Hash        uint32 `json:"hash"`
	TotalWeight int    `json:"total_weight"`
	Bucket      uint64 `json:"bucket"`
}

type splitVector struct {
	Source  string   `json:"source"` // "flagd": published upstream, never rewritten by -update
	Salt    string   `json:"salt"`
	Value   string   `json:"value"`
	Weights []Weight `json:"weights"`
	Hash    uint32   `json:"hash"`
	Bucket  uint64   `json:"bucket"`
	Variant string   `json:"variant"`
}

// TestBucketingVectors checks the published vectors through Evaluate. With
// -update it recomputes hash, bucket and variant of the vectors not taken
// from upstream; review the diff before committing it.
func TestBucketingVectors(t *testing.T) {
	const path = "testdata/bucketing_vectors.json"
	var golden bucketingVectors
	decodeStrictJSON(t, readFile(t, path), &golden)
	got := golden
	got.Scaling = nil
	for _, v := range golden.Scaling {
		v.Bucket = Bucket(v.Hash, v.TotalWeight)
		got.Scaling = append(got.Scaling, v)
	}
	got.Splits = nil
	for _, v := range golden.Splits {
		fs := FlagState{Key: "vector", Type: TypeString, Config: Config{
			Enabled: true, DefaultVariant: v.Weights[0].Variant, OffVariant: v.Weights[0].Variant,
			Split: &Split{Salt: v.Salt, BucketBy: "id", Weights: v.Weights},
		}}
		for _, w := range v.Weights {
			fs.Variants = append(fs.Variants, Variant{Key: w.Variant, Value: json.RawMessage(`"` + w.Variant + `"`)})
		}
		c, err := Compile(Set{Flags: []FlagState{fs}})
		if err != nil {
			t.Fatalf("vector %+v: %v", v, err)
		}
		r := Evaluate(c, "vector", Context{"id": v.Value})
		if r.Reason != ReasonSplit {
			t.Fatalf("vector %+v: reason %s, want SPLIT", v, r.Reason)
		}
		computed := v
		computed.Hash, computed.Bucket, computed.Variant = r.Hash, r.Bucket, r.Variant
		if v.Source == "flagd" && computed.Variant != v.Variant {
			t.Errorf("flagd vector %q+%q: variant %s, want %s", v.Salt, v.Value, computed.Variant, v.Variant)
		}
		got.Splits = append(got.Splits, computed)
	}
	if *update {
		b, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if diff := cmp.Diff(golden, got); diff != "" {
		t.Errorf("%s (-golden +computed):\n%s", path, diff)
	}
}

// The published MurmurHash3 x86_32 vectors (seed 0), so that a change of the
// hash library cannot go unnoticed.
func TestBucketHashKnownVectors(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
	}{
		{"", 0},
		{"hello", 0x248bfa47},
		{"The quick brown fox jumps over the lazy dog", 0x2e4ff723},
	}
	for _, tt := range tests {
		if got := BucketHash(tt.in); got != tt.want {
			t.Errorf("BucketHash(%q) = %#x, want %#x", tt.in, got, tt.want)
		}
	}
}

// The 50/50 vectors of the design notes, on the hash values themselves.
func TestBucketScaling(t *testing.T) {
	tests := []struct {
		hash uint32
		want string // variant of a 50/50 split of a, b
	}{
		{0, "a"},
		{1, "a"},
		{1<<31 - 1, "a"},
		{1 << 31, "b"},
		{math.MaxUint32, "b"},
	}
	split := &compiledSplit{variants: []int{0, 1}, cum: []int{50, 100}, total: 100}
	names := []string{"a", "b"}
	for _, tt := range tests {
		t.Run(strconv.FormatUint(uint64(tt.hash), 10), func(t *testing.T) {
			for _, total := range []int{2, 100, 10000, MaxTotalWeight} {
				split := &compiledSplit{variants: []int{0, 1}, cum: []int{total / 2, total}, total: total}
				if got := names[split.pick(Bucket(tt.hash, total))]; got != tt.want {
					t.Errorf("hash %d, 50/50 of %d: variant %s, want %s", tt.hash, total, got, tt.want)
				}
			}
			// A raw key with exactly this hash goes the same way end to end.
			key := murmurPreimage(tt.hash)
			if got := BucketHash(key); got != tt.hash {
				t.Fatalf("BucketHash(%q) = %d, want %d", key, got, tt.hash)
			}
			if got := names[split.pick(BucketString(key, 100))]; got != tt.want {
				t.Errorf("BucketString(%q): variant %s, want %s", key, got, tt.want)
			}
		})
	}
	if got, want := Bucket(math.MaxUint32, math.MaxInt64), uint64(math.MaxInt64)-uint64(math.MaxInt64)>>32-1; got != want {
		t.Errorf("Bucket(max, MaxInt64) = %d, want %d", got, want)
	}
	if got := Bucket(math.MaxUint32, 0); got != 0 {
		t.Errorf("Bucket(max, 0) = %d, want 0", got)
	}
	if got := Bucket(math.MaxUint32, -5); got != 0 {
		t.Errorf("Bucket(max, -5) = %d, want 0", got)
	}
}

// murmurPreimage returns the 4-byte string whose MurmurHash3 x86_32 (seed
// 0) is h: every step of the hash of a single block is invertible.
func murmurPreimage(h uint32) string {
	inv := func(a uint32) uint32 { // multiplicative inverse of odd a mod 2^32
		x := a
		for range 5 {
			x *= 2 - a*x
		}
		return x
	}
	// undo fmix32
	h ^= h >> 16
	h *= inv(0xc2b2ae35)
	h ^= h>>13 ^ h>>26
	h *= inv(0x85ebca6b)
	h ^= h >> 16
	// undo the length
	h ^= 4
	// undo h1 = rotl(0 ^ k1, 13)*5 + 0xe6546b64
	k1 := bits.RotateLeft32((h-0xe6546b64)*inv(5), -13)
	// undo k1 = rotl(k*c1, 15)*c2
	k := bits.RotateLeft32(k1*inv(0x1b873593), -15) * inv(0xcc9e2d51)
	return string([]byte{byte(k), byte(k >> 8), byte(k >> 16), byte(k >> 24)})
}

const fractionalSet = `{"environment":"test","revision":1,"flags":[
	{"key":"fractional-flag","type":"string","enabled":true,
	 "variants":[{"key":"clubs","value":"♣"},{"key":"diamonds","value":"♦"},{"key":"hearts","value":"♥"},{"key":"spades","value":"♠"}],
	 "default_variant":"clubs","off_variant":"clubs",
	 "split":{"weights":[{"variant":"clubs","weight":25},{"variant":"diamonds","weight":25},{"variant":"hearts","weight":25},{"variant":"spades","weight":25}]}}]}`

// flagd's published fractional vectors, through Evaluate.
func TestFractionalVectors(t *testing.T) {
	c := mustCompile(t, fractionalSet)
	tests := []struct {
		key  string
		want string
	}{
		{"jack", "hearts"},
		{"queen", "spades"},
		{"ten", "clubs"},
		{"nine", "diamonds"},
		{"3", "clubs"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			r := Evaluate(c, "fractional-flag", Context{TargetingKey: tt.key})
			if r.Variant != tt.want || r.Reason != ReasonSplit {
				t.Errorf("variant %s (%s), want %s (SPLIT)", r.Variant, r.Reason, tt.want)
			}
			if want := BucketHash("fractional-flag" + tt.key); r.Hash != want {
				t.Errorf("hash %d, want %d", r.Hash, want)
			}
			if r.TotalWeight != 100 || r.BucketBy != TargetingKey {
				t.Errorf("total %d on %q, want 100 on targetingKey", r.TotalWeight, r.BucketBy)
			}
		})
	}
	// The integer targeting key 3 buckets like the string "3".
	if r := Evaluate(c, "fractional-flag", Context{TargetingKey: 3}); r.Variant != "clubs" {
		t.Errorf("targeting key 3 (int): variant %s, want clubs", r.Variant)
	}
}

func TestSplitDistribution(t *testing.T) {
	c := mustCompile(t, `{"flags":[{"key":"dist","type":"string","enabled":true,
		"variants":[{"key":"a","value":"a"},{"key":"b","value":"b"},{"key":"c","value":"c"},{"key":"d","value":"d"}],
		"default_variant":"a","off_variant":"a",
		"split":{"weights":[{"variant":"a","weight":1000},{"variant":"b","weight":2000},{"variant":"c","weight":3000},{"variant":"d","weight":4000}]}}]}`)
	const n = 100_000
	counts := map[string]int{}
	for i := range n {
		r := Evaluate(c, "dist", Context{TargetingKey: "player-" + strconv.Itoa(i)})
		counts[r.Variant]++
	}
	for v, share := range map[string]float64{"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4} {
		got := float64(counts[v]) / n
		if math.Abs(got-share) > 0.01 {
			t.Errorf("variant %s: share %.4f, want %.2f ± 0.01", v, got, share)
		}
	}
}

// Ramping a treatment declared first upward never moves a player who was in
// it out of it.
func TestRampKeepsTreatment(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	compileRamp := func(w int) *Compiled {
		return mustCompile(t, fmt.Sprintf(`{"flags":[{"key":"ramp","type":"boolean","enabled":true,
			"variants":[{"key":"treatment","value":true},{"key":"control","value":false}],
			"default_variant":"control","off_variant":"control",
			"split":{"weights":[{"variant":"treatment","weight":%d},{"variant":"control","weight":%d}]}}]}`, w, 10000-w))
	}
	keys := make([]string, 2000)
	for i := range keys {
		keys[i] = strconv.FormatUint(rng.Uint64(), 36)
	}
	for range 200 {
		w1 := rng.IntN(10000)
		w2 := w1 + 1 + rng.IntN(10000-w1)
		before, after := compileRamp(w1), compileRamp(w2)
		for _, k := range keys {
			ctx := Context{TargetingKey: k}
			if Evaluate(before, "ramp", ctx).Variant == "treatment" && Evaluate(after, "ramp", ctx).Variant != "treatment" {
				t.Fatalf("ramping treatment %d → %d moved player %q out of treatment", w1, w2, k)
			}
		}
	}
}

func TestBucketingAttributeForms(t *testing.T) {
	c := mustCompile(t, `{"flags":[{"key":"f","type":"string","enabled":true,
		"variants":[{"key":"a","value":"a"},{"key":"b","value":"b"}],"default_variant":"a","off_variant":"a",
		"split":{"bucket_by":"userId","salt":"winter-","weights":[{"variant":"a","weight":1},{"variant":"b","weight":1}]}}]}`)
	tests := []struct {
		name    string
		value   any
		id      string // the bucketing value; "" when the split must not apply
		missing bool
	}{
		{"string", "u-17", "u-17", false},
		{"int", 1234567, "1234567", false},
		{"negative int8", int8(-7), "-7", false},
		{"uint64 max", uint64(math.MaxUint64), "18446744073709551615", false},
		{"integral float64", 42.0, "42", false},
		{"negative zero", math.Copysign(0, -1), "0", false},
		{"integral float32", float32(8), "8", false},
		{"json.Number int", json.Number("99"), "99", false},
		{"json.Number exponent", json.Number("1e3"), "1000", false},
		{"2^53", float64(1 << 53), "9007199254740992", false},
		{"beyond 2^53", float64(1<<53) * 2, "", true},
		{"fraction", 1.5, "", true},
		{"NaN", math.NaN(), "", true},
		{"Inf", math.Inf(1), "", true},
		{"bool", true, "", true},
		{"map", map[string]any{"id": 1}, "", true},
		{"empty string", "", "", true},
		{"nil", nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Evaluate(c, "f", Context{"userId": tt.value, TargetingKey: "ignored"})
			if tt.missing {
				if r.Reason != ReasonDefault || r.Missing != "userId" || r.ErrorCode != "" || r.Variant != "a" {
					t.Errorf("got %s missing=%q code=%q variant=%s, want DEFAULT missing=userId no code variant a",
						r.Reason, r.Missing, r.ErrorCode, r.Variant)
				}
				return
			}
			if want := BucketHash("winter-" + tt.id); r.Hash != want || r.Reason != ReasonSplit {
				t.Errorf("got hash %d (%s), want %d = hash of %q (SPLIT)", r.Hash, r.Reason, want, "winter-"+tt.id)
			}
		})
	}
	// A bucketing string longer than the stack buffer still hashes right.
	long := string(make([]byte, 1000))
	if r := Evaluate(c, "f", Context{"userId": long}); r.Hash != BucketHash("winter-"+long) {
		t.Errorf("long key: hash %d, want %d", r.Hash, BucketHash("winter-"+long))
	}
}

func TestSplitZeroWeights(t *testing.T) {
	c := mustCompile(t, `{"flags":[{"key":"f","type":"string","enabled":true,
		"variants":[{"key":"a","value":"a"},{"key":"b","value":"b"},{"key":"c","value":"c"}],"default_variant":"a","off_variant":"a",
		"split":{"weights":[{"variant":"a","weight":0},{"variant":"b","weight":10},{"variant":"c","weight":0}]}}]}`)
	for i := range 1000 {
		if r := Evaluate(c, "f", Context{TargetingKey: strconv.Itoa(i)}); r.Variant != "b" {
			t.Fatalf("key %d: variant %s, want b (the only non-zero weight)", i, r.Variant)
		}
	}
}
