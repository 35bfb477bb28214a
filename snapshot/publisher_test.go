package snapshot_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/snapshot/snapshottest"
)

// fakeSource serves testSet at a revision that writes bump.
type fakeSource struct {
	mu    sync.Mutex
	rev   int64
	err   error
	calls int
}

func (f *fakeSource) Set(_ context.Context, env string) (flags.Set, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return flags.Set{}, f.err
	}
	s := testSet()
	s.Environment, s.Revision = env, f.rev
	return s, nil
}

// bump records a content change and returns its revision.
func (f *fakeSource) bump() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	return f.rev
}

// counter is an in-memory Versions.
type counter struct {
	mu sync.Mutex
	n  map[string]int64
}

func (c *counter) NextSnapshotVersion(_ context.Context, env string) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int64{}
	}
	c.n[env]++
	return c.n[env], nil
}

// atomicClock is a solstice.Clock safe for concurrent use.
type atomicClock struct{ ns atomic.Int64 }

func newAtomicClock(t time.Time) *atomicClock {
	c := &atomicClock{}
	c.set(t)
	return c
}
func (c *atomicClock) Now() time.Time  { return time.Unix(0, c.ns.Load()).UTC() }
func (c *atomicClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }

var testKeys = snapshottest.StaticKeys{testEnv: {snapshottest.Signer("production-1")}}

func newPublisher(src snapshot.Source, v snapshot.Versions, clock solstice.Clock, opts ...snapshot.Option) *snapshot.Publisher {
	opts = append([]snapshot.Option{
		snapshot.WithClock(clock),
		snapshot.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	}, opts...)
	return snapshot.NewPublisher(src, v, testKeys, opts...)
}

// verify opens b as a client trusting the test key would.
func verify(t testing.TB, b *snapshot.Built) *snapshot.Opened {
	t.Helper()
	o, err := snapshot.Open(b.Envelope(), snapshot.OpenOptions{
		Trusted:     []ed25519.PublicKey{snapshottest.Signer("production-1").Public()},
		Environment: testEnv,
		Now:         b.IssuedAt(),
	})
	if err != nil {
		t.Errorf("snapshot v%d does not open: %v", b.Version(), err)
		return nil
	}
	if o.Payload.Version != b.Version() || o.Payload.Revision != b.Revision() {
		t.Errorf("snapshot claims v%d r%d, its payload v%d r%d", b.Version(), b.Revision(), o.Payload.Version, o.Payload.Revision)
	}
	return o
}

func TestPublisherPublish(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{}
	p := newPublisher(src, &counter{}, newAtomicClock(t0))
	if _, ok := p.Current(testEnv); ok {
		t.Fatal("Current before any publish reports a snapshot")
	}
	rev := src.bump()
	b, err := p.Publish(ctx, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if b.Version() != 1 || b.Revision() != rev || !b.ExpiresAt().Equal(t0.Add(snapshot.DefaultTTL)) {
		t.Errorf("first snapshot v%d r%d expiring %v; want v1 r%d expiring %v", b.Version(), b.Revision(), b.ExpiresAt(), rev, t0.Add(snapshot.DefaultTTL))
	}
	if cur, ok := p.Current(testEnv); !ok || cur != b {
		t.Errorf("Current = %v, %v; want the published snapshot", cur, ok)
	}
	verify(t, b)
	b2, err := p.Publish(ctx, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if b2.Version() != 2 {
		t.Errorf("second snapshot has version %d, want 2", b2.Version())
	}
	if _, ok := p.Current("staging"); ok {
		t.Error("Current of an unpublished environment reports a snapshot")
	}
	if _, err := p.Publish(ctx, "staging"); !solstice.IsKind(err, solstice.KindNotFound) {
		t.Errorf("publish without keys: err = %v, want the key source's KindNotFound", err)
	}
}

func TestPublisherFailuresKeepCurrent(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{}
	versions := &counter{}
	p := newPublisher(src, versions, newAtomicClock(t0))
	first, err := p.Publish(ctx, testEnv)
	if err != nil {
		t.Fatal(err)
	}

	down := errors.New("database is down")
	src.err = down
	if _, err := p.Publish(ctx, testEnv); !errors.Is(err, down) {
		t.Errorf("failing source: err = %v, want it wrapped", err)
	}
	src.err = nil

	// A version counter that went backwards (an old backup restored):
	// the publisher keeps what it has instead of serving a snapshot every
	// client would refuse as a rollback.
	versions.mu.Lock()
	versions.n[testEnv] = 0
	versions.mu.Unlock()
	if _, err := p.Publish(ctx, testEnv); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("version going backwards: err = %v, want KindConflict", err)
	}
	if cur, _ := p.Current(testEnv); cur != first {
		t.Errorf("after failed publishes Current is v%d, want the first snapshot v%d", cur.Version(), first.Version())
	}
}

// TestPublisherConcurrent publishes from many goroutines while readers
// poll Current and long-poll Wait: every snapshot a reader sees must be
// complete and verify, versions seen by a reader never go backwards, and
// every Publish returns a snapshot that includes the change made before
// it.
func TestPublisherConcurrent(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &fakeSource{}
	versions := &counter{}
	p := newPublisher(src, versions, newAtomicClock(t0))
	const writers, perWriter, pollers, waiters = 8, 15, 4, 4

	var readers sync.WaitGroup
	for range pollers {
		readers.Add(1)
		go func() {
			defer readers.Done()
			var last int64
			var held []byte
			for ctx.Err() == nil {
				b, ok := p.Current(testEnv)
				if !ok {
					continue
				}
				if b.Version() < last {
					t.Errorf("Current went back from v%d to v%d", last, b.Version())
					return
				}
				if b.Version() > last {
					o, err := snapshot.Open(b.Envelope(), snapshot.OpenOptions{
						Trusted: []ed25519.PublicKey{snapshottest.Signer("production-1").Public()}, Environment: testEnv,
						Now: b.IssuedAt(), HeldVersion: last, HeldPayload: held,
					})
					if err != nil {
						t.Errorf("reader holding v%d: snapshot v%d: %v", last, b.Version(), err)
						return
					}
					last, held = o.Payload.Version, o.RawPayload
				}
			}
		}()
	}
	for range waiters {
		readers.Add(1)
		go func() {
			defer readers.Done()
			var last int64
			for {
				b, err := p.Wait(ctx, testEnv, last)
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						t.Errorf("Wait: %v", err)
					}
					return
				}
				if b.Version() <= last {
					t.Errorf("Wait(after %d) returned v%d", last, b.Version())
					return
				}
				verify(t, b)
				last = b.Version()
			}
		}()
	}

	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWriter {
				rev := src.bump()
				b, err := p.Publish(ctx, testEnv)
				if err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
				if b.Revision() < rev {
					t.Errorf("Publish after the change to r%d returned a snapshot of r%d", rev, b.Revision())
				}
			}
		}()
	}
	wg.Wait()
	final, _ := p.Current(testEnv)
	versions.mu.Lock()
	issued := versions.n[testEnv]
	versions.mu.Unlock()
	if final.Version() != issued {
		t.Errorf("final snapshot is v%d, the newest version issued is %d", final.Version(), issued)
	}
	if final.Revision() != writers*perWriter {
		t.Errorf("final snapshot is of r%d, want the last change r%d", final.Revision(), writers*perWriter)
	}
	src.mu.Lock()
	t.Logf("%d publishes built %d snapshots", writers*perWriter, src.calls)
	src.mu.Unlock()
	cancel()
	readers.Wait()
}

func TestPublisherWait(t *testing.T) {
	ctx := context.Background()
	p := newPublisher(&fakeSource{}, &counter{}, newAtomicClock(t0))

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if b, err := p.Wait(short, testEnv, 0); b != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with nothing published = %v, %v; want the context's error", b, err)
	}

	got := make(chan *snapshot.Built)
	go func() {
		b, err := p.Wait(ctx, testEnv, 0)
		if err != nil {
			t.Errorf("Wait: %v", err)
		}
		got <- b
	}()
	published, err := p.Publish(ctx, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if b := <-got; b != published {
		t.Errorf("Wait woke with v%d, want the published v%d", b.Version(), published.Version())
	}

	// Already newer: at once. Not newer: waits.
	if b, err := p.Wait(ctx, testEnv, 0); err != nil || b != published {
		t.Errorf("Wait(after 0) with v1 current = %v, %v", b, err)
	}
	short, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := p.Wait(short, testEnv, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait(after 1) with v1 current: err = %v, want the context's error", err)
	}
}

func TestPublisherTick(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{}
	clock := newAtomicClock(t0)
	p := newPublisher(src, &counter{}, clock, snapshot.WithTTL(24*time.Hour))

	// Tick only looks after environments someone published.
	if err := p.Tick(ctx, t0); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Current(testEnv); ok {
		t.Fatal("Tick published an environment nobody asked for")
	}

	first, err := p.Publish(ctx, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Tick(ctx, t0.Add(12*time.Hour-time.Second)); err != nil {
		t.Fatal(err)
	}
	if cur, _ := p.Current(testEnv); cur != first {
		t.Fatalf("Tick before half the TTL re-signed: v%d", cur.Version())
	}
	half := t0.Add(12 * time.Hour)
	if err := p.Tick(ctx, half); err != nil {
		t.Fatal(err)
	}
	cur, _ := p.Current(testEnv)
	if cur.Version() != 2 || cur.Revision() != first.Revision() || !cur.IssuedAt().Equal(half) || !cur.ExpiresAt().Equal(half.Add(24*time.Hour)) {
		t.Errorf("after Tick at half the TTL: v%d r%d %v – %v; want v2 r%d %v – %v",
			cur.Version(), cur.Revision(), cur.IssuedAt(), cur.ExpiresAt(), first.Revision(), half, half.Add(24*time.Hour))
	}
	verify(t, cur)

	// An environment whose every publish failed is retried.
	down := errors.New("database is down")
	src.err = down
	if _, err := p.Publish(ctx, "staging"); !errors.Is(err, down) {
		t.Fatalf("err = %v", err)
	}
	if err := p.Tick(ctx, half); !errors.Is(err, down) {
		t.Errorf("Tick with a failing environment: err = %v, want its error", err)
	}
	if cur2, _ := p.Current(testEnv); cur2 != cur {
		t.Error("Tick re-signed a fresh snapshot")
	}
}

func TestPublisherRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := newAtomicClock(t0)
	p := newPublisher(&fakeSource{}, &counter{}, clock, snapshot.WithTTL(time.Hour), snapshot.WithInterval(time.Millisecond))
	first, err := p.Publish(ctx, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()

	clock.set(t0.Add(31 * time.Minute))
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	b, err := p.Wait(wctx, testEnv, first.Version())
	if err != nil {
		t.Fatalf("Run did not re-sign past half the TTL: %v", err)
	}
	if !b.ExpiresAt().Equal(t0.Add(91 * time.Minute)) {
		t.Errorf("re-signed snapshot expires %v, want %v", b.ExpiresAt(), t0.Add(91*time.Minute))
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop when its context ended")
	}
}

// fakeHeads reports the fake source's revision as the head of testEnv.
type fakeHeads struct{ src *fakeSource }

func (h fakeHeads) Heads(context.Context) (map[string]int64, error) {
	h.src.mu.Lock()
	defer h.src.mu.Unlock()
	return map[string]int64{testEnv: h.src.rev}, nil
}

func TestPublisherTickFollowsHeads(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{}
	var published []int64
	p := newPublisher(src, &counter{}, newAtomicClock(t0), snapshot.WithHeads(fakeHeads{src}),
		snapshot.OnPublish(func(b *snapshot.Built) { published = append(published, b.Version()) }))

	// With heads, Tick publishes environments nobody published yet.
	if err := p.Tick(ctx, t0); err != nil {
		t.Fatal(err)
	}
	first, ok := p.Current(testEnv)
	if !ok || first.Revision() != 0 {
		t.Fatalf("Tick did not publish the environment heads reported: %v", ok)
	}
	if err := p.Tick(ctx, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if cur, _ := p.Current(testEnv); cur != first {
		t.Errorf("Tick republished an unchanged environment: v%d", cur.Version())
	}
	// A change made elsewhere (no Publish call here) is picked up by the next Tick.
	rev := src.bump()
	if err := p.Tick(ctx, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	cur, _ := p.Current(testEnv)
	if cur.Revision() != rev || cur.Version() != first.Version()+1 {
		t.Errorf("after an outside change: v%d r%d, want v%d r%d", cur.Version(), cur.Revision(), first.Version()+1, rev)
	}
	verify(t, cur)
	if want := []int64{first.Version(), cur.Version()}; !slices.Equal(published, want) {
		t.Errorf("OnPublish saw %v, want %v", published, want)
	}
}
