package telemetry

import (
	"cmp"
	"context"
	"hash/maphash"
	"slices"
	"sync"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/solsticehq/solstice"
)

// Limits of a group commit and of the service's memory of stored facts.
const (
	// maxGroupWrites and maxGroupEvents bound the batches that one
	// transaction stores together, so that it stays short.
	maxGroupWrites = 128
	maxGroupEvents = 4 * MaxPlayerEvents
	// maxKnownPlayers bounds the player ids the service remembers (about
	// 100 bytes each); maxKnownExposed the exposed players it remembers,
	// summed over the variants (at most a few bytes each in bitmaps).
	maxKnownPlayers = 1 << 20
	maxKnownExposed = 1 << 26
)

// committer groups concurrent batches into one store transaction (group
// commit): a batch that arrives while a transaction is running waits, and
// the batches that waited are then stored together by one of them, the
// leader, which answers every one of them once their transaction has
// committed. A transaction costs a commit (an fsync) and a dozen
// statements whatever the number of batches in it, and batches of one
// minute share most of their counter rows: grouping divides those costs
// among the batches.
type committer struct {
	mu      sync.Mutex
	queue   []*pending
	leading bool // a leader is storing a group, and will hand over to queue[0]
}

// pending is a batch waiting for its group's transaction.
type pending struct {
	w    Write
	in   Ingested
	wake chan bool // true: lead the next group; false: in is the outcome
}

// commit stores w, alone or in a group with the batches that arrive
// meanwhile, and returns what the store did with it.
func (c *committer) commit(ctx context.Context, store Store, w Write) Ingested {
	p := &pending{w: w, wake: make(chan bool, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, p)
	lead := !c.leading
	c.leading = true
	c.mu.Unlock()
	if !lead && !<-p.wake {
		return p.in
	}
	// p is queue[0]: the leader takes it and those behind it.
	c.lead(context.WithoutCancel(ctx), store)
	return p.in
}

// lead stores the group at the head of the queue, answers its batches, and
// hands the lead to the next batch waiting, if any.
//
// NOTE: the transaction does not end with the leader's request (ctx has no
// cancellation): the other batches of the group are not the leader's to
// abandon.
func (c *committer) lead(ctx context.Context, store Store) {
	c.mu.Lock()
	n, events := 0, 0
	for n < len(c.queue) && n < maxGroupWrites {
		events += len(c.queue[n].w.Exposures) + len(c.queue[n].w.Activity) + len(c.queue[n].w.Counters)
		if n > 0 && events > maxGroupEvents {
			break
		}
		n++
	}
	group := slices.Clone(c.queue[:n])
	clear(c.queue[:n]) // for the garbage collector
	c.queue = c.queue[n:]
	c.mu.Unlock()

	done := false
	defer func() {
		if !done { // the store panicked: fail the group rather than leave it waiting
			for _, p := range group {
				p.in = Ingested{Err: solstice.Errorf(solstice.KindInternal, "the telemetry store failed")}
			}
		}
		for _, p := range group[1:] {
			p.wake <- false
		}
		c.mu.Lock()
		if len(c.queue) > 0 {
			c.queue[0].wake <- true
		} else {
			c.leading = false
			c.queue = nil
		}
		c.mu.Unlock()
	}()
	ws := make([]Write, len(group))
	for i, p := range group {
		ws[i] = p.w
	}
	out := store.Ingest(ctx, ws)
	for i, p := range group {
		if i < len(out) {
			p.in = out[i]
		} else {
			p.in = Ingested{Err: solstice.Errorf(solstice.KindInternal, "the telemetry store answered %d of %d writes", len(out), len(ws))}
		}
	}
	done = true
}

// memory remembers facts that the store reported and that stay true: the
// dictionary id of a player (ids are never reassigned), the players known
// to be exposed to a variant (exposure sets only grow), and the active
// minutes already recorded for a player's latest day (they only widen).
// Ingest uses it to leave out of a Write what would change nothing, and to
// spare the store the lookup of known players. It is a subset of what is
// stored, so it stays correct beside other processes writing to the same
// database; it is bounded, and forgets at random when full.
//
// NOTE: it knows a player by a 128-bit hash of the id under random seeds
// (playerHash), not by the id itself: a map of fixed-size keys without
// pointers costs one cache miss per lookup instead of two, and nothing to
// the garbage collector, where a million strings cost both. Two ids share
// a hash with probability 2⁻¹²⁸; among the million players it holds at
// most, some pair does with probability under 10⁻²⁶, and the seeds are
// drawn anew in each process, so no one can choose ids that collide.
type memory struct {
	mu       sync.RWMutex // trim reads, learn writes
	seeds    [2]maphash.Seed
	envs     map[string]*envMemory
	nPlayers int    // players remembered, over the environments
	nExposed uint64 // ids in the exposed bitmaps, summed
	// maxPlayers and maxExposed bound nPlayers and nExposed; 0 means
	// maxKnownPlayers and maxKnownExposed.
	maxPlayers int
	maxExposed uint64
}

// envMemory is what memory holds for one environment.
type envMemory struct {
	players map[playerHash]knownPlayer
	exposed map[variantRef]*roaring.Bitmap
}

// playerHash is the hash of a player id that memory knows it by.
type playerHash [2]uint64

func (m *memory) hash(player string) playerHash {
	return playerHash{maphash.String(m.seeds[0], player), maphash.String(m.seeds[1], player)}
}

type variantRef struct{ flag, variant string }

// knownPlayer is a player's id, and the minutes of day already recorded as
// active on its latest known day (first > last: none).
type knownPlayer struct {
	id          uint32
	day         int32
	first, last int16
}

// exposedTo returns the bitmap of the players known to be exposed to
// flag's variant, caching the last one looked up in *last (exposures come
// window by window).
func (e *envMemory) exposedTo(flag, variant string, last *variantRef, b **roaring.Bitmap) *roaring.Bitmap {
	if *b == nil || last.flag != flag || last.variant != variant {
		*last = variantRef{flag, variant}
		*b = e.exposed[*last]
	}
	return *b
}

// trim leaves out of w the exposures of players known to be exposed, and
// the activity known to be recorded, and fills in the ids of known
// players.
func (m *memory) trim(w *Write) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e := m.envs[w.Environment]
	if e == nil {
		return
	}
	var last variantRef
	var b *roaring.Bitmap
	exp := w.Exposures[:0]
	for _, x := range w.Exposures {
		if k, ok := e.players[m.hash(x.Player)]; ok {
			if seen := e.exposedTo(x.Flag, x.Variant, &last, &b); seen != nil && seen.Contains(k.id) {
				continue
			}
			x.ID = k.id
		}
		exp = append(exp, x)
	}
	w.Exposures = exp
	act := w.Activity[:0]
	for _, a := range w.Activity {
		if k, ok := e.players[m.hash(a.Player)]; ok {
			if int64(k.day) == a.Day && k.first <= a.First && a.Last <= k.last {
				continue
			}
			a.ID = k.id
		}
		act = append(act, a)
	}
	w.Activity = act
}

// learn remembers what storing w, with the outcome in, made true.
func (m *memory) learn(w Write, in Ingested) {
	if in.Err != nil || in.Duplicate {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.nPlayers+len(in.Players) > cmp.Or(m.maxPlayers, maxKnownPlayers) {
		m.forgetPlayers()
	}
	if m.nExposed+uint64(len(w.Exposures)) > cmp.Or(m.maxExposed, maxKnownExposed) {
		for _, e := range m.envs {
			clear(e.exposed)
		}
		m.nExposed = 0
	}
	if m.envs == nil {
		m.envs = map[string]*envMemory{}
		m.seeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}
	}
	e := m.envs[w.Environment]
	if e == nil {
		e = &envMemory{players: map[playerHash]knownPlayer{}, exposed: map[variantRef]*roaring.Bitmap{}}
		m.envs[w.Environment] = e
	}
	for p, id := range in.Players {
		h := m.hash(p)
		if _, ok := e.players[h]; !ok {
			e.players[h] = knownPlayer{id: id, first: 1, last: 0}
			m.nPlayers++
		}
	}
	id := func(player string, known uint32) (uint32, bool) {
		if known != 0 {
			return known, true
		}
		k, ok := e.players[m.hash(player)]
		return k.id, ok
	}
	var last variantRef
	var b *roaring.Bitmap
	for _, x := range w.Exposures {
		pid, ok := id(x.Player, x.ID)
		if !ok {
			continue
		}
		if e.exposedTo(x.Flag, x.Variant, &last, &b) == nil {
			b = roaring.New()
			e.exposed[last] = b
		}
		if b.CheckedAdd(pid) {
			m.nExposed++
		}
	}
	for _, a := range w.Activity {
		h := m.hash(a.Player)
		k, ok := e.players[h]
		if !ok {
			pid, known := id(a.Player, a.ID)
			if !known {
				continue
			}
			k = knownPlayer{id: pid, first: 1, last: 0}
			m.nPlayers++
		}
		switch day := int32(a.Day); { //nolint:gosec // days since the epoch fit 32 bits for millions of years
		case day > k.day || k.first > k.last:
			k.day, k.first, k.last = day, a.First, a.Last
		case day == k.day:
			// The stored minutes now span both.
			k.first, k.last = min(k.first, a.First), max(k.last, a.Last)
		}
		e.players[h] = k
	}
}

// forgetPlayers forgets about half of the players, at random (map order),
// rather than all of them.
func (m *memory) forgetPlayers() {
	for _, e := range m.envs {
		for p := range e.players {
			if m.nPlayers <= cmp.Or(m.maxPlayers, maxKnownPlayers)/2 {
				return
			}
			delete(e.players, p)
			m.nPlayers--
		}
	}
}
