package sdk

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/telemetry"
)

const (
	// reportTimeout bounds one POST of a batch.
	reportTimeout = 30 * time.Second
	// maxRetryAfter caps how long a Retry-After may hold a batch back.
	maxRetryAfter = 10 * time.Minute
	// batchBudget is what the packer allows the windows and events of one
	// batch to take, in bytes of JSON: the limit less room for the
	// batch's own fields. A batch that still comes out larger is split.
	batchBudget = telemetry.MaxBatchBytes - 4<<10
)

// outBatch is a batch cut and waiting to be acknowledged. Its id and body
// are fixed when it is cut: every retry sends the same bytes, so that a
// batch the control plane received but whose answer was lost is
// acknowledged as a duplicate, not counted twice.
type outBatch struct {
	id       string
	body     []byte
	windows  int
	events   int
	oldest   telemetry.Minute // the oldest window or event in it; 0 for a heartbeat
	attempts int
	sending  bool // a flush is sending it: not to be dropped meanwhile
}

// Flush ships now: what waits from an earlier failed flush first, then
// every minute that is over and the activity recorded so far, with
// through set to the current minute (a heartbeat batch holding only
// through when there is nothing else, once a minute), split into several
// batches where the contract's limits require it. Each batch is sent
// once; Run retries. It returns nil when every batch was acknowledged;
// else the errors, joined: a *solstice.Error for each batch the control
// plane refused for good (KindInvalid for 400, 413, 415 and 422, with the
// problem's field errors; KindUnauthorized, KindForbidden, KindNotFound,
// KindConflict for 401, 403, 404, 409), dropped and counted; and the
// failure that stopped it, whose batch waits for the next flush: ctx.Err(),
// a network error, or a *solstice.Error of KindRateLimited (429) or
// KindInternal (408, 5xx).
func (r *Reporter) Flush(ctx context.Context) error {
	_, _, err := r.flush(ctx, false)
	return err
}

// FlushAll ships everything recorded so far, the minute under way
// included (through is then the end of that minute), retrying failed
// batches with backoff until they are acknowledged or ctx ends (as soon as
// the next attempt would come after ctx's deadline). Call it when the game
// server stops, with a deadline; Run does. What it returns is Flush's.
// Recording may go on afterwards: data for the minute it shipped is then
// sent late, in a later batch.
func (r *Reporter) FlushAll(ctx context.Context) error {
	failures := 0
	for {
		retryAfter, transient, err := r.flush(ctx, true)
		if !transient || ctx.Err() != nil {
			return err
		}
		failures++
		d := r.backoff(failures, retryAfter)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d {
			return err
		}
		if !sleepCtx(ctx, d) {
			return err
		}
	}
}

// Run ships every flush interval (WithFlushInterval) until ctx ends; a
// flush that failed is retried sooner or later, after an exponential
// backoff with full jitter (WithRetryBackoff, at least the control
// plane's Retry-After). When ctx ends, it ships what is left with
// FlushAll, for at most WithFinalFlushTimeout, and returns FlushAll's
// error: nil when everything recorded was acknowledged. No failure stops
// it before: failures are logged and counted in Stats. Run one loop per
// reporter.
func (r *Reporter) Run(ctx context.Context) error {
	failures := 0
	wait := r.set.interval
	for sleepCtx(ctx, wait) {
		retryAfter, transient, _ := r.flush(ctx, false)
		if ctx.Err() != nil {
			break
		}
		if transient {
			failures++
			wait = r.backoff(failures, retryAfter)
		} else {
			failures = 0
			wait = r.set.interval
		}
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.set.finalTimeout)
	defer cancel()
	return r.FlushAll(fctx)
}

// sleepCtx waits d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// backoff returns the wait after the n-th failed flush in a row.
func (r *Reporter) backoff(n int, retryAfter time.Duration) time.Duration {
	minimum, ceil := r.set.minBackoff, r.set.maxBackoff
	if n >= 1 && n < 32 {
		if b := minimum << (n - 1); b > 0 && b < ceil {
			ceil = b
		}
	}
	d := time.Duration(rand.Int64N(int64(ceil) + 1)) //nolint:gosec // jitter, not a secret
	// NOTE: Retry-After is honoured beyond MaxBackoff (up to
	// maxRetryAfter): sending sooner than the control plane asked only
	// earns another 429.
	return max(d, minimum, min(retryAfter, maxRetryAfter))
}

// flush is Flush, and with final FlushAll's single pass. transient
// reports that it stopped on a failure worth retrying; retryAfter is the
// control plane's Retry-After, if any.
func (r *Reporter) flush(ctx context.Context, final bool) (retryAfter time.Duration, transient bool, err error) {
	r.sendMu.Lock()
	defer r.sendMu.Unlock()
	var errs []error
	cut := false
	for {
		r.mu.Lock()
		r.dropStaleLocked(r.clock.Now())
		var b *outBatch
		if len(r.queue) > 0 {
			b = r.queue[0]
			b.sending = true
		}
		r.mu.Unlock()
		if b == nil {
			if cut {
				return 0, false, errors.Join(errs...)
			}
			// Cut only when nothing waits: while the control plane is
			// unreachable, new data keeps merging into its windows
			// rather than piling up as small batches.
			cut = true
			r.cut(final)
			continue
		}
		res := r.post(ctx, b)
		if resent := r.settle(b, res); resent {
			continue
		}
		switch {
		case res.err == nil:
		case res.transient:
			return res.retryAfter, true, errors.Join(append(errs, res.err)...)
		default:
			errs = append(errs, res.err)
		}
	}
}

// dropStaleLocked drops the queued batches (not being sent) and the open
// data too old for the control plane to accept.
func (r *Reporter) dropStaleLocked(now time.Time) {
	limit := telemetry.MinuteOf(now.Add(-telemetry.MaxAge + ageMargin))
	var windows, events int64
	for i := 0; i < len(r.queue); {
		if b := r.queue[i]; !b.sending && b.oldest != 0 && b.oldest < limit {
			r.removeQueuedLocked(i)
			windows += int64(b.windows)
			events += int64(b.events)
			continue
		}
		i++
	}
	w, e := r.dropMinutesLocked(limit)
	windows, events = windows+w, events+e
	if windows+events > 0 {
		r.stats.DroppedWindows += windows
		r.stats.DroppedEvents += events
		r.log.Warn("telemetry older than the control plane accepts was dropped", "windows", windows, "events", events, "max_age", telemetry.MaxAge)
	}
}

// cutData is what one cut takes out of the open state.
type cutData struct {
	windows  []*window
	activity []playerEvent
	through  telemetry.Minute
	version  int64
}

// cut takes the minutes before the current one (with final, the current
// one too) and the activity out of the open state, packs them into
// batches and queues them.
func (r *Reporter) cut(final bool) {
	now := r.clock.Now()
	end := telemetry.MinuteOf(now)
	if final {
		end++
	}
	var c cutData
	if h := r.client.cur.Load(); h != nil {
		c.version = h.version
	}
	r.mu.Lock()
	for k, w := range r.windows {
		if k.minute < end {
			delete(r.windows, k)
			w.cut = true
			w.arm.open--
			c.windows = append(c.windows, w)
			r.openEvents -= len(w.exposures)
		}
	}
	c.activity = r.activity
	r.activity = make([]playerEvent, 0, max(64, len(c.activity)))
	r.openEvents -= len(c.activity)
	heartbeat := end > r.through
	c.through = max(end, r.through)
	r.through = c.through
	for k, a := range r.arms {
		if a.refs == 0 && a.open == 0 {
			delete(r.arms, k)
		}
	}
	r.mu.Unlock()

	var batches []telemetry.Batch
	if len(c.windows) > 0 || len(c.activity) > 0 {
		batches = pack(c)
	} else if heartbeat {
		batches = []telemetry.Batch{{Through: c.through.Time().Format(time.RFC3339)}}
	}
	out := make([]*outBatch, 0, len(batches))
	for _, b := range batches {
		out = append(out, r.seal(b, c.version)...)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range out {
		r.queue = append(r.queue, b)
		r.queuedWins += b.windows
		r.queuedEvs += b.events
	}
	if r.openEvents+r.queuedEvs > r.set.maxEvents || len(r.windows)+r.queuedWins > r.set.maxWindows {
		r.shedLocked()
	}
}

// seal gives b its ids and encodes it: one batch, or more if its JSON is
// over the limit after all.
func (r *Reporter) seal(b telemetry.Batch, version int64) []*outBatch {
	b.ServerID, b.SnapshotVersion = r.client.cfg.ServerID, version
	r.mu.Lock()
	r.seq++
	b.BatchID = r.prefix + strconv.FormatInt(r.seq, 10)
	r.mu.Unlock()
	body, err := json.Marshal(b)
	if err != nil {
		panic("sdk: marshal a telemetry batch: " + err.Error()) // strings, numbers and maps of them
	}
	if len(body) > telemetry.MaxBatchBytes {
		if x, y, ok := halve(b); ok {
			return append(r.seal(x, version), r.seal(y, version)...)
		}
	}
	ob := &outBatch{id: b.BatchID, body: body, windows: len(b.Windows), events: len(b.Activity)}
	for _, w := range b.Windows {
		ob.events += len(w.Exposures)
		if m := minuteOfRFC3339(w.Start); ob.oldest == 0 || m < ob.oldest {
			ob.oldest = m
		}
	}
	for _, e := range b.Activity {
		if m := minuteOfRFC3339(e.At); ob.oldest == 0 || m < ob.oldest {
			ob.oldest = m
		}
	}
	return []*outBatch{ob}
}

func minuteOfRFC3339(s string) telemetry.Minute {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0
	}
	return telemetry.MinuteOf(t)
}

// halve splits b in two batches of about half its windows and activity
// each, the second with b's through (the first is sent first); false if b
// cannot be split.
func halve(b telemetry.Batch) (telemetry.Batch, telemetry.Batch, bool) {
	var x telemetry.Batch
	y := telemetry.Batch{Through: b.Through}
	switch {
	case len(b.Windows) > 1:
		h := len(b.Windows) / 2
		x.Windows, y.Windows = b.Windows[:h], b.Windows[h:]
		y.Activity = b.Activity
	case len(b.Activity) > 1:
		h := len(b.Activity) / 2
		x.Windows, x.Activity, y.Activity = b.Windows, b.Activity[:h], b.Activity[h:]
	case len(b.Windows) == 1 && len(b.Activity) == 1:
		x.Windows, y.Activity = b.Windows, b.Activity
	case len(b.Windows) == 1 && len(b.Windows[0].Exposures) > 1:
		w := b.Windows[0]
		h := len(w.Exposures) / 2
		wx, wy := w, telemetry.Window{Start: w.Start, Flag: w.Flag, Variant: w.Variant}
		wx.Exposures, wy.Exposures = w.Exposures[:h], w.Exposures[h:]
		x.Windows, y.Windows = []telemetry.Window{wx}, []telemetry.Window{wy}
	default:
		return b, telemetry.Batch{}, false
	}
	return x, y, true
}

// piece is a window, or part of one, as it goes into a batch.
type piece struct {
	w      telemetry.Window
	key    winKey
	events int
	size   int // estimated bytes of JSON
}

// pack turns a cut into batches within the contract's limits: at most
// telemetry.MaxWindows windows, telemetry.MaxPlayerEvents exposures and
// activity entries, and about batchBudget bytes each, and one window per
// flag, variant and minute in a batch. Windows go in order of minute, so
// that the earlier batches hold the older minutes; through goes on the
// last batch only.
//
// NOTE: a batch without through moves the server's end to its newest
// window, which may claim a minute whose other windows are in the next
// batch of the same cut. The next batch follows at once, and the claim is
// only early by the time between the two.
func pack(c cutData) []telemetry.Batch {
	slices.SortFunc(c.windows, func(a, b *window) int {
		return cmp.Or(cmp.Compare(a.minute, b.minute), cmp.Compare(a.arm.key.flag, b.arm.key.flag), cmp.Compare(a.arm.key.variant, b.arm.key.variant))
	})
	type builder struct {
		b                     telemetry.Batch
		windows, events, size int
		keys                  map[winKey]bool
	}
	var out []telemetry.Batch
	cur := builder{keys: map[winKey]bool{}}
	next := func() {
		if len(cur.b.Windows) > 0 || len(cur.b.Activity) > 0 {
			out = append(out, cur.b)
		}
		cur = builder{keys: map[winKey]bool{}}
	}
	for _, w := range c.windows {
		for _, p := range pieces(w) {
			if cur.windows+1 > telemetry.MaxWindows || cur.events+p.events > telemetry.MaxPlayerEvents ||
				cur.size+p.size > batchBudget || cur.keys[p.key] {
				next()
			}
			cur.b.Windows = append(cur.b.Windows, p.w)
			cur.windows++
			cur.events += p.events
			cur.size += p.size
			cur.keys[p.key] = true
		}
	}
	for _, e := range c.activity {
		pe := toEvent(e)
		size := eventSize(pe)
		if cur.events+1 > telemetry.MaxPlayerEvents || cur.size+size > batchBudget {
			next()
		}
		cur.b.Activity = append(cur.b.Activity, pe)
		cur.events++
		cur.size += size
	}
	next()
	if len(out) > 0 {
		out[len(out)-1].Through = c.through.Time().Format(time.RFC3339)
	}
	return out
}

// pieces turns a window into one or more: further pieces carry what one
// window of a batch cannot hold, a count over telemetry.MaxCount or
// exposures past a batch's limits.
func pieces(w *window) []piece {
	key := winKey{w.arm, w.minute}
	base := telemetry.Window{Start: w.minute.Time().Format(time.RFC3339), Flag: w.arm.key.flag, Variant: w.arm.key.variant}
	overhead := 160 + jsonLen(base.Flag) + jsonLen(base.Variant)
	var out []piece

	accepted := w.accepted
	rejected, custom := w.rejected, w.custom
	for first := true; first || accepted > 0 || len(rejected) > 0 || len(custom) > 0; first = false {
		p := piece{w: base, key: key, size: overhead}
		p.w.Accepted = min(accepted, telemetry.MaxCount)
		accepted -= p.w.Accepted
		p.w.Rejected, rejected = takeCounts(rejected, &p.size)
		p.w.Custom, custom = takeCounts(custom, &p.size)
		if first && w.sessions.Count > 0 {
			s := w.sessions
			p.w.Sessions = &s
			p.size += 160
		}
		out = append(out, p)
	}

	// Exposures fill the first piece, then pieces of their own.
	p := &out[0]
	for _, e := range w.exposures {
		pe := toEvent(e)
		size := eventSize(pe)
		if p.events+1 > telemetry.MaxPlayerEvents || p.size+size > batchBudget {
			out = append(out, piece{w: base, key: key, size: overhead})
			p = &out[len(out)-1]
		}
		p.w.Exposures = append(p.w.Exposures, pe)
		p.events++
		p.size += size
	}
	return out
}

// takeCounts returns the counts of m, each at most telemetry.MaxCount,
// and what is left over (nil when nothing is), adding their estimated
// size to size.
func takeCounts(m map[string]int64, size *int) (taken, left map[string]int64) {
	if len(m) == 0 {
		return nil, nil
	}
	taken = make(map[string]int64, len(m))
	for k, v := range m {
		n := min(v, telemetry.MaxCount)
		taken[k] = n
		*size += jsonLen(k) + 12
		if v > n {
			if left == nil {
				left = map[string]int64{}
			}
			left[k] = v - n
		}
	}
	return taken, left
}

func toEvent(e playerEvent) telemetry.PlayerEvent {
	return telemetry.PlayerEvent{Player: e.player, At: time.Unix(0, e.at).UTC().Format(time.RFC3339Nano)}
}

func eventSize(e telemetry.PlayerEvent) int { return 20 + jsonLen(e.Player) + jsonLen(e.At) }

// jsonLen is at least the length of s as a JSON string: encoding/json
// writes control characters and <, >, & as six-byte escapes, '"' and '\'
// as two, and U+2028 and U+2029 (three bytes) as six.
func jsonLen(s string) int {
	n := 2
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			n += 6
		case c == '"' || c == '\\':
			n += 2
		case c >= 0x80:
			n += 2
		default:
			n++
		}
	}
	return n
}

// postResult is the outcome of one attempt to send a batch.
type postResult struct {
	err        error
	transient  bool // worth retrying: the batch stays queued
	canceled   bool // the caller's context ended: not a failure of the control plane
	tooLarge   bool // 413: nothing was stored, so the batch may be split
	duplicate  bool
	retryAfter time.Duration
}

// post sends b once.
func (r *Reporter) post(ctx context.Context, b *outBatch) postResult {
	rctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, r.url, bytes.NewReader(b.body))
	if err != nil { // cannot happen: New checked BaseURL
		return postResult{err: fmt.Errorf("send telemetry batch %s: %w", b.id, err)}
	}
	req.Header.Set("Authorization", "Bearer "+r.client.cfg.ServerKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	res, err := r.client.cfg.HTTPClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return postResult{err: ctx.Err(), transient: true, canceled: true}
		}
		return postResult{err: fmt.Errorf("send telemetry batch %s: %w", b.id, err), transient: true}
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
	code := res.StatusCode
	if code >= 200 && code < 300 {
		var ack struct {
			Duplicate bool `json:"duplicate"`
		}
		_ = json.Unmarshal(body, &ack) // an acknowledgement without a body is still one
		return postResult{duplicate: ack.Duplicate}
	}
	out := postResult{err: r.refusal(b.id, code, body)}
	switch {
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 || code < 400:
		out.transient = true
		out.retryAfter = parseRetryAfter(res.Header.Get("Retry-After"))
	case code == http.StatusRequestEntityTooLarge:
		out.tooLarge = true
	}
	return out
}

// refusal turns an error answer into a *solstice.Error of the matching
// kind, with the problem document's detail and field errors.
func (r *Reporter) refusal(id string, code int, body []byte) error {
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
		Errors []struct {
			Pointer string `json:"pointer"`
			Detail  string `json:"detail"`
		} `json:"errors"`
	}
	msg := ""
	if json.Unmarshal(body, &p) == nil {
		msg = cmp.Or(p.Detail, p.Title)
	}
	msg = cmp.Or(msg, http.StatusText(code))
	var kind solstice.Kind
	switch {
	case code == http.StatusUnauthorized:
		kind = solstice.KindUnauthorized
	case code == http.StatusForbidden:
		kind = solstice.KindForbidden
	case code == http.StatusNotFound:
		kind = solstice.KindNotFound
	case code == http.StatusConflict:
		kind = solstice.KindConflict
	case code == http.StatusTooManyRequests:
		kind = solstice.KindRateLimited
	case code >= 400 && code < 500 && code != http.StatusRequestTimeout:
		kind = solstice.KindInvalid
	default:
		kind = solstice.KindInternal
	}
	err := solstice.Errorf(kind, "telemetry batch %s: the control plane answered %d: %s", id, code, msg)
	for _, f := range p.Errors {
		err.Fields = append(err.Fields, solstice.FieldError{Pointer: f.Pointer, Message: f.Detail})
	}
	return err
}

// settle records the outcome of sending b, the head of the queue. It
// returns true when b was too large and its halves took its place.
func (r *Reporter) settle(b *outBatch, res postResult) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	b.sending = false
	if b.attempts > 0 {
		r.stats.Retries++
	}
	b.attempts++
	i := slices.Index(r.queue, b)
	switch {
	case res.err == nil:
		r.removeQueuedLocked(i)
		r.stats.Batches++
		if res.duplicate {
			r.stats.Duplicates++
		}
		r.stats.LastSuccess, r.stats.LastError = r.clock.Now(), nil
		if r.failing {
			r.failing = false
			r.log.Info("telemetry delivered again", "batch", b.id)
		}
	case res.canceled:
		// Shutting down: the batch waits (it may have arrived; a retry
		// keeps its id).
	case res.transient:
		r.stats.Failures++
		r.stats.LastError = res.err
		if !r.failing {
			r.failing = true
			r.log.Warn("sending telemetry failed; retrying with backoff", "batch", b.id, "err", res.err)
		} else {
			r.log.Debug("sending telemetry failed", "batch", b.id, "err", res.err, "attempts", b.attempts)
		}
	case res.tooLarge:
		// NOTE: a 413 stores nothing, so the halves may go under new ids
		// without counting anything twice.
		var whole telemetry.Batch
		if err := json.Unmarshal(b.body, &whole); err == nil {
			if x, y, ok := halve(whole); ok {
				r.removeQueuedLocked(i)
				r.mu.Unlock()
				halves := append(r.seal(x, whole.SnapshotVersion), r.seal(y, whole.SnapshotVersion)...)
				r.mu.Lock()
				r.queue = append(halves, r.queue...)
				for _, h := range halves {
					r.queuedWins += h.windows
					r.queuedEvs += h.events
				}
				r.log.Warn("telemetry batch over the control plane's size limit: sending it in two", "batch", b.id, "size", len(b.body))
				return true
			}
		}
		fallthrough
	default:
		r.removeQueuedLocked(i)
		r.stats.Refused++
		r.stats.DroppedWindows += int64(b.windows)
		r.stats.DroppedEvents += int64(b.events)
		r.stats.LastError, r.stats.LastRefusal = res.err, res.err
		r.log.Error("the control plane refused a telemetry batch; dropped it", "batch", b.id,
			"windows", b.windows, "events", b.events, "err", res.err, "problems", solstice.ErrorFields(res.err))
	}
	return false
}
