package snapshot

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/solsticehq/solstice/flags"
)

// PayloadType is the DSSE payloadType of a Solstice snapshot.
const PayloadType = "application/vnd.solstice.snapshot.v1+json"

// Schema is the payload schema this package writes and accepts. Additive
// changes (new optional fields, which older clients ignore) keep it; any
// change an older client would misread bumps it.
const Schema = 1

// Payload is the signed content of a snapshot: one environment's whole flag
// set at one revision, with its version and validity window.
type Payload struct {
	Schema      int    `json:"schema"`
	Environment string `json:"environment"`
	// Version increases strictly with every publish of the environment,
	// including a re-sign that only extends the expiry.
	Version int64 `json:"version"`
	// Revision is the content revision the snapshot was built from.
	Revision  int64 `json:"revision"`
	IssuedAt  int64 `json:"issued_at"`  // Unix seconds
	ExpiresAt int64 `json:"expires_at"` // Unix seconds

	Flags    []flags.FlagState `json:"flags"`    // sorted by key
	Segments []flags.Segment   `json:"segments"` // sorted by key
}

// Marshal returns the payload's JSON encoding, the exact bytes that are
// signed. The encoding is deterministic: struct fields in declaration order,
// no insignificant whitespace, no HTML escaping, nil slices as [], and raw
// JSON values (variant values, condition values) compacted. The same
// Payload always yields the same bytes; testdata/payload.golden pins them.
//
// It returns an error if a raw JSON value inside the flags is invalid.
func (p *Payload) Marshal() ([]byte, error) {
	q := *p
	if q.Flags == nil {
		q.Flags = []flags.FlagState{}
	}
	if q.Segments == nil {
		q.Segments = []flags.Segment{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&q); err != nil {
		return nil, fmt.Errorf("marshal snapshot payload: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Set returns the flag set the payload carries.
func (p *Payload) Set() flags.Set {
	return flags.Set{
		Environment: p.Environment,
		Revision:    p.Revision,
		Flags:       p.Flags,
		Segments:    p.Segments,
	}
}

// parsePayload decodes verified payload bytes. A payload of another schema
// is reported as such, not as whatever decoding error its new shape causes:
// when decoding fails, the schema is looked up on its own. Unknown fields
// are ignored: they are signed, and ignoring them is what lets a schema
// grow additively.
func parsePayload(b []byte) (*Payload, *VerifyError) {
	var p Payload
	err := json.Unmarshal(b, &p)
	if err == nil {
		if p.Schema == 0 {
			return nil, reject(ReasonSchema, "signed snapshot payload has no schema, want %d", Schema)
		}
		if p.Schema != Schema {
			return nil, reject(ReasonSchema, "snapshot schema %d is not supported, want %d", p.Schema, Schema)
		}
		return &p, nil
	}
	var probe struct {
		Schema *int `json:"schema"`
	}
	switch perr := json.Unmarshal(b, &probe); {
	case perr != nil:
		return nil, malformed(perr, "signed snapshot payload is not a JSON object")
	case probe.Schema == nil:
		return nil, reject(ReasonSchema, "signed snapshot payload has no schema, want %d", Schema)
	case *probe.Schema != Schema:
		return nil, reject(ReasonSchema, "snapshot schema %d is not supported, want %d", *probe.Schema, Schema)
	}
	return nil, malformed(err, "signed snapshot payload does not decode")
}
