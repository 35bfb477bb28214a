package flags_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/store/storetest"
)

type fixture struct {
	t    *testing.T
	ctx  context.Context
	svc  *flags.Service
	revs []flags.Revision // every revision the listener saw
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, ctx: solstice.WithActor(context.Background(), solstice.Actor{Name: "tester", Kind: "user"})}
	f.svc = flags.NewService(storetest.Open(t), flags.OnRevision(func(_ context.Context, _ string, r flags.Revision) {
		f.revs = append(f.revs, r)
	}))
	if err := f.svc.EnsureDefaultEnvironments(f.ctx); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) must(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) config(env, key string) flags.FlagConfig {
	f.t.Helper()
	fc, err := f.svc.GetConfig(f.ctx, env, key)
	f.must(err)
	return fc
}

func (f *fixture) put(env, key string, edit func(*flags.Config)) flags.Revision {
	f.t.Helper()
	fc := f.config(env, key)
	c := fc.Config
	edit(&c)
	rev, err := f.svc.PutConfig(f.ctx, env, key, c, fc.Revision, "")
	f.must(err)
	return rev
}

func objectFlag(key string) flags.NewFlag {
	return flags.NewFlag{Key: key, Type: flags.TypeObject,
		Schema: json.RawMessage(`{"type":"object","properties":{"xp":{"type":"number","maximum":5}}}`),
		Variants: []flags.Variant{
			{Key: "control", Value: json.RawMessage(`{"xp":1}`)},
			{Key: "boost", Value: json.RawMessage(`{"xp":3}`)},
		}}
}

func TestRevertRestoresAndKeepsWhatStillExists(t *testing.T) {
	f := newFixture(t)
	_, err := f.svc.CreateFlag(f.ctx, objectFlag("ev"))
	f.must(err)
	r2 := f.put("staging", "ev", func(c *flags.Config) { c.Enabled = true; c.DefaultVariant = "boost" })
	before := f.config("staging", "ev").Config

	// After revision 2: a segment, a flag using it, a change of ev.
	_, err = f.svc.PutSegment(f.ctx, "staging", flags.Segment{Key: "beta", Members: []string{"p1"}}, 0, "")
	f.must(err)
	_, err = f.svc.CreateFlag(f.ctx, flags.NewFlag{Key: "later", Type: flags.TypeBoolean})
	f.must(err)
	f.put("staging", "later", func(c *flags.Config) {
		c.Enabled = true
		c.Rules = []flags.Rule{{Conditions: []flags.Condition{{Op: flags.OpInSegment, Segment: "beta"}}, Variant: "on"}}
	})
	f.put("staging", "ev", func(c *flags.Config) { c.Enabled = false })

	rev, err := f.svc.Revert(f.ctx, "staging", r2.Number, "")
	f.must(err)
	if rev.Message != "Revert to revision 2" || rev.Author != "tester" {
		t.Errorf("revert revision = %+v", rev)
	}
	if diff := cmp.Diff(before, f.config("staging", "ev").Config); diff != "" {
		t.Errorf("ev after revert (-want +got):\n%s", diff)
	}
	later := f.config("staging", "later").Config
	if later.Enabled {
		t.Error("a flag created after the target revision is still enabled")
	}
	// The disabled flag still references beta, so the segment stays.
	if _, err := f.svc.GetSegment(f.ctx, "staging", "beta"); err != nil {
		t.Errorf("segment referenced by a surviving configuration was removed: %v", err)
	}
	if _, err := f.svc.Revert(f.ctx, "staging", r2.Number, ""); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("second identical revert: err = %v, want conflict", err)
	}
}

func TestRevertValidatesAgainstTodaysSchema(t *testing.T) {
	f := newFixture(t)
	fl, err := f.svc.CreateFlag(f.ctx, objectFlag("ev"))
	f.must(err)
	r1 := f.config("staging", "ev").Revision
	f.put("staging", "ev", func(c *flags.Config) {
		c.Variants = []flags.Variant{{Key: "control", Value: json.RawMessage(`{"xp":1}`)}}
		c.DefaultVariant, c.OffVariant = "control", "control"
	})
	// Everywhere else boost still has xp 3, so tighten the schema only after
	// removing it there too.
	for _, env := range []string{"development", "production"} {
		f.put(env, "ev", func(c *flags.Config) {
			c.Variants = []flags.Variant{{Key: "control", Value: json.RawMessage(`{"xp":1}`)}}
			c.DefaultVariant, c.OffVariant = "control", "control"
		})
	}
	schema := json.RawMessage(`{"type":"object","properties":{"xp":{"type":"number","maximum":2}}}`)
	_, err = f.svc.UpdateFlag(f.ctx, "ev", flags.FlagPatch{Schema: schema}, fl.Version)
	f.must(err)
	head := f.config("staging", "ev").Revision
	_, err = f.svc.Revert(f.ctx, "staging", r1, "")
	if !solstice.IsKind(err, solstice.KindInvalid) {
		t.Fatalf("revert to a value today's schema rejects: err = %v, want invalid", err)
	}
	if fields := solstice.ErrorFields(err); len(fields) == 0 || fields[0].Pointer != "/flags/ev/variants/1/value/xp" {
		t.Errorf("fields = %+v", fields)
	}
	if got := f.config("staging", "ev").Revision; got != head {
		t.Errorf("a refused revert changed the configuration: revision %d → %d", head, got)
	}
}

func TestDeletedFlagIsNotRevived(t *testing.T) {
	f := newFixture(t)
	fl, err := f.svc.CreateFlag(f.ctx, flags.NewFlag{Key: "gone", Type: flags.TypeBoolean})
	f.must(err)
	_, err = f.svc.CreateFlag(f.ctx, flags.NewFlag{Key: "kept", Type: flags.TypeBoolean})
	f.must(err)
	f.put("staging", "kept", func(c *flags.Config) { c.Enabled = true })
	f.must(f.svc.DeleteFlag(f.ctx, "gone", fl.Version))
	set, err := f.svc.Set(f.ctx, "staging")
	f.must(err)
	if len(set.Flags) != 1 || set.Flags[0].Key != "kept" {
		t.Fatalf("set after delete = %+v", set.Flags)
	}
	_, err = f.svc.Revert(f.ctx, "staging", 2, "") // both flags existed, neither enabled
	f.must(err)
	set, err = f.svc.Set(f.ctx, "staging")
	f.must(err)
	if len(set.Flags) != 1 || set.Flags[0].Key != "kept" || set.Flags[0].Enabled {
		t.Errorf("set after revert = %+v", set.Flags)
	}
}

func TestRejectedWritesLeaveNoTrace(t *testing.T) {
	f := newFixture(t)
	_, err := f.svc.CreateFlag(f.ctx, objectFlag("ev"))
	f.must(err)
	seen := len(f.revs)
	audit, err := f.svc.Store().ListAudit(f.ctx, solstice.AuditFilter{})
	f.must(err)
	env, err := f.svc.Store().GetEnvironment(f.ctx, "staging")
	f.must(err)
	fc := f.config("staging", "ev")

	bad := []struct {
		name string
		do   func() error
		kind solstice.Kind
	}{
		{"missing segment", func() error {
			c := fc.Config
			c.Rules = []flags.Rule{{Conditions: []flags.Condition{{Op: flags.OpInSegment, Segment: "nope"}}, Variant: "boost"}}
			_, err := f.svc.PutConfig(f.ctx, "staging", "ev", c, fc.Revision, "")
			return err
		}, solstice.KindInvalid},
		{"schema violation", func() error {
			c := fc.Config
			c.Variants = []flags.Variant{{Key: "control", Value: json.RawMessage(`{"xp":50}`)}, c.Variants[1]}
			_, err := f.svc.PutConfig(f.ctx, "staging", "ev", c, fc.Revision, "")
			return err
		}, solstice.KindInvalid},
		{"stale revision", func() error {
			_, err := f.svc.PutConfig(f.ctx, "staging", "ev", fc.Config, fc.Revision+7, "")
			return err
		}, solstice.KindPreconditionFailed},
		{"duplicate flag", func() error { _, err := f.svc.CreateFlag(f.ctx, objectFlag("ev")); return err }, solstice.KindConflict},
		{"unknown environment", func() error {
			_, err := f.svc.PutConfig(f.ctx, "nowhere", "ev", fc.Config, fc.Revision, "")
			return err
		}, solstice.KindNotFound},
		{"apply with one bad flag", func() error {
			_, err := f.svc.Apply(f.ctx, "staging", flags.Document{Flags: []flags.DocumentFlag{
				{Key: "fine", Type: flags.TypeBoolean, Config: flags.Config{Variants: flags.DefaultBooleanVariants(), DefaultVariant: "on", OffVariant: "off"}},
				{Key: "broken", Type: flags.TypeBoolean, Config: flags.Config{Variants: flags.DefaultBooleanVariants(), DefaultVariant: "maybe", OffVariant: "off"}},
			}}, flags.ApplyOptions{})
			return err
		}, solstice.KindInvalid},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !solstice.IsKind(err, tc.kind) {
				t.Fatalf("err = %v, want kind %s", err, tc.kind)
			}
		})
	}
	if len(f.revs) != seen {
		t.Errorf("listeners saw %d revisions from rejected writes", len(f.revs)-seen)
	}
	after, err := f.svc.Store().ListAudit(f.ctx, solstice.AuditFilter{})
	f.must(err)
	if len(after) != len(audit) {
		t.Errorf("audit grew from %d to %d entries", len(audit), len(after))
	}
	envAfter, err := f.svc.Store().GetEnvironment(f.ctx, "staging")
	f.must(err)
	if envAfter.Head != env.Head {
		t.Errorf("head moved from %d to %d", env.Head, envAfter.Head)
	}
	if _, err := f.svc.Store().GetFlag(f.ctx, "fine"); !solstice.IsKind(err, solstice.KindNotFound) {
		t.Errorf("a half-applied document created flag fine: %v", err)
	}
}

func TestNewEnvironments(t *testing.T) {
	f := newFixture(t)
	_, err := f.svc.CreateFlag(f.ctx, objectFlag("ev"))
	f.must(err)
	f.put("staging", "ev", func(c *flags.Config) { c.Enabled = true; c.DefaultVariant = "boost" })

	_, err = f.svc.CreateEnvironment(f.ctx, flags.NewEnvironment{Name: "qa"})
	f.must(err)
	if got := f.config("qa", "ev").Config; got.Enabled || len(got.Variants) != 2 {
		t.Errorf("qa starts with %+v, want the flag disabled with its variants", got)
	}
	_, err = f.svc.CreateEnvironment(f.ctx, flags.NewEnvironment{Name: "staging-2", CopyFrom: "staging"})
	f.must(err)
	if diff := cmp.Diff(f.config("staging", "ev").Config, f.config("staging-2", "ev").Config); diff != "" {
		t.Errorf("copied environment differs (-staging +copy):\n%s", diff)
	}
	for _, in := range []flags.NewEnvironment{{Name: "qa"}, {Name: "Bad Name"}, {Name: "x", CopyFrom: "nowhere"}} {
		if _, err := f.svc.CreateEnvironment(f.ctx, in); err == nil {
			t.Errorf("CreateEnvironment(%+v) succeeded", in)
		}
	}
	if _, err := f.svc.GetConfig(f.ctx, "x", "ev"); !solstice.IsKind(err, solstice.KindNotFound) {
		t.Errorf("failed environment creation left environment x: %v", err)
	}
}

func TestCompiledFollowsHead(t *testing.T) {
	f := newFixture(t)
	_, err := f.svc.CreateFlag(f.ctx, flags.NewFlag{Key: "b", Type: flags.TypeBoolean})
	f.must(err)
	c1, err := f.svc.Compiled(f.ctx, "staging")
	f.must(err)
	if c2, _ := f.svc.Compiled(f.ctx, "staging"); c2 != c1 {
		t.Error("Compiled recompiled an unchanged environment")
	}
	if r := flags.Evaluate(c1, "b", nil); r.Reason != flags.ReasonDisabled || r.Value != false {
		t.Errorf("disabled flag = %+v", r)
	}
	f.put("staging", "b", func(c *flags.Config) { c.Enabled = true })
	c3, err := f.svc.Compiled(f.ctx, "staging")
	f.must(err)
	if c3.Revision() <= c1.Revision() {
		t.Errorf("revision %d after a change, was %d", c3.Revision(), c1.Revision())
	}
	if r := flags.Evaluate(c3, "b", nil); r.Reason != flags.ReasonStatic || r.Value != true {
		t.Errorf("enabled flag = %+v", r)
	}
}
