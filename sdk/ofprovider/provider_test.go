package ofprovider_test

import (
	"context"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/open-feature/go-sdk/openfeature"
	"github.com/open-feature/go-sdk/openfeature/isolated"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/sdk"
	"github.com/solsticehq/solstice/sdk/ofprovider"
)

// newAPI returns an OpenFeature API of its own (not the global one), shut
// down when the test ends.
func newAPI(t *testing.T) *openfeature.EvaluationAPI {
	t.Helper()
	api := isolated.NewAPI()
	t.Cleanup(func() { _ = api.Shutdown(context.Background()) })
	return api
}

// ready returns an OpenFeature client over a provider over a client of s,
// initialized.
func ready(t *testing.T, s *snapshotServer, opts ...ofprovider.Option) (*openfeature.Client, *sdk.Client, *openfeature.EvaluationAPI) {
	t.Helper()
	c := newClient(t, s.config())
	api := newAPI(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := api.SetProviderAndWait(ctx, ofprovider.New(c, opts...)); err != nil {
		t.Fatal(err)
	}
	return api.NewClient(), c, api
}

// detail is what an OpenFeature evaluation returned, for comparisons.
type detail struct {
	Value   any
	Variant string
	Reason  openfeature.Reason
	Code    openfeature.ErrorCode
}

func TestEveryTypeAndErrorCodeThroughOpenFeature(t *testing.T) {
	s := newSnapshotServer(t, gameSet())
	of, c, _ := ready(t, s)
	split := c.EvaluateAs("bool-split", flags.TypeBoolean, flags.Context{flags.TargetingKey: "player-7"})
	if split.Reason != flags.ReasonSplit {
		t.Fatalf("evaluator: %+v", split)
	}

	player := openfeature.NewEvaluationContext("player-7", map[string]any{"country": "JP"})
	anonymous := openfeature.NewTargetlessEvaluationContext(map[string]any{"country": "US"})
	badKey := openfeature.NewTargetlessEvaluationContext(map[string]any{"targetingKey": 2.5})

	d := func(v any, err error, e openfeature.EvaluationDetails) detail {
		if (err != nil) != (e.ErrorCode != "") {
			t.Errorf("%s: error %v with code %q: want both or neither", e.FlagKey, err, e.ErrorCode)
		}
		return detail{v, e.Variant, e.Reason, e.ErrorCode}
	}
	boolean := func(key string, def bool, ec openfeature.EvaluationContext) detail {
		r, err := of.BooleanValueDetails(t.Context(), key, def, ec)
		return d(r.Value, err, r.EvaluationDetails)
	}
	str := func(key, def string, ec openfeature.EvaluationContext) detail {
		r, err := of.StringValueDetails(t.Context(), key, def, ec)
		return d(r.Value, err, r.EvaluationDetails)
	}
	float := func(key string, def float64, ec openfeature.EvaluationContext) detail {
		r, err := of.FloatValueDetails(t.Context(), key, def, ec)
		return d(r.Value, err, r.EvaluationDetails)
	}
	integer := func(key string, def int64, ec openfeature.EvaluationContext) detail {
		r, err := of.IntValueDetails(t.Context(), key, def, ec)
		return d(r.Value, err, r.EvaluationDetails)
	}
	object := func(key string, def any, ec openfeature.EvaluationContext) detail {
		r, err := of.ObjectValueDetails(t.Context(), key, def, ec)
		return d(r.Value, err, r.EvaluationDetails)
	}
	const errReason = openfeature.ErrorReason
	tests := []struct {
		name string
		got  detail
		want detail
	}{
		{"boolean static", boolean("bool-static", false, player), detail{true, "on", openfeature.StaticReason, ""}},
		{"boolean split", boolean("bool-split", !split.Value.(bool), player), detail{split.Value, split.Variant, openfeature.SplitReason, ""}},
		{"boolean disabled", boolean("off-flag", true, player), detail{false, "off", openfeature.DisabledReason, ""}},
		// A split without the targeting key it buckets by: OpenFeature
		// serves the caller's default and reports the code.
		{"targeting key missing", boolean("bool-split", true, anonymous), detail{true, "off", errReason, openfeature.TargetingKeyMissingCode}},
		{"targeting key of the wrong kind", boolean("bool-split", true, badKey), detail{true, "off", errReason, openfeature.InvalidContextCode}},
		{"flag not found", boolean("no-such-flag", true, player), detail{true, "", errReason, openfeature.FlagNotFoundCode}},
		{"boolean of a string flag", boolean("color", true, player), detail{true, "", errReason, openfeature.TypeMismatchCode}},
		{"string targeting match", str("color", "none", player), detail{"red", "red", openfeature.TargetingMatchReason, ""}},
		{"string default", str("color", "none", anonymous), detail{"blue", "blue", openfeature.DefaultReason, ""}},
		{"string of a number flag", str("spawn-rate", "none", player), detail{"none", "", errReason, openfeature.TypeMismatchCode}},
		{"float", float("spawn-rate", 0, player), detail{1.5, "fast", openfeature.StaticReason, ""}},
		{"float of an integral number", float("max-players", 0, player), detail{64.0, "v64", openfeature.StaticReason, ""}},
		{"float of an object flag", float("event", -1, player), detail{-1.0, "", errReason, openfeature.TypeMismatchCode}},
		{"int", integer("max-players", 0, player), detail{int64(64), "v64", openfeature.StaticReason, ""}},
		{"int of a fractional number", integer("spawn-rate", 3, player), detail{int64(3), "", errReason, openfeature.TypeMismatchCode}},
		{"int of a boolean flag", integer("bool-static", 3, player), detail{int64(3), "", errReason, openfeature.TypeMismatchCode}},
		{"object", object("event", nil, player), detail{map[string]any{"name": "winter", "xp": 2.0, "drops": []any{map[string]any{"item": "globe", "weight": 3.0}}}, "winter", openfeature.StaticReason, ""}},
		{"object of a boolean flag", object("bool-static", "def", player), detail{"def", "", errReason, openfeature.TypeMismatchCode}},
		{"object not found", object("nope", "def", player), detail{"def", "", errReason, openfeature.FlagNotFoundCode}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, tc.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	// The error is returned too, as OpenFeature does.
	if _, err := of.BooleanValue(t.Context(), "no-such-flag", false, player); err == nil {
		t.Error("BooleanValue of an unknown flag returned no error")
	}
}

func TestObjectValuesAreCopies(t *testing.T) {
	s := newSnapshotServer(t, gameSet())
	of, _, _ := ready(t, s)
	ec := openfeature.NewEvaluationContext("p", nil)
	first, err := of.ObjectValue(t.Context(), "event", nil, ec)
	if err != nil {
		t.Fatal(err)
	}
	m := first.(map[string]any)
	want := map[string]any{"name": "winter", "xp": 2.0, "drops": []any{map[string]any{"item": "globe", "weight": 3.0}}}
	// A caller scribbling over its value, at every depth...
	m["name"] = "summer"
	m["drops"].([]any)[0].(map[string]any)["item"] = "sandcastle"
	m["drops"] = append(m["drops"].([]any), "more")
	// ...changes nothing for the next evaluation.
	second, err := of.ObjectValue(t.Context(), "event", nil, ec)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, second); diff != "" {
		t.Errorf("second evaluation (-want +got):\n%s", diff)
	}
}

func TestNotReadyAndParseError(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   []byte
		want   openfeature.ErrorCode
	}{
		{"control plane down", http.StatusServiceUnavailable, nil, openfeature.ProviderNotReadyCode},
		{"unreadable snapshot", http.StatusOK, []byte("<html>captive portal</html>"), openfeature.ParseErrorCode},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSnapshotServer(t, gameSet())
			s.respond(tc.status, tc.body)
			c := newClient(t, s.config())
			api := newAPI(t)
			readyCh, errCh := make(chan struct{}, 1), make(chan struct{}, 1)
			onReady := func(openfeature.EventDetails) { readyCh <- struct{}{} }
			onError := func(openfeature.EventDetails) { errCh <- struct{}{} }
			api.AddHandler(openfeature.ProviderReady, &onReady)
			api.AddHandler(openfeature.ProviderError, &onError)

			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			if err := api.SetProviderAndWait(ctx, ofprovider.New(c)); err == nil {
				t.Fatal("SetProviderAndWait succeeded without a snapshot")
			}
			// SetProviderAndWait gives up with its context; Init fails just
			// after, and OpenFeature goes to ERROR.
			select {
			case <-errCh:
			case <-time.After(10 * time.Second):
				t.Fatal("no PROVIDER_ERROR after Init failed")
			}
			of := api.NewClient()
			if of.State() != openfeature.ErrorState {
				t.Errorf("state = %s, want ERROR", of.State())
			}
			r, err := of.BooleanValueDetails(t.Context(), "bool-static", false, openfeature.NewEvaluationContext("p", nil))
			if err == nil || r.ErrorCode != tc.want || r.Value {
				t.Errorf("evaluation = %+v, %v; want code %s and the default", r, err, tc.want)
			}

			// Once a snapshot arrives, the provider announces READY.
			s.respond(0, nil)
			select {
			case <-readyCh:
			case <-time.After(10 * time.Second):
				t.Fatal("no PROVIDER_READY after the first snapshot")
			}
			if v, err := of.BooleanValue(t.Context(), "bool-static", false, openfeature.NewEvaluationContext("p", nil)); err != nil || !v {
				t.Errorf("after READY: %v, %v", v, err)
			}
		})
	}
}

func TestInitFailsFastOnAWrongKey(t *testing.T) {
	s := newSnapshotServer(t, gameSet())
	s.respond(http.StatusUnauthorized, nil)
	api := newAPI(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := api.SetProviderAndWait(ctx, ofprovider.New(newClient(t, s.config())))
	if err == nil || ctx.Err() != nil {
		t.Fatalf("SetProviderAndWait = %v (context %v), want a refusal before the deadline", err, ctx.Err())
	}
	if st := api.NewClient().State(); st != openfeature.ErrorState {
		t.Errorf("state = %s, want ERROR", st)
	}
}

// TestProviderEventsInOrder reads the provider's event channel as the
// OpenFeature SDK does, and expects the client's transitions in order.
func TestProviderEventsInOrder(t *testing.T) {
	s := newSnapshotServer(t, gameSet())
	cfg := s.config()
	cfg.StaleAfter = 50 * time.Millisecond
	c := newClient(t, cfg)
	p := ofprovider.New(c)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.InitWithContext(ctx, openfeature.EvaluationContext{}); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown()
	next := func() openfeature.Event {
		t.Helper()
		select {
		case e := <-p.EventChannel():
			return e
		case <-ctx.Done():
			t.Fatal("no event")
			return openfeature.Event{}
		}
	}

	changed := gameSet()
	changed.Flags[2].DefaultVariant = "red" // color
	s.publish(changed)
	e := next()
	if e.EventType != openfeature.ProviderConfigChange || !cmp.Equal(e.FlagChanges, []string{"color"}) || e.ProviderName != ofprovider.Name {
		t.Errorf("first event = %+v, want CONFIGURATION_CHANGED of color", e)
	}
	s.respond(http.StatusServiceUnavailable, nil)
	if e := next(); e.EventType != openfeature.ProviderStale {
		t.Errorf("second event = %+v, want STALE", e)
	}
	s.respond(0, nil)
	if e := next(); e.EventType != openfeature.ProviderReady {
		t.Errorf("third event = %+v, want READY", e)
	}
	s.respond(http.StatusForbidden, nil)
	if e := next(); e.EventType != openfeature.ProviderError || e.ErrorCode != openfeature.GeneralCode {
		t.Errorf("fourth event = %+v, want ERROR", e)
	}
	s.respond(0, nil)
	if e := next(); e.EventType != openfeature.ProviderReady {
		t.Errorf("fifth event = %+v, want READY", e)
	}
}

func TestEventsAndStatesThroughOpenFeature(t *testing.T) {
	s := newSnapshotServer(t, gameSet())
	cfg := s.config()
	cfg.StaleAfter = 50 * time.Millisecond
	c := newClient(t, cfg)
	api := newAPI(t)
	type got struct {
		kind    openfeature.EventType
		changes []string
	}
	events := make(chan got, 32)
	for _, k := range []openfeature.EventType{openfeature.ProviderReady, openfeature.ProviderConfigChange, openfeature.ProviderStale, openfeature.ProviderError} {
		cb := func(d openfeature.EventDetails) { events <- got{k, d.FlagChanges} }
		api.AddHandler(k, &cb)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := api.SetProviderAndWait(ctx, ofprovider.New(c)); err != nil {
		t.Fatal(err)
	}
	of := api.NewClient()
	// Handlers run on goroutines of their own in openfeature-go, so each
	// step waits for its event before causing the next.
	await := func(want openfeature.EventType, state openfeature.State) got {
		t.Helper()
		for {
			select {
			case g := <-events:
				if g.kind == want {
					if of.State() != state {
						t.Errorf("after %s: state %s, want %s", want, of.State(), state)
					}
					return g
				}
			case <-ctx.Done():
				t.Fatalf("no %s event", want)
			}
		}
	}
	await(openfeature.ProviderReady, openfeature.ReadyState)
	changed := gameSet()
	changed.Flags[1].Enabled = false // bool-static
	s.publish(changed)
	if g := await(openfeature.ProviderConfigChange, openfeature.ReadyState); !cmp.Equal(g.changes, []string{"bool-static"}) {
		t.Errorf("FlagChanges = %v", g.changes)
	}
	if v, _ := of.BooleanValue(t.Context(), "bool-static", true, openfeature.EvaluationContext{}); v {
		t.Error("the change is not served")
	}
	s.respond(http.StatusBadGateway, nil)
	await(openfeature.ProviderStale, openfeature.StaleState)
	// Stale still serves the last-known-good configuration.
	if r, err := of.BooleanValueDetails(t.Context(), "bool-static", true, openfeature.EvaluationContext{}); err != nil || r.Value || r.Reason != openfeature.DisabledReason {
		t.Errorf("stale evaluation = %+v, %v", r, err)
	}
	s.respond(0, nil)
	await(openfeature.ProviderReady, openfeature.ReadyState)
}

func TestInitFromAnExpiredLastKnownGoodIsStale(t *testing.T) {
	s := newSnapshotServer(t, gameSet())
	cfg := s.config()
	cfg.CacheFile = filepath.Join(t.TempDir(), "lkg.json")
	if err := newClient(t, cfg).Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.respond(http.StatusServiceUnavailable, nil)
	var offset atomic.Int64
	offset.Store(int64(48 * time.Hour))
	cfg.Clock = clockFunc(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })

	api := newAPI(t)
	stale := make(chan struct{}, 1)
	onStale := func(openfeature.EventDetails) { stale <- struct{}{} }
	api.AddHandler(openfeature.ProviderStale, &onStale)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := api.SetProviderAndWait(ctx, ofprovider.New(newClient(t, cfg))); err != nil {
		t.Fatalf("SetProviderAndWait with a last-known-good file = %v", err)
	}
	select {
	case <-stale:
	case <-ctx.Done():
		t.Fatal("no PROVIDER_STALE for an expired last-known-good snapshot")
	}
	// STALE came after the SDK's own READY, not before it.
	time.Sleep(100 * time.Millisecond)
	if st := api.NewClient().State(); st != openfeature.StaleState {
		t.Errorf("state = %s, want STALE", st)
	}
	if v, err := api.NewClient().BooleanValue(t.Context(), "bool-static", false, openfeature.EvaluationContext{}); err != nil || !v {
		t.Errorf("evaluation from the expired snapshot = %v, %v; want true", v, err)
	}
}

type clockFunc func() time.Time

func (f clockFunc) Now() time.Time { return f() }

func TestPinnedThroughTheGoContext(t *testing.T) {
	s := newSnapshotServer(t, gameSet())
	of, c, _ := ready(t, s)
	other := newClient(t, newSnapshotServer(t, flags.Set{}).config())
	if err := other.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	changes := make(chan sdk.Event, 4)
	c.Subscribe(func(e sdk.Event) {
		if e.Kind == sdk.EventConfigurationChanged {
			changes <- e
		}
	})
	match := c.Pin()
	changed := gameSet()
	changed.Flags[1].Enabled = false // bool-static
	s.publish(changed)
	select {
	case <-changes:
	case <-time.After(10 * time.Second):
		t.Fatal("the change did not arrive")
	}
	ec := openfeature.EvaluationContext{}
	tests := []struct {
		name string
		ctx  context.Context
		want bool
	}{
		{"pinned match", sdk.WithPinned(t.Context(), match), true},
		{"unpinned", t.Context(), false},
		{"next match", sdk.WithPinned(t.Context(), c.Pin()), false},
		{"pinned from another client: ignored", sdk.WithPinned(t.Context(), other.Pin()), false},
	}
	for _, tc := range tests {
		if got, err := of.BooleanValue(tc.ctx, "bool-static", !tc.want, ec); err != nil || got != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

type recordingHook struct {
	openfeature.UnimplementedHook
	mu       sync.Mutex
	keys     []string
	provider string
}

func (h *recordingHook) Before(_ context.Context, hc openfeature.HookContext, _ openfeature.HookHints) (*openfeature.EvaluationContext, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.keys = append(h.keys, hc.FlagKey())
	h.provider = hc.ProviderMetadata().Name
	return nil, nil
}

func TestHooksAndMetadata(t *testing.T) {
	s := newSnapshotServer(t, gameSet())
	h := &recordingHook{}
	of, _, _ := ready(t, s, ofprovider.WithHooks(h))
	of.Boolean(t.Context(), "bool-static", false, openfeature.EvaluationContext{})
	of.String(t.Context(), "color", "", openfeature.EvaluationContext{})
	h.mu.Lock()
	defer h.mu.Unlock()
	if diff := cmp.Diff([]string{"bool-static", "color"}, h.keys); diff != "" {
		t.Errorf("hook saw (-want +got):\n%s", diff)
	}
	if h.provider != ofprovider.Name || ofprovider.Name != "Solstice" {
		t.Errorf("provider name = %q", h.provider)
	}
}

func TestShutdownStopsPolling(t *testing.T) {
	s := newSnapshotServer(t, gameSet())
	_, c, api := ready(t, s)
	if err := api.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A request cancelled by Shutdown may still reach the server just
	// after; then nothing more may.
	time.Sleep(20 * time.Millisecond)
	n := s.requests.Load()
	time.Sleep(100 * time.Millisecond) // 20 poll intervals
	if m := s.requests.Load(); m != n {
		t.Errorf("%d requests after Shutdown", m-n)
	}
	if !c.Ready() {
		t.Error("the client dropped its snapshot at Shutdown")
	}
}
