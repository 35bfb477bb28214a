package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/open-feature/go-sdk/openfeature"

	"github.com/solsticehq/solstice/sdk"
)

// festivalFlag is the seasonal-event config: an object flag whose JSON
// Schema (see cmd/solstice/seed.go) the control plane enforces on every
// write.
const festivalFlag = "winter-festival"

// festival is the value of the winter-festival flag.
type festival struct {
	Event        string   `json:"event"`
	XPMultiplier float64  `json:"xp_multiplier"`
	Drops        []drop   `json:"drops"`
	Quests       []string `json:"quests,omitempty"`
}

type drop struct {
	Item   string `json:"item"`
	Weight int    `json:"weight"`
}

// noFestival is what the game plays when the flag cannot be read at all
// (no snapshot, or no such flag): OpenFeature then answers the code
// default, and the game goes on without the event rather than not at all.
func noFestival() festival {
	return festival{Event: "none", XPMultiplier: 1, Drops: []drop{{Item: "coal", Weight: 1}}}
}

// roll picks an item from the drop table, by weight.
func (f festival) roll(rng *rand.Rand) string {
	total := 0
	for _, d := range f.Drops {
		total += max(d.Weight, 0)
	}
	if total == 0 {
		return ""
	}
	n := rng.IntN(total)
	for _, d := range f.Drops {
		if n < max(d.Weight, 0) {
			return d.Item
		}
		n -= max(d.Weight, 0)
	}
	return ""
}

// festivalFor reads the winter-festival config for player through
// OpenFeature: locally, from the SDK's verified snapshot, with the player
// as the targeting key and as userId (the attribute the split buckets
// by). When ctx carries a pin (sdk.WithPinned), the read is from the
// pinned snapshot.
func (gs *gameServer) festivalFor(ctx context.Context, player string) (festival, openfeature.InterfaceEvaluationDetails) {
	evalCtx := openfeature.NewEvaluationContext(player, map[string]any{"userId": player})
	d, err := gs.of.ObjectValueDetails(ctx, festivalFlag, nil, evalCtx)
	if err != nil {
		return noFestival(), d // d.ErrorCode says why
	}
	// The value is decoded JSON (map[string]any); round-trip it into the
	// struct the game uses.
	var f festival
	b, err := json.Marshal(d.Value)
	if err == nil {
		err = json.Unmarshal(b, &f)
	}
	if err != nil || f.XPMultiplier <= 0 {
		return noFestival(), d
	}
	return f, d
}

// matchReport is what happened in one match.
type matchReport struct {
	Number      int
	Version     int64 // the snapshot version pinned for the whole match
	Revision    int64
	Stale       bool // the snapshot was stale when the match started
	FromCache   bool // ...and came from the last-known-good file
	Players     []playerReport
	Accepted    int
	Rejected    map[Reason]int
	Interrupted bool // the match was cut short by shutdown
}

// playerReport is one player's match.
type playerReport struct {
	ID        string
	Behaviour behaviour
	Variant   string // of winter-festival, as evaluated at the start
	Reason    string // why that variant (TARGETING_MATCH, SPLIT, ...)
	Festival  festival
	XP        float64
	// Accepted and Rejected count the player's actions, Drops the items
	// the server rolled for them: what the match reported as telemetry.
	Accepted, Rejected, Drops int
	// Multipliers are the distinct xp_multiplier values read during the
	// match, in order. Pinned, a match reads exactly one.
	Multipliers []float64
}

// match is one match under way.
type match struct {
	gs      *gameServer
	ctx     context.Context // carries the match's pin
	v       *Validator
	rng     *rand.Rand
	players []*simPlayer
	report  matchReport
}

// playMatch plays one match of gs.opts.Match and returns its report. A
// match pins the snapshot at its start: every evaluation in it sees that
// snapshot, whatever the control plane publishes meanwhile, and the next
// match picks the new one up. It returns early if ctx ends.
func (gs *gameServer) playMatch(ctx context.Context, n int) matchReport {
	pin := gs.client.Pin()
	m := &match{
		gs:  gs,
		ctx: sdk.WithPinned(ctx, pin),
		v: NewValidator(Rules{
			Cooldown: gs.opts.Cooldown,
			MaxAge:   5 * time.Second, MaxSkew: 2 * time.Second,
			MaxNonces: 64,
		}),
		// Seeded by the seed and the match number: the same players make
		// the same moves with the same config, run after run.
		rng:    rand.New(rand.NewPCG(gs.opts.Seed, uint64(n))), //nolint:gosec // a simulation, not a secret
		report: matchReport{Number: n, Version: pin.Version(), Revision: pin.Revision(), Rejected: map[Reason]int{}},
	}
	state := "fresh"
	if s, ok := gs.client.Snapshot(); ok && s.Version == pin.Version() {
		m.report.Stale, m.report.FromCache = s.Stale, s.FromCache
		switch {
		case s.Stale:
			state = "STALE, playing on the last-known-good config"
		case s.FromCache:
			state = "from the last-known-good file"
		}
	}
	gs.con.printf("match %d: snapshot version %d (revision %d), %s; %d players for %s",
		n, pin.Version(), pin.Revision(), state, gs.opts.Players, gs.opts.Match)

	ids := make([]string, gs.opts.Players)
	for i := range ids {
		ids[i] = fmt.Sprintf("player-%d", i+1)
	}
	for i, id := range ids {
		p := &simPlayer{id: id, behaviour: behaviourOf(i), readyAt: map[string]time.Time{}}
		m.players = append(m.players, p)
		f, d := gs.festivalFor(m.ctx, id)
		m.report.Players = append(m.report.Players, playerReport{
			ID: id, Behaviour: p.behaviour, Variant: d.Variant, Reason: string(d.Reason),
			Festival: f, Multipliers: []float64{f.XPMultiplier},
		})
		gs.con.printf("  %-9s %-9s %-8s %-15s xp x%g  drops %s", id, p.behaviour, d.Variant, d.Reason, f.XPMultiplier, dropList(f.Drops))
		// A match is a session: its actions per player and variant feed
		// the guardrails' estimate of how clustered rejects are.
		gs.reporter.SessionStart(id)
	}

	tick := time.Second / time.Duration(gs.opts.TickRate)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	start := time.Now()
	for i := 1; time.Duration(i)*tick <= gs.opts.Match; i++ {
		select {
		case <-ctx.Done():
			m.report.Interrupted = true
		case <-ticker.C:
		}
		if m.report.Interrupted {
			break
		}
		// The match's clock advances one tick at a time, whatever the
		// scheduler does, so that a seed replays the same match.
		now := start.Add(time.Duration(i) * tick)
		for j, p := range m.players {
			if e, ok := p.act(now, m.rng, gs.opts.Cooldown, ids); ok {
				m.serve(j, e, now)
			}
		}
	}
	for _, id := range ids {
		gs.reporter.SessionEnd(id)
	}
	m.summarize()
	return m.report
}

// serve handles one envelope that arrived on the connection of player j:
// validate it, then apply its effect.
func (m *match) serve(j int, e Envelope, now time.Time) {
	conn, pr := m.players[j], &m.report.Players[j]
	if err := m.v.Validate(conn.id, e, now); err != nil {
		var rej *Rejection
		if !errors.As(err, &rej) {
			panic(err) // Validate returns only rejections
		}
		m.report.Rejected[rej.Reason]++
		pr.Rejected++
		// Counted for every variant the player was exposed to, with the
		// reason: what a reject-rate guardrail watches.
		m.gs.reporter.Rejected(conn.id, string(rej.Reason))
		if m.report.Rejected[rej.Reason] == 1 { // print the first of each reason
			m.gs.con.printf("  rejected %s %s: %v", conn.id, strings.TrimSpace(e.Action+" "+e.Item), err)
		}
		return
	}
	m.report.Accepted++
	pr.Accepted++
	m.gs.reporter.Accepted(conn.id)

	// Read the config again where it is used, as game code does: the pin
	// in m.ctx keeps it the match's config.
	f, _ := m.gs.festivalFor(m.ctx, conn.id)
	if f.XPMultiplier != pr.Multipliers[len(pr.Multipliers)-1] {
		pr.Multipliers = append(pr.Multipliers, f.XPMultiplier)
	}
	switch e.Action {
	case "attack":
		pr.XP += 10 * f.XPMultiplier
	case "loot":
		// The server rolls the drop: clients never say what they got.
		if item := f.roll(m.rng); item != "" {
			m.v.Grant(conn.id, item)
			conn.inventory = append(conn.inventory, item) // the server tells the client
			pr.Drops++
			m.gs.reporter.Count(conn.id, "drops", 1) // a custom counter
		}
	case "use":
		pr.XP += 25 * f.XPMultiplier
		if i := slices.Index(conn.inventory, e.Item); i >= 0 {
			conn.inventory = slices.Delete(conn.inventory, i, i+1)
		}
	}
}

// summarize prints the match's outcome.
func (m *match) summarize() {
	r := &m.report
	rejected, reasons := 0, []string{}
	for reason, n := range r.Rejected {
		rejected += n
		reasons = append(reasons, fmt.Sprintf("%s %d", reason, n))
	}
	slices.Sort(reasons)
	how := "over"
	if r.Interrupted {
		how = "interrupted"
	}
	m.gs.con.printf("match %d %s: %d accepted, %d rejected (%s)", r.Number, how, r.Accepted, rejected, strings.Join(reasons, ", "))
	xp := make([]string, len(r.Players))
	for i, p := range r.Players {
		xp[i] = fmt.Sprintf("%s %g", p.ID, p.XP)
	}
	m.gs.con.printf("  xp: %s", strings.Join(xp, ", "))
}

func dropList(drops []drop) string {
	s := make([]string, len(drops))
	for i, d := range drops {
		s[i] = fmt.Sprintf("%s:%d", d.Item, d.Weight)
	}
	return strings.Join(s, " ")
}

// behaviour is how a simulated player's client behaves.
type behaviour string

const (
	honest   behaviour = "honest"
	replayer behaviour = "replayer" // sends an earlier envelope again
	spoofer  behaviour = "spoofer"  // claims to be another player
	spammer  behaviour = "spammer"  // ignores cooldowns
	cheater  behaviour = "cheater"  // uses an item it was never given
)

// behaviourOf gives the i-th player (from 0) its behaviour: player-1 is
// honest, the next four each cheat in their own way, and so on.
func behaviourOf(i int) behaviour {
	return [...]behaviour{honest, replayer, spoofer, spammer, cheater}[i%5]
}

// simPlayer is a player's game client, as the simulation plays it.
type simPlayer struct {
	id        string
	behaviour behaviour
	readyAt   map[string]time.Time // when the client believes each action is off cooldown
	inventory []string             // the items the server said it got
	last      Envelope             // the last envelope sent
}

// act is the client deciding what, if anything, to send this tick.
func (p *simPlayer) act(now time.Time, rng *rand.Rand, cooldown time.Duration, players []string) (Envelope, bool) {
	if rng.IntN(2) == 0 {
		return Envelope{}, false // idle this tick
	}
	if p.behaviour != honest && rng.IntN(4) == 0 { // cheat a quarter of the time
		switch p.behaviour {
		case replayer:
			if p.last.Nonce != "" {
				return p.last, true // the same envelope again, nonce and all
			}
		case spoofer:
			if other := players[rng.IntN(len(players))]; other != p.id {
				e := p.send("attack", "", now, rng)
				e.Actor = other
				return e, true
			}
		case spammer:
			return p.send("attack", "", now, rng), true // cooldown or not
		case cheater:
			return p.send("use", "golden-sword", now, rng), true // it never dropped
		}
	}
	// Play fair: an action whose cooldown has passed.
	var choices []string
	for _, a := range []string{"attack", "loot", "use"} {
		if now.Before(p.readyAt[a]) || (a == "use" && len(p.inventory) == 0) {
			continue
		}
		choices = append(choices, a)
	}
	if len(choices) == 0 {
		return Envelope{}, false
	}
	a, item := choices[rng.IntN(len(choices))], ""
	if a == "use" {
		item = p.inventory[rng.IntN(len(p.inventory))]
	}
	p.readyAt[a] = now.Add(cooldown)
	return p.send(a, item, now, rng), true
}

// send makes a fresh envelope with a new random nonce.
func (p *simPlayer) send(action, item string, now time.Time, rng *rand.Rand) Envelope {
	p.last = Envelope{Actor: p.id, Action: action, Item: item, Nonce: fmt.Sprintf("%016x", rng.Uint64()), At: now}
	return p.last
}
