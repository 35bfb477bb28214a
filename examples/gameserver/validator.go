package main

import (
	"fmt"
	"time"
)

// Envelope is one action a player's client sends to the game server. The
// client is never trusted: every field is checked by Validator.Validate
// before the action has any effect.
type Envelope struct {
	Actor  string    `json:"actor"`          // the player the client claims to act as
	Action string    `json:"action"`         // "attack", "loot" or "use"
	Item   string    `json:"item,omitempty"` // the item a "use" consumes
	Nonce  string    `json:"nonce"`          // unique per envelope: a copy sent again is a replay
	At     time.Time `json:"at"`             // when the client says it sent the envelope
}

// Reason says why an envelope was rejected. Reasons are what a game server
// counts and reports (rejected actions by reason are what guardrails watch).
type Reason string

// Reasons for rejecting an envelope, in the order Validate checks them.
const (
	ReasonWrongActor Reason = "wrong_actor" // the actor is not the player of the sending connection
	ReasonMalformed  Reason = "malformed"   // an unknown action, or a missing nonce or item
	ReasonExpired    Reason = "expired"     // sent too long ago (or in the future) to check its nonce
	ReasonReplay     Reason = "replay"      // the nonce was used before
	ReasonCooldown   Reason = "cooldown"    // the same action again before its cooldown ended
	ReasonNotOwned   Reason = "not_owned"   // using an item the player does not own
)

// Rejection is the error Validate returns for an envelope it refuses.
type Rejection struct {
	Reason Reason
	Detail string
}

func (r *Rejection) Error() string { return string(r.Reason) + ": " + r.Detail }

func reject(reason Reason, format string, args ...any) error {
	return &Rejection{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Rules are the limits a Validator enforces.
type Rules struct {
	// Cooldown is the shortest time between two accepted actions of the
	// same kind by one player, measured on the server's clock.
	Cooldown time.Duration
	// MaxAge is how old (by its At) an envelope may be; older ones are
	// rejected as expired, so their nonces need not be remembered longer.
	// MaxSkew is how far in the future At may be (client clocks drift).
	MaxAge, MaxSkew time.Duration
	// MaxNonces bounds the nonces remembered per player.
	MaxNonces int
}

// Validator is the server's authority over player actions: it checks each
// envelope against what the server knows (who is on the connection, when
// the player last acted, what the player owns, which nonces were used) and
// never against what the client claims. It is not safe for concurrent
// use: a game server runs one per match, on the match's goroutine.
type Validator struct {
	rules   Rules
	players map[string]*playerState
}

// playerState is what the server knows about one player.
type playerState struct {
	lastAction map[string]time.Time // action → when it was last accepted
	inventory  map[string]int       // item → count
	nonces     nonceWindow
}

// NewValidator returns a validator enforcing r.
func NewValidator(r Rules) *Validator {
	return &Validator{rules: r, players: map[string]*playerState{}}
}

func (v *Validator) player(id string) *playerState {
	p, ok := v.players[id]
	if !ok {
		p = &playerState{lastAction: map[string]time.Time{}, inventory: map[string]int{}}
		v.players[id] = p
	}
	return p
}

// Grant gives player one item (a drop the server decided on).
func (v *Validator) Grant(player, item string) { v.player(player).inventory[item]++ }

// Validate checks envelope e, received at now on the connection of player
// conn. It returns nil if the action is accepted, and then records it: the
// action's cooldown starts and a used item is consumed. Otherwise it
// returns a *Rejection and the action has no effect, except that a nonce,
// once seen from its own player, stays used whatever the outcome: a
// rejected envelope sent again is still a replay.
func (v *Validator) Validate(conn string, e Envelope, now time.Time) error {
	// 1. The actor is whoever is authenticated on the connection, whatever
	// the envelope says. Checked first: a spoofed envelope must not even
	// use up a nonce of the player it impersonates.
	if e.Actor != conn {
		return reject(ReasonWrongActor, "connection of %s sent an action as %q", conn, e.Actor)
	}
	needsItem, known := actionNeedsItem(e.Action)
	switch {
	case !known:
		return reject(ReasonMalformed, "unknown action %q", e.Action)
	case e.Nonce == "":
		return reject(ReasonMalformed, "no nonce")
	case needsItem && e.Item == "":
		return reject(ReasonMalformed, "%s names no item", e.Action)
	}
	p := v.player(conn)

	// 2. Replays: each nonce is accepted once.
	if err := p.nonces.use(e.Nonce, e.At, now, v.rules); err != nil {
		return err
	}

	// 3. Cooldown, on the server's clock: a client cannot make it shorter
	// by lying about At.
	if last, ok := p.lastAction[e.Action]; ok {
		if since := now.Sub(last); since < v.rules.Cooldown {
			return reject(ReasonCooldown, "%s again after %s; the cooldown is %s", e.Action, since, v.rules.Cooldown)
		}
	}

	// 4. Ownership: only items the server gave the player can be used.
	if needsItem && p.inventory[e.Item] == 0 {
		return reject(ReasonNotOwned, "%s does not own %q", conn, e.Item)
	}

	p.lastAction[e.Action] = now
	if needsItem {
		p.inventory[e.Item]--
	}
	return nil
}

// actionNeedsItem reports whether action names an item, and whether the
// action exists at all.
func actionNeedsItem(action string) (needsItem, known bool) {
	switch action {
	case "attack", "loot":
		return false, true
	case "use":
		return true, true
	}
	return false, false
}

// nonceWindow remembers the nonces one player used recently, in bounded
// memory: at most Rules.MaxNonces, none older than Rules.MaxAge.
//
// A forgotten nonce must not become usable again. Envelopes older than
// MaxAge are rejected anyway, and when the window is full the oldest nonce
// is forgotten and floor moves up to its At: from then on any envelope
// sent at or before floor is rejected as expired, since its nonce can no
// longer be checked. An honest client, whose envelopes are fresh, never
// meets the floor unless it sends more than MaxNonces per MaxAge.
type nonceWindow struct {
	seen  map[string]time.Time // nonce → the At of its envelope
	order []string             // nonces in the order they were first seen
	floor time.Time
}

func (w *nonceWindow) use(nonce string, at, now time.Time, r Rules) error {
	switch oldest := now.Add(-r.MaxAge); {
	case at.After(now.Add(r.MaxSkew)):
		return reject(ReasonExpired, "sent %s in the future; clocks may differ by %s at most", at.Sub(now), r.MaxSkew)
	case at.Before(oldest):
		return reject(ReasonExpired, "sent %s ago; envelopes older than %s are refused", now.Sub(at), r.MaxAge)
	case !at.After(w.floor):
		return reject(ReasonExpired, "sent before the oldest nonce still remembered")
	}
	if _, ok := w.seen[nonce]; ok {
		return reject(ReasonReplay, "nonce %s was already used", nonce)
	}
	if w.seen == nil {
		w.seen = map[string]time.Time{}
	}
	// Forget nonces whose envelopes would now be refused as too old.
	for len(w.order) > 0 && w.seen[w.order[0]].Before(now.Add(-r.MaxAge)) {
		delete(w.seen, w.order[0])
		w.order = w.order[1:]
	}
	// Make room, raising the floor past what is forgotten.
	for len(w.order) >= max(r.MaxNonces, 1) {
		if t := w.seen[w.order[0]]; t.After(w.floor) {
			w.floor = t
		}
		delete(w.seen, w.order[0])
		w.order = w.order[1:]
	}
	w.seen[nonce] = at
	w.order = append(w.order, nonce)
	return nil
}
