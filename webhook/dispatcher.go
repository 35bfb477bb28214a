package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/solsticehq/solstice"
)

// UserAgent is the User-Agent of every delivery.
const UserAgent = "solstice-webhooks/1"

// Default Dispatcher settings.
const (
	DefaultInterval    = time.Second      // how often Run looks for due messages
	DefaultTimeout     = 10 * time.Second // of the default HTTP client, per request
	DefaultLease       = 2 * time.Minute  // how long a claimed message is left to its dispatcher
	DefaultBatchSize   = 20               // messages claimed per Tick
	DefaultConcurrency = 8                // requests in flight per Tick
	DefaultGiveUpAfter = 24 * time.Hour   // from queueing to giving up
	// DefaultClientErrorAttempts is how many attempts a message gets when
	// the endpoint keeps answering with a 4xx status (other than 408, 425
	// and 429) or a redirect: the request is likely wrong for good, but a
	// receiver being deployed may answer 404 for a moment.
	DefaultClientErrorAttempts = 3
)

// MaxRetryAfter caps the wait a receiver asks for with Retry-After: a
// longer one is shortened to it.
const MaxRetryAfter = time.Hour

// jitterFraction is the most a delay of the backoff schedule is lengthened
// by at random, as a fraction of it, so that messages that failed together
// do not all come back together.
const jitterFraction = 0.2

const (
	maxResponseBytes = 4 << 10 // read of a response body, to reuse the connection
	maxReasonBody    = 200     // bytes of the response body quoted in a failure's reason
	maxDrainRounds   = 10      // Ticks in a row Run makes while each claims a full batch
	recordTimeout    = 5 * time.Second
)

// DefaultBackoff returns the default backoff schedule: the delays after the
// first, second... failed attempt, the last repeating: 5 s, 30 s, 2 min,
// 10 min, 30 min, 1 h, then every 2 h.
func DefaultBackoff() []time.Duration {
	return []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute,
		30 * time.Minute, time.Hour, 2 * time.Hour}
}

// Dispatcher sends the messages of an Outbox to their endpoints. Several
// dispatchers (one per control-plane replica) may share one outbox: each
// message is claimed by one of them for the lease, and the deliveries of a
// Tick are cut off at half the lease, so no two dispatchers send a message
// at the same time. A dispatcher that stops mid-delivery leaves its messages
// to the others once the lease runs out; a delivery whose outcome could not
// be recorded is sent again, with the same webhook-id.
type Dispatcher struct {
	outbox  Outbox
	targets map[string]target

	client              *http.Client
	clock               solstice.Clock
	log                 *slog.Logger
	interval            time.Duration
	lease               time.Duration
	batch               int
	concurrency         int
	backoff             []time.Duration
	giveUp              time.Duration
	clientErrorAttempts int
	jitter              func() float64

	kick chan struct{}
}

// target is a configured endpoint, its secrets decoded.
type target struct {
	url  string
	keys [][]byte
	err  error // why the endpoint cannot be used, if it cannot
}

// Option configures a Dispatcher.
type Option func(*Dispatcher)

// WithHTTPClient sets the HTTP client (default: one with a DefaultTimeout
// timeout). The dispatcher uses a copy that does not follow redirects: a
// redirect is a failure, as Standard Webhooks advises. A nil c keeps the
// default.
func WithHTTPClient(c *http.Client) Option {
	return func(d *Dispatcher) {
		if c != nil {
			cc := *c
			d.client = &cc
		}
	}
}

// WithClock sets the clock that drives Run (default solstice.WallClock).
func WithClock(c solstice.Clock) Option { return func(d *Dispatcher) { d.clock = c } }

// WithLogger sets the logger of deliveries and of Run's errors (default
// slog.Default()). It never sees a secret or an endpoint's URL.
func WithLogger(l *slog.Logger) Option { return func(d *Dispatcher) { d.log = l } }

// WithInterval sets how often Run calls Tick (default DefaultInterval; a
// non-positive i keeps the default).
func WithInterval(i time.Duration) Option {
	return func(d *Dispatcher) {
		if i > 0 {
			d.interval = i
		}
	}
}

// WithLease sets how long a claimed message is left to this dispatcher
// before another may claim it (default DefaultLease; a non-positive l keeps
// the default). The deliveries of a Tick are cut off at half of it, so it
// should be well over twice the HTTP client's timeout.
func WithLease(l time.Duration) Option {
	return func(d *Dispatcher) {
		if l > 0 {
			d.lease = l
		}
	}
}

// WithBatchSize sets how many messages a Tick claims (default
// DefaultBatchSize; n < 1 keeps the default).
func WithBatchSize(n int) Option {
	return func(d *Dispatcher) {
		if n >= 1 {
			d.batch = n
		}
	}
}

// WithConcurrency sets how many requests a Tick has in flight at most
// (default DefaultConcurrency; n < 1 keeps the default).
func WithConcurrency(n int) Option {
	return func(d *Dispatcher) {
		if n >= 1 {
			d.concurrency = n
		}
	}
}

// WithBackoff sets the delays after the first, second... failed attempt;
// the last repeats until the message is given up (default DefaultBackoff()).
// Each delay is lengthened by a random 0 to 20%. An empty schedule, or one
// with a non-positive delay, keeps the default.
func WithBackoff(schedule ...time.Duration) Option {
	return func(d *Dispatcher) {
		if len(schedule) == 0 {
			return
		}
		for _, s := range schedule {
			if s <= 0 {
				return
			}
		}
		d.backoff = append([]time.Duration(nil), schedule...)
	}
}

// WithGiveUpAfter sets how long after queueing a message that keeps
// failing is given up (default DefaultGiveUpAfter; a non-positive a keeps
// the default). The last attempt is made at that age.
func WithGiveUpAfter(a time.Duration) Option {
	return func(d *Dispatcher) {
		if a > 0 {
			d.giveUp = a
		}
	}
}

// WithClientErrorAttempts sets how many attempts a message gets while its
// endpoint answers with a client error (default
// DefaultClientErrorAttempts; n < 1 keeps the default).
func WithClientErrorAttempts(n int) Option {
	return func(d *Dispatcher) {
		if n >= 1 {
			d.clientErrorAttempts = n
		}
	}
}

// WithJitter sets the source of the backoff's jitter: a function returning
// a number in [0, 1) (values outside are clamped), 0 meaning no jitter
// (default: math/rand/v2's Float64). It is called from several goroutines
// at once. Tests set it to be deterministic. A nil f keeps the default.
func WithJitter(f func() float64) Option {
	return func(d *Dispatcher) {
		if f != nil {
			d.jitter = f
		}
	}
}

// NewDispatcher returns a dispatcher that sends the messages of outbox to
// endpoints (validated beforehand: ParseEndpoints does it). An endpoint
// that is invalid anyway, or a second one of the same name, is logged as
// an error at once; the messages of an invalid endpoint then fail, and are
// retried, until the configuration is fixed or they are given up.
func NewDispatcher(outbox Outbox, endpoints []Endpoint, opts ...Option) *Dispatcher {
	d := &Dispatcher{
		outbox:              outbox,
		targets:             make(map[string]target, len(endpoints)),
		client:              &http.Client{Timeout: DefaultTimeout},
		clock:               solstice.WallClock,
		log:                 slog.Default(),
		interval:            DefaultInterval,
		lease:               DefaultLease,
		batch:               DefaultBatchSize,
		concurrency:         DefaultConcurrency,
		backoff:             DefaultBackoff(),
		giveUp:              DefaultGiveUpAfter,
		clientErrorAttempts: DefaultClientErrorAttempts,
		jitter:              rand.Float64,
		kick:                make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(d)
	}
	d.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, ep := range endpoints {
		if _, dup := d.targets[ep.Name]; dup {
			d.log.Error("webhook endpoint configured twice; the first is used", "endpoint", ep.Name)
			continue
		}
		t := target{url: ep.URL}
		if err := ep.Validate(); err != nil {
			t.err = err
			d.log.Error("invalid webhook endpoint; its messages fail until it is fixed", "endpoint", ep.Name, "err", err)
		} else {
			t.keys, _ = parseSecrets(ep.Secret) // Validate decoded them
		}
		d.targets[ep.Name] = t
	}
	return d
}

// Kick makes Run look for due messages now rather than at its next
// interval: call it after queueing a message, so that it goes out at once.
// It never blocks; kicks while Run is busy are merged into one.
func (d *Dispatcher) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run calls Tick with the clock's time at once, then every interval and
// whenever Kick is called, until ctx ends, logging Tick's errors; it then
// returns nil. While Ticks claim full batches it calls Tick again at once
// (up to 10 times in a row), to work through a backlog.
func (d *Dispatcher) Run(ctx context.Context) error {
	t := time.NewTicker(d.interval)
	defer t.Stop()
	for {
		for range maxDrainRounds {
			n, err := d.tick(ctx, d.clock.Now())
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				d.log.Error("webhook tick", "err", err)
			}
			if err != nil || n < d.batch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-d.kick:
		}
	}
}

// Tick claims the messages due at now (up to the batch size) and attempts
// each, several at a time: a 2xx answer marks it delivered; any other
// outcome is recorded as a failed attempt with its reason, and the message
// is retried after the backoff or given up:
//
//   - 410 Gone gives up at once (the receiver wants no more);
//   - other 4xx statuses but 408, 425 and 429, and redirects, give up once
//     the message has had the client-error attempts (3 by default);
//   - 408, 425, 429, 5xx, timeouts and connection errors are retried; a
//     Retry-After with 429 or 503 delays the retry to at least that long
//     (at most MaxRetryAfter);
//   - a message of an endpoint no longer configured is given up;
//   - a message is given up once it is as old as the give-up age.
//
// Deliveries still running at half the lease are cancelled (and count as
// failed); messages not started by then are left claimed, and are retried
// once the lease runs out. It is one step of Run, and what tests call.
//
// It returns the outbox's errors (claiming the messages, or recording
// outcomes, joined) or ctx's error; failed deliveries are not errors of
// Tick: they are recorded and logged.
func (d *Dispatcher) Tick(ctx context.Context, now time.Time) error {
	_, err := d.tick(ctx, now)
	return err
}

// tick is Tick, also returning how many messages it claimed.
func (d *Dispatcher) tick(ctx context.Context, now time.Time) (int, error) {
	batch, err := d.outbox.Claim(ctx, now, d.lease, d.batch)
	if err != nil {
		return 0, fmt.Errorf("claim webhook messages: %w", err)
	}
	if len(batch) == 0 {
		return 0, nil
	}
	sendCtx, cancel := context.WithTimeout(ctx, d.lease/2)
	defer cancel()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		errs    []error
		skipped int
		sem     = make(chan struct{}, d.concurrency)
	)
	for i, p := range batch {
		acquired := false
		select {
		case sem <- struct{}{}:
			acquired = true
		case <-sendCtx.Done():
		}
		if sendCtx.Err() != nil {
			if acquired {
				<-sem
			}
			skipped = len(batch) - i
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := d.deliver(ctx, sendCtx, p, now); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return len(batch), err
	}
	if skipped > 0 {
		d.log.Warn("webhook messages not attempted before half the lease; they are retried when it runs out",
			"messages", skipped, "lease", d.lease)
	}
	return len(batch), errors.Join(errs...)
}

// outcome is the result of one attempt.
type outcome struct {
	delivered   bool
	reason      string        // why it failed
	final       bool          // give up now
	clientError bool          // give up once the client-error attempts are spent
	retryAfter  time.Duration // the least wait the receiver asked for
	status      int           // the HTTP status, 0 without an answer
}

// deliver attempts p at now and records the outcome. Requests run under
// sendCtx, records under ctx. It returns the outbox's error, or nil; when
// ctx ends during the attempt it records nothing (the message goes to
// another dispatcher after the lease) unless the message was delivered.
func (d *Dispatcher) deliver(ctx, sendCtx context.Context, p Pending, now time.Time) error {
	attempt := p.Attempts + 1
	var o outcome
	t, ok := d.targets[p.Endpoint]
	switch {
	case !ok:
		o = outcome{final: true, reason: fmt.Sprintf("endpoint %q is not configured", p.Endpoint)}
	case t.err != nil:
		o = outcome{reason: fmt.Sprintf("endpoint %q is misconfigured: %v", p.Endpoint, t.err)}
	default:
		if err := checkID(p.ID); err != nil {
			o = outcome{final: true, reason: "the message id " + err.Error()}
			break
		}
		o = d.post(sendCtx, t, p, attempt, now)
	}
	log := d.log.With("id", p.ID, "endpoint", p.Endpoint, "event", p.Event, "attempt", attempt)
	if o.delivered {
		// Record it even if ctx ended meanwhile: a delivery not recorded
		// is sent again.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		defer cancel()
		if err := d.outbox.Delivered(rctx, p.ID, now); err != nil {
			return fmt.Errorf("record the delivery of webhook message %s: %w", p.ID, err)
		}
		log.Info("webhook delivered", "status", o.status)
		return nil
	}
	if ctx.Err() != nil {
		return nil
	}
	next, reason := d.next(p, attempt, now, o)
	if err := d.outbox.Failed(ctx, p.ID, now, reason, next); err != nil {
		return fmt.Errorf("record the failure of webhook message %s: %w", p.ID, err)
	}
	if next.IsZero() {
		log.Error("webhook delivery given up", "reason", reason)
	} else {
		log.Warn("webhook delivery failed", "reason", reason, "next_attempt", next)
	}
	return nil
}

// next returns when to try p again after its failed attempt at now (the
// zero time: give up) and the reason to record.
func (d *Dispatcher) next(p Pending, attempt int, now time.Time, o outcome) (time.Time, string) {
	switch {
	case o.final:
		return time.Time{}, o.reason + "; given up"
	case o.clientError && attempt >= d.clientErrorAttempts:
		return time.Time{}, fmt.Sprintf("%s; given up after %d attempts", o.reason, attempt)
	}
	deadline := p.CreatedAt.Add(d.giveUp)
	if !now.Before(deadline) {
		return time.Time{}, fmt.Sprintf("%s; given up: not delivered within %s of queueing (%d attempts)", o.reason, d.giveUp, attempt)
	}
	base := d.backoff[min(attempt, len(d.backoff))-1]
	delay := base + time.Duration(float64(base)*jitterFraction*min(max(d.jitter(), 0), 1))
	delay = max(delay, o.retryAfter)
	next := now.Add(delay)
	if next.After(deadline) {
		next = deadline // one last attempt at the give-up age
	}
	return next, o.reason
}

// post sends p to t and classifies the answer.
func (d *Dispatcher) post(ctx context.Context, t target, p Pending, attempt int, now time.Time) outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(p.Payload))
	if err != nil {
		return outcome{reason: "build the request: " + err.Error()}
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", UserAgent)
	h.Set(HeaderID, p.ID)
	h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(HeaderSignature, signWith(t.keys, p.ID, now, p.Payload))
	if validEvent(p.Event) {
		h.Set(HeaderEvent, p.Event)
	}
	h.Set(HeaderAttempt, strconv.Itoa(attempt))
	resp, err := d.client.Do(req)
	if err != nil {
		return outcome{reason: describe(err, ctx.Err() != nil)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	return classify(resp.StatusCode, resp.Header, body, now)
}

// classify turns an HTTP answer into an outcome.
func classify(code int, h http.Header, body []byte, now time.Time) outcome {
	o := outcome{status: code, reason: fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))}
	if s := quote(body); s != "" {
		o.reason += ": " + s
	}
	switch {
	case code >= 200 && code <= 299:
		o.delivered = true
	case code == http.StatusGone:
		o.final = true
		o.reason += " (the receiver wants no more deliveries: remove the endpoint or fix its URL)"
	case code >= 300 && code <= 399:
		o.clientError = true
		o.reason += " (redirects are not followed: configure the final URL)"
	case code == http.StatusTooManyRequests:
		o.retryAfter = retryAfter(h, now)
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly:
	case code >= 400 && code <= 499:
		o.clientError = true
	case code == http.StatusServiceUnavailable:
		o.retryAfter = retryAfter(h, now)
	}
	return o
}

// retryAfter returns the wait asked for by a Retry-After header (seconds or
// an HTTP date), at most MaxRetryAfter, or 0 if there is none that makes
// sense.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil {
		if secs > uint64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), MaxRetryAfter)
	}
	return 0
}

// describe says why a request got no answer, without the URL (which may
// hold a token) that net/http puts in its errors; cut says whether the
// Tick's deadline (half the lease) cancelled it.
func describe(err error, cut bool) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	switch {
	case cut:
		return "no answer before the dispatcher's deadline (half the lease): " + err.Error()
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "timed out: " + err.Error()
	}
	return "request failed: " + err.Error()
}

// quote returns the start of a response body fit for a log line and the
// stored reason: valid UTF-8, control characters as spaces, at most
// maxReasonBody bytes.
func quote(body []byte) string {
	s := strings.ToValidUTF8(string(body), "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxReasonBody {
		n := maxReasonBody
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = strings.TrimSpace(s[:n]) + "…"
	}
	return s
}
