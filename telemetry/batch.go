package telemetry

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
)

// Limits of a batch. docs/telemetry.md lists them with their reasons.
const (
	MaxBatchBytes    = 1 << 20         // the JSON body
	MaxWindows       = 1000            // windows per batch
	MaxReasons       = 50              // reject reasons per window
	MaxCustom        = 50              // custom counters per window
	MaxPlayerEvents  = 10_000          // exposures and activity entries per batch, together
	MaxPlayerIDBytes = 128             // a player id, in bytes of UTF-8
	MaxIDBytes       = 128             // batch_id and server_id
	MaxCount         = 1_000_000_000   // any one count of a window: a minute of one server
	MaxFutureSkew    = 5 * time.Minute // a timestamp may be this far ahead of the control plane's clock
	MaxAge           = 48 * time.Hour  // and at most this old
	WindowLength     = time.Minute     // every window is one minute, starting on a whole minute
	maxReasonBytes   = 64
	maxCounterBytes  = 128
	maxFieldErrors   = 50 // an invalid batch reports at most this many problems
	minutesPerDay    = 24 * 60
	retentionEnd     = 2 * minutesPerDay // D1 ends 48 h after the first exposure
)

// Batch is one report of a game server, the body of POST /v1/telemetry: its
// counters per flag, variant and minute, the players it exposed to a
// variant, and the players it saw active. docs/telemetry.md is its
// reference.
//
// Timestamps are RFC 3339 strings, parsed by Validate so that a bad one is
// reported with its JSON pointer.
type Batch struct {
	// BatchID is the idempotency key: a batch that repeats the ID of one
	// already received in the environment is acknowledged and not counted
	// again. 1 to 128 printable ASCII characters, no spaces.
	BatchID string `json:"batch_id"`
	// ServerID names the reporting game server (1 to 128 printable ASCII
	// characters). The watermark waits for every server that reports.
	ServerID string `json:"server_id"`
	// SnapshotVersion is the version of the signed snapshot the server
	// evaluated flags with (0 before it held one).
	SnapshotVersion int64 `json:"snapshot_version"`
	// Through, a whole minute, declares that the server has sent all of its
	// data from before it (in this batch or earlier ones). Optional: it
	// defaults to the end of the batch's newest window. Activity does not
	// move it: a server may report the activity of a minute that is not
	// over yet. A batch with no windows and only Through is a heartbeat
	// that moves the watermark of an idle server.
	Through string `json:"through,omitempty"`
	// Windows hold the counters of one flag and variant over one minute,
	// in any order, with the players first exposed in that minute.
	Windows []Window `json:"windows,omitempty"`
	// Activity lists players seen active, whatever their flags: the return
	// visits that D1 retention counts.
	Activity []PlayerEvent `json:"activity,omitempty"`
}

// Window is one flag and variant over one minute of one server.
type Window struct {
	// Start is the window's first instant, on a whole minute; the window
	// is [Start, Start+1m).
	Start   string `json:"start"`
	Flag    string `json:"flag"`
	Variant string `json:"variant"`
	// Accepted counts the player actions the server accepted, Rejected
	// those it rejected, by reason code. The actions of the window are
	// their sum.
	Accepted int64            `json:"accepted"`
	Rejected map[string]int64 `json:"rejected,omitempty"`
	// Custom holds game-defined counters by name ("matchmaking",
	// "failed_matchmaking"); a guardrail may divide two of them.
	Custom map[string]int64 `json:"custom,omitempty"`
	// Sessions sums, over the sessions that completed in the window, their
	// actions and rejects, for the variance of clustered data.
	Sessions *Sessions `json:"sessions,omitempty"`
	// Exposures lists the players the server first saw in this variant
	// during the window, with the time it did.
	Exposures []PlayerEvent `json:"exposures,omitempty"`
}

// Sessions are sums over completed sessions, each with n actions of which
// x were rejected.
type Sessions struct {
	Count          int64 `json:"count"`
	Actions        int64 `json:"actions"`         // Σ n
	Rejects        int64 `json:"rejects"`         // Σ x
	ActionsSquared int64 `json:"actions_squared"` // Σ n²
	RejectsSquared int64 `json:"rejects_squared"` // Σ x²
	ActionsRejects int64 `json:"actions_rejects"` // Σ n·x
}

// PlayerEvent is a player seen at a time: an exposure or an activity.
type PlayerEvent struct {
	Player string `json:"player"`
	At     string `json:"at"`
}

// Validate checks b as Ingest does at time now (the control plane's clock):
// every limit of docs/telemetry.md. It returns nil or a KindInvalid
// *solstice.Error naming each problem by its JSON pointer
// ("/windows/3/start"), at most 50 of them.
func (b Batch) Validate(now time.Time) error {
	_, err := b.plan(now)
	return err
}

// plan validates b and aggregates it into the Write that stores it.
//
// NOTE: it runs on every batch, beside a JSON decode that costs about four
// times as much, so it builds a problem's JSON pointer only when it reports
// one (the at functions), parses each timestamp once (parseCanonicalUTC),
// writes the digest's JSON as it goes (digester), sizes the Write's slices
// once, indexes with maps reused from batch to batch (planPool), and leaves
// the Write's slices unsorted (the store orders what it writes).
func (b Batch) plan(now time.Time) (Write, error) {
	v := &validator{now: now}
	w := Write{BatchID: b.BatchID, ServerID: b.ServerID, SnapshotVersion: b.SnapshotVersion}

	v.id("/batch_id", b.BatchID)
	v.id("/server_id", b.ServerID)
	if b.SnapshotVersion < 0 {
		v.add("/snapshot_version", "must not be negative")
	}
	events, reasons, custom := len(b.Activity), 0, 0
	for _, win := range b.Windows {
		events += len(win.Exposures)
		reasons += len(win.Rejected)
		custom += len(win.Custom)
	}
	if events > MaxPlayerEvents {
		v.add("", fmt.Sprintf("the batch holds %d exposures and activity entries; at most %d are allowed, send the rest in another batch", events, MaxPlayerEvents))
	}
	if len(b.Windows) > MaxWindows {
		v.add("/windows", fmt.Sprintf("holds %d windows; at most %d are allowed, send the rest in another batch", len(b.Windows), MaxWindows))
	}
	if len(v.fields) > 0 {
		// Too big to look into: say so without spending time on it.
		return Write{}, v.err()
	}

	pm := planPool.Get().(*planMaps) //nolint:errcheck,forcetypeassert // the pool holds only *planMaps
	defer pm.free()
	exposures := pm.exposures // index in w.Exposures
	w.Exposures = make([]Exposure, 0, events-len(b.Activity))
	w.Rejects = make([]NamedDelta, 0, reasons)
	if custom > 0 {
		w.Custom = make([]NamedDelta, 0, custom)
	}
	d := newDigester(b)
	defer d.free()
	series := pm.series // a number for each flag's variant
	windows := pm.windows
	w.Counters = make([]CounterDelta, 0, len(b.Windows))
	var newest Minute // the end of the newest window
	for i, win := range b.Windows {
		at := func(rest string) string { return "/windows/" + strconv.Itoa(i) + rest }
		start, ok := v.windowStart(win.Start, func() string { return at("/start") })
		if !flags.ValidKey(win.Flag) {
			v.add(at("/flag"), keyRule)
		}
		if !flags.ValidKey(win.Variant) {
			v.add(at("/variant"), keyRule)
		}
		si, known := series[variantKey{win.Flag, win.Variant}]
		if !known {
			si = int32(len(series)) //nolint:gosec // at most MaxWindows
			series[variantKey{win.Flag, win.Variant}] = si
		}
		if ok {
			k := windowKey{si, start}
			if j, dup := windows[k]; dup {
				v.add(at(""), fmt.Sprintf("repeats the flag, variant and start of /windows/%d: send one window per flag, variant and minute", j))
			}
			windows[k] = i
			newest = max(newest, start+1)
		}
		c := CounterDelta{Flag: win.Flag, Variant: win.Variant, Minute: start}
		c.Accepted = v.count(win.Accepted, func() string { return at("/accepted") })
		if len(win.Rejected) > MaxReasons {
			v.add(at("/rejected"), fmt.Sprintf("holds %d reasons; at most %d are allowed", len(win.Rejected), MaxReasons))
		}
		var rkeys, ckeys [8]string
		reasonKeys := sortedKeys(win.Rejected, rkeys[:0])
		for _, reason := range reasonKeys {
			p := func() string { return at("/rejected/" + flags.PointerToken(reason)) }
			if !flags.ValidName(reason, maxReasonBytes, "._:-") {
				v.add(p(), "a reason code "+nameRule(maxReasonBytes))
			}
			n := v.count(win.Rejected[reason], p)
			c.Rejected += n
			if n > 0 {
				w.Rejects = append(w.Rejects, NamedDelta{Flag: win.Flag, Variant: win.Variant, Minute: start, Name: reason, Value: n})
			}
		}
		if len(win.Custom) > MaxCustom {
			v.add(at("/custom"), fmt.Sprintf("holds %d counters; at most %d are allowed", len(win.Custom), MaxCustom))
		}
		customKeys := sortedKeys(win.Custom, ckeys[:0])
		for _, name := range customKeys {
			p := func() string { return at("/custom/" + flags.PointerToken(name)) }
			if !flags.ValidName(name, maxCounterBytes, "._:-") {
				v.add(p(), "a counter name "+nameRule(maxCounterBytes))
			}
			if n := v.count(win.Custom[name], p); n > 0 {
				w.Custom = append(w.Custom, NamedDelta{Flag: win.Flag, Variant: win.Variant, Minute: start, Name: name, Value: n})
			}
		}
		if win.Sessions != nil {
			c.Sessions = v.sessions(func(name string) string { return at("/sessions/" + name) }, *win.Sessions)
		}
		for j, e := range win.Exposures {
			p := func(field string) string { return at("/exposures/" + strconv.Itoa(j) + field) }
			v.player(e.Player, func() string { return p("/player") })
			t, tok := v.timestamp(e.At, func() string { return p("/at") })
			if !tok || !ok {
				continue
			}
			if MinuteOf(t) != start {
				v.add(p("/at"), fmt.Sprintf("%s is outside its window [%s, %s): report an exposure in the window of the minute it happened",
					e.At, start.Time().Format(time.RFC3339), (start+1).Time().Format(time.RFC3339)))
				continue
			}
			// A player exposed in two windows of the variant counts once,
			// in the earlier.
			k := exposureKey{si, e.Player}
			if j, seen := exposures[k]; !seen {
				exposures[k] = len(w.Exposures)
				w.Exposures = append(w.Exposures, Exposure{Flag: win.Flag, Variant: win.Variant, Player: e.Player, Minute: start})
			} else if start < w.Exposures[j].Minute {
				w.Exposures[j].Minute = start
			}
		}
		w.Counters = append(w.Counters, c)
		d.window(i, win, reasonKeys, customKeys)
	}

	activity := pm.activity // index in w.Activity
	w.Activity = make([]ActiveDay, 0, len(b.Activity))
	var lastActivity Minute
	for i, e := range b.Activity {
		p := func(field string) string { return "/activity/" + strconv.Itoa(i) + field }
		v.player(e.Player, func() string { return p("/player") })
		t, ok := v.timestamp(e.At, func() string { return p("/at") })
		if !ok {
			continue
		}
		if d := t.Sub(now); d > MaxFutureSkew {
			v.add(p("/at"), future(e.At, d))
			continue
		}
		if d := now.Sub(t); d > MaxAge {
			v.add(p("/at"), tooOld(e.At, d))
			continue
		}
		m := MinuteOf(t)
		lastActivity = max(lastActivity, m)
		day := m.Day()
		of := int16(int64(m) - day*minutesPerDay) //nolint:gosec // a minute of the day, 0 to 1439
		if j, ok := activity[activityKey{e.Player, day}]; ok {
			a := &w.Activity[j]
			a.First, a.Last = min(a.First, of), max(a.Last, of)
		} else {
			activity[activityKey{e.Player, day}] = len(w.Activity)
			w.Activity = append(w.Activity, ActiveDay{Player: e.Player, Day: day, First: of, Last: of})
		}
	}

	w.Through = newest
	if b.Through != "" {
		if t, ok := v.timestamp(b.Through, func() string { return "/through" }); ok {
			through := MinuteOf(t)
			switch {
			case !through.Time().Equal(t):
				v.add("/through", "must be a whole minute (seconds and fractions zero)")
			case t.Sub(now) > MaxFutureSkew:
				v.add("/through", future(b.Through, t.Sub(now)))
			case through < newest:
				v.add("/through", fmt.Sprintf("is before the end of the batch's newest window (%s): through declares that everything before it was sent", newest.Time().Format(time.RFC3339)))
			}
			w.Through = through
		}
	}
	if len(v.fields) > 0 {
		return Write{}, v.err()
	}

	w.LastActivity = lastActivity
	w.Digest = d.sum()
	return w, nil
}

// variantKey is a flag's variant.
type variantKey struct{ flag, variant string }

// windowKey is a minute of a variant numbered by plan.
type windowKey struct {
	series int32
	minute Minute
}

// activityKey is a player's day.
type activityKey struct {
	player string
	day    int64
}

// planMaps are the maps that plan indexes a batch with, empty, kept in
// planPool between batches: a batch fills them with hundreds of entries.
type planMaps struct {
	exposures map[exposureKey]int
	series    map[variantKey]int32
	windows   map[windowKey]int
	activity  map[activityKey]int
}

var planPool = sync.Pool{New: func() any {
	return &planMaps{exposures: map[exposureKey]int{}, series: map[variantKey]int32{}, windows: map[windowKey]int{}, activity: map[activityKey]int{}}
}}

// free empties m and puts it back into planPool, unless a batch made it
// unusually large.
func (m *planMaps) free() {
	if len(m.exposures)+len(m.activity) > 2000 {
		return
	}
	clear(m.exposures)
	clear(m.series)
	clear(m.windows)
	clear(m.activity)
	planPool.Put(m)
}

// exposureKey is a player's exposure to a flag's variant, numbered.
type exposureKey struct {
	series int32
	player string
}

// digest identifies the content of a valid batch: SHA-256 over its JSON
// with the timestamps in UTC and the maps' keys sorted. It tells a repeat
// of a batch (the same content, perhaps re-encoded with the keys of its
// objects in another order, as Luau's JSONEncode may) from a different
// batch that reuses an ID.
//
// NOTE: the JSON is that of encoding/json.Marshal of the normalized Batch,
// byte for byte (the digests of stored batches must not change), written
// by hand: Marshal's reflection cost as much as validating the batch. plan
// writes it window by window as it validates them (digester), sorting the
// keys of each window's maps once for both.
func (b Batch) digest() []byte {
	d := newDigester(b)
	defer d.free()
	var rkeys, ckeys [8]string
	for i, w := range b.Windows {
		d.window(i, w, sortedKeys(w.Rejected, rkeys[:0]), sortedKeys(w.Custom, ckeys[:0]))
	}
	return d.sum()
}

// digester writes the JSON of a batch that digest hashes: newDigester its
// first fields, window each of its windows in order, sum the rest.
type digester struct {
	windows  int
	activity []PlayerEvent
	e        *[]byte // from digestBuffers
	buf      []byte
}

func newDigester(b Batch) digester {
	e := digestBuffers.Get().(*[]byte) //nolint:errcheck,forcetypeassert // the pool holds only *[]byte
	buf := (*e)[:0]
	buf = append(buf, `{"batch_id":`...)
	buf = appendString(buf, b.BatchID)
	buf = append(buf, `,"server_id":`...)
	buf = appendString(buf, b.ServerID)
	buf = append(buf, `,"snapshot_version":`...)
	buf = strconv.AppendInt(buf, b.SnapshotVersion, 10)
	if b.Through != "" {
		buf = append(buf, `,"through":`...)
		buf = appendTime(buf, b.Through)
	}
	return digester{windows: len(b.Windows), activity: b.Activity, e: e, buf: buf}
}

// window writes the window w, the i-th of the batch, whose maps' keys,
// sorted, are rejected and custom.
func (d *digester) window(i int, w Window, rejected, custom []string) {
	buf := d.buf
	if i == 0 {
		buf = append(buf, `,"windows":[`...)
	} else {
		buf = append(buf, ',')
	}
	buf = append(buf, `{"start":`...)
	buf = appendTime(buf, w.Start)
	buf = append(buf, `,"flag":`...)
	buf = appendString(buf, w.Flag)
	buf = append(buf, `,"variant":`...)
	buf = appendString(buf, w.Variant)
	buf = append(buf, `,"accepted":`...)
	buf = strconv.AppendInt(buf, w.Accepted, 10)
	if len(w.Rejected) > 0 {
		buf = append(buf, `,"rejected":`...)
		buf = appendCounts(buf, w.Rejected, rejected)
	}
	if len(w.Custom) > 0 {
		buf = append(buf, `,"custom":`...)
		buf = appendCounts(buf, w.Custom, custom)
	}
	if s := w.Sessions; s != nil {
		buf = append(buf, `,"sessions":{"count":`...)
		buf = strconv.AppendInt(buf, s.Count, 10)
		buf = append(buf, `,"actions":`...)
		buf = strconv.AppendInt(buf, s.Actions, 10)
		buf = append(buf, `,"rejects":`...)
		buf = strconv.AppendInt(buf, s.Rejects, 10)
		buf = append(buf, `,"actions_squared":`...)
		buf = strconv.AppendInt(buf, s.ActionsSquared, 10)
		buf = append(buf, `,"rejects_squared":`...)
		buf = strconv.AppendInt(buf, s.RejectsSquared, 10)
		buf = append(buf, `,"actions_rejects":`...)
		buf = strconv.AppendInt(buf, s.ActionsRejects, 10)
		buf = append(buf, '}')
	}
	if len(w.Exposures) > 0 {
		buf = append(buf, `,"exposures":`...)
		buf = appendEvents(buf, w.Exposures)
	}
	d.buf = append(buf, '}')
}

// sum writes the rest of the batch and returns the digest of it all. The
// digester must have been given every window of the batch.
func (d *digester) sum() []byte {
	buf := d.buf
	if d.windows > 0 {
		buf = append(buf, ']')
	}
	if len(d.activity) > 0 {
		buf = append(buf, `,"activity":`...)
		buf = appendEvents(buf, d.activity)
	}
	buf = append(buf, '}')
	d.buf = buf
	sum := sha256.Sum256(buf)
	return sum[:]
}

// free returns the digester's buffer to digestBuffers.
func (d *digester) free() {
	if d.e != nil && cap(d.buf) <= 4*MaxBatchBytes {
		*d.e = d.buf
		digestBuffers.Put(d.e)
	}
	d.e, d.buf = nil, nil
}

// digestBuffers reuses the buffers that digest writes a batch's JSON into.
var digestBuffers = sync.Pool{New: func() any { return new([]byte) }}

func appendEvents(buf []byte, es []PlayerEvent) []byte {
	buf = append(buf, '[')
	for i, e := range es {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"player":`...)
		buf = appendString(buf, e.Player)
		buf = append(buf, `,"at":`...)
		buf = appendTime(buf, e.At)
		buf = append(buf, '}')
	}
	return append(buf, ']')
}

// appendCounts appends m, whose keys sorted are keys, as encoding/json
// does.
func appendCounts(buf []byte, m map[string]int64, keys []string) []byte {
	buf = append(buf, '{')
	for i, k := range keys {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, k)
		buf = append(buf, ':')
		buf = strconv.AppendInt(buf, m[k], 10)
	}
	return append(buf, '}')
}

// appendString appends s as a JSON string exactly as encoding/json.Marshal
// writes it: printable ASCII other than the characters it escapes (the
// quote, the backslash and the HTML-sensitive <, > and &) as it is, and
// anything else through Marshal itself.
func appendString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !plainJSON[s[i]] {
			js, err := json.Marshal(s)
			if err != nil {
				panic("telemetry: marshal a string: " + err.Error()) // a string always marshals
			}
			return append(buf, js...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

// appendTime appends the RFC 3339 time s in its normal form (normalTime)
// as a JSON string.
func appendTime(buf []byte, s string) []byte {
	if isCanonicalUTC(s) { // digits, '-', ':', 'T' and 'Z': nothing to escape
		buf = append(buf, '"')
		buf = append(buf, s...)
		return append(buf, '"')
	}
	return appendString(buf, normalTime(s))
}

// plainJSON tells the bytes that encoding/json writes as they are.
var plainJSON = func() (t [256]bool) {
	for c := 0x20; c <= 0x7e; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// normalTime returns the RFC 3339 time s (of a valid batch) in UTC, in the
// form of time.RFC3339Nano (fractions without trailing zeros), or s itself
// if it does not parse.
func normalTime(s string) string {
	if isCanonicalUTC(s) {
		return s // the common case, already normal
	}
	if s == "" {
		return ""
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// parseCanonicalUTC parses s if it has the form 2006-01-02T15:04:05Z, the
// form of nearly every timestamp of a batch, as time.Parse would, in a
// fraction of its time; ok is false for any other s, valid or not.
func parseCanonicalUTC(s string) (t time.Time, ok bool) {
	if !isCanonicalUTC(s) {
		return time.Time{}, false
	}
	year := int(s[0]-'0')*1000 + int(s[1]-'0')*100 + int(s[2]-'0')*10 + int(s[3]-'0')
	month, day := int(s[5]-'0')*10+int(s[6]-'0'), int(s[8]-'0')*10+int(s[9]-'0')
	hour, minute, second := int(s[11]-'0')*10+int(s[12]-'0'), int(s[14]-'0')*10+int(s[15]-'0'), int(s[17]-'0')*10+int(s[18]-'0')
	if month < 1 || month > 12 || day < 1 || day > daysIn(time.Month(month), year) || hour > 23 || minute > 59 || second > 59 {
		return time.Time{}, false // time.Parse says what is wrong
	}
	secs := daysSinceEpoch(year, month, day)*86400 + int64(hour*3600+minute*60+second)
	return time.Unix(secs, 0).UTC(), true
}

// daysSinceEpoch returns the days from 1970-01-01 to the date, in the
// proleptic Gregorian calendar (Howard Hinnant's days_from_civil): what
// time.Date computes, without its normalization and time zones.
func daysSinceEpoch(year, month, day int) int64 {
	y := int64(year)
	if month <= 2 {
		y--
	}
	era := y / 400
	if y < 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400        // [0, 399]
	mp := int64(month+9) % 12 // March is 0
	doy := (153*mp+2)/5 + int64(day) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

func daysIn(m time.Month, year int) int {
	if m == time.February && year%4 == 0 && (year%100 != 0 || year%400 == 0) {
		return 29
	}
	return [...]int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m-1]
}

// isCanonicalUTC reports whether s has the form 2006-01-02T15:04:05Z: then,
// if it parses, it is its own normal form.
func isCanonicalUTC(s string) bool {
	if len(s) != len("2006-01-02T15:04:05Z") || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z' {
		return false
	}
	for _, i := range [...]int{0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18} {
		if s[i]-'0' > 9 { // bytes below '0' wrap around
			return false
		}
	}
	return true
}

// validator collects the problems of a batch. Its checks take the JSON
// pointer of what they check as a function, called only to report a
// problem.
type validator struct {
	now    time.Time
	fields []solstice.FieldError
}

func (v *validator) add(pointer, msg string) {
	if len(v.fields) < maxFieldErrors {
		v.fields = append(v.fields, solstice.FieldError{Pointer: pointer, Message: msg})
	}
}

func (v *validator) err() error {
	msg := "invalid telemetry batch: nothing was stored"
	if len(v.fields) == maxFieldErrors {
		msg += fmt.Sprintf(" (only the first %d problems are listed)", maxFieldErrors)
	}
	return solstice.Invalid(msg, v.fields...)
}

func (v *validator) id(pointer, s string) {
	switch {
	case s == "":
		v.add(pointer, "is required")
	case len(s) > MaxIDBytes:
		v.add(pointer, fmt.Sprintf("is %d bytes long; at most %d are allowed", len(s), MaxIDBytes))
	default:
		for i := 0; i < len(s); i++ {
			if s[i] < 0x21 || s[i] > 0x7e {
				v.add(pointer, "must be printable ASCII without spaces")
				return
			}
		}
	}
}

func (v *validator) player(s string, at func() string) {
	switch {
	case s == "":
		v.add(at(), "is required")
	case len(s) > MaxPlayerIDBytes:
		v.add(at(), fmt.Sprintf("is %d bytes long; a player id may have at most %d", len(s), MaxPlayerIDBytes))
	case !utf8.ValidString(s):
		v.add(at(), "must be valid UTF-8")
	case strings.IndexByte(s, 0) >= 0:
		// PostgreSQL's text cannot hold NUL: refuse it here, for both
		// databases alike, rather than fail the store.
		v.add(at(), "must not contain NUL (U+0000)")
	}
}

func (v *validator) count(n int64, at func() string) int64 {
	switch {
	case n < 0:
		v.add(at(), "must not be negative")
		return 0
	case n > MaxCount:
		v.add(at(), fmt.Sprintf("is %d; a count of one window may be at most %d", n, MaxCount))
		return 0
	}
	return n
}

// timestamp parses an RFC 3339 time.
func (v *validator) timestamp(s string, at func() string) (time.Time, bool) {
	if t, ok := parseCanonicalUTC(s); ok {
		return t, true
	}
	if s == "" {
		v.add(at(), "is required: an RFC 3339 time such as 2026-03-01T12:34:00Z")
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		v.add(at(), fmt.Sprintf("%q is not an RFC 3339 time such as 2026-03-01T12:34:00Z", s))
		return time.Time{}, false
	}
	return t, true
}

// windowStart checks the start of a window: a whole minute, the window
// ending no further ahead than MaxFutureSkew, starting no longer ago than
// MaxAge.
func (v *validator) windowStart(s string, at func() string) (Minute, bool) {
	t, ok := v.timestamp(s, at)
	if !ok {
		return 0, false
	}
	m := MinuteOf(t)
	switch end := t.Add(WindowLength); {
	case !m.Time().Equal(t):
		v.add(at(), "must be a whole minute (seconds and fractions zero): a window is one minute")
	case end.Sub(v.now) > MaxFutureSkew:
		v.add(at(), fmt.Sprintf("the window ends %s in the future, more than the %s clock skew allowed: check the game server's clock",
			end.Sub(v.now).Round(time.Second), MaxFutureSkew))
	case v.now.Sub(t) > MaxAge:
		v.add(at(), tooOld(s, v.now.Sub(t)))
	default:
		return m, true
	}
	return 0, false
}

func future(s string, d time.Duration) string {
	return fmt.Sprintf("%s is %s in the future, more than the %s clock skew allowed: check the game server's clock", s, d.Round(time.Second), MaxFutureSkew)
}

func tooOld(s string, d time.Duration) string {
	return fmt.Sprintf("%s is %s old; data older than %s is no longer accepted", s, d.Round(time.Second), MaxAge)
}

// sessions checks per-session sums for consistency: with n ≥ x ≥ 0
// integers per session, Σn ≤ Σn² ≤ (Σn)², Σx ≤ Σx² ≤ (Σx)² and
// Σx² ≤ Σnx ≤ Σn². at returns the pointer of a field of the sums.
func (v *validator) sessions(at func(field string) string, s Sessions) SessionSums {
	out := SessionSums{
		Sessions: v.count(s.Count, func() string { return at("count") }),
		N:        v.count(s.Actions, func() string { return at("actions") }),
		X:        v.count(s.Rejects, func() string { return at("rejects") }),
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"actions_squared", s.ActionsSquared}, {"rejects_squared", s.RejectsSquared}, {"actions_rejects", s.ActionsRejects}} {
		if f.v < 0 {
			v.add(at(f.name), "must not be negative")
			return SessionSums{}
		}
	}
	if out.Sessions != s.Count || out.N != s.Actions || out.X != s.Rejects {
		return SessionSums{} // already reported
	}
	n, x := s.Actions, s.Rejects
	switch {
	case s.Count == 0 && (n != 0 || x != 0 || s.ActionsSquared != 0 || s.RejectsSquared != 0 || s.ActionsRejects != 0):
		v.add(at("count"), "is 0, so every sum must be 0 too")
	case x > n:
		v.add(at("rejects"), fmt.Sprintf("is %d, more than the %d actions of the sessions", x, n))
	case s.ActionsSquared < n || s.ActionsSquared > n*n:
		v.add(at("actions_squared"), fmt.Sprintf("is %d; a sum of squares of whole counts summing to %d lies in [%d, %d]", s.ActionsSquared, n, n, n*n))
	case s.RejectsSquared < x || s.RejectsSquared > x*x:
		v.add(at("rejects_squared"), fmt.Sprintf("is %d; a sum of squares of whole counts summing to %d lies in [%d, %d]", s.RejectsSquared, x, x, x*x))
	case s.ActionsRejects < s.RejectsSquared || s.ActionsRejects > s.ActionsSquared:
		v.add(at("actions_rejects"), fmt.Sprintf("is %d; with at most as many rejects as actions per session it lies in [rejects_squared, actions_squared] = [%d, %d]",
			s.ActionsRejects, s.RejectsSquared, s.ActionsSquared))
	default:
		out.NN, out.XX, out.NX = float64(s.ActionsSquared), float64(s.RejectsSquared), float64(s.ActionsRejects)
		return out
	}
	return SessionSums{}
}

const keyRule = "must be a key: 1 to 128 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"

func nameRule(maxLen int) string {
	return fmt.Sprintf("must be 1 to %d of a-z, 0-9, '.', '_', ':', '-', starting with a letter or digit", maxLen)
}

// sortedKeys returns the keys of m, sorted, appended to keys (a buffer that
// spares an allocation for the few keys of a window's maps).
func sortedKeys(m map[string]int64, keys []string) []string {
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
