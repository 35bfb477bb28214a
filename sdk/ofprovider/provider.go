package ofprovider

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/open-feature/go-sdk/openfeature"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/sdk"
	"github.com/solsticehq/solstice/snapshot"
)

// Name is the provider's name in OpenFeature metadata.
const Name = "Solstice"

// DefaultInitTimeout bounds Init when the OpenFeature SDK calls it without
// a context.
const DefaultInitTimeout = 30 * time.Second

// Provider is an OpenFeature provider over an sdk.Client.
type Provider struct {
	client      *sdk.Client
	hooks       []openfeature.Hook
	reporter    *sdk.Reporter // Track's; nil: Track does nothing
	initTimeout time.Duration
	events      chan openfeature.Event

	mu          sync.Mutex
	initialized bool // Init returned: events are forwarded from now on
	initFailed  bool // ...with an error: the first snapshot is announced as READY
	queue       []openfeature.Event
	wake        chan struct{} // signals the pump that queue is not empty
	stop        chan struct{} // closed by Shutdown to stop the pump
	pumpDone    chan struct{}
	unsubscribe func()
}

var (
	_ openfeature.FeatureProvider          = (*Provider)(nil)
	_ openfeature.ContextAwareStateHandler = (*Provider)(nil)
	_ openfeature.EventHandler             = (*Provider)(nil)
)

// Option configures a Provider.
type Option func(*Provider)

// WithHooks sets the provider hooks OpenFeature runs around every
// evaluation through this provider.
func WithHooks(hooks ...openfeature.Hook) Option {
	return func(p *Provider) { p.hooks = append(p.hooks, hooks...) }
}

// WithInitTimeout sets how long Init (without a context) waits for the
// first snapshot; default DefaultInitTimeout.
func WithInitTimeout(d time.Duration) Option {
	return func(p *Provider) {
		if d > 0 {
			p.initTimeout = d
		}
	}
}

// New returns a provider evaluating from client's snapshots. The provider
// takes over client's polling: Init starts it if needed, Shutdown stops it.
func New(client *sdk.Client, opts ...Option) *Provider {
	p := &Provider{
		client:      client,
		initTimeout: DefaultInitTimeout,
		events:      make(chan openfeature.Event, 16),
		wake:        make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Metadata returns the provider's name.
func (p *Provider) Metadata() openfeature.Metadata { return openfeature.Metadata{Name: Name} }

// Hooks returns the hooks set with WithHooks.
func (p *Provider) Hooks() []openfeature.Hook { return p.hooks }

// EventChannel returns the channel of the provider's events.
func (p *Provider) EventChannel() <-chan openfeature.Event { return p.events }

// Init is InitWithContext with a timeout of WithInitTimeout; it returns
// its errors.
func (p *Provider) Init(evalCtx openfeature.EvaluationContext) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.initTimeout)
	defer cancel()
	return p.InitWithContext(ctx, evalCtx)
}

// InitWithContext starts the client's polling unless it runs already and
// waits for its first snapshot, from the control plane or the
// last-known-good file. It returns nil once one is held (OpenFeature then
// reports READY, and STALE follows if the snapshot is stale), or
// sdk.Client.WaitReady's error: ctx ended first, or the control plane
// refused the client's configuration. Polling goes on after an error; the
// first snapshot is then announced with PROVIDER_READY.
func (p *Provider) InitWithContext(ctx context.Context, _ openfeature.EvaluationContext) error {
	p.mu.Lock()
	if p.stop == nil {
		p.stop, p.pumpDone = make(chan struct{}), make(chan struct{})
		p.initialized, p.initFailed = false, false
		p.unsubscribe = p.client.Subscribe(p.onEvent)
		go p.pump(p.stop, p.pumpDone)
	}
	p.mu.Unlock()

	// Polling outlives Init's context: it runs until Shutdown.
	p.client.Start(context.WithoutCancel(ctx))
	err := p.client.WaitReady(ctx)

	p.mu.Lock()
	defer p.mu.Unlock()
	p.initialized, p.initFailed = true, err != nil
	if err == nil && p.client.Status() != sdk.StatusReady {
		// OpenFeature reports READY when Init returns, and has no way for a
		// provider to initialize into STALE or ERROR: report the state
		// just after.
		go p.reportAfterInit(p.stop)
	}
	return err
}

// initSettle is how long after Init returns the provider reports a state
// other than READY.
//
// NOTE: the OpenFeature SDK emits its READY from the goroutine that called
// Init, right after it returns, while provider events travel through two
// more goroutines; reported at once, a STALE could overtake that READY and
// be overwritten by it. The delay makes the order certain in practice;
// the SDK offers no signal to wait for instead.
const initSettle = 50 * time.Millisecond

// reportAfterInit queues STALE or ERROR if the client is still in that
// state once Init's READY has been processed.
func (p *Provider) reportAfterInit(stop chan struct{}) {
	t := time.NewTimer(initSettle)
	defer t.Stop()
	select {
	case <-stop:
		return
	case <-t.C:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stop != stop {
		return // shut down meanwhile
	}
	switch p.client.Status() {
	case sdk.StatusStale:
		p.enqueueLocked(openfeature.ProviderStale, "the snapshot is stale", nil)
	case sdk.StatusError:
		p.enqueueLocked(openfeature.ProviderError, "the control plane refuses this client's configuration", nil)
	}
}

// Shutdown is ShutdownWithContext without a deadline.
func (p *Provider) Shutdown() { _ = p.ShutdownWithContext(context.Background()) }

// ShutdownWithContext stops forwarding events and stops the client's
// polling. It returns ctx.Err() if ctx ends before polling has stopped
// (it then stops in the background).
func (p *Provider) ShutdownWithContext(ctx context.Context) error {
	p.mu.Lock()
	stop, done, unsub := p.stop, p.pumpDone, p.unsubscribe
	p.stop, p.pumpDone, p.unsubscribe = nil, nil, nil
	p.queue = nil
	p.mu.Unlock()
	if unsub != nil {
		unsub()
	}
	if stop != nil {
		close(stop)
		<-done
	}
	closed := make(chan struct{})
	go func() {
		_ = p.client.Close()
		close(closed)
	}()
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// onEvent translates a client event. It runs on the client's polling
// goroutine, so it only queues.
func (p *Provider) onEvent(e sdk.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.initialized {
		return // Init reports the state it finds
	}
	switch e.Kind {
	case sdk.EventReady:
		if p.initFailed { // OpenFeature is in ERROR: the first snapshot makes it READY
			p.initFailed = false
			p.enqueueLocked(openfeature.ProviderReady, e.Message, nil)
		}
	case sdk.EventRecovered:
		p.enqueueLocked(openfeature.ProviderReady, e.Message, nil)
	case sdk.EventConfigurationChanged:
		p.enqueueLocked(openfeature.ProviderConfigChange, e.Message, e.FlagChanges)
	case sdk.EventStale:
		p.enqueueLocked(openfeature.ProviderStale, e.Message, nil)
	case sdk.EventError:
		p.enqueueLocked(openfeature.ProviderError, e.Message, nil)
	case sdk.EventRejected:
		// NOTE: a refused snapshot changes nothing the application sees
		// (the held one is kept), so it is no OpenFeature event; the client
		// logs and counts it, and STALE follows if no good one comes.
	}
}

func (p *Provider) enqueueLocked(t openfeature.EventType, msg string, changes []string) {
	if p.stop == nil {
		return // shut down
	}
	e := openfeature.Event{
		ProviderName:         Name,
		EventType:            t,
		ProviderEventDetails: openfeature.ProviderEventDetails{Message: msg, FlagChanges: changes},
	}
	if t == openfeature.ProviderError {
		e.ErrorCode = openfeature.GeneralCode
	}
	p.queue = append(p.queue, e)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// pump forwards queued events to the event channel, in order, without
// ever blocking the client's polling goroutine.
func (p *Provider) pump(stop, done chan struct{}) {
	defer close(done)
	for {
		select {
		case <-stop:
			return
		case <-p.wake:
		}
		for {
			p.mu.Lock()
			if len(p.queue) == 0 {
				p.mu.Unlock()
				break
			}
			e := p.queue[0]
			p.queue = p.queue[1:]
			p.mu.Unlock()
			select {
			case p.events <- e:
			case <-stop:
				return
			}
		}
	}
}

// compiled returns the flag set to evaluate against: the one pinned in ctx
// (by this provider's client), else the client's current one.
func (p *Provider) compiled(ctx context.Context) *flags.Compiled {
	if pin, ok := sdk.PinnedFrom(ctx); ok && pin.Client() == p.client {
		return pin.Flags()
	}
	return p.client.Flags()
}

// resolve evaluates key as type t, fills d with the variant, reason and
// resolution error, and returns the value served, nil when none can be.
// It fills d in place: evaluation results are large, and copying them
// would double the cost of an evaluation.
func (p *Provider) resolve(ctx context.Context, key string, t flags.Type, flat openfeature.FlattenedContext, d *openfeature.ProviderResolutionDetail) any {
	c := p.compiled(ctx)
	if c == nil {
		p.notReady(d)
		return nil
	}
	r := flags.EvaluateAs(c, key, t, flags.Context(flat))
	d.Reason, d.Variant = openfeature.Reason(r.Reason), r.Variant
	switch r.ErrorCode {
	case "":
	case flags.CodeFlagNotFound:
		d.ResolutionError = openfeature.NewFlagNotFoundResolutionError(r.ErrorMessage)
	case flags.CodeTypeMismatch:
		d.ResolutionError = openfeature.NewTypeMismatchResolutionError(r.ErrorMessage)
	case flags.CodeTargetingKeyMissing:
		d.ResolutionError = openfeature.NewTargetingKeyMissingResolutionError(r.ErrorMessage)
	case flags.CodeInvalidContext:
		d.ResolutionError = openfeature.NewInvalidContextResolutionError(r.ErrorMessage)
	case flags.CodeParseError:
		d.ResolutionError = openfeature.NewParseErrorResolutionError(r.ErrorMessage)
	default:
		d.ResolutionError = openfeature.NewGeneralResolutionError(r.ErrorMessage)
	}
	if r.Reason == flags.ReasonError {
		return nil
	}
	return r.Value
}

// notReady is the answer while no snapshot is held: PARSE_ERROR if the
// last snapshot received could not be read, else PROVIDER_NOT_READY.
func (p *Provider) notReady(d *openfeature.ProviderResolutionDetail) {
	d.Reason = openfeature.ErrorReason
	last := p.client.Stats().LastError
	if errors.Is(last, snapshot.ErrMalformed) || errors.Is(last, snapshot.ErrSchema) {
		d.ResolutionError = openfeature.NewParseErrorResolutionError(fmt.Sprintf("no snapshot of %q could be read", p.client.Environment()), last)
	} else {
		d.ResolutionError = openfeature.NewProviderNotReadyResolutionError(fmt.Sprintf("no snapshot of %q is held yet", p.client.Environment()))
	}
}

// BooleanEvaluation evaluates a boolean flag. Problems are reported in the
// returned detail's resolution error (see the package documentation), with
// defaultValue as the value.
func (p *Provider) BooleanEvaluation(ctx context.Context, flag string, defaultValue bool, flat openfeature.FlattenedContext) (out openfeature.BoolResolutionDetail) {
	out.Value = defaultValue
	if v, ok := p.resolve(ctx, flag, flags.TypeBoolean, flat, &out.ProviderResolutionDetail).(bool); ok {
		out.Value = v
	}
	return out
}

// StringEvaluation evaluates a string flag. Problems are reported in the
// returned detail's resolution error, with defaultValue as the value.
func (p *Provider) StringEvaluation(ctx context.Context, flag string, defaultValue string, flat openfeature.FlattenedContext) (out openfeature.StringResolutionDetail) {
	out.Value = defaultValue
	if v, ok := p.resolve(ctx, flag, flags.TypeString, flat, &out.ProviderResolutionDetail).(string); ok {
		out.Value = v
	}
	return out
}

// FloatEvaluation evaluates a number flag. Problems are reported in the
// returned detail's resolution error, with defaultValue as the value.
func (p *Provider) FloatEvaluation(ctx context.Context, flag string, defaultValue float64, flat openfeature.FlattenedContext) (out openfeature.FloatResolutionDetail) {
	out.Value = defaultValue
	if v, ok := p.resolve(ctx, flag, flags.TypeNumber, flat, &out.ProviderResolutionDetail).(float64); ok {
		out.Value = v
	}
	return out
}

// IntEvaluation evaluates a number flag whose value must be an integer in
// int64's range: any other value is TYPE_MISMATCH. Problems are reported
// in the returned detail's resolution error, with defaultValue as the
// value.
func (p *Provider) IntEvaluation(ctx context.Context, flag string, defaultValue int64, flat openfeature.FlattenedContext) (out openfeature.IntResolutionDetail) {
	out.Value = defaultValue
	v, ok := p.resolve(ctx, flag, flags.TypeNumber, flat, &out.ProviderResolutionDetail).(float64)
	if !ok {
		return out
	}
	// -2^63 is exact in a float64 and fits; 2^63 does not.
	if v != math.Trunc(v) || v < math.MinInt64 || v >= math.MaxInt64 {
		out.ProviderResolutionDetail = openfeature.ProviderResolutionDetail{
			Reason:          openfeature.ErrorReason,
			ResolutionError: openfeature.NewTypeMismatchResolutionError(fmt.Sprintf("variant %q of the number flag is %v, not an integer", out.Variant, v)),
		}
		return out
	}
	out.Value = int64(v)
	return out
}

// ObjectEvaluation evaluates an object flag. The value is a deep copy
// (map[string]any with []any, float64, string, bool and nil inside), the
// caller's to modify. Problems are reported in the returned detail's
// resolution error, with defaultValue as the value.
func (p *Provider) ObjectEvaluation(ctx context.Context, flag string, defaultValue any, flat openfeature.FlattenedContext) (out openfeature.InterfaceResolutionDetail) {
	out.Value = defaultValue
	if v, ok := p.resolve(ctx, flag, flags.TypeObject, flat, &out.ProviderResolutionDetail).(map[string]any); ok {
		out.Value = deepCopy(v)
	}
	return out
}

// deepCopy copies a decoded JSON value, whose compiled original is shared
// by every evaluation.
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e)
		}
		return s
	default: // bool, string, float64, nil: immutable
		return v
	}
}
