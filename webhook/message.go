package webhook

import (
	"encoding/json"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
)

// maxEventLength bounds an event type.
const maxEventLength = 128

// envelope is the body of every message: the payload structure Standard
// Webhooks recommends.
type envelope struct {
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      any    `json:"data"`
}

// NewMessage returns the message that announces event to endpoint, its
// body the JSON envelope {"type":event,"timestamp":at,"data":data}, at in
// UTC in RFC 3339 with as many fractional digits as it needs (the time of
// the event, not of the delivery, which is in the webhook-timestamp
// header). id must be unique per delivery, that is per event and endpoint
// ("<incident id>@<endpoint>" is a good choice: queueing it twice is then
// detected), and is the webhook-id receivers drop duplicates by.
//
// It returns a KindInvalid *solstice.Error with a field error per problem:
// "/id" empty, over 1024 bytes or not visible ASCII; "/endpoint" not a key
// (see Endpoint.Name); "/event" not dot-separated segments of a-z, A-Z,
// 0-9 and '_' ("guardrail.trip"), or longer than 128 bytes; "/timestamp"
// the zero time; "/payload" data that does not encode as JSON.
func NewMessage(id, endpoint, event string, data any, at time.Time) (Message, error) {
	var fields []solstice.FieldError
	add := func(ptr, msg string) { fields = append(fields, solstice.FieldError{Pointer: ptr, Message: msg}) }
	if err := checkID(id); err != nil {
		add("/id", err.Error())
	}
	if !flags.ValidKey(endpoint) {
		add("/endpoint", "must be the name of an endpoint: 1 to 128 of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
	}
	if !validEvent(event) {
		add("/event", "must be dot-separated segments of a-z, A-Z, 0-9 and '_', at most 128 bytes (guardrail.trip)")
	}
	if at.IsZero() {
		add("/timestamp", "is required")
	}
	body, err := json.Marshal(envelope{Type: event, Timestamp: at.UTC().Format(time.RFC3339Nano), Data: data})
	if err != nil {
		add("/payload", "the data does not encode as JSON: "+err.Error())
	}
	if len(fields) > 0 {
		return Message{}, solstice.Invalid("invalid webhook message", fields...)
	}
	return Message{ID: id, Endpoint: endpoint, Event: event, Payload: body}, nil
}

// validEvent reports whether event matches
// ^[a-zA-Z0-9_]+(\.[a-zA-Z0-9_]+)*$ and is at most maxEventLength bytes: the
// event types Standard Webhooks recommends.
func validEvent(event string) bool {
	if event == "" || len(event) > maxEventLength {
		return false
	}
	prev := byte('.')
	for i := 0; i < len(event); i++ {
		c := event[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		case c == '.' && prev != '.':
		default:
			return false
		}
		prev = c
	}
	return prev != '.'
}
