package flags

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/Masterminds/semver/v3"
)

// matches compiles a boolean flag with one rule holding cond and reports
// whether that rule matched ctx.
func matches(t *testing.T, cond Condition, ctx Context) bool {
	t.Helper()
	rule := Rule{Conditions: []Condition{cond}, Variant: "on"}
	set := Set{
		Flags: []FlagState{{Key: "f", Type: TypeBoolean, Config: Config{
			Enabled:        true,
			Variants:       []Variant{{Key: "on", Value: json.RawMessage("true")}, {Key: "off", Value: json.RawMessage("false")}},
			DefaultVariant: "off", OffVariant: "off",
			Rules: []Rule{rule},
		}}},
		Segments: []Segment{
			{Key: "testers", Members: []string{"alice", "42"}},
			{Key: "whales", MembersAttribute: "userId", Members: []string{"u1"},
				Conditions: []Condition{{Attribute: "spend", Op: OpGreaterEq, Value: json.RawMessage("100")}}},
			{Key: "nobody"},
		},
	}
	c, err := Compile(set)
	if err != nil {
		t.Fatalf("Compile %+v: %v", cond, err)
	}
	r := Evaluate(c, "f", ctx)
	switch r.Reason {
	case ReasonTargetingMatch:
		return true
	case ReasonDefault:
		return false
	}
	t.Fatalf("unexpected reason %s", r.Reason)
	return false
}

func TestConditions(t *testing.T) {
	rfc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	type tc struct {
		name  string
		op    Operator
		value string // JSON; "" for none
		ctx   any    // the value of attribute "a"; missing when absent is set
		want  bool
	}
	const absent = "\x00absent"
	tests := []tc{
		// eq
		{"eq string", OpEquals, `"pc"`, "pc", true},
		{"eq string differs", OpEquals, `"pc"`, "PC", false},
		{"eq number int", OpEquals, `5`, 5, true},
		{"eq number float32", OpEquals, `0.5`, float32(0.5), true},
		{"eq number uint8", OpEquals, `5`, uint8(5), true},
		{"eq number json.Number", OpEquals, `5`, json.Number("5.0"), true},
		{"eq number differs", OpEquals, `5`, 6.0, false},
		{"eq bool", OpEquals, `true`, true, true},
		{"eq bool differs", OpEquals, `true`, false, false},
		{"eq string vs number", OpEquals, `5`, "5", false},
		{"eq missing", OpEquals, `"pc"`, absent, false},
		{"eq nil", OpEquals, `"pc"`, nil, false},
		{"eq map", OpEquals, `"pc"`, map[string]any{"a": "pc"}, false},
		{"eq NaN", OpEquals, `5`, math.NaN(), false},
		// neq
		{"neq differs", OpNotEquals, `"pc"`, "xbox", true},
		{"neq same", OpNotEquals, `"pc"`, "pc", false},
		{"neq other JSON type", OpNotEquals, `5`, "5", true},
		{"neq missing", OpNotEquals, `"pc"`, absent, false},
		{"neq slice", OpNotEquals, `"pc"`, []string{"pc"}, false},
		// in
		{"in string", OpIn, `["eu-west","eu-central"]`, "eu-central", true},
		{"in string absent", OpIn, `["eu-west"]`, "us-east", false},
		{"in number", OpIn, `[1, 2.5, "3"]`, int64(1), true},
		{"in number not string", OpIn, `[1, 2.5, "3"]`, 3, false},
		{"in string not number", OpIn, `[1, 2.5, "3"]`, "3", true},
		{"in bool", OpIn, `[false]`, false, true},
		{"in bool absent", OpIn, `[false]`, true, false},
		{"in missing", OpIn, `["x"]`, absent, false},
		{"in struct", OpIn, `["x"]`, struct{}{}, false},
		// not_in
		{"not_in unlisted", OpNotIn, `["banned","suspended"]`, "active", true},
		{"not_in listed", OpNotIn, `["banned","suspended"]`, "banned", false},
		{"not_in missing", OpNotIn, `["banned"]`, absent, false},
		{"not_in time", OpNotIn, `["banned"]`, time.Now(), false},
		// lt, lte, gt, gte
		{"lt true", OpLess, `10`, 9.99, true},
		{"lt equal", OpLess, `10`, 10, false},
		{"lte equal", OpLessEq, `10`, int32(10), true},
		{"lte greater", OpLessEq, `10`, uint(11), false},
		{"gt true", OpGreater, `10`, json.Number("10.5"), true},
		{"gt equal", OpGreater, `10`, 10, false},
		{"gte equal", OpGreaterEq, `-1.5`, -1.5, true},
		{"gte less", OpGreaterEq, `-1.5`, int16(-2), false},
		{"gt numeric string", OpGreater, `10`, "11", false},
		{"gt bool", OpGreater, `0`, true, false},
		{"gt missing", OpGreater, `10`, absent, false},
		{"gt bad json.Number", OpGreater, `10`, json.Number("eleven"), false},
		{"lt NaN", OpLess, `10`, math.NaN(), false},
		// semver
		{"semver_eq", OpSemverEq, `"1.4.0"`, "1.4.0", true},
		{"semver_eq lenient", OpSemverEq, `"1.4"`, "v1.4.0", true},
		{"semver_eq differs", OpSemverEq, `"1.4.0"`, "1.4.1", false},
		{"semver_lt", OpSemverLess, `"1.4.0"`, "1.3.9", true},
		{"semver_lt prerelease", OpSemverLess, `"1.4.0"`, "1.4.0-beta.2", true},
		{"semver_lt equal", OpSemverLess, `"1.4.0"`, "1.4.0", false},
		{"semver_lte equal", OpSemverLessEq, `"1.4.0"`, "1.4.0", true},
		{"semver_gt", OpSemverGt, `"1.4.0"`, "1.10.0", true},
		{"semver_gt less", OpSemverGt, `"1.4.0"`, "1.3.0", false},
		{"semver_gte equal", OpSemverGtEq, `"2.0.0"`, "2.0.0", true},
		{"semver_gte less", OpSemverGtEq, `"2.0.0"`, "1.99.99", false},
		{"semver *Version", OpSemverGtEq, `"2.0.0"`, semver.MustParse("2.1.0"), true},
		{"semver nil *Version", OpSemverGtEq, `"2.0.0"`, (*semver.Version)(nil), false},
		{"semver unparsable", OpSemverGt, `"1.0.0"`, "latest", false},
		{"semver number", OpSemverGt, `"1.0.0"`, 2, false},
		{"semver missing", OpSemverGt, `"1.0.0"`, absent, false},
		// strings
		{"starts_with", OpStartsWith, `"dev-"`, "dev-alice", true},
		{"starts_with no", OpStartsWith, `"dev-"`, "alice-dev-", false},
		{"starts_with case", OpStartsWith, `"dev-"`, "DEV-alice", false},
		{"ends_with", OpEndsWith, `"@studio.example"`, "a@studio.example", true},
		{"ends_with no", OpEndsWith, `"@studio.example"`, "a@example.com", false},
		{"contains", OpContains, `"qa"`, "team-qa-1", true},
		{"contains no", OpContains, `"qa"`, "team-ops", false},
		{"contains number", OpContains, `"1"`, 1, false},
		{"contains missing", OpContains, `"qa"`, absent, false},
		// times
		{"before time.Time", OpBefore, `"2026-12-01T00:00:00Z"`, rfc("2026-11-30T23:59:59Z"), true},
		{"before equal", OpBefore, `"2026-12-01T00:00:00Z"`, rfc("2026-12-01T00:00:00Z"), false},
		{"before *time.Time", OpBefore, `"2026-12-01T00:00:00Z"`, new(time.Time), true},
		{"before nil *time.Time", OpBefore, `"2026-12-01T00:00:00Z"`, (*time.Time)(nil), false},
		{"before string offset", OpBefore, `"2026-12-01T00:00:00Z"`, "2026-12-01T00:30:00+01:00", true},
		{"before unix seconds", OpBefore, `"2026-12-01T00:00:00Z"`, rfc("2026-12-01T00:00:00Z").Unix() - 1, true},
		{"after unix seconds fraction", OpAfter, `"2026-12-01T00:00:00Z"`, float64(rfc("2026-12-01T00:00:00Z").Unix()) + 0.5, true},
		{"after equal", OpAfter, `"2026-12-01T00:00:00Z"`, "2026-12-01T00:00:00Z", false},
		{"after nanos", OpAfter, `"2026-12-01T00:00:00Z"`, "2026-12-01T00:00:00.000000001Z", true},
		{"after json.Number", OpAfter, `"2026-12-01T00:00:00Z"`, json.Number("4000000000"), true},
		{"after bad string", OpAfter, `"2026-12-01T00:00:00Z"`, "tomorrow", false},
		{"after bool", OpAfter, `"2026-12-01T00:00:00Z"`, true, false},
		{"after huge number", OpAfter, `"2026-12-01T00:00:00Z"`, 1e300, false},
		{"after missing", OpAfter, `"2026-12-01T00:00:00Z"`, absent, false},
		// exists
		{"exists", OpExists, ``, "x", true},
		{"exists zero value", OpExists, ``, 0, true},
		{"exists missing", OpExists, ``, absent, false},
		{"exists nil", OpExists, ``, nil, false},
		{"not_exists missing", OpNotExists, ``, absent, true},
		{"not_exists nil", OpNotExists, ``, nil, true},
		{"not_exists present", OpNotExists, ``, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cond := Condition{Attribute: "a", Op: tt.op}
			if tt.value != "" {
				cond.Value = json.RawMessage(tt.value)
			}
			ctx := Context{TargetingKey: "p1"}
			if s, ok := tt.ctx.(string); !ok || s != absent {
				ctx["a"] = tt.ctx
			}
			if got := matches(t, cond, ctx); got != tt.want {
				t.Errorf("%s %s against a=%#v: %v, want %v", tt.op, tt.value, tt.ctx, got, tt.want)
			}
		})
	}
}

func TestSegmentConditions(t *testing.T) {
	tests := []struct {
		name    string
		op      Operator
		segment string
		ctx     Context
		want    bool
	}{
		{"member", OpInSegment, "testers", Context{TargetingKey: "alice"}, true},
		{"integer member", OpInSegment, "testers", Context{TargetingKey: 42}, true},
		{"integral float member", OpInSegment, "testers", Context{TargetingKey: 42.0}, true},
		{"not a member", OpInSegment, "testers", Context{TargetingKey: "bob"}, false},
		{"no targeting key", OpInSegment, "testers", Context{}, false},
		{"not_in_segment non-member", OpNotInSegment, "testers", Context{TargetingKey: "bob"}, true},
		{"not_in_segment member", OpNotInSegment, "testers", Context{TargetingKey: "alice"}, false},
		{"not_in_segment no key", OpNotInSegment, "testers", Context{}, true},
		{"members attribute", OpInSegment, "whales", Context{TargetingKey: "x", "userId": "u1"}, true},
		{"members attribute not the targeting key", OpInSegment, "whales", Context{TargetingKey: "u1"}, false},
		{"segment conditions", OpInSegment, "whales", Context{"userId": "u2", "spend": 250}, true},
		{"segment conditions fail", OpInSegment, "whales", Context{"userId": "u2", "spend": 5}, false},
		{"empty segment", OpInSegment, "nobody", Context{TargetingKey: "alice"}, false},
		{"not in empty segment", OpNotInSegment, "nobody", Context{TargetingKey: "alice"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cond := Condition{Op: tt.op, Segment: tt.segment}
			if got := matches(t, cond, tt.ctx); got != tt.want {
				t.Errorf("%s %s with %v: %v, want %v", tt.op, tt.segment, tt.ctx, got, tt.want)
			}
		})
	}
}

// Every operator on every kind of context value: never a panic.
func TestConditionsNeverPanic(t *testing.T) {
	values := []any{nil, "", "x", "1.2.3", "2026-01-01T00:00:00Z", true, 0, -1, uint64(math.MaxUint64),
		math.NaN(), math.Inf(-1), float32(1), json.Number("x"), json.Number("1e999"), time.Time{},
		(*time.Time)(nil), semver.Version{}, (*semver.Version)(nil), []any{1}, map[string]any{}, struct{}{}, func() {}}
	valueFor := map[Operator]string{
		OpEquals: `1`, OpNotEquals: `"x"`, OpIn: `[1,"x",true]`, OpNotIn: `[false]`,
		OpLess: `1`, OpLessEq: `1`, OpGreater: `1`, OpGreaterEq: `1`,
		OpSemverEq: `"1.2.3"`, OpSemverLess: `"1.2.3"`, OpSemverLessEq: `"1.2.3"`, OpSemverGt: `"1.2.3"`, OpSemverGtEq: `"1.2.3"`,
		OpStartsWith: `"x"`, OpEndsWith: `"x"`, OpContains: `"x"`,
		OpBefore: `"2026-01-01T00:00:00Z"`, OpAfter: `"2026-01-01T00:00:00Z"`,
	}
	for op, info := range operators {
		if info.segment {
			continue
		}
		for _, v := range values {
			t.Run(fmt.Sprintf("%s/%T", op, v), func(t *testing.T) {
				cond := Condition{Attribute: "a", Op: op}
				if s := valueFor[op]; s != "" {
					cond.Value = json.RawMessage(s)
				}
				matches(t, cond, Context{"a": v})
			})
		}
	}
}
