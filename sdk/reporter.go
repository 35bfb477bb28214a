package sdk

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/telemetry"
)

// Defaults of the Reporter options.
const (
	DefaultFlushInterval     = 10 * time.Second
	DefaultFinalFlushTimeout = 5 * time.Second
	DefaultMaxPlayers        = 100_000
	DefaultMaxPendingEvents  = 200_000
	DefaultMaxPendingWindows = 50_000
)

// OtherReason is the reason code under which Rejected and RejectedFor
// count a rejection whose reason is not a valid code, or that would be
// the 50th distinct reason of a window (telemetry.MaxReasons): the action
// still counts as rejected, so that reject rates stay right.
const OtherReason = "other"

const (
	// The longest reason code and custom counter name telemetry accepts
	// (docs/telemetry.md, "The batch").
	maxReasonBytes  = 64
	maxCounterBytes = 128
	// ageMargin is how much younger than telemetry.MaxAge data must be to
	// be sent: older data would make the control plane refuse its whole
	// batch, and the control plane's clock may be ahead of ours.
	ageMargin = 10 * time.Minute
)

// Reporter reports a game server's telemetry to the control plane (POST
// /v1/telemetry, docs/telemetry.md): which players it exposed to which
// flag variants, the player actions it accepted and rejected, custom
// counters, sessions and player activity. It aggregates them in memory
// per flag, variant and minute, and ships the minutes that are over in
// batches (Flush, Run).
//
// Player actions are attributed by intention to treat: Accepted(player)
// counts one action for every flag variant the player has been exposed to
// (Exposed), whatever the action had to do with the flag. The For forms
// (AcceptedFor, RejectedFor, CountFor) name the flag and variant instead.
//
// Every method is safe for concurrent use. Recording costs a mutex and a
// few map lookups, and allocates nothing for players and flag variants it
// has seen before in the minute. Bad input (an invalid flag key, player
// id, reason code or counter name) is not an error of the call: it is
// counted in ReporterStats.Invalid and logged, so that one bad call never
// makes the control plane refuse a whole batch.
type Reporter struct {
	client *Client
	url    string
	log    *slog.Logger
	clock  solstice.Clock
	set    reporterSettings
	prefix string // of batch ids: the server id (shortened) and a nonce of this reporter

	sendMu  sync.Mutex // serializes flushes
	failing bool       // guarded by sendMu: the last attempt failed (for logs)

	mu          sync.Mutex // guards everything below
	players     map[string]*player
	lru         player // sentinel of the players' LRU list: lru.next is the most recently seen
	arms        map[armKey]*arm
	windows     map[winKey]*window // open windows: not cut yet
	activity    []playerEvent      // not cut yet
	openEvents  int                // exposures in open windows plus activity
	queue       []*outBatch        // cut, not acknowledged; the head is sent first
	queuedWins  int
	queuedEvs   int
	through     telemetry.Minute // the highest through cut so far
	seq         int64            // the last batch number
	stats       ReporterStats
	lastInvalid time.Time // when an invalid call was last logged
}

// player is what the reporter knows of one player: the flag variants they
// were exposed to, their session under way, their last activity.
type player struct {
	id         string
	assign     []assignment
	inSession  bool
	activeMin  telemetry.Minute // the minute of the player's last activity entry
	prev, next *player          // the LRU list
}

// assignment is a player's exposure to one variant of a flag, with the
// actions and rejects of the session under way since the exposure.
type assignment struct {
	arm  *arm
	n, x int64
}

type armKey struct{ flag, variant string }

// arm is one variant of one flag.
type arm struct {
	key  armKey
	refs int     // players assigned to it
	open int     // its open windows
	cur  *window // its most recently used window, to skip the map lookup
}

type winKey struct {
	arm    *arm
	minute telemetry.Minute
}

// window holds the counters of one arm over one minute.
type window struct {
	arm       *arm
	minute    telemetry.Minute
	accepted  int64
	rejected  map[string]int64
	custom    map[string]int64
	sessions  telemetry.Sessions
	exposures []playerEvent
	cut       bool // taken out of the open windows (shipped or dropped): never written again
}

// playerEvent is an exposure or an activity entry.
type playerEvent struct {
	player string
	at     int64 // Unix nanoseconds
}

func (e playerEvent) minute() telemetry.Minute { return telemetry.MinuteOf(time.Unix(0, e.at)) }

// ReporterStats are a Reporter's counters since it was created.
type ReporterStats struct {
	// Batches counts the batches the control plane acknowledged, and
	// Duplicates those of them it had received before (a retry after an
	// answer was lost): acknowledged, and not counted twice.
	Batches, Duplicates int64
	// Retries counts the requests that sent a batch again after a failed
	// attempt; Failures the attempts that failed and will be retried
	// (network errors, 408, 429 and 5xx).
	Retries, Failures int64
	// Refused counts the batches the control plane refused for good (any
	// other 4xx, such as 422 for an invalid batch): they are dropped, and
	// their content is counted in DroppedWindows and DroppedEvents.
	Refused int64
	// DroppedWindows counts the windows (the counters of one flag variant
	// over one minute) and DroppedEvents the exposures and activity
	// entries that were dropped: refused, too old to be accepted (48 h),
	// or the oldest data when more than the WithMaxPending bounds were
	// waiting.
	DroppedWindows, DroppedEvents int64
	// Invalid counts the calls with invalid input: ignored, or, for a bad
	// reason code, counted under OtherReason.
	Invalid int64
	// PendingBatches, PendingWindows and PendingEvents are what waits to
	// be acknowledged: batches cut, and windows and events in them or not
	// cut yet.
	PendingBatches, PendingWindows, PendingEvents int
	// LastSuccess is when the control plane last acknowledged a batch.
	LastSuccess time.Time
	// LastError is the last failed or refused attempt's error; nil after a
	// success. LastRefusal is the last refusal's error, kept. LastInvalid
	// describes the last invalid call.
	LastError, LastRefusal, LastInvalid error
}

// ReporterOption configures a Reporter.
type ReporterOption func(*reporterSettings)

type reporterSettings struct {
	interval, finalTimeout time.Duration
	minBackoff, maxBackoff time.Duration
	maxPlayers             int
	maxEvents, maxWindows  int
	clock                  solstice.Clock
}

// WithFlushInterval sets how often Run ships (default
// DefaultFlushInterval).
func WithFlushInterval(d time.Duration) ReporterOption {
	return func(s *reporterSettings) { s.interval = d }
}

// WithFinalFlushTimeout sets how long Run keeps trying to ship what is
// left once its context has ended (default DefaultFinalFlushTimeout).
func WithFinalFlushTimeout(d time.Duration) ReporterOption {
	return func(s *reporterSettings) { s.finalTimeout = d }
}

// WithRetryBackoff bounds the wait before a failed batch is sent again:
// exponential from minimum, capped at maximum, with full jitter, and at
// least the server's Retry-After (default the client's MinBackoff and
// MaxBackoff).
func WithRetryBackoff(minimum, maximum time.Duration) ReporterOption {
	return func(s *reporterSettings) { s.minBackoff, s.maxBackoff = minimum, maximum }
}

// WithMaxPlayers bounds the players the reporter remembers (their
// exposures, sessions and last activity), evicting the least recently
// seen (default DefaultMaxPlayers). A player seen again after eviction is
// reported exposed again, which the control plane ignores.
func WithMaxPlayers(n int) ReporterOption {
	return func(s *reporterSettings) { s.maxPlayers = n }
}

// WithMaxPending bounds what may wait to be shipped: events (exposures
// and activity entries) and windows (one flag variant over one minute).
// Past either bound, the oldest data is dropped, a minute at a time, and
// counted in ReporterStats (defaults DefaultMaxPendingEvents and
// DefaultMaxPendingWindows).
func WithMaxPending(events, windows int) ReporterOption {
	return func(s *reporterSettings) { s.maxEvents, s.maxWindows = events, windows }
}

// WithReporterClock sets the clock that timestamps what is recorded
// (default the client's Config.Clock). Waiting between flushes always uses
// real timers.
func WithReporterClock(c solstice.Clock) ReporterOption {
	return func(s *reporterSettings) { s.clock = c }
}

// NewReporter returns a reporter that ships to client's control plane
// with its server key and server id (Config.BaseURL, ServerKey, ServerID,
// HTTPClient, Logger), and reports the version of the snapshot client
// holds. It does no I/O: call Run, or Flush. It returns a KindInvalid
// *solstice.Error when client is nil, an option is negative, or
// Config.ServerID is not 1 to 128 printable ASCII characters without
// spaces (the control plane's rule for server ids).
func NewReporter(client *Client, opts ...ReporterOption) (*Reporter, error) {
	if client == nil {
		return nil, solstice.Invalid("invalid reporter", solstice.FieldError{Pointer: "/client", Message: "is required"})
	}
	cfg := client.cfg
	s := reporterSettings{clock: cfg.Clock, minBackoff: cfg.MinBackoff, maxBackoff: cfg.MaxBackoff}
	for _, o := range opts {
		o(&s)
	}
	var fields []solstice.FieldError
	bad := func(field, format string, args ...any) {
		fields = append(fields, solstice.FieldError{Pointer: "/" + field, Message: fmt.Sprintf(format, args...)})
	}
	durations := []struct {
		name string
		d    *time.Duration
		def  time.Duration
	}{
		{"FlushInterval", &s.interval, DefaultFlushInterval},
		{"FinalFlushTimeout", &s.finalTimeout, DefaultFinalFlushTimeout},
		{"RetryBackoff/min", &s.minBackoff, DefaultMinBackoff},
		{"RetryBackoff/max", &s.maxBackoff, DefaultMaxBackoff},
	}
	for _, f := range durations {
		switch {
		case *f.d == 0:
			*f.d = f.def
		case *f.d < 0:
			bad(f.name, "must not be negative, got %s", *f.d)
		}
	}
	if s.minBackoff > 0 && s.maxBackoff > 0 && s.minBackoff > s.maxBackoff {
		bad("RetryBackoff/max", "must be at least the minimum (%s), got %s", s.minBackoff, s.maxBackoff)
	}
	counts := []struct {
		name string
		n    *int
		def  int
	}{
		{"MaxPlayers", &s.maxPlayers, DefaultMaxPlayers},
		{"MaxPending/events", &s.maxEvents, DefaultMaxPendingEvents},
		{"MaxPending/windows", &s.maxWindows, DefaultMaxPendingWindows},
	}
	for _, f := range counts {
		switch {
		case *f.n == 0:
			*f.n = f.def
		case *f.n < 0:
			bad(f.name, "must not be negative, got %d", *f.n)
		}
	}
	if !validID(cfg.ServerID) {
		bad("ServerID", "must be 1 to %d printable ASCII characters without spaces to report telemetry, got %q", telemetry.MaxIDBytes, cfg.ServerID)
	}
	if s.clock == nil {
		s.clock = solstice.WallClock
	}
	if len(fields) > 0 {
		return nil, solstice.Invalid("invalid reporter options", fields...)
	}

	var nonce [8]byte
	_, _ = rand.Read(nonce[:]) // never fails (crypto/rand)
	// A batch id is prefix:seq: the server id, shortened to leave room
	// for the nonce and a 20-digit number; the nonce keeps the ids of two
	// processes (or a restart) apart.
	id := cfg.ServerID
	if room := telemetry.MaxIDBytes - 2 - 2*len(nonce) - 20; len(id) > room {
		id = id[:room]
	}
	r := &Reporter{
		client:   client,
		url:      cfg.BaseURL + "/v1/telemetry",
		log:      cfg.Logger.With("env", cfg.Environment, "component", "telemetry"),
		clock:    s.clock,
		set:      s,
		prefix:   id + ":" + hex.EncodeToString(nonce[:]) + ":",
		players:  map[string]*player{},
		arms:     map[armKey]*arm{},
		windows:  map[winKey]*window{},
		activity: make([]playerEvent, 0, 64),
	}
	r.lru.next, r.lru.prev = &r.lru, &r.lru
	return r, nil
}

// validID reports whether s is a valid batch or server id.
func validID(s string) bool {
	if s == "" || len(s) > telemetry.MaxIDBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Exposed records that player was served variant of flag. The first
// exposure of the player to the variant is reported (in the window of
// the minute it happened); repeats cost a lookup and report nothing. The
// reporter remembers the player's variant of each flag, for Accepted,
// Rejected and Count: a later exposure to another variant of the flag (a
// ramp, a rollback) replaces it. Exposure does not count as activity.
func (r *Reporter) Exposed(flag, variant, playerID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	m := telemetry.MinuteOf(now)
	p := r.playerLocked(playerID, m, "Exposed")
	if p == nil {
		return
	}
	for i := range p.assign {
		a := &p.assign[i]
		if a.arm.key.flag != flag {
			continue
		}
		if a.arm.key.variant == variant {
			return
		}
		next := r.armLocked(flag, variant, "Exposed")
		if next == nil {
			return
		}
		// The part of the session spent in the old variant ends here.
		r.endPartLocked(p, a, m)
		a.arm.refs--
		a.arm, a.n, a.x = next, 0, 0
		next.refs++
		r.exposeLocked(next, p, now, m)
		return
	}
	a := r.armLocked(flag, variant, "Exposed")
	if a == nil {
		return
	}
	a.refs++
	p.assign = append(p.assign, assignment{arm: a})
	r.exposeLocked(a, p, now, m)
}

func (r *Reporter) exposeLocked(a *arm, p *player, now time.Time, m telemetry.Minute) {
	w := r.windowLocked(a, m)
	w.exposures = append(w.exposures, playerEvent{player: p.id, at: now.UnixNano()})
	r.addEventLocked()
}

// Accepted records one action of player that the server accepted, for
// every flag variant the player was exposed to, and the player as active.
func (r *Reporter) Accepted(playerID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	m := telemetry.MinuteOf(now)
	p := r.playerLocked(playerID, m, "Accepted")
	if p == nil {
		return
	}
	r.activeLocked(p, now, m)
	for i := range p.assign {
		a := &p.assign[i]
		r.windowLocked(a.arm, m).accepted++
		if p.inSession {
			a.n++
		}
	}
}

// Rejected records one action of player that the server rejected, with
// its reason code (1 to 64 of a-z, 0-9, '.', '_', ':', '-', starting with
// a letter or digit: "cooldown", "anti-cheat:speed"), for every flag
// variant the player was exposed to, and the player as active. An invalid
// reason is counted as OtherReason.
func (r *Reporter) Rejected(playerID, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	m := telemetry.MinuteOf(now)
	p := r.playerLocked(playerID, m, "Rejected")
	if p == nil {
		return
	}
	r.activeLocked(p, now, m)
	for i := range p.assign {
		a := &p.assign[i]
		r.rejectLocked(r.windowLocked(a.arm, m), reason)
		if p.inSession {
			a.n++
			a.x++
		}
	}
}

// AcceptedFor records one accepted action under variant of flag, whoever
// acted: for actions that are not a player's, or a game that attributes
// actions itself.
func (r *Reporter) AcceptedFor(flag, variant string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a := r.armLocked(flag, variant, "AcceptedFor"); a != nil {
		r.windowLocked(a, telemetry.MinuteOf(r.clock.Now())).accepted++
	}
}

// RejectedFor records one rejected action under variant of flag, with its
// reason code (see Rejected).
func (r *Reporter) RejectedFor(flag, variant, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a := r.armLocked(flag, variant, "RejectedFor"); a != nil {
		r.rejectLocked(r.windowLocked(a, telemetry.MinuteOf(r.clock.Now())), reason)
	}
}

// Count adds n to the custom counter named counter (1 to 128 of a-z, 0-9,
// '.', '_', ':', '-', starting with a letter or digit: "matchmaking") of
// every flag variant player was exposed to. n must be from 0 to
// telemetry.MaxCount. A window holds at most telemetry.MaxCustom counters:
// further names are ignored (and counted as invalid).
func (r *Reporter) Count(playerID, counter string, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := telemetry.MinuteOf(r.clock.Now())
	p := r.playerLocked(playerID, m, "Count")
	if p == nil || !r.validCountLocked(counter, n) {
		return
	}
	for i := range p.assign {
		r.countLocked(r.windowLocked(p.assign[i].arm, m), counter, n)
	}
}

// CountFor adds n to the custom counter named counter of variant of flag
// (see Count).
func (r *Reporter) CountFor(flag, variant, counter string, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.armLocked(flag, variant, "CountFor")
	if a == nil || !r.validCountLocked(counter, n) {
		return
	}
	r.countLocked(r.windowLocked(a, telemetry.MinuteOf(r.clock.Now())), counter, n)
}

// Active records player as active now, whatever their flags: the return
// visits D1 retention counts. Accepted, Rejected, SessionStart and
// SessionEnd do it too; call Active for a player who plays without
// actions the server judges. A player is reported at most once a minute.
func (r *Reporter) Active(playerID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	m := telemetry.MinuteOf(now)
	if p := r.playerLocked(playerID, m, "Active"); p != nil {
		r.activeLocked(p, now, m)
	}
}

// SessionStart starts a session of player (a match, a login): from now on
// their actions are also counted per session, per flag variant. A session
// already under way ends first. The player is recorded as active.
func (r *Reporter) SessionStart(playerID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	m := telemetry.MinuteOf(now)
	p := r.playerLocked(playerID, m, "SessionStart")
	if p == nil {
		return
	}
	r.activeLocked(p, now, m)
	r.endSessionLocked(p, m)
	p.inSession = true
}

// SessionEnd ends the session of player: for every flag variant the
// player is exposed to, the session's actions n and rejects x (counted
// since the start, or since the exposure if it came later) are added to
// the session sums of the window of the current minute. Without a session
// under way, it only records the player as active.
func (r *Reporter) SessionEnd(playerID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	m := telemetry.MinuteOf(now)
	p := r.playerLocked(playerID, m, "SessionEnd")
	if p == nil {
		return
	}
	r.activeLocked(p, now, m)
	r.endSessionLocked(p, m)
}

// endSessionLocked ends p's session, if one is under way.
func (r *Reporter) endSessionLocked(p *player, m telemetry.Minute) {
	if !p.inSession {
		return
	}
	for i := range p.assign {
		r.endPartLocked(p, &p.assign[i], m)
	}
	p.inSession = false
}

// endPartLocked adds the part of p's session spent in a's variant to its
// window's session sums.
func (r *Reporter) endPartLocked(p *player, a *assignment, m telemetry.Minute) {
	if !p.inSession {
		return
	}
	s := &r.windowLocked(a.arm, m).sessions
	s.Count++
	s.Actions += a.n
	s.Rejects += a.x
	s.ActionsSquared += a.n * a.n
	s.RejectsSquared += a.x * a.x
	s.ActionsRejects += a.n * a.x
	a.n, a.x = 0, 0
}

// playerLocked returns the state of player id, created if need be, and
// marks it the most recently seen. It returns nil for an invalid id.
func (r *Reporter) playerLocked(id string, m telemetry.Minute, op string) *player {
	if p := r.players[id]; p != nil {
		if r.lru.next != p {
			p.unlink()
			r.pushFrontLocked(p)
		}
		return p
	}
	switch {
	case id == "":
		r.invalidLocked("%s: the player id is empty", op)
		return nil
	case len(id) > telemetry.MaxPlayerIDBytes:
		r.invalidLocked("%s: the player id is %d bytes long; at most %d are allowed", op, len(id), telemetry.MaxPlayerIDBytes)
		return nil
	case !utf8.ValidString(id):
		r.invalidLocked("%s: the player id %q is not valid UTF-8", op, id)
		return nil
	case strings.IndexByte(id, 0) >= 0:
		r.invalidLocked("%s: the player id %q contains NUL, which the control plane refuses", op, id)
		return nil
	}
	p := &player{id: id}
	r.players[id] = p
	r.pushFrontLocked(p)
	if len(r.players) > r.set.maxPlayers {
		r.evictLocked(r.lru.prev, m)
	}
	return p
}

func (r *Reporter) pushFrontLocked(p *player) {
	p.prev, p.next = &r.lru, r.lru.next
	r.lru.next.prev = p
	r.lru.next = p
}

func (p *player) unlink() {
	p.prev.next, p.next.prev = p.next, p.prev
	p.prev, p.next = nil, nil
}

// evictLocked forgets p, ending its session.
func (r *Reporter) evictLocked(p *player, m telemetry.Minute) {
	r.endSessionLocked(p, m)
	for _, a := range p.assign {
		a.arm.refs--
	}
	p.unlink()
	delete(r.players, p.id)
}

// activeLocked records p's activity, once a minute.
func (r *Reporter) activeLocked(p *player, now time.Time, m telemetry.Minute) {
	if p.activeMin == m {
		return
	}
	p.activeMin = m
	r.activity = append(r.activity, playerEvent{player: p.id, at: now.UnixNano()})
	r.addEventLocked()
}

// armLocked returns the arm of flag and variant, created if need be; nil
// for an invalid key.
func (r *Reporter) armLocked(flag, variant, op string) *arm {
	k := armKey{flag, variant}
	if a := r.arms[k]; a != nil {
		return a
	}
	switch {
	case !flags.ValidKey(flag):
		r.invalidLocked("%s: the flag key %q is invalid: it must be 1 to 128 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", op, flag)
		return nil
	case !flags.ValidKey(variant):
		r.invalidLocked("%s: the variant key %q of flag %q is invalid: it must be 1 to 128 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", op, variant, flag)
		return nil
	}
	a := &arm{key: k}
	r.arms[k] = a
	return a
}

// windowLocked returns a's open window of minute m, created if need be.
func (r *Reporter) windowLocked(a *arm, m telemetry.Minute) *window {
	if w := a.cur; w != nil && w.minute == m && !w.cut {
		return w
	}
	k := winKey{a, m}
	w := r.windows[k]
	if w == nil {
		if len(r.windows)+r.queuedWins >= r.set.maxWindows {
			r.shedLocked()
		}
		w = &window{arm: a, minute: m}
		r.windows[k] = w
		a.open++
	}
	a.cur = w
	return w
}

// rejectLocked counts a rejection for reason in w.
func (r *Reporter) rejectLocked(w *window, reason string) {
	if n, ok := w.rejected[reason]; ok {
		w.rejected[reason] = n + 1
		return
	}
	if !flags.ValidName(reason, maxReasonBytes, "._:-") {
		r.invalidLocked("Rejected: the reason code %q is invalid (counted as %q): it must be 1 to %d of a-z, 0-9, '.', '_', ':', '-', starting with a letter or digit", reason, OtherReason, maxReasonBytes)
		reason = OtherReason
	} else if len(w.rejected) >= telemetry.MaxReasons-1 && reason != OtherReason {
		// NOTE: the last slot is kept for OtherReason, so that the
		// action still counts as rejected: reasons are an enumeration,
		// and 50 in one minute of one variant is a bug to fix.
		reason = OtherReason
	}
	if w.rejected == nil {
		w.rejected = make(map[string]int64, 4)
	}
	w.rejected[reason]++
}

// validCountLocked checks a custom counter's name and increment. Names
// already in use are checked when they enter a window.
func (r *Reporter) validCountLocked(counter string, n int64) bool {
	if n < 0 || n > telemetry.MaxCount {
		r.invalidLocked("Count: %d for counter %q is outside 0 to %d", n, counter, telemetry.MaxCount)
		return false
	}
	return true
}

// countLocked adds n to counter in w.
func (r *Reporter) countLocked(w *window, counter string, n int64) {
	if v, ok := w.custom[counter]; ok {
		w.custom[counter] = v + n
		return
	}
	switch {
	case !flags.ValidName(counter, maxCounterBytes, "._:-"):
		r.invalidLocked("Count: the counter name %q is invalid: it must be 1 to %d of a-z, 0-9, '.', '_', ':', '-', starting with a letter or digit", counter, maxCounterBytes)
		return
	case len(w.custom) >= telemetry.MaxCustom:
		r.invalidLocked("Count: counter %q would be the %dth of flag %q, variant %q in one minute; at most %d are allowed", counter, len(w.custom)+1, w.arm.key.flag, w.arm.key.variant, telemetry.MaxCustom)
		return
	}
	if w.custom == nil {
		w.custom = make(map[string]int64, 4)
	}
	w.custom[counter] = n
}

// invalidLocked counts and describes an invalid call, and logs it at most
// once a minute.
func (r *Reporter) invalidLocked(format string, args ...any) {
	err := solstice.Errorf(solstice.KindInvalid, "telemetry: "+format, args...)
	r.stats.Invalid++
	r.stats.LastInvalid = err
	if now := time.Now(); now.Sub(r.lastInvalid) >= time.Minute {
		r.lastInvalid = now
		r.log.Warn("invalid telemetry input ignored", "err", err, "invalid_so_far", r.stats.Invalid)
	}
}

// addEventLocked counts one more pending event and sheds the oldest data
// past the bound.
func (r *Reporter) addEventLocked() {
	r.openEvents++
	if r.openEvents+r.queuedEvs > r.set.maxEvents {
		r.shedLocked()
	}
}

// shedLocked drops the oldest pending data, whole batches not being sent
// and then whole minutes, until a tenth of both bounds (one at least) is
// free again, so that shedding, which scans the open windows, is rare.
func (r *Reporter) shedLocked() {
	events := r.set.maxEvents - max(1, r.set.maxEvents/10)
	windows := r.set.maxWindows - max(1, r.set.maxWindows/10)
	dropped := ReporterStats{}
	for r.openEvents+r.queuedEvs > events || len(r.windows)+r.queuedWins > windows {
		if i := r.droppableLocked(); i >= 0 {
			b := r.queue[i]
			r.removeQueuedLocked(i)
			dropped.DroppedWindows += int64(b.windows)
			dropped.DroppedEvents += int64(b.events)
			continue
		}
		oldest, ok := r.oldestLocked()
		if !ok {
			break
		}
		w, e := r.dropMinutesLocked(oldest + 1)
		dropped.DroppedWindows += w
		dropped.DroppedEvents += e
	}
	r.stats.DroppedWindows += dropped.DroppedWindows
	r.stats.DroppedEvents += dropped.DroppedEvents
	r.log.Warn("telemetry backlog over its bound: dropped the oldest data",
		"windows", dropped.DroppedWindows, "events", dropped.DroppedEvents,
		"max_events", r.set.maxEvents, "max_windows", r.set.maxWindows, "last_error", r.stats.LastError)
}

// droppableLocked returns the index of the first queued batch that is not
// being sent, -1 if none.
func (r *Reporter) droppableLocked() int {
	for i, b := range r.queue {
		if !b.sending {
			return i
		}
	}
	return -1
}

func (r *Reporter) removeQueuedLocked(i int) {
	b := r.queue[i]
	r.queuedWins -= b.windows
	r.queuedEvs -= b.events
	r.queue = append(r.queue[:i], r.queue[i+1:]...)
}

// oldestLocked returns the oldest minute with open data.
func (r *Reporter) oldestLocked() (telemetry.Minute, bool) {
	var oldest telemetry.Minute
	found := false
	for k := range r.windows {
		if !found || k.minute < oldest {
			oldest, found = k.minute, true
		}
	}
	for _, e := range r.activity {
		if m := e.minute(); !found || m < oldest {
			oldest, found = m, true
		}
	}
	return oldest, found
}

// dropMinutesLocked drops the open windows and activity of the minutes
// before end, and returns how many windows and events it dropped.
func (r *Reporter) dropMinutesLocked(end telemetry.Minute) (windows, events int64) {
	for k, w := range r.windows {
		if k.minute < end {
			delete(r.windows, k)
			w.cut = true
			w.arm.open--
			windows++
			events += int64(len(w.exposures))
		}
	}
	kept := r.activity[:0]
	for _, e := range r.activity {
		if e.minute() < end {
			events++
			continue
		}
		kept = append(kept, e)
	}
	clear(r.activity[len(kept):])
	r.activity = kept
	r.openEvents -= int(events)
	return windows, events
}

// Stats returns the reporter's counters.
func (r *Reporter) Stats() ReporterStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.PendingBatches = len(r.queue)
	s.PendingWindows = len(r.windows) + r.queuedWins
	s.PendingEvents = r.openEvents + r.queuedEvs
	return s
}
