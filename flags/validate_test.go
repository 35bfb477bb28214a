package flags

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
)

func TestValidKey(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"a", true},
		{"winter-drops", true},
		{"v1.2_beta-3", true},
		{"0day", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"", false},
		{"-leading", false},
		{".leading", false},
		{"Upper", false},
		{"with space", false},
		{"slash/y", false},
		{"colon:y", false},
		{"é", false},
	}
	for _, tt := range tests {
		if got := ValidKey(tt.key); got != tt.want {
			t.Errorf("ValidKey(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
}

// checkFields asserts that err is a KindInvalid error whose field pointers
// are exactly want, and that the message of each pointer in msgs contains
// the given text.
func checkFields(t *testing.T, err error, want []string, msgs map[string]string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v\nfields: %v", err, solstice.ErrorFields(err))
		}
		return
	}
	if got := solstice.ErrorKind(err); got != solstice.KindInvalid {
		t.Fatalf("error kind = %q, want %q (err %v)", got, solstice.KindInvalid, err)
	}
	if diff := cmp.Diff(want, pointers(err)); diff != "" {
		t.Errorf("field pointers (-want +got):\n%s\nfields: %q", diff, solstice.ErrorFields(err))
	}
	for ptr, sub := range msgs {
		found := false
		for _, f := range solstice.ErrorFields(err) {
			if f.Pointer == ptr && strings.Contains(f.Message, sub) {
				found = true
			}
		}
		if !found {
			t.Errorf("no field error at %q containing %q; fields: %q", ptr, sub, solstice.ErrorFields(err))
		}
	}
}

func TestValidateFlag(t *testing.T) {
	valid := func() Flag {
		return Flag{Key: "winter-drops", Name: "Winter drops", Type: TypeObject, Tags: []string{"event", "team:live-ops"},
			Schema: json.RawMessage(`{"type":"object"}`)}
	}
	tests := []struct {
		name   string
		change func(*Flag)
		want   []string
		msgs   map[string]string
	}{
		{name: "valid", change: func(*Flag) {}},
		{name: "no schema", change: func(f *Flag) { f.Schema = nil }},
		{name: "null schema", change: func(f *Flag) { f.Schema = json.RawMessage("null"); f.Type = TypeString }},
		{name: "name of 200 multi-byte characters", change: func(f *Flag) { f.Name = strings.Repeat("é", 200) }},
		{
			name: "everything wrong",
			change: func(f *Flag) {
				f.Key = "Winter Drops"
				f.Name = "  "
				f.Description = strings.Repeat("x", 2001)
				f.Tags = []string{"ok", "Not-Ok", "ok"}
				f.Type = "color"
			},
			want: []string{"/description", "/key", "/name", "/schema", "/tags/1", "/tags/2", "/type"},
			msgs: map[string]string{"/schema": "only object flags", "/tags/2": "more than once", "/description": "2000"},
		},
		{
			name:   "missing key and type",
			change: func(f *Flag) { f.Key, f.Type, f.Schema = "", "", nil },
			want:   []string{"/key", "/type"},
			msgs:   map[string]string{"/key": "required", "/type": "required"},
		},
		{
			name:   "name too long",
			change: func(f *Flag) { f.Name = strings.Repeat("n", 201) },
			want:   []string{"/name"},
		},
		{
			name: "too many tags",
			change: func(f *Flag) {
				f.Tags = nil
				for i := range 21 {
					f.Tags = append(f.Tags, "t"+strconv.Itoa(i))
				}
			},
			want: []string{"/tags"},
		},
		{
			name:   "schema that is not a schema",
			change: func(f *Flag) { f.Schema = json.RawMessage(`{"type":"objekt","properties":{"a":{"minimum":"zero"}}}`) },
			want:   []string{"/schema/properties/a/minimum", "/schema/type"},
			msgs:   map[string]string{"/schema/type": "value must be one of 'array'"},
		},
		{
			name:   "schema that is not JSON",
			change: func(f *Flag) { f.Schema = json.RawMessage(`{"type":`) },
			want:   []string{"/schema"},
			msgs:   map[string]string{"/schema": "not valid JSON"},
		},
		{
			name:   "remote reference",
			change: func(f *Flag) { f.Schema = json.RawMessage(`{"$ref":"https://example.com/drops.json"}`) },
			want:   []string{"/schema"},
			msgs:   map[string]string{"/schema": "outside the schema"},
		},
		{
			name:   "file reference",
			change: func(f *Flag) { f.Schema = json.RawMessage(`{"$ref":"file:///etc/passwd"}`) },
			want:   []string{"/schema"},
			msgs:   map[string]string{"/schema": "outside the schema"},
		},
		{
			name:   "relative reference",
			change: func(f *Flag) { f.Schema = json.RawMessage(`{"$ref":"other.json#/defs/x"}`) },
			want:   []string{"/schema"},
			msgs:   map[string]string{"/schema": "outside the schema"},
		},
		{
			name: "internal reference is fine",
			change: func(f *Flag) {
				f.Schema = json.RawMessage(`{"$defs":{"w":{"type":"integer"}},"type":"object","properties":{"w":{"$ref":"#/$defs/w"}}}`)
			},
		},
		{
			name: "draft-07 schema",
			change: func(f *Flag) {
				f.Schema = json.RawMessage(`{"$schema":"http://json-schema.org/draft-07/schema#","type":"object"}`)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := valid()
			tt.change(&f)
			checkFields(t, ValidateFlag(f), tt.want, tt.msgs)
		})
	}
}

func boolConfig() Config {
	return Config{
		Enabled:        true,
		Variants:       []Variant{{Key: "on", Value: json.RawMessage("true")}, {Key: "off", Value: json.RawMessage("false")}},
		DefaultVariant: "on",
		OffVariant:     "off",
	}
}

func TestValidateConfig(t *testing.T) {
	flag := Flag{Key: "f", Name: "F", Type: TypeBoolean}
	segments := map[string]bool{"testers": true, "retired": false}
	cond := func(attr string, op Operator, value string) Condition {
		c := Condition{Attribute: attr, Op: op}
		if value != "" {
			c.Value = json.RawMessage(value)
		}
		return c
	}
	tests := []struct {
		name   string
		flag   *Flag // default: flag
		change func(*Config)
		want   []string
		msgs   map[string]string
	}{
		{name: "valid", change: func(*Config) {}},
		{
			name: "valid with everything",
			change: func(c *Config) {
				c.Rules = []Rule{
					{ID: "vip", Conditions: []Condition{cond("tier", OpIn, `["vip","gold"]`), {Op: OpInSegment, Segment: "testers"}}, Variant: "on"},
					{Conditions: []Condition{cond("v", OpSemverGtEq, `"1.2.3-beta.1"`), cond("t", OpBefore, `"2026-12-01T00:00:00+01:00"`),
						cond("e", OpExists, ""), cond("n", OpNotExists, "null")},
						Split: &Split{BucketBy: "userId", Salt: "s", Weights: []Weight{{"on", 1}, {"off", 0}}}},
				}
				c.Split = &Split{Weights: []Weight{{"off", 9000}, {"on", 1000}}}
			},
		},
		{
			name:   "no variants",
			change: func(c *Config) { c.Variants = nil },
			want:   []string{"/default_variant", "/off_variant", "/variants"},
			msgs:   map[string]string{"/variants": "at least one", "/default_variant": "unknown variant"},
		},
		{
			name: "too many variants",
			change: func(c *Config) {
				for i := range MaxVariants {
					c.Variants = append(c.Variants, Variant{Key: "v" + strconv.Itoa(i), Value: json.RawMessage("true")})
				}
			},
			want: []string{"/variants"},
		},
		{
			name: "variant keys and values",
			change: func(c *Config) {
				c.Variants = append(c.Variants,
					Variant{Key: "On", Value: json.RawMessage(`"yes"`)},
					Variant{Key: "", Value: json.RawMessage(`true`)},
					Variant{Key: "on", Value: nil},
					Variant{Key: "n", Value: json.RawMessage(`null`), Description: strings.Repeat("d", 2001)},
					Variant{Key: "j", Value: json.RawMessage(`tru`)},
				)
			},
			want: []string{"/variants/2/key", "/variants/2/value", "/variants/3/key", "/variants/4/key", "/variants/4/value",
				"/variants/5/description", "/variants/5/value", "/variants/6/value"},
			msgs: map[string]string{"/variants/2/value": "true or false", "/variants/4/key": "more than once",
				"/variants/4/value": "required", "/variants/6/value": "not valid JSON"},
		},
		{
			name:   "default and off variants",
			change: func(c *Config) { c.DefaultVariant, c.OffVariant = "", "gone" },
			want:   []string{"/default_variant", "/off_variant"},
			msgs:   map[string]string{"/default_variant": "required", "/off_variant": `unknown variant "gone"`},
		},
		{
			name: "rules serve exactly one thing",
			change: func(c *Config) {
				c.Rules = []Rule{
					{Variant: "on", Split: &Split{Weights: []Weight{{"on", 1}}}},
					{},
					{Variant: "maybe"},
				}
			},
			want: []string{"/rules/0", "/rules/1", "/rules/2/variant"},
		},
		{
			name: "rule ids",
			change: func(c *Config) {
				c.Rules = []Rule{
					{ID: "rule-2", Variant: "on"},
					{Variant: "on"}, // rule-2 too
					{ID: "Bad ID", Variant: "on"},
					{ID: "x", Variant: "on", Description: strings.Repeat("d", 2001)},
					{ID: "x", Variant: "on"},
				}
			},
			want: []string{"/rules/1/id", "/rules/2/id", "/rules/3/description", "/rules/4/id"},
			msgs: map[string]string{"/rules/1/id": `"rule-2" is already used by rule #1`},
		},
		{
			name: "too many rules",
			change: func(c *Config) {
				for range MaxRules + 1 {
					c.Rules = append(c.Rules, Rule{Variant: "on"})
				}
			},
			want: []string{"/rules"},
		},
		{
			name: "condition values",
			change: func(c *Config) {
				c.Rules = []Rule{{Variant: "on", Conditions: []Condition{
					cond("a", OpEquals, `[1]`),                    // 0
					cond("", OpGreater, `1`),                      // 1
					cond("a", "regex", `"x"`),                     // 2
					cond("a", "", ``),                             // 3
					cond("a", OpIn, `[]`),                         // 4
					cond("a", OpIn, `"x"`),                        // 5
					cond("a", OpNotIn, `["x",{"y":1},null]`),      // 6
					cond("a", OpLessEq, `"10"`),                   // 7
					cond("a", OpSemverGt, `"one"`),                // 8
					cond("a", OpSemverLess, `1`),                  // 9
					cond("a", OpBefore, `"2026-13-01T00:00:00Z"`), // 10
					cond("a", OpAfter, `1767225600`),              // 11
					cond("a", OpContains, `5`),                    // 12
					cond("a", OpStartsWith, ``),                   // 13
					cond("a", OpGreaterEq, `1e400`),               // 14
					{Op: OpInSegment},                             // 15
					{Op: OpNotInSegment, Segment: "ghost"},        // 16
					{Op: OpInSegment, Segment: "retired"},         // 17
					cond("a", OpEndsWith, `"x"`),                  // 18: fine
					cond(strings.Repeat("a", 257), OpExists, ``),  // 19
					{Attribute: "a", Op: OpInSegment, Segment: "testers", Value: json.RawMessage(`1`)}, // 20
					{Attribute: "a", Op: OpEquals, Value: json.RawMessage(`1`), Segment: "testers"},    // 21
					cond("a", OpExists, `true`), // 22
				}}}
			},
			want: []string{
				"/rules/0/conditions/0/value",
				"/rules/0/conditions/1/attribute",
				"/rules/0/conditions/2/op",
				"/rules/0/conditions/3/op",
				"/rules/0/conditions/4/value",
				"/rules/0/conditions/5/value",
				"/rules/0/conditions/6/value/1",
				"/rules/0/conditions/6/value/2",
				"/rules/0/conditions/7/value",
				"/rules/0/conditions/8/value",
				"/rules/0/conditions/9/value",
				"/rules/0/conditions/10/value",
				"/rules/0/conditions/11/value",
				"/rules/0/conditions/12/value",
				"/rules/0/conditions/13/value",
				"/rules/0/conditions/14/value",
				"/rules/0/conditions/15/segment",
				"/rules/0/conditions/16/segment",
				"/rules/0/conditions/17/segment",
				"/rules/0/conditions/19/attribute",
				"/rules/0/conditions/20/attribute",
				"/rules/0/conditions/20/value",
				"/rules/0/conditions/21/segment",
				"/rules/0/conditions/22/value",
			},
			msgs: map[string]string{
				"/rules/0/conditions/2/op":       `unknown operator "regex"`,
				"/rules/0/conditions/8/value":    "not a semantic version",
				"/rules/0/conditions/10/value":   "RFC 3339",
				"/rules/0/conditions/16/segment": `unknown segment "ghost"`,
				"/rules/0/conditions/22/value":   "not used by exists",
				"/rules/0/conditions/14/value":   "number 1e400 is out of range",
				"/rules/0/conditions/7/value":    "must be a number, got string",
			},
		},
		{
			name: "too many conditions and list values",
			change: func(c *Config) {
				var conds []Condition
				for range MaxConditions + 1 {
					conds = append(conds, cond("a", OpExists, ""))
				}
				list, _ := json.Marshal(make([]int, MaxListValues+1))
				c.Rules = []Rule{{Variant: "on", Conditions: conds}, {Variant: "on", Conditions: []Condition{cond("a", OpIn, string(list))}}}
			},
			want: []string{"/rules/0/conditions", "/rules/1/conditions/0/value"},
		},
		{
			name: "splits",
			change: func(c *Config) {
				c.Rules = []Rule{
					{Split: &Split{}},
					{Split: &Split{Weights: []Weight{{"on", 0}, {"off", 0}}}},
					{Split: &Split{BucketBy: strings.Repeat("b", 129), Weights: []Weight{{"on", -1}, {"gone", 5}, {"on", 2}, {"", 1}}}},
				}
				c.Split = &Split{Salt: strings.Repeat("é", 129), Weights: []Weight{{"on", MaxTotalWeight}, {"off", 1}}}
			},
			want: []string{
				"/rules/0/split/weights",
				"/rules/1/split/weights",
				"/rules/2/split/bucket_by",
				"/rules/2/split/weights/0/weight",
				"/rules/2/split/weights/1/variant",
				"/rules/2/split/weights/2/variant",
				"/rules/2/split/weights/3/variant",
				"/split/salt",
				"/split/weights",
			},
			msgs: map[string]string{
				"/rules/0/split/weights": "at least one",
				"/rules/1/split/weights": "more than 0",
				"/split/weights":         "add up to 1000001",
			},
		},
		{
			name:   "configuration too large",
			flag:   &Flag{Key: "s", Name: "S", Type: TypeString},
			change: func(c *Config) { c.Variants[0].Value, _ = json.Marshal(strings.Repeat("x", MaxConfigBytes)) },
			want:   []string{""},
			msgs:   map[string]string{"": "limit is 1048576"},
		},
		{
			name: "number out of range",
			flag: &Flag{Key: "n", Name: "N", Type: TypeNumber},
			change: func(c *Config) {
				c.Variants[0].Value = json.RawMessage(`1e400`)
				c.Variants[1].Value = json.RawMessage(`-1.5e-300`)
			},
			want: []string{"/variants/0/value"},
			msgs: map[string]string{"/variants/0/value": "out of range"},
		},
		{
			name: "object value with a number out of range",
			flag: &Flag{Key: "o", Name: "O", Type: TypeObject},
			change: func(c *Config) {
				c.Variants[0].Value = json.RawMessage(`{"a/b":{"c":[1,-1e999]}}`)
				c.Variants[1].Value = json.RawMessage(`[]`)
			},
			want: []string{"/variants/0/value/a~1b/c/1", "/variants/1/value"},
			msgs: map[string]string{"/variants/1/value": "got array"},
		},
		{
			name:   "unknown type",
			flag:   &Flag{Key: "x", Name: "X", Type: "color"},
			change: func(*Config) {},
			want:   []string{"/type"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := flag
			if tt.flag != nil {
				f = *tt.flag
			}
			c := boolConfig()
			switch f.Type {
			case TypeString:
				c.Variants[0].Value, c.Variants[1].Value = json.RawMessage(`"a"`), json.RawMessage(`"b"`)
			case TypeNumber:
				c.Variants[0].Value, c.Variants[1].Value = json.RawMessage(`1`), json.RawMessage(`2`)
			case TypeObject:
				c.Variants[0].Value, c.Variants[1].Value = json.RawMessage(`{}`), json.RawMessage(`{"a":1}`)
			}
			tt.change(&c)
			err := ValidateConfig(f, c, segments)
			checkFields(t, err, tt.want, tt.msgs)
			if err == nil {
				// What validates also compiles.
				if _, err := Compile(Set{Flags: []FlagState{{Key: f.Key, Type: f.Type, Config: c}},
					Segments: []Segment{{Key: "testers"}}}); err != nil {
					t.Errorf("a valid configuration does not compile: %v", err)
				}
			}
		})
	}
}

const dropsSchema = `{
	"type": "object",
	"required": ["multiplier"],
	"properties": {
		"multiplier": {"type": "number", "minimum": 1},
		"starts": {"type": "string", "format": "date-time"},
		"drops": {
			"type": "array",
			"items": {
				"type": "object",
				"required": ["item", "weight"],
				"additionalProperties": false,
				"properties": {"item": {"type": "string"}, "weight": {"type": "integer", "minimum": 0}}
			}
		}
	}
}`

func TestValidateConfigSchema(t *testing.T) {
	f := Flag{Key: "winter-drops", Name: "Winter drops", Type: TypeObject, Schema: json.RawMessage(dropsSchema)}
	c := Config{
		Enabled: true,
		Variants: []Variant{
			{Key: "control", Value: json.RawMessage(`{"multiplier":1}`)},
			{Key: "treatment", Value: json.RawMessage(`{"multiplier":2,"drops":[{"item":"snowball","weight":1},{"item":"coal","weight":-1}]}`)},
			{Key: "broken", Value: json.RawMessage(`{"multiplier":0.5,"starts":"next week","drops":[{"item":"x","weight":1.5,"rare":true},{"weight":1}]}`)},
			{Key: "array", Value: json.RawMessage(`[1]`)},
			{Key: "big", Value: json.RawMessage(`{"multiplier":1e400}`)},
		},
		DefaultVariant: "control",
		OffVariant:     "control",
	}
	err := ValidateConfig(f, c, nil)
	want := []string{
		"/variants/1/value/drops/1/weight",
		"/variants/2/value/drops/0",
		"/variants/2/value/drops/0/weight",
		"/variants/2/value/drops/1",
		"/variants/2/value/multiplier",
		"/variants/2/value/starts",
		"/variants/3/value",
		"/variants/4/value/multiplier",
	}
	checkFields(t, err, want, map[string]string{
		"/variants/1/value/drops/1/weight": "minimum",
		"/variants/2/value/drops/0":        "additional properties 'rare' not allowed",
		"/variants/2/value/drops/1":        "missing property 'item'",
		"/variants/2/value/starts":         "date-time",
		"/variants/3/value":                "must be a JSON object",
	})

	t.Run("anyOf", func(t *testing.T) {
		f := f
		f.Schema = json.RawMessage(`{"type":"object","properties":{"reward":{"anyOf":[
			{"type":"string"},
			{"type":"object","required":["item"],"properties":{"item":{"type":"string"}}}]}}}`)
		c := Config{
			Variants: []Variant{
				{Key: "a", Value: json.RawMessage(`{"reward":"gold"}`)},
				{Key: "b", Value: json.RawMessage(`{"reward":true}`)},
				{Key: "c", Value: json.RawMessage(`{"reward":{"item":5}}`)},
			},
			DefaultVariant: "a", OffVariant: "a",
		}
		checkFields(t, ValidateConfig(f, c, nil), []string{"/variants/1/value/reward", "/variants/2/value/reward/item"},
			map[string]string{
				"/variants/1/value/reward":      "got boolean, want string; or got boolean, want object",
				"/variants/2/value/reward/item": "got number, want string",
			})
	})

	t.Run("uncompilable schema", func(t *testing.T) {
		f := f
		f.Schema = json.RawMessage(`{"type":"objekt"}`)
		err := ValidateConfig(f, Config{Variants: c.Variants[:1], DefaultVariant: "control", OffVariant: "control"}, nil)
		checkFields(t, err, []string{""}, map[string]string{"": "schema does not compile"})
	})
}

func TestValidateSegment(t *testing.T) {
	tests := []struct {
		name string
		seg  Segment
		want []string
		msgs map[string]string
	}{
		{name: "valid", seg: Segment{Key: "testers", Name: "Testers", Members: []string{"a", "b"},
			Conditions: []Condition{{Attribute: "email", Op: OpEndsWith, Value: json.RawMessage(`"@studio.example"`)}}}},
		{name: "empty", seg: Segment{Key: "nobody"}},
		{
			name: "everything wrong",
			seg: Segment{
				Key: "Testers!", Name: strings.Repeat("n", 201), Description: strings.Repeat("d", 2001),
				MembersAttribute: strings.Repeat("m", 257),
				Members:          []string{"a", "", strings.Repeat("x", 257)},
				Conditions: []Condition{
					{Op: OpInSegment, Segment: "other"},
					{Attribute: "level", Op: OpGreater, Value: json.RawMessage(`"high"`)},
					{Attribute: "x", Op: "like"},
				},
			},
			want: []string{"/conditions/0/op", "/conditions/1/value", "/conditions/2/op", "/description", "/key",
				"/members/1", "/members/2", "/members_attribute", "/name"},
			msgs: map[string]string{"/conditions/0/op": "cannot refer to segments"},
		},
		{name: "no key", seg: Segment{}, want: []string{"/key"}},
		{name: "too many members", seg: Segment{Key: "big", Members: make([]string, MaxSegmentMembers+1)},
			want: func() []string {
				out := []string{"/members"}
				for i := range MaxSegmentMembers + 1 {
					out = append(out, fmt.Sprintf("/members/%d", i))
				}
				return out
			}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkFields(t, ValidateSegment(tt.seg), tt.want, tt.msgs)
		})
	}
}

func TestComparePointers(t *testing.T) {
	got := []string{"/rules/10/id", "/rules/2/id", "", "/rules/2", "/a~1b", "/variants/0/value", "/rules/2/conditions/0"}
	want := []string{"", "/a~1b", "/rules/2", "/rules/2/conditions/0", "/rules/2/id", "/rules/10/id", "/variants/0/value"}
	p := &problems{}
	for _, g := range got {
		p.add(g, "x")
	}
	if diff := cmp.Diff(want, pointers(p.err("x"))); diff != "" {
		t.Errorf("sorted pointers (-want +got):\n%s", diff)
	}
}
