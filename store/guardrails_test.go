package store_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/webhook"
)

var alice = solstice.Actor{Name: "alice", Kind: "user"}

// createFlags creates boolean flags with the given keys.
func createFlags(t *testing.T, db *store.DB, keys ...string) {
	t.Helper()
	var w flags.Write
	for _, k := range keys {
		w.CreateFlags = append(w.CreateFlags, flags.Flag{Key: k, Name: k, Type: flags.TypeBoolean, Version: 1, CreatedAt: t0, UpdatedAt: t0})
	}
	mustWrite(t, db, w)
}

func ref(env, flag, key string) guardrails.Ref {
	return guardrails.Ref{Environment: env, Flag: flag, Key: key}
}

// rule returns a reject-rate guardrail with the given margin.
func rule(r guardrails.Ref, margin float64) guardrails.Rule {
	return guardrails.Rule{
		Ref:        r,
		Metric:     guardrails.RejectRate(),
		Comparison: guardrails.RelativeToControl(margin),
		Treatment:  "on",
		Control:    "off",
		Tau:        0.005,
	}
}

func putAudit(r guardrails.Ref) solstice.AuditEntry {
	return solstice.AuditEntry{Actor: alice, Action: "guardrail.put", Resource: "guardrail/" + r.Flag + "/" + r.Key}
}

func mustPut(t *testing.T, db *store.DB, r guardrails.Rule, expect int64) guardrails.Definition {
	t.Helper()
	d, err := db.PutGuardrail(t.Context(), r, expect, putAudit(r.Ref))
	if err != nil {
		t.Fatalf("PutGuardrail(%s, %d): %v", r.Ref, expect, err)
	}
	return d
}

// auditCount returns how many audit entries match f.
func auditCount(t *testing.T, db *store.DB, f solstice.AuditFilter) int {
	t.Helper()
	f.Limit = store.MaxAuditLimit
	entries, err := db.ListAudit(t.Context(), f)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	return len(entries)
}

func TestPutGuardrail(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production")
		createFlags(t, db, "winter")
		r := ref("production", "winter", "rejects")

		d := mustPut(t, db, rule(r, 0.1), 0)
		want := guardrails.Definition{Rule: rule(r, 0.1), Version: 1, CreatedAt: t0us, UpdatedAt: t0us}
		if diff := cmp.Diff(want, d); diff != "" {
			t.Errorf("created definition (-want +got):\n%s", diff)
		}
		got, err := db.GetGuardrail(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GetGuardrail after create (-want +got):\n%s", diff)
		}

		d = mustPut(t, db, rule(r, 0.2), 1)
		want = guardrails.Definition{Rule: rule(r, 0.2), Version: 2, CreatedAt: t0us, UpdatedAt: t0us}
		if diff := cmp.Diff(want, d); diff != "" {
			t.Errorf("updated definition (-want +got):\n%s", diff)
		}
		if d = mustPut(t, db, rule(r, 0.3), -1); d.Version != 3 || d.Comparison.Margin != 0.3 {
			t.Errorf("upsert of an existing guardrail = version %d, margin %g; want 3, 0.3", d.Version, d.Comparison.Margin)
		}
		other := ref("production", "winter", "ceiling")
		if d = mustPut(t, db, rule(other, 0.1), -1); d.Version != 1 {
			t.Errorf("upsert of a new guardrail = version %d, want 1", d.Version)
		}

		entries, err := db.ListAudit(ctx, solstice.AuditFilter{Action: "guardrail.put"})
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 4 {
			t.Fatalf("%d audit entries, want 4 (one per put)", len(entries))
		}
		for _, e := range entries {
			if e.Environment != "production" || e.Actor != alice || !e.Time.Equal(t0us) {
				t.Errorf("audit entry %+v: want environment production, actor alice, time t0", e)
			}
		}
	})
}

func TestPutGuardrailFailuresChangeNothing(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production")
		createFlags(t, db, "winter")
		r := ref("production", "winter", "rejects")
		mustPut(t, db, rule(r, 0.1), 0)
		stored := mustPut(t, db, rule(r, 0.1), 1)

		badAudit := putAudit(r)
		badAudit.Details = json.RawMessage(`{`)
		for _, tc := range []struct {
			name   string
			rule   guardrails.Rule
			expect int64
			audit  solstice.AuditEntry
			want   solstice.Kind
		}{
			{"create existing", rule(r, 0.5), 0, putAudit(r), solstice.KindConflict},
			{"stale version", rule(r, 0.5), 1, putAudit(r), solstice.KindPreconditionFailed},
			{"future version", rule(r, 0.5), 3, putAudit(r), solstice.KindPreconditionFailed},
			{"update missing", rule(ref("production", "winter", "nope"), 0.5), 2, putAudit(r), solstice.KindNotFound},
			{"unknown environment", rule(ref("staging", "winter", "rejects"), 0.5), 0, putAudit(r), solstice.KindNotFound},
			{"unknown flag", rule(ref("production", "summer", "rejects"), 0.5), 0, putAudit(r), solstice.KindNotFound},
			{"upsert unknown flag", rule(ref("production", "summer", "rejects"), 0.5), -1, putAudit(r), solstice.KindNotFound},
			{"bad expectation", rule(r, 0.5), -2, putAudit(r), solstice.KindInvalid},
			{"empty key", rule(ref("production", "winter", ""), 0.5), 0, putAudit(r), solstice.KindInvalid},
			{"bad audit details", rule(r, 0.5), 2, badAudit, solstice.KindInvalid},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := db.PutGuardrail(ctx, tc.rule, tc.expect, tc.audit)
				wantKind(t, err, tc.want)
			})
		}
		got, err := db.GetGuardrail(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(stored, got); diff != "" {
			t.Errorf("stored definition after failed puts (-want +got):\n%s", diff)
		}
		defs, err := db.ListGuardrails(ctx, "production", "")
		if err != nil || len(defs) != 1 {
			t.Errorf("ListGuardrails = %d definitions, %v; want only %s", len(defs), err, r)
		}
		if n := auditCount(t, db, solstice.AuditFilter{Action: "guardrail.put"}); n != 2 {
			t.Errorf("%d audit entries, want 2: failed puts record none", n)
		}
	})
}

func TestRulesAndListGuardrails(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "staging", "production", "empty")
		createFlags(t, db, "winter", "a-b", "ab", "a.b")
		// Inserted out of order; '-' < '.' < 'b' bytewise, which some
		// collations ignore.
		refs := []guardrails.Ref{
			ref("staging", "winter", "z"),
			ref("production", "ab", "k"),
			ref("production", "winter", "b"),
			ref("production", "a.b", "k"),
			ref("production", "winter", "a-b"),
			ref("production", "a-b", "k"),
			ref("production", "winter", "ab"),
			ref("production", "winter", "a.b"),
		}
		for _, r := range refs {
			mustPut(t, db, rule(r, 0.1), 0)
		}
		want := []guardrails.Ref{
			ref("production", "a-b", "k"),
			ref("production", "a.b", "k"),
			ref("production", "ab", "k"),
			ref("production", "winter", "a-b"),
			ref("production", "winter", "a.b"),
			ref("production", "winter", "ab"),
			ref("production", "winter", "b"),
			ref("staging", "winter", "z"),
		}
		rules, err := db.Rules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []guardrails.Ref
		for _, r := range rules {
			got = append(got, r.Ref)
			if diff := cmp.Diff(rule(r.Ref, 0.1), r); diff != "" {
				t.Errorf("rule %s (-want +got):\n%s", r.Ref, diff)
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Rules order (-want +got):\n%s", diff)
		}

		for _, tc := range []struct {
			env, flag string
			want      []guardrails.Ref
			kind      solstice.Kind
		}{
			{"production", "", want[:7], ""},
			{"production", "winter", want[3:7], ""},
			{"staging", "", want[7:], ""},
			{"empty", "", nil, ""},
			{"empty", "winter", nil, ""},
			{"nowhere", "", nil, solstice.KindNotFound},
			{"production", "nothing", nil, solstice.KindNotFound},
			{"", "", nil, solstice.KindInvalid},
		} {
			t.Run(tc.env+"/"+tc.flag, func(t *testing.T) {
				defs, err := db.ListGuardrails(ctx, tc.env, tc.flag)
				if tc.kind != "" {
					wantKind(t, err, tc.kind)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				var got []guardrails.Ref
				for _, d := range defs {
					got = append(got, d.Ref)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("ListGuardrails(%q, %q) (-want +got):\n%s", tc.env, tc.flag, diff)
				}
			})
		}
	})
}

func newState(r guardrails.Ref, version int64, reason string) guardrails.State {
	st := guardrails.NewState(r, t0)
	st.Version, st.Reason = version, reason
	return st
}

func TestDeleteGuardrail(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production")
		createFlags(t, db, "winter")
		r := ref("production", "winter", "rejects")
		mustPut(t, db, rule(r, 0.1), 0)
		mustPut(t, db, rule(r, 0.2), 1)
		if err := db.SwapState(ctx, 0, newState(r, 1, "new")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := db.RecordIncident(ctx, incident("i-1", r, guardrails.EventHold), nil); err != nil {
			t.Fatal(err)
		}
		del := solstice.AuditEntry{Actor: alice, Action: "guardrail.delete", Resource: "guardrail/winter/rejects"}

		for _, tc := range []struct {
			name   string
			ref    guardrails.Ref
			expect int64
			want   solstice.Kind
		}{
			{"stale version", r, 1, solstice.KindPreconditionFailed},
			{"zero expectation", r, 0, solstice.KindInvalid},
			{"missing", ref("production", "winter", "nope"), -1, solstice.KindNotFound},
			{"missing with version", ref("production", "winter", "nope"), 2, solstice.KindNotFound},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantKind(t, db.DeleteGuardrail(ctx, tc.ref, tc.expect, del), tc.want)
			})
		}
		if _, err := db.GetGuardrail(ctx, r); err != nil {
			t.Errorf("GetGuardrail after failed deletes: %v", err)
		}
		if _, err := db.State(ctx, r); err != nil {
			t.Errorf("State after failed deletes: %v", err)
		}
		if n := auditCount(t, db, solstice.AuditFilter{Action: "guardrail.delete"}); n != 0 {
			t.Errorf("%d delete audit entries after failed deletes, want 0", n)
		}

		if err := db.DeleteGuardrail(ctx, r, 2, del); err != nil {
			t.Fatalf("DeleteGuardrail: %v", err)
		}
		_, err := db.GetGuardrail(ctx, r)
		wantKind(t, err, solstice.KindNotFound)
		_, err = db.State(ctx, r)
		wantKind(t, err, solstice.KindNotFound)
		entries, err := db.ListAudit(ctx, solstice.AuditFilter{Action: "guardrail.delete"})
		if err != nil || len(entries) != 1 || entries[0].Environment != "production" {
			t.Errorf("delete audit entries = %+v, %v; want one in production", entries, err)
		}
		if _, err := db.Incident(ctx, "i-1"); err != nil {
			t.Errorf("Incident after the guardrail's deletion: %v; incidents stay", err)
		}
		// Created anew, it starts over.
		if d := mustPut(t, db, rule(r, 0.1), 0); d.Version != 1 {
			t.Errorf("recreated guardrail has version %d, want 1", d.Version)
		}
		_, err = db.State(ctx, r)
		wantKind(t, err, solstice.KindNotFound)
	})
}

func TestDeletingAFlagDeletesItsGuardrails(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production")
		createFlags(t, db, "winter", "summer")
		gone, kept := ref("production", "winter", "rejects"), ref("production", "summer", "rejects")
		for _, r := range []guardrails.Ref{gone, kept} {
			mustPut(t, db, rule(r, 0.1), 0)
			if err := db.SwapState(ctx, 0, newState(r, 1, "new")); err != nil {
				t.Fatal(err)
			}
		}
		mustWrite(t, db, flags.Write{DeleteFlags: []flags.FlagDelete{{Key: "winter", Expect: 1}}})
		_, err := db.GetGuardrail(ctx, gone)
		wantKind(t, err, solstice.KindNotFound)
		_, err = db.State(ctx, gone)
		wantKind(t, err, solstice.KindNotFound)
		rules, err := db.Rules(ctx)
		if err != nil || len(rules) != 1 || rules[0].Ref != kept {
			t.Errorf("Rules = %v, %v; want only %s", rules, err, kept)
		}
		if _, err := db.State(ctx, kept); err != nil {
			t.Errorf("State(%s): %v", kept, err)
		}
	})
}

func TestSwapState(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production")
		createFlags(t, db, "winter")
		r := ref("production", "winter", "rejects")
		mustPut(t, db, rule(r, 0.1), 0)

		_, err := db.State(ctx, r)
		wantKind(t, err, solstice.KindNotFound)

		first := newState(r, 1, "new guardrail")
		if err := db.SwapState(ctx, 0, first); err != nil {
			t.Fatalf("SwapState(0): %v", err)
		}
		tripped := first
		tripped.Version, tripped.Phase, tripped.Reason = 2, guardrails.PhaseTripped, "harm"
		inc := incident("inc-1", r, guardrails.EventTrip).Incident
		tripped.Pending, tripped.Last, tripped.ClaimedAt = &inc, &inc, t0.Add(time.Second)
		if err := db.SwapState(ctx, 1, tripped); err != nil {
			t.Fatalf("SwapState(1): %v", err)
		}
		got, err := db.State(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tripped, got); diff != "" {
			t.Errorf("stored state (-want +got):\n%s", diff)
		}

		skip := tripped
		skip.Version = 5
		for _, tc := range []struct {
			name string
			old  int64
			next guardrails.State
			want solstice.Kind
		}{
			{"insert over a stored state", 0, newState(r, 1, "again"), solstice.KindConflict},
			{"stale version", 1, newState(r, 3, "stale"), solstice.KindConflict},
			{"future version", 3, newState(r, 4, "future"), solstice.KindConflict},
			{"version does not grow", 2, newState(r, 2, "same"), solstice.KindInvalid},
			{"negative old", -1, newState(r, 1, "negative"), solstice.KindInvalid},
			{"no definition", 0, newState(ref("production", "winter", "nope"), 1, "orphan"), solstice.KindNotFound},
			{"empty ref", 0, newState(ref("production", "", "x"), 1, "empty"), solstice.KindInvalid},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantKind(t, db.SwapState(ctx, tc.old, tc.next), tc.want)
			})
		}
		got, err = db.State(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tripped, got); diff != "" {
			t.Errorf("stored state after failed swaps (-want +got):\n%s", diff)
		}
		// A version may jump ahead: the job bumps it once per write.
		if err := db.SwapState(ctx, 2, skip); err != nil {
			t.Errorf("SwapState(2 → 5): %v", err)
		}
	})
}

func TestSwapStateRaces(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production")
		createFlags(t, db, "winter")
		r := ref("production", "winter", "rejects")
		mustPut(t, db, rule(r, 0.1), 0)

		const swappers = 20
		for _, old := range []int64{0, 1} {
			_, errs := parallel(swappers, func(i int) (struct{}, error) {
				return struct{}{}, db.SwapState(ctx, old, newState(r, old+1, fmt.Sprintf("swapper %d from %d", i, old)))
			})
			winner := -1
			for i, err := range errs {
				switch solstice.ErrorKind(err) {
				case "":
					if winner >= 0 {
						t.Errorf("from version %d: swappers %d and %d both won", old, winner, i)
					}
					winner = i
				case solstice.KindConflict:
				default:
					t.Errorf("from version %d: swapper %d: %v, want success or %s", old, i, err, solstice.KindConflict)
				}
			}
			if winner < 0 {
				t.Fatalf("from version %d: no swapper won", old)
			}
			st, err := db.State(ctx, r)
			if want := fmt.Sprintf("swapper %d from %d", winner, old); err != nil || st.Reason != want || st.Version != old+1 {
				t.Errorf("stored state = version %d %q, %v; want version %d %q", st.Version, st.Reason, err, old+1, want)
			}
		}
	})
}

// incident returns an incident of r raised by the job at t0.
func incident(id string, r guardrails.Ref, ev guardrails.Event) guardrails.Record {
	inc := guardrails.Incident{
		ID: id, Guardrail: r, Event: ev, Test: 1, Time: t0,
		Actor: solstice.System("guardrails"), Reason: "reject rate up",
	}
	if ev == guardrails.EventTrip || ev == guardrails.EventFailSafe {
		inc.Action = guardrails.ActionRollback
		inc.Verdict = &guardrails.Verdict{
			Guardrail: r, Status: guardrails.StatusRegression, Action: guardrails.ActionRollback,
			Reason: "reject rate up", Time: t0, Watermark: t0.Add(-time.Minute),
			Evidence: guardrails.Evidence{Metric: "reject_rate", LogE: 3.2, Threshold: 2.9957322735539909, Effect: 0.0123},
		}
	}
	return guardrails.Record{Incident: inc, Outcome: "rolled back", Revision: 0}
}

// messages returns n webhook messages of the incident id.
func messages(id string, n int) []webhook.Message {
	msgs := make([]webhook.Message, n)
	for i := range msgs {
		msgs[i] = webhook.Message{
			ID: fmt.Sprintf("%s@hook-%d", id, i), Endpoint: fmt.Sprintf("hook-%d", i), Event: "guardrail.trip",
			Payload: json.RawMessage(fmt.Sprintf(`{"id": %q,  "n": %d, "html": "<b>"}`, id, i)),
		}
	}
	return msgs
}

func TestRecordIncident(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production")
		r := ref("production", "winter", "rejects") // no definition needed
		rec := incident("production/winter/rejects/test-1/2-trip", r, guardrails.EventTrip)
		rec.Revision = 0
		rec.Number, rec.RecordedAt = 99, t0.Add(time.Hour) // assigned by the store
		msgs := messages(rec.ID, 2)

		stored, created, err := db.RecordIncident(ctx, rec, announceAll(msgs))
		if err != nil || !created {
			t.Fatalf("RecordIncident = created %t, %v; want created", created, err)
		}
		want := rec
		want.Number, want.RecordedAt, want.Time = 1, t0us, t0us
		if diff := cmp.Diff(want, stored); diff != "" {
			t.Errorf("stored record (-want +got):\n%s", diff)
		}
		for name, get := range map[string]func() (guardrails.Record, error){
			"GetIncident": func() (guardrails.Record, error) { return db.GetIncident(ctx, 1) },
			"Incident":    func() (guardrails.Record, error) { return db.Incident(ctx, rec.ID) },
		} {
			got, err := get()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", name, diff)
			}
		}

		again := rec
		again.Outcome = "something else"
		got, created, err := db.RecordIncident(ctx, again, announceAll(messages(rec.ID+"-again", 1)))
		if err != nil || created {
			t.Fatalf("second RecordIncident = created %t, %v; want not created", created, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("second RecordIncident returned (-want +got):\n%s", diff)
		}

		entries, err := db.ListAudit(ctx, solstice.AuditFilter{Resource: "guardrail/winter/rejects"})
		if err != nil {
			t.Fatal(err)
		}
		wantEntry := []solstice.AuditEntry{{
			ID: entries[0].ID, Time: t0us, Actor: solstice.System("guardrails"), Action: "incident.trip",
			Environment: "production", Resource: "guardrail/winter/rejects",
			Details: json.RawMessage(`{"id":"production/winter/rejects/test-1/2-trip","number":1,"reason":"reject rate up"}`),
		}}
		if diff := cmp.Diff(wantEntry, entries); diff != "" {
			t.Errorf("audit entries (-want +got):\n%s", diff)
		}

		pending, err := db.Claim(ctx, t0.Add(time.Hour), time.Minute, 10)
		if err != nil {
			t.Fatal(err)
		}
		var wantPending []webhook.Pending
		for _, m := range msgs {
			wantPending = append(wantPending, webhook.Pending{Message: m, CreatedAt: t0us})
		}
		if diff := cmp.Diff(wantPending, pending); diff != "" {
			t.Errorf("queued messages (-want +got):\n%s", diff)
		}
		_, err = db.GetIncident(ctx, 2)
		wantKind(t, err, solstice.KindNotFound)
		_, err = db.Incident(ctx, "nope")
		wantKind(t, err, solstice.KindNotFound)
	})
}

func TestRecordIncidentFailuresChangeNothing(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production")
		r := ref("production", "winter", "rejects")
		if _, _, err := db.RecordIncident(ctx, incident("queued", r, guardrails.EventHold), announceAll(messages("queued", 1))); err != nil {
			t.Fatal(err)
		}
		badPayload := messages("bad", 1)
		badPayload[0].Payload = json.RawMessage(`{"a":`)
		twice := append(messages("twice", 1), messages("twice", 1)...)
		noEndpoint := messages("no-endpoint", 1)
		noEndpoint[0].Endpoint = ""
		negative := incident("negative", r, guardrails.EventTrip)
		negative.Revision = -1
		for _, tc := range []struct {
			name string
			rec  guardrails.Record
			msgs []webhook.Message
			want solstice.Kind
		}{
			{"unknown environment", incident("x-env", ref("staging", "winter", "rejects"), guardrails.EventTrip), nil, solstice.KindNotFound},
			{"message already queued", incident("x-dup", r, guardrails.EventTrip), messages("queued", 1), solstice.KindConflict},
			{"payload not JSON", incident("x-bad", r, guardrails.EventTrip), badPayload, solstice.KindInvalid},
			{"message twice", incident("x-twice", r, guardrails.EventTrip), twice, solstice.KindInvalid},
			{"no endpoint", incident("x-endpoint", r, guardrails.EventTrip), noEndpoint, solstice.KindInvalid},
			{"no id", incident("", r, guardrails.EventTrip), nil, solstice.KindInvalid},
			{"no event", incident("x-event", r, ""), nil, solstice.KindInvalid},
			{"no key", incident("x-key", ref("production", "winter", ""), guardrails.EventTrip), nil, solstice.KindInvalid},
			{"negative revision", negative, nil, solstice.KindInvalid},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, _, err := db.RecordIncident(ctx, tc.rec, announceAll(tc.msgs))
				wantKind(t, err, tc.want)
				if tc.rec.ID != "" {
					_, err = db.Incident(ctx, tc.rec.ID)
					wantKind(t, err, solstice.KindNotFound)
				}
			})
		}
		recs, err := db.ListIncidents(ctx, guardrails.IncidentFilter{})
		if err != nil || len(recs) != 1 {
			t.Errorf("ListIncidents = %d records, %v; want 1", len(recs), err)
		}
		if n := auditCount(t, db, solstice.AuditFilter{}); n != 1 {
			t.Errorf("%d audit entries, want 1: failed records write none", n)
		}
		pending, err := db.Claim(ctx, t0.Add(time.Hour), time.Minute, 100)
		if err != nil || len(pending) != 1 || pending[0].ID != "queued@hook-0" {
			t.Errorf("Claim = %v, %v; want only the first incident's message", pending, err)
		}
	})
}

func TestRecordIncidentConcurrently(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production")
		r := ref("production", "winter", "rejects")
		// Several rounds, so that the race past the first read is run
		// more than once on PostgreSQL.
		const rounds, recorders = 5, 20
		for round := range rounds {
			rec := incident(fmt.Sprintf("the-one-%d", round), r, guardrails.EventTrip)
			results, errs := parallel(recorders, func(int) (guardrails.Record, error) {
				stored, created, err := db.RecordIncident(ctx, rec, announceAll(messages(rec.ID, 3)))
				if created {
					stored.Outcome = "created"
				}
				return stored, err
			})
			creators := 0
			for i, err := range errs {
				if err != nil {
					t.Fatalf("round %d: recorder %d: %v", round, i, err)
				}
				if results[i].Outcome == "created" {
					creators++
				}
				if results[i].ID != rec.ID || results[i].Number != results[0].Number {
					t.Errorf("round %d: recorder %d got incident %d %q, recorder 0 got %d", round, i, results[i].Number, results[i].ID, results[0].Number)
				}
			}
			if creators != 1 {
				t.Errorf("round %d: %d recorders created the incident, want 1", round, creators)
			}
		}
		recs, err := db.ListIncidents(ctx, guardrails.IncidentFilter{})
		if err != nil || len(recs) != rounds {
			t.Errorf("ListIncidents = %d records, %v; want %d", len(recs), err, rounds)
		}
		if n := auditCount(t, db, solstice.AuditFilter{Action: "incident.trip"}); n != rounds {
			t.Errorf("%d audit entries, want %d", n, rounds)
		}
		pending, err := db.Claim(ctx, t0.Add(time.Hour), time.Minute, 100)
		if err != nil || len(pending) != 3*rounds {
			t.Errorf("Claim = %d messages, %v; want %d", len(pending), err, 3*rounds)
		}
	})
}

func TestListIncidents(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production", "staging", "quiet")
		// Numbers 1 to 8.
		for i, tc := range []struct {
			ref guardrails.Ref
			ev  guardrails.Event
		}{
			{ref("production", "winter", "rejects"), guardrails.EventHold},    // 1
			{ref("production", "winter", "rejects"), guardrails.EventRelease}, // 2
			{ref("production", "winter", "ceiling"), guardrails.EventTrip},    // 3
			{ref("staging", "winter", "rejects"), guardrails.EventTrip},       // 4
			{ref("production", "summer", "rejects"), guardrails.EventHold},    // 5
			{ref("production", "winter", "rejects"), guardrails.EventTrip},    // 6
			{ref("production", "winter", "rejects"), guardrails.EventResume},  // 7
			{ref("staging", "summer", "retention"), guardrails.EventFailSafe}, // 8
		} {
			rec, _, err := db.RecordIncident(ctx, incident(fmt.Sprintf("i-%d", i+1), tc.ref, tc.ev), nil)
			if err != nil || rec.Number != int64(i+1) {
				t.Fatalf("RecordIncident %d = number %d, %v", i+1, rec.Number, err)
			}
		}
		for _, n := range []int64{3, 6} {
			if _, err := db.AckIncident(ctx, n, alice, t0, solstice.AuditEntry{Actor: alice, Action: "incident.ack", Resource: "incident"}); err != nil {
				t.Fatal(err)
			}
		}

		for _, tc := range []struct {
			name   string
			filter guardrails.IncidentFilter
			want   []int64
		}{
			{"all", guardrails.IncidentFilter{}, []int64{8, 7, 6, 5, 4, 3, 2, 1}},
			{"environment", guardrails.IncidentFilter{Environment: "staging"}, []int64{8, 4}},
			{"flag", guardrails.IncidentFilter{Flag: "winter"}, []int64{7, 6, 4, 3, 2, 1}},
			{"environment and flag", guardrails.IncidentFilter{Environment: "production", Flag: "winter"}, []int64{7, 6, 3, 2, 1}},
			{"guardrail", guardrails.IncidentFilter{Environment: "production", Flag: "winter", Guardrail: "rejects"}, []int64{7, 6, 2, 1}},
			{"guardrail in every environment", guardrails.IncidentFilter{Flag: "winter", Guardrail: "rejects"}, []int64{7, 6, 4, 2, 1}},
			{"events", guardrails.IncidentFilter{Events: []guardrails.Event{guardrails.EventTrip, guardrails.EventFailSafe}}, []int64{8, 6, 4, 3}},
			{"unacked", guardrails.IncidentFilter{Unacked: true}, []int64{8, 7, 5, 4, 2, 1}},
			{"unacked trips", guardrails.IncidentFilter{Unacked: true, Events: []guardrails.Event{guardrails.EventTrip}}, []int64{4}},
			{"first page", guardrails.IncidentFilter{Limit: 3}, []int64{8, 7, 6}},
			{"next page", guardrails.IncidentFilter{Limit: 3, BeforeNumber: 6}, []int64{5, 4, 3}},
			{"last page", guardrails.IncidentFilter{Limit: 3, BeforeNumber: 3}, []int64{2, 1}},
			{"past the end", guardrails.IncidentFilter{BeforeNumber: 1}, nil},
			{"quiet environment", guardrails.IncidentFilter{Environment: "quiet"}, nil},
			{"unknown flag", guardrails.IncidentFilter{Flag: "nope"}, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				recs, err := db.ListIncidents(ctx, tc.filter)
				if err != nil {
					t.Fatal(err)
				}
				var got []int64
				for _, r := range recs {
					got = append(got, r.Number)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("numbers (-want +got):\n%s", diff)
				}
			})
		}

		for _, tc := range []struct {
			name   string
			filter guardrails.IncidentFilter
			want   solstice.Kind
		}{
			{"guardrail without flag", guardrails.IncidentFilter{Guardrail: "rejects"}, solstice.KindInvalid},
			{"negative limit", guardrails.IncidentFilter{Limit: -1}, solstice.KindInvalid},
			{"negative number", guardrails.IncidentFilter{BeforeNumber: -1}, solstice.KindInvalid},
			{"unknown environment", guardrails.IncidentFilter{Environment: "nowhere"}, solstice.KindNotFound},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := db.ListIncidents(ctx, tc.filter)
				wantKind(t, err, tc.want)
			})
		}
	})
}

func TestListIncidentsLimits(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production")
		const total = store.DefaultIncidentLimit + 5
		for i := range total {
			if _, _, err := db.RecordIncident(ctx, incident(fmt.Sprint(i), ref("production", "f", "g"), guardrails.EventHold), nil); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			limit, want int
		}{
			{0, store.DefaultIncidentLimit},
			{store.MaxIncidentLimit + 1, total},
			{7, 7},
		} {
			recs, err := db.ListIncidents(ctx, guardrails.IncidentFilter{Limit: tc.limit})
			if err != nil || len(recs) != tc.want {
				t.Errorf("ListIncidents(limit %d) = %d records, %v; want %d", tc.limit, len(recs), err, tc.want)
			}
		}
	})
}

func TestAckIncident(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production")
		r := ref("production", "winter", "rejects")
		rec, _, err := db.RecordIncident(ctx, incident("i-1", r, guardrails.EventTrip), nil)
		if err != nil {
			t.Fatal(err)
		}
		ack := solstice.AuditEntry{Actor: alice, Action: "incident.ack", Resource: "incident/1"}
		at := t0.Add(time.Minute)

		const ackers = 10
		results, errs := parallel(ackers, func(i int) (guardrails.Record, error) {
			return db.AckIncident(ctx, rec.Number, alice, at, ack)
		})
		want := rec
		atus := at.Truncate(time.Microsecond)
		want.AckedBy, want.AckedAt = &alice, &atus
		for i, err := range errs {
			if err != nil {
				t.Fatalf("acker %d: %v", i, err)
			}
			if diff := cmp.Diff(want, results[i]); diff != "" {
				t.Errorf("acker %d got (-want +got):\n%s", i, diff)
			}
		}
		bob := solstice.Actor{Name: "bob", Kind: "user"}
		got, err := db.AckIncident(ctx, rec.Number, bob, at.Add(time.Hour), ack)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("second acknowledgement changed the record (-want +got):\n%s", diff)
		}
		entries, err := db.ListAudit(ctx, solstice.AuditFilter{Action: "incident.ack"})
		if err != nil || len(entries) != 1 || entries[0].Environment != "production" || entries[0].Actor != alice {
			t.Errorf("ack audit entries = %+v, %v; want one by alice in production", entries, err)
		}

		_, err = db.AckIncident(ctx, 42, alice, at, ack)
		wantKind(t, err, solstice.KindNotFound)
		_, err = db.AckIncident(ctx, rec.Number, solstice.Actor{}, at, ack)
		wantKind(t, err, solstice.KindInvalid)
		if n := auditCount(t, db, solstice.AuditFilter{Action: "incident.ack"}); n != 1 {
			t.Errorf("%d ack audit entries after failures, want 1", n)
		}
	})
}

// announceAll announces every record with msgs.
func announceAll(msgs []webhook.Message) guardrails.Announce {
	return func(guardrails.Record) ([]webhook.Message, error) { return msgs, nil }
}
