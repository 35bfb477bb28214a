package flags

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestEvaluate(t *testing.T) {
	c := mustCompileFile(t, "testdata/evaluate_set.json")
	// The splits' buckets are pinned by the vectors of bucket_test.go; here
	// only their inputs and outcomes are checked.
	ignoreHash := cmpopts.IgnoreFields(Result{}, "Hash", "Bucket")
	tests := []struct {
		name string
		key  string
		ctx  Context
		want Result
	}{
		{
			name: "no rules, no split: STATIC",
			key:  "banner", ctx: Context{TargetingKey: "p1"},
			want: Result{Key: "banner", Type: TypeString, Value: "Winter is here", Variant: "winter", Reason: ReasonStatic, RuleIndex: -1},
		},
		{
			name: "disabled: off variant, rules ignored",
			key:  "double-xp", ctx: Context{TargetingKey: "p1"},
			want: Result{Key: "double-xp", Type: TypeBoolean, Value: false, Variant: "off", Reason: ReasonDisabled, RuleIndex: -1},
		},
		{
			name: "unknown flag",
			key:  "nope", ctx: Context{TargetingKey: "p1"},
			want: Result{Key: "nope", Reason: ReasonError, ErrorCode: CodeFlagNotFound, ErrorMessage: "flag not found", RuleIndex: -1},
		},
		{
			name: "default split",
			key:  "new-shop", ctx: Context{TargetingKey: "jack"},
			want: Result{Key: "new-shop", Type: TypeBoolean, Value: false, Variant: "off", Reason: ReasonSplit, RuleIndex: -1,
				BucketBy: TargetingKey, TotalWeight: 10000},
		},
		{
			name: "default split, other bucket",
			key:  "new-shop", ctx: Context{TargetingKey: "ten"},
			want: Result{Key: "new-shop", Type: TypeBoolean, Value: true, Variant: "on", Reason: ReasonSplit, RuleIndex: -1,
				BucketBy: TargetingKey, TotalWeight: 10000},
		},
		{
			name: "default split without a targeting key",
			key:  "new-shop", ctx: Context{"userId": "u1"},
			want: Result{Key: "new-shop", Type: TypeBoolean, Value: false, Variant: "off", Reason: ReasonDefault, RuleIndex: -1,
				BucketBy: TargetingKey, Missing: TargetingKey,
				ErrorCode: CodeTargetingKeyMissing, ErrorMessage: "the split needs a targeting key"},
		},
		{
			name: "default split with an unusable targeting key",
			key:  "new-shop", ctx: Context{TargetingKey: true},
			want: Result{Key: "new-shop", Type: TypeBoolean, Value: false, Variant: "off", Reason: ReasonDefault, RuleIndex: -1,
				BucketBy: TargetingKey, Missing: TargetingKey,
				ErrorCode: CodeInvalidContext, ErrorMessage: "the targeting key must be a string or an integer"},
		},
		{
			name: "nil context",
			key:  "new-shop", ctx: nil,
			want: Result{Key: "new-shop", Type: TypeBoolean, Value: false, Variant: "off", Reason: ReasonDefault, RuleIndex: -1,
				BucketBy: TargetingKey, Missing: TargetingKey,
				ErrorCode: CodeTargetingKeyMissing, ErrorMessage: "the split needs a targeting key"},
		},
		{
			name: "first rule",
			key:  "drop-rate", ctx: Context{TargetingKey: "p1", "tier": "vip"},
			want: Result{Key: "drop-rate", Type: TypeNumber, Value: 2.0, Variant: "vip", Reason: ReasonTargetingMatch,
				RuleIndex: 0, RuleID: "vip-players"},
		},
		{
			name: "rule order: the first matching rule wins",
			key:  "drop-rate", ctx: Context{TargetingKey: "alice", "tier": "vip", "region": "eu-west", "clientVersion": "3.0.0", "userId": "u"},
			want: Result{Key: "drop-rate", Type: TypeNumber, Value: 2.0, Variant: "vip", Reason: ReasonTargetingMatch,
				RuleIndex: 0, RuleID: "vip-players"},
		},
		{
			name: "segment member, rule without id",
			key:  "drop-rate", ctx: Context{TargetingKey: "alice", "region": "eu-west", "clientVersion": "3.0.0"},
			want: Result{Key: "drop-rate", Type: TypeNumber, Value: 1.5, Variant: "boosted", Reason: ReasonTargetingMatch,
				RuleIndex: 1, RuleID: "rule-2"},
		},
		{
			name: "segment by its conditions",
			key:  "drop-rate", ctx: Context{TargetingKey: "zed", "email": "zed@studio.example"},
			want: Result{Key: "drop-rate", Type: TypeNumber, Value: 1.5, Variant: "boosted", Reason: ReasonTargetingMatch,
				RuleIndex: 1, RuleID: "rule-2"},
		},
		{
			name: "rule split on userId",
			key:  "drop-rate", ctx: Context{TargetingKey: "p1", "region": "eu-west", "clientVersion": "2.3.0", "userId": "u-1"},
			want: Result{Key: "drop-rate", Type: TypeNumber, Value: 1.0, Variant: "base", Reason: ReasonSplit,
				RuleIndex: 2, RuleID: "eu-rollout", BucketBy: "userId", TotalWeight: 10000},
		},
		{
			name: "rule split without its attribute: default, no error code",
			key:  "drop-rate", ctx: Context{TargetingKey: "p1", "region": "eu-central", "clientVersion": "v2.4"},
			want: Result{Key: "drop-rate", Type: TypeNumber, Value: 1.0, Variant: "base", Reason: ReasonDefault,
				RuleIndex: 2, RuleID: "eu-rollout", BucketBy: "userId", Missing: "userId"},
		},
		{
			name: "one condition of two fails",
			key:  "drop-rate", ctx: Context{TargetingKey: "p1", "region": "eu-west", "clientVersion": "2.2.9", "userId": "u-1"},
			want: Result{Key: "drop-rate", Type: TypeNumber, Value: 1.0, Variant: "base", Reason: ReasonDefault, RuleIndex: -1},
		},
		{
			name: "no rule matches and no split: DEFAULT",
			key:  "drop-rate", ctx: Context{},
			want: Result{Key: "drop-rate", Type: TypeNumber, Value: 1.0, Variant: "base", Reason: ReasonDefault, RuleIndex: -1},
		},
		{
			name: "not_in_segment rule",
			key:  "event-config", ctx: Context{TargetingKey: "carol", "platform": "console"},
			want: Result{Key: "event-config", Type: TypeObject, Value: map[string]any{"multiplier": 1.0}, Variant: "control",
				Reason: ReasonTargetingMatch, RuleIndex: 0, RuleID: "not-testers"},
		},
		{
			name: "tester falls through to the salted default split",
			key:  "event-config", ctx: Context{TargetingKey: "king", "email": "king@studio.example", "platform": "console"},
			want: Result{Key: "event-config", Type: TypeObject,
				Value:   map[string]any{"multiplier": 2.0, "drops": []any{map[string]any{"item": "snowball", "weight": 3.0}}},
				Variant: "treatment", Reason: ReasonSplit, RuleIndex: -1, BucketBy: TargetingKey, TotalWeight: 2},
		},
		{
			name: "default split without a targeting key after no rule matched",
			key:  "event-config", ctx: Context{"platform": "pc"},
			want: Result{Key: "event-config", Type: TypeObject, Value: map[string]any{"multiplier": 1.0}, Variant: "control",
				Reason: ReasonDefault, RuleIndex: -1, BucketBy: TargetingKey, Missing: TargetingKey,
				ErrorCode: CodeTargetingKeyMissing, ErrorMessage: "the split needs a targeting key"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Evaluate(c, tt.key, tt.ctx)
			if diff := cmp.Diff(tt.want, got, ignoreHash); diff != "" {
				t.Errorf("Evaluate(%q, %v) (-want +got):\n%s", tt.key, tt.ctx, diff)
			}
			if got.Reason == ReasonSplit {
				if got.Hash == 0 && got.Bucket == 0 {
					t.Error("split result without hash and bucket")
				}
				if got.Bucket >= uint64(got.TotalWeight) {
					t.Errorf("bucket %d outside [0, %d)", got.Bucket, got.TotalWeight)
				}
			}
		})
	}
}

func TestEvaluateSplitSalt(t *testing.T) {
	c := mustCompileFile(t, "testdata/evaluate_set.json")
	r := Evaluate(c, "event-config", Context{TargetingKey: "alice"})
	if want := BucketHash("event-2026alice"); r.Hash != want {
		t.Errorf("salted split hash = %d, want %d (hash of salt+key)", r.Hash, want)
	}
	r = Evaluate(c, "drop-rate", Context{"region": "eu-west", "clientVersion": "2.3.0", "userId": "u-1"})
	if want := BucketHash("drop-rateu-1"); r.Hash != want {
		t.Errorf("default salt hash = %d, want %d (hash of flag key+userId)", r.Hash, want)
	}
}

func TestEvaluateAs(t *testing.T) {
	c := mustCompileFile(t, "testdata/evaluate_set.json")
	tests := []struct {
		name       string
		key        string
		typ        Type
		wantReason Reason
		wantCode   ErrorCode
		wantValue  any
	}{
		{"matching type", "drop-rate", TypeNumber, ReasonDefault, "", 1.0},
		{"type mismatch", "drop-rate", TypeBoolean, ReasonError, CodeTypeMismatch, nil},
		{"unknown flag", "nope", TypeBoolean, ReasonError, CodeFlagNotFound, nil},
		{"disabled flag of the right type", "double-xp", TypeBoolean, ReasonDisabled, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := EvaluateAs(c, tt.key, tt.typ, Context{})
			if r.Reason != tt.wantReason || r.ErrorCode != tt.wantCode || r.Value != tt.wantValue {
				t.Errorf("EvaluateAs(%q, %s) = %s/%q/%v, want %s/%q/%v",
					tt.key, tt.typ, r.Reason, r.ErrorCode, r.Value, tt.wantReason, tt.wantCode, tt.wantValue)
			}
			if r.ErrorCode == CodeTypeMismatch && (r.Variant != "" || r.ErrorMessage != "the flag is of type number") {
				t.Errorf("type mismatch result = variant %q message %q", r.Variant, r.ErrorMessage)
			}
		})
	}
}

// Evaluate of the common paths must not allocate: it runs per player action
// on game servers.
func TestEvaluateDoesNotAllocate(t *testing.T) {
	c := mustCompileFile(t, "testdata/evaluate_set.json")
	cases := []struct {
		key string
		ctx Context
	}{
		{"banner", Context{TargetingKey: "p1"}},
		{"new-shop", Context{TargetingKey: "jack"}},
		{"new-shop", Context{TargetingKey: int64(1234567890123)}},
		{"new-shop", Context{}},
		{"drop-rate", Context{TargetingKey: "alice", "tier": "gold", "region": "eu-west"}},
		{"event-config", Context{TargetingKey: "zed", "platform": "console", "email": "z@x"}},
		{"nope", nil},
	}
	for _, tc := range cases {
		if n := testing.AllocsPerRun(100, func() { Evaluate(c, tc.key, tc.ctx) }); n != 0 {
			t.Errorf("Evaluate(%q, %v) allocates %.0f times per run, want 0", tc.key, tc.ctx, n)
		}
	}
}

func TestExplain(t *testing.T) {
	c := mustCompileFile(t, "testdata/evaluate_set.json")
	tests := []struct {
		name string
		r    Result
		want string
	}{
		{"static", Evaluate(c, "banner", nil), "flag 'banner' has no rules or split → default variant winter"},
		{"disabled", Evaluate(c, "double-xp", nil), "flag 'double-xp' is disabled → off variant off"},
		{"not found", Evaluate(c, "nope", nil), "flag 'nope' not found → error FLAG_NOT_FOUND"},
		{"type mismatch", EvaluateAs(c, "banner", TypeBoolean, nil), "flag 'banner' is of type string, not the type asked for → error TYPE_MISMATCH"},
		{"no set", Evaluate(nil, "x", nil), "flag 'x' could not be evaluated: no flag set is loaded → error GENERAL"},
		{"rule variant", Evaluate(c, "drop-rate", Context{"tier": "vip"}), "rule 'vip-players' (#1) matched → variant vip"},
		{
			"rule split",
			Result{Key: "drop-rate", Variant: "treatment", Reason: ReasonSplit, RuleIndex: 0, RuleID: "vip-players",
				BucketBy: "userId", Bucket: 4213, TotalWeight: 10000},
			"rule 'vip-players' (#1) matched; bucket 4213 of 10000 on userId → variant treatment",
		},
		{
			"rule split missing attribute",
			Evaluate(c, "drop-rate", Context{"region": "eu-west", "clientVersion": "2.3.0"}),
			"rule 'eu-rollout' (#3) matched but its split buckets on userId, which the context lacks → default variant base",
		},
		{"no rule matched", Evaluate(c, "drop-rate", nil), "no rule matched → default variant base"},
		{
			"default split",
			Result{Key: "new-shop", Variant: "on", Reason: ReasonSplit, RuleIndex: -1, BucketBy: TargetingKey, Bucket: 17, TotalWeight: 100},
			"no rule matched; bucket 17 of 100 on targetingKey → variant on",
		},
		{
			"default split missing targeting key",
			Evaluate(c, "new-shop", nil),
			"no rule matched; the default split buckets on targetingKey, which the context lacks → default variant off (TARGETING_KEY_MISSING)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Explain(tt.r); got != tt.want {
				t.Errorf("Explain =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}
