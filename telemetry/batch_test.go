package telemetry_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/telemetry"
)

// now is the control plane's clock in the validation tests.
var now = time.Date(2026, 3, 1, 12, 30, 20, 0, time.UTC)

// validBatch is a batch that passes validation at now: two windows of the
// minute before now, exposures and activity.
func validBatch() telemetry.Batch {
	return telemetry.Batch{
		BatchID:         "gs-1:0001",
		ServerID:        "gs-1",
		SnapshotVersion: 7,
		Windows: []telemetry.Window{
			{
				Start: "2026-03-01T12:29:00Z", Flag: "winter-drops", Variant: "festival",
				Accepted: 90, Rejected: map[string]int64{"cooldown": 8, "anti-cheat:speed": 2},
				Custom:   map[string]int64{"matchmaking": 5, "failed_matchmaking": 1},
				Sessions: &telemetry.Sessions{Count: 2, Actions: 30, Rejects: 4, ActionsSquared: 500, RejectsSquared: 10, ActionsRejects: 70},
				Exposures: []telemetry.PlayerEvent{
					{Player: "p-1", At: "2026-03-01T12:29:10Z"},
					{Player: "p-2", At: "2026-03-01T12:29:59.999Z"},
				},
			},
			{Start: "2026-03-01T12:29:00Z", Flag: "winter-drops", Variant: "control", Accepted: 100},
		},
		Activity: []telemetry.PlayerEvent{{Player: "p-1", At: "2026-03-01T12:29:30Z"}, {Player: "p-9", At: "2026-03-01T11:00:00+01:00"}},
	}
}

func TestValidBatch(t *testing.T) {
	if err := validBatch().Validate(now); err != nil {
		t.Fatalf("Validate(valid batch) = %v", err)
	}
	// Limits are inclusive.
	b := validBatch()
	b.Windows[0].Start = now.Add(telemetry.MaxFutureSkew - time.Minute).Truncate(time.Minute).Format(time.RFC3339)
	b.Windows[0].Exposures = nil
	b.Windows[1].Start = now.Add(-telemetry.MaxAge).Add(time.Minute).Truncate(time.Minute).Format(time.RFC3339)
	b.Activity = []telemetry.PlayerEvent{
		{Player: "p", At: now.Add(-telemetry.MaxAge).Format(time.RFC3339)},
		{Player: strings.Repeat("é", telemetry.MaxPlayerIDBytes/2), At: now.Add(telemetry.MaxFutureSkew - time.Minute).Format(time.RFC3339)},
	}
	b.Through = now.Add(telemetry.MaxFutureSkew).Truncate(time.Minute).Format(time.RFC3339)
	if err := b.Validate(now); err != nil {
		t.Fatalf("Validate(batch at the limits) = %v", err)
	}
	// A heartbeat: no data, only through.
	hb := telemetry.Batch{BatchID: "hb-1", ServerID: "gs-1", Through: "2026-03-01T12:30:00Z"}
	if err := hb.Validate(now); err != nil {
		t.Fatalf("Validate(heartbeat) = %v", err)
	}
}

func TestValidationErrors(t *testing.T) {
	manyReasons := map[string]int64{}
	for i := range telemetry.MaxReasons + 1 {
		manyReasons[fmt.Sprintf("r%d", i)] = 1
	}
	manyCustom := map[string]int64{}
	for i := range telemetry.MaxCustom + 1 {
		manyCustom[fmt.Sprintf("c%d", i)] = 1
	}
	exposures := func(n int) []telemetry.PlayerEvent {
		es := make([]telemetry.PlayerEvent, n)
		for i := range es {
			es[i] = telemetry.PlayerEvent{Player: fmt.Sprintf("p-%d", i), At: "2026-03-01T12:29:10Z"}
		}
		return es
	}
	tests := []struct {
		name    string
		change  func(b *telemetry.Batch)
		pointer string
		message string // a fragment of the field error's message
	}{
		{"no batch id", func(b *telemetry.Batch) { b.BatchID = "" }, "/batch_id", "required"},
		{"batch id with a space", func(b *telemetry.Batch) { b.BatchID = "gs 1" }, "/batch_id", "printable ASCII"},
		{"batch id too long", func(b *telemetry.Batch) { b.BatchID = strings.Repeat("x", 129) }, "/batch_id", "at most 128"},
		{"no server id", func(b *telemetry.Batch) { b.ServerID = "" }, "/server_id", "required"},
		{"negative snapshot version", func(b *telemetry.Batch) { b.SnapshotVersion = -1 }, "/snapshot_version", "negative"},
		{"too many windows", func(b *telemetry.Batch) {
			b.Windows = make([]telemetry.Window, telemetry.MaxWindows+1)
		}, "/windows", "at most 1000"},
		{"too many player events", func(b *telemetry.Batch) {
			b.Windows[0].Exposures = exposures(6000)
			b.Activity = exposures(4001)
		}, "", "at most 10000"},
		{"start missing", func(b *telemetry.Batch) { b.Windows[1].Start = "" }, "/windows/1/start", "required"},
		{"start malformed", func(b *telemetry.Batch) { b.Windows[0].Start = "2026-03-01 12:29" }, "/windows/0/start", "RFC 3339"},
		{"start not a whole minute", func(b *telemetry.Batch) { b.Windows[1].Start = "2026-03-01T12:29:30Z" }, "/windows/1/start", "whole minute"},
		{"window in the future", func(b *telemetry.Batch) {
			b.Windows[0].Start, b.Windows[0].Exposures = "2026-03-01T12:35:00Z", nil
		}, "/windows/0/start", "5m40s in the future"},
		{"window too old", func(b *telemetry.Batch) {
			b.Windows[0].Start, b.Windows[0].Exposures = "2026-02-27T12:30:00Z", nil
		}, "/windows/0/start", "no longer accepted"},
		{"bad flag", func(b *telemetry.Batch) { b.Windows[0].Flag = "Winter Drops" }, "/windows/0/flag", "must be a key"},
		{"bad variant", func(b *telemetry.Batch) { b.Windows[1].Variant = "" }, "/windows/1/variant", "must be a key"},
		{"repeated window", func(b *telemetry.Batch) { b.Windows[1].Variant = "festival" }, "/windows/1", "repeats"},
		{"negative accepted", func(b *telemetry.Batch) { b.Windows[0].Accepted = -1 }, "/windows/0/accepted", "negative"},
		{"huge count", func(b *telemetry.Batch) { b.Windows[0].Accepted = telemetry.MaxCount + 1 }, "/windows/0/accepted", "at most"},
		{"bad reason", func(b *telemetry.Batch) { b.Windows[0].Rejected["Cool Down"] = 1 }, "/windows/0/rejected/Cool Down", "reason code"},
		{"reason with a slash", func(b *telemetry.Batch) { b.Windows[0].Rejected["a/b~c"] = 1 }, "/windows/0/rejected/a~1b~0c", "reason code"},
		{"negative rejects", func(b *telemetry.Batch) { b.Windows[0].Rejected["cooldown"] = -3 }, "/windows/0/rejected/cooldown", "negative"},
		{"too many reasons", func(b *telemetry.Batch) { b.Windows[0].Rejected = manyReasons }, "/windows/0/rejected", "at most 50"},
		{"bad custom name", func(b *telemetry.Batch) { b.Windows[0].Custom["-x"] = 1 }, "/windows/0/custom/-x", "counter name"},
		{"too many custom counters", func(b *telemetry.Batch) { b.Windows[1].Custom = manyCustom }, "/windows/1/custom", "at most 50"},
		{"session rejects over actions", func(b *telemetry.Batch) { b.Windows[0].Sessions.Rejects = 31 }, "/windows/0/sessions/rejects", "more than the 30 actions"},
		{"session sums without sessions", func(b *telemetry.Batch) { b.Windows[0].Sessions.Count = 0 }, "/windows/0/sessions/count", "every sum must be 0"},
		{"impossible sum of squares", func(b *telemetry.Batch) { b.Windows[0].Sessions.ActionsSquared = 901 }, "/windows/0/sessions/actions_squared", "[30, 900]"},
		{"impossible reject squares", func(b *telemetry.Batch) { b.Windows[0].Sessions.RejectsSquared = 3 }, "/windows/0/sessions/rejects_squared", "[4, 16]"},
		{"impossible cross product", func(b *telemetry.Batch) { b.Windows[0].Sessions.ActionsRejects = 9 }, "/windows/0/sessions/actions_rejects", "[10, 500]"},
		{"negative session count", func(b *telemetry.Batch) { b.Windows[0].Sessions.Count = -2 }, "/windows/0/sessions/count", "negative"},
		{"exposure without player", func(b *telemetry.Batch) { b.Windows[0].Exposures[1].Player = "" }, "/windows/0/exposures/1/player", "required"},
		{"player id too long", func(b *telemetry.Batch) {
			b.Windows[0].Exposures[0].Player = strings.Repeat("x", telemetry.MaxPlayerIDBytes+1)
		}, "/windows/0/exposures/0/player", "at most 128"},
		{"player id not UTF-8", func(b *telemetry.Batch) { b.Activity[0].Player = "p\xff" }, "/activity/0/player", "UTF-8"},
		{"player id with NUL", func(b *telemetry.Batch) { b.Activity[0].Player = "p\x00q" }, "/activity/0/player", "NUL"},
		{"exposure outside its window", func(b *telemetry.Batch) { b.Windows[0].Exposures[1].At = "2026-03-01T12:30:00Z" }, "/windows/0/exposures/1/at", "outside its window"},
		{"exposure time malformed", func(b *telemetry.Batch) { b.Windows[0].Exposures[0].At = "yesterday" }, "/windows/0/exposures/0/at", "RFC 3339"},
		{"activity in the future", func(b *telemetry.Batch) { b.Activity[1].At = "2026-03-01T12:36:00Z" }, "/activity/1/at", "in the future"},
		{"activity too old", func(b *telemetry.Batch) { b.Activity[0].At = "2026-02-27T12:30:19Z" }, "/activity/0/at", "no longer accepted"},
		{"activity without time", func(b *telemetry.Batch) { b.Activity[0].At = "" }, "/activity/0/at", "required"},
		{"through not a whole minute", func(b *telemetry.Batch) { b.Through = "2026-03-01T12:30:01Z" }, "/through", "whole minute"},
		{"through in the future", func(b *telemetry.Batch) { b.Through = "2026-03-01T12:36:00Z" }, "/through", "in the future"},
		{"through before the data", func(b *telemetry.Batch) { b.Through = "2026-03-01T12:29:00Z" }, "/through", "before the end"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := validBatch()
			tc.change(&b)
			err := b.Validate(now)
			if got := solstice.ErrorKind(err); got != solstice.KindInvalid {
				t.Fatalf("Validate = %v (kind %q), want a %q error", err, got, solstice.KindInvalid)
			}
			fields := solstice.ErrorFields(err)
			for _, f := range fields {
				if f.Pointer == tc.pointer && strings.Contains(f.Message, tc.message) {
					return
				}
			}
			t.Errorf("Validate: field errors %+v, want one at %q saying %q", fields, tc.pointer, tc.message)
		})
	}
}

func TestValidationReportsEveryProblemUpToALimit(t *testing.T) {
	b := validBatch()
	b.Windows[0].Flag = "BAD"
	b.Activity[0].At = "soon"
	fields := solstice.ErrorFields(b.Validate(now))
	if len(fields) != 2 || fields[0].Pointer != "/windows/0/flag" || fields[1].Pointer != "/activity/0/at" {
		t.Errorf("field errors %+v, want /windows/0/flag and /activity/0/at", fields)
	}

	b = validBatch()
	for i := range 80 {
		b.Windows = append(b.Windows, telemetry.Window{Start: "2026-03-01T12:29:00Z", Flag: "f", Variant: fmt.Sprintf("v%d", i), Accepted: -1})
	}
	err := b.Validate(now)
	if n := len(solstice.ErrorFields(err)); n != 50 {
		t.Errorf("a batch with 80 problems reports %d, want the first 50", n)
	}
	if !strings.Contains(err.Error(), "only the first 50") {
		t.Errorf("error %q does not say the list is cut", err)
	}
}
