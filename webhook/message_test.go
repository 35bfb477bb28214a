package webhook

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
)

func TestNewMessage(t *testing.T) {
	type incident struct {
		ID     string `json:"id"`
		Event  string `json:"event"`
		Reason string `json:"reason"`
	}
	at := time.Date(2026, 3, 1, 13, 0, 0, 344522000, time.FixedZone("CET", 3600))
	data := incident{ID: "prod/double-xp/rejects/test-1/2-trip", Event: "trip", Reason: "reject rate <up> & away"}
	got, err := NewMessage("prod/double-xp/rejects/test-1/2-trip@ops", "ops", "guardrail.trip", data, at)
	if err != nil {
		t.Fatal(err)
	}
	want := Message{
		ID: "prod/double-xp/rejects/test-1/2-trip@ops", Endpoint: "ops", Event: "guardrail.trip",
		Payload: json.RawMessage(`{"type":"guardrail.trip","timestamp":"2026-03-01T12:00:00.344522Z","data":{"id":"prod/double-xp/rejects/test-1/2-trip","event":"trip","reason":"reject rate \u003cup\u003e \u0026 away"}}`),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("NewMessage (-want +got):\n%s", diff)
	}
	whole, err := NewMessage("m1", "ops", "guardrail.hold", nil, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":"guardrail.hold","timestamp":"2026-03-01T12:00:00Z","data":null}`; string(whole.Payload) != want {
		t.Errorf("payload = %s, want %s", whole.Payload, want)
	}
}

func TestNewMessageErrors(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name                string
		id, endpoint, event string
		data                any
		at                  time.Time
		want                []solstice.FieldError
	}{
		{"all wrong", "", "Ops!", "guardrail..trip", math.NaN(), time.Time{}, []solstice.FieldError{
			{Pointer: "/id", Message: "is empty"},
			{Pointer: "/endpoint", Message: "must be the name of an endpoint: 1 to 128 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"},
			{Pointer: "/event", Message: "must be dot-separated segments of a-z, A-Z, 0-9 and '_', at most 128 bytes (guardrail.trip)"},
			{Pointer: "/timestamp", Message: "is required"},
			{Pointer: "/payload", Message: "the data does not encode as JSON: json: unsupported value: NaN"},
		}},
		{"id with a space", "a b", "ops", "guardrail.trip", nil, at, []solstice.FieldError{
			{Pointer: "/id", Message: "must be visible ASCII characters (no spaces or control characters)"},
		}},
		{"event ending with a dot", "m1", "ops", "guardrail.", nil, at, []solstice.FieldError{
			{Pointer: "/event", Message: "must be dot-separated segments of a-z, A-Z, 0-9 and '_', at most 128 bytes (guardrail.trip)"},
		}},
		{"event starting with a dot", "m1", "ops", ".trip", nil, at, []solstice.FieldError{
			{Pointer: "/event", Message: "must be dot-separated segments of a-z, A-Z, 0-9 and '_', at most 128 bytes (guardrail.trip)"},
		}},
		{"event with a dash", "m1", "ops", "guardrail.fail-safe", nil, at, []solstice.FieldError{
			{Pointer: "/event", Message: "must be dot-separated segments of a-z, A-Z, 0-9 and '_', at most 128 bytes (guardrail.trip)"},
		}},
		{"channel data", "m1", "ops", "guardrail.trip", make(chan int), at, []solstice.FieldError{
			{Pointer: "/payload", Message: "the data does not encode as JSON: json: unsupported type: chan int"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewMessage(tc.id, tc.endpoint, tc.event, tc.data, tc.at)
			if !solstice.IsKind(err, solstice.KindInvalid) {
				t.Fatalf("NewMessage = %+v, %v; want a KindInvalid error", m, err)
			}
			if diff := cmp.Diff(tc.want, solstice.ErrorFields(err)); diff != "" {
				t.Errorf("field errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidEvent(t *testing.T) {
	for ev, want := range map[string]bool{
		"guardrail.trip": true, "guardrail.fail_safe": true, "a": true, "A.b_C.9": true,
		"": false, ".": false, "a..b": false, "a.": false, ".a": false, "a b": false, "a-b": false, "é": false,
	} {
		if got := validEvent(ev); got != want {
			t.Errorf("validEvent(%q) = %v, want %v", ev, got, want)
		}
	}
}
