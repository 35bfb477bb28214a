// Package fleet tracks which snapshot version every game server holds, from
// the identity headers each poll carries, so that an operator can see when
// a change (a rollback above all) has reached the whole fleet.
//
// The tracker lives in the memory of the control-plane process that serves
// the polls: after a restart it is empty until each server's next poll,
// which with long polls is at most one poll interval away.
package fleet

import (
	"sort"
	"sync"
	"time"

	"github.com/solsticehq/solstice"
)

// Limits that bound the tracker's memory.
const (
	MaxServersPerEnvironment = 100_000 // polls from further new servers are not tracked
	MaxServerIDLength        = 128     // longer ids are cut
	Forget                   = 7 * 24 * time.Hour
	historyLength            = 256 // publications remembered per environment
)

// Tracker records polls and publications. It is safe for concurrent use.
type Tracker struct {
	clock solstice.Clock

	mu   sync.Mutex
	envs map[string]*envFleet
}

type envFleet struct {
	servers   map[string]*server
	published []publication // ascending by version, at most historyLength
}

type server struct {
	version   int64
	address   string
	firstSeen time.Time
	lastSeen  time.Time
}

type publication struct {
	version int64
	at      time.Time
}

// New returns an empty tracker.
func New(clock solstice.Clock) *Tracker {
	if clock == nil {
		clock = solstice.WallClock
	}
	return &Tracker{clock: clock, envs: map[string]*envFleet{}}
}

func (t *Tracker) env(name string) *envFleet {
	e := t.envs[name]
	if e == nil {
		e = &envFleet{servers: map[string]*server{}}
		t.envs[name] = e
	}
	return e
}

// Seen records a poll by server id of env, holding version (0 when it holds
// none yet), from address. An empty id is not tracked.
func (t *Tracker) Seen(env, id, address string, version int64) {
	if id == "" {
		return
	}
	if len(id) > MaxServerIDLength {
		id = id[:MaxServerIDLength]
	}
	now := t.clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.env(env)
	s := e.servers[id]
	if s == nil {
		if len(e.servers) >= MaxServersPerEnvironment {
			return
		}
		s = &server{firstSeen: now}
		e.servers[id] = s
	}
	s.version, s.address, s.lastSeen = version, address, now
}

// Published records that version of env became current at at.
func (t *Tracker) Published(env string, version int64, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.env(env)
	if n := len(e.published); n > 0 && e.published[n-1].version >= version {
		return
	}
	e.published = append(e.published, publication{version, at})
	if len(e.published) > historyLength {
		e.published = e.published[len(e.published)-historyLength:]
	}
}

// Report is the state of one environment's fleet.
type Report struct {
	Environment string         `json:"environment"`
	Newest      int64          `json:"newest_version"`
	NewestAt    *time.Time     `json:"newest_published_at,omitempty"`
	Servers     int            `json:"servers"`   // seen within the stale window
	Converged   bool           `json:"converged"` // every such server holds the newest version
	Versions    []VersionCount `json:"versions"`  // servers per version, newest first
	Lagging     []Server       `json:"lagging"`   // behind the newest version, longest lagging first
	NotSeen     []Server       `json:"not_seen"`  // no poll within the stale window
}

// VersionCount is how many servers hold one version.
type VersionCount struct {
	Version int64 `json:"version"`
	Servers int   `json:"servers"`
}

// Server is one game server as the tracker knows it.
type Server struct {
	ID        string    `json:"id"`
	Version   int64     `json:"version"`
	Address   string    `json:"address,omitempty"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// LaggingSince is when a version newer than the server's was first
	// published (as far as this process knows); LaggingSeconds is the time
	// since then. Both are set only for lagging servers.
	LaggingSince   *time.Time `json:"lagging_since,omitempty"`
	LaggingSeconds float64    `json:"lagging_seconds,omitempty"`
}

// Report describes env's fleet at the tracker's now: servers not seen for
// staleAfter are listed apart, servers not seen for Forget are dropped.
// newest is the version currently served (0: use the newest published).
func (t *Tracker) Report(env string, newest int64, staleAfter time.Duration) Report {
	now := t.clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.env(env)
	if n := len(e.published); newest == 0 && n > 0 {
		newest = e.published[n-1].version
	}
	r := Report{Environment: env, Newest: newest, Versions: []VersionCount{}, Lagging: []Server{}, NotSeen: []Server{}}
	for _, p := range e.published {
		if p.version == newest {
			at := p.at
			r.NewestAt = &at
		}
	}
	counts := map[int64]int{}
	for id, s := range e.servers {
		idle := now.Sub(s.lastSeen)
		if idle > Forget {
			delete(e.servers, id)
			continue
		}
		srv := Server{ID: id, Version: s.version, Address: s.address, FirstSeen: s.firstSeen, LastSeen: s.lastSeen}
		if idle > staleAfter {
			r.NotSeen = append(r.NotSeen, srv)
			continue
		}
		r.Servers++
		counts[s.version]++
		if s.version < newest {
			since := e.supersededAt(s.version, s.firstSeen)
			srv.LaggingSince, srv.LaggingSeconds = &since, max(now.Sub(since).Seconds(), 0)
			r.Lagging = append(r.Lagging, srv)
		}
	}
	for v, n := range counts {
		r.Versions = append(r.Versions, VersionCount{Version: v, Servers: n})
	}
	sort.Slice(r.Versions, func(i, j int) bool { return r.Versions[i].Version > r.Versions[j].Version })
	sort.Slice(r.Lagging, func(i, j int) bool {
		if !r.Lagging[i].LaggingSince.Equal(*r.Lagging[j].LaggingSince) {
			return r.Lagging[i].LaggingSince.Before(*r.Lagging[j].LaggingSince)
		}
		return r.Lagging[i].ID < r.Lagging[j].ID
	})
	sort.Slice(r.NotSeen, func(i, j int) bool { return r.NotSeen[i].LastSeen.After(r.NotSeen[j].LastSeen) })
	r.Converged = len(r.Lagging) == 0
	return r
}

// supersededAt returns when the first version above v was published, or
// fallback when the history does not reach back that far.
func (e *envFleet) supersededAt(v int64, fallback time.Time) time.Time {
	i := sort.Search(len(e.published), func(i int) bool { return e.published[i].version > v })
	if i == len(e.published) {
		return fallback
	}
	if i == 0 && v < e.published[0].version-1 && fallback.Before(e.published[0].at) {
		return fallback // superseded before the history starts
	}
	return e.published[i].at
}
