package telemetry

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
)

// blockingStore is a Store whose Ingest records the groups it is given and
// answers each write with NewExposures = the number in its BatchID. The
// first call waits for release, so that the batches that arrive meanwhile
// queue up; a BatchID of "panic" makes it panic. Only Ingest is used.
//
// NOTE: a fake, where the other tests use real databases: what is tested is
// which writes wait for which, which a real store's timing would hide.
type blockingStore struct {
	Store
	release chan struct{}
	once    sync.Once

	mu     sync.Mutex
	groups [][]string
}

func (s *blockingStore) Ingest(_ context.Context, ws []Write) []Ingested {
	s.once.Do(func() { <-s.release })
	ids := make([]string, len(ws))
	out := make([]Ingested, len(ws))
	for i, w := range ws {
		if w.BatchID == "panic" {
			panic("store failure")
		}
		ids[i] = w.BatchID
		n, _ := strconv.Atoi(w.BatchID)
		out[i].NewExposures = int64(n)
	}
	s.mu.Lock()
	s.groups = append(s.groups, ids)
	s.mu.Unlock()
	return out
}

func TestCommitterGroupsTheBatchesThatWait(t *testing.T) {
	store := &blockingStore{release: make(chan struct{})}
	var c committer
	ctx := context.Background()
	first := make(chan Ingested)
	go func() { first <- c.commit(ctx, store, Write{BatchID: "1"}) }()
	// Wait until the first batch is in the store, then queue more.
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.leading && len(c.queue) == 0 })
	const n = 20
	var wg sync.WaitGroup
	got := make([]Ingested, n)
	for i := range n {
		wg.Go(func() { got[i] = c.commit(ctx, store, Write{BatchID: strconv.Itoa(100 + i)}) })
	}
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.queue) == n })
	close(store.release)
	wg.Wait()
	if in := <-first; in.NewExposures != 1 {
		t.Errorf("first batch: %+v, want its own outcome", in)
	}
	for i, in := range got {
		if in.Err != nil || in.NewExposures != int64(100+i) {
			t.Errorf("batch %d: %+v, want its own outcome", 100+i, in)
		}
	}
	if len(store.groups) != 2 || len(store.groups[1]) != n {
		t.Errorf("groups %v, want the first batch alone and then the %d that waited together", store.groups, n)
	}
	if c.leading || len(c.queue) != 0 {
		t.Errorf("after the last group: leading %v, %d queued; want neither", c.leading, len(c.queue))
	}
}

func TestCommitterBoundsAGroup(t *testing.T) {
	store := &blockingStore{release: make(chan struct{})}
	var c committer
	ctx := context.Background()
	go c.commit(ctx, store, Write{BatchID: "0"})
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.leading && len(c.queue) == 0 })
	n := maxGroupWrites + 10
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { c.commit(ctx, store, Write{BatchID: strconv.Itoa(i + 1)}) })
	}
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.queue) == n })
	close(store.release)
	wg.Wait()
	var sizes []int
	for _, g := range store.groups[1:] {
		sizes = append(sizes, len(g))
	}
	if diff := cmp.Diff([]int{maxGroupWrites, 10}, sizes); diff != "" {
		t.Errorf("group sizes after the first (-want +got):\n%s", diff)
	}
}

func TestCommitterFailsAGroupWhoseStorePanics(t *testing.T) {
	store := &blockingStore{release: make(chan struct{})}
	var c committer
	ctx := context.Background()
	go c.commit(ctx, store, Write{BatchID: "1"})
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.leading && len(c.queue) == 0 })
	// "panic" leads the next group, with "7" in it. The leader's request
	// panics (net/http or Echo recovers); the group's other batches get an
	// error instead of waiting for ever.
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		c.commit(ctx, store, Write{BatchID: "panic"})
	}()
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.queue) == 1 })
	results := make(chan Ingested, 1)
	go func() { results <- c.commit(ctx, store, Write{BatchID: "7"}) }()
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.queue) == 2 })
	close(store.release)
	if p := <-panicked; p == nil {
		t.Fatal("the leader did not panic")
	}
	if in := <-results; solstice.ErrorKind(in.Err) != solstice.KindInternal {
		t.Errorf("the other batch of the group: %+v, want a %q error", in, solstice.KindInternal)
	}
	// The lead was given up: the next batch is stored.
	if in := c.commit(ctx, store, Write{BatchID: "8"}); in.Err != nil || in.NewExposures != 8 {
		t.Errorf("the next batch: %+v", in)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

func TestMemoryTrimsWhatWouldChangeNothing(t *testing.T) {
	var m memory
	day := int64(20_000)
	exposure := func(flag, player string) Exposure {
		return Exposure{Flag: flag, Variant: "on", Player: player, Minute: Minute(day * minutesPerDay)}
	}
	stored := Write{Environment: "production",
		Exposures: []Exposure{exposure("f", "a"), exposure("f", "b")},
		Activity:  []ActiveDay{{Player: "a", Day: day, First: 100, Last: 200}, {Player: "c", Day: day, First: 5, Last: 5}}}
	m.learn(stored, Ingested{Players: map[string]uint32{"a": 1, "b": 2, "c": 3}})
	// Nothing is learnt from a failed or duplicate batch.
	m.learn(Write{Environment: "production", Exposures: []Exposure{exposure("f", "z")}}, Ingested{Players: map[string]uint32{"z": 9}, Err: fmt.Errorf("failed")})
	m.learn(Write{Environment: "production", Exposures: []Exposure{exposure("f", "y")}}, Ingested{Players: map[string]uint32{"y": 8}, Duplicate: true})

	w := Write{Environment: "production",
		Exposures: []Exposure{exposure("f", "a"), exposure("g", "a"), exposure("f", "b"), exposure("f", "d"), exposure("f", "z"), exposure("f", "y")},
		Activity: []ActiveDay{
			{Player: "a", Day: day, First: 150, Last: 160},     // inside what is recorded
			{Player: "a", Day: day, First: 99, Last: 120},      // widens it
			{Player: "a", Day: day + 1, First: 150, Last: 160}, // another day
			{Player: "c", Day: day, First: 5, Last: 5},
			{Player: "d", Day: day, First: 1, Last: 1},
		}}
	m.trim(&w)
	want := Write{Environment: "production",
		Exposures: []Exposure{{Flag: "g", Variant: "on", Player: "a", Minute: Minute(day * minutesPerDay), ID: 1}, exposure("f", "d"), exposure("f", "z"), exposure("f", "y")},
		Activity: []ActiveDay{
			{Player: "a", ID: 1, Day: day, First: 99, Last: 120},
			{Player: "a", ID: 1, Day: day + 1, First: 150, Last: 160},
			{Player: "d", Day: day, First: 1, Last: 1},
		}}
	if diff := cmp.Diff(want, w); diff != "" {
		t.Errorf("trimmed write (-want +got):\n%s", diff)
	}

	// Another environment knows nothing of these players.
	other := Write{Environment: "staging", Exposures: []Exposure{exposure("f", "a")}}
	m.trim(&other)
	if len(other.Exposures) != 1 || other.Exposures[0].ID != 0 {
		t.Errorf("staging exposure trimmed to %+v, want it whole, without an id", other.Exposures)
	}

	// A full memory forgets about half of what it holds, and what it
	// forgot is only looked up again.
	m = memory{maxPlayers: 100, maxExposed: 150}
	for i := range 10 {
		w := Write{Environment: "production"}
		in := Ingested{Players: map[string]uint32{}}
		for j := range 30 {
			p := fmt.Sprintf("p%d", 30*i+j)
			w.Exposures = append(w.Exposures, exposure("f", p))
			in.Players[p] = uint32(30*i + j + 1) //nolint:gosec // small
		}
		m.learn(w, in)
		if m.nPlayers > 100 || m.nPlayers != len(m.envs["production"].players) || m.nExposed > 150 {
			t.Fatalf("after %d writes: %d players (%d held), %d exposed; want at most 100 and 150", i+1, m.nPlayers, len(m.envs["production"].players), m.nExposed)
		}
	}
	w = Write{Environment: "production", Exposures: []Exposure{exposure("f", "p0"), exposure("f", "p299")}}
	m.trim(&w)
	if len(w.Exposures) != 1 || w.Exposures[0].Player != "p0" {
		t.Errorf("after forgetting, %+v; want p0 (forgotten) kept and p299 (the last learnt) trimmed", w.Exposures)
	}
}
