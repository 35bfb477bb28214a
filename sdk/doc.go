// Package sdk is what a Go game server imports to use Solstice: a client
// that polls one environment's signed snapshot from the control plane,
// verifies it, keeps the newest verified one in memory and on disk, and
// evaluates flags locally with the same evaluator as the control plane
// (flags.Evaluate), so that both always agree. Package ofprovider puts an
// OpenFeature provider on top of it.
//
// # Fail safe
//
// The client never acts on a snapshot it has not verified. Every snapshot
// goes through snapshot.Open before anything in it is parsed: its size is
// capped (also after gzip decompression), its signature must verify under
// one of Config.TrustedKeys, it must be for Config.Environment, newer than
// the held one (an older one is a rollback attempt and is reported), and
// not expired. Only then is it compiled, and only then swapped in,
// atomically. A snapshot that fails any check is refused, logged and
// reported (EventRejected), and the held one is kept.
//
// After each accepted snapshot the exact verified envelope is written to
// Config.CacheFile. On start the file is verified with the same checks, so
// that a game server that starts while the control plane is down serves
// the configuration it last verified. An expired file is still used, and
// reported stale.
//
// # Lifecycle
//
// New validates the configuration and does no I/O. Start loads the
// last-known-good file and polls in a goroutine until Close; Run is the
// same loop for callers that own their goroutines (an errgroup); Poll does
// one request and is what tests call. Polls are long polls: the control
// plane answers as soon as a new snapshot is published, or with 304 after
// Config.PollWait. Failed polls back off exponentially with full jitter.
//
// Subscribe delivers events, in order: EventReady once a snapshot is
// held, EventConfigurationChanged with the keys of the flags that changed,
// EventStale when the snapshot expired or polls have failed for
// Config.StaleAfter, EventError when the control plane refuses the
// client's configuration (401, 403, 404), EventRecovered when it is Ready
// again, and EventRejected for every refused snapshot.
//
// # Matches
//
// A match or round should see one configuration from start to end. Pin
// returns an evaluator bound to the snapshot held at that moment; new
// versions reach the match only when it pins again. Through OpenFeature,
// put the Pinned in the Go context with WithPinned.
//
// # Telemetry
//
// A Reporter (NewReporter) reports what the game server's players did
// under each flag variant: exposures, accepted and rejected actions with
// reasons, sessions, custom counters and activity. It aggregates them per
// flag, variant and minute and ships the minutes that are over to POST
// /v1/telemetry, retrying a batch under the same id until it is
// acknowledged, in bounded memory. Package ofprovider records exposures
// and OpenFeature tracking events into it.
//
// The package imports neither the control plane's HTTP framework nor its
// database stack: only the standard library, package flags (the
// evaluator), package snapshot (verification) and package telemetry (the
// batch the Reporter sends, so that its wire format cannot drift).
package sdk
