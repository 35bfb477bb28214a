package snapshot

import "time"

// The HTTP contract of the snapshot endpoint (GET /v1/snapshots/{env}),
// shared by the control plane that serves it and the clients that poll it.
const (
	// HeaderServerID carries the polling game server's identity (request).
	HeaderServerID = "Solstice-Server-Id"
	// HeaderVersion carries the snapshot version the client holds (request)
	// or the one served (response).
	HeaderVersion = "Solstice-Snapshot-Version"
	// EnvelopeContentType is the media type of the envelope body (DSSE).
	EnvelopeContentType = "application/vnd.dsse.envelope.v1+json"
	// MaxLongPoll is the longest ?wait= the control plane holds a poll.
	MaxLongPoll = 60 * time.Second
)
