package main

import (
	"errors"
	"testing"
	"time"
)

func TestValidator(t *testing.T) {
	t0 := time.Date(2026, 12, 21, 18, 0, 0, 0, time.UTC)
	rules := Rules{Cooldown: 500 * time.Millisecond, MaxAge: 5 * time.Second, MaxSkew: 2 * time.Second, MaxNonces: 3}
	ms := time.Millisecond

	// step is one envelope arriving on conn's connection at t0+now, sent
	// (by its own account) at t0+at.
	type step struct {
		conn    string
		e       Envelope
		now, at time.Duration
		want    Reason // "": accepted
	}
	// send is an envelope from player-1, sent when it arrives.
	send := func(action, item, nonce string, now time.Duration, want Reason) step {
		return step{conn: "player-1", e: Envelope{Actor: "player-1", Action: action, Item: item, Nonce: nonce}, now: now, at: now, want: want}
	}
	// as is s with another actor or connection.
	as := func(s step, conn, actor string) step { s.conn, s.e.Actor = conn, actor; return s }
	// sentAt is s claiming another sending time.
	sentAt := func(s step, at time.Duration) step { s.at = at; return s }

	tests := []struct {
		name  string
		owned []string // items player-1 owns at the start
		steps []step
	}{
		{name: "a fresh action is accepted", steps: []step{send("attack", "", "n1", 0, "")}},
		{name: "an actor other than the connection's player", steps: []step{as(send("attack", "", "n1", 0, ReasonWrongActor), "player-1", "player-2")}},
		{name: "a spoofed envelope does not use up the victim's nonce", steps: []step{
			as(send("attack", "", "n1", 0, ReasonWrongActor), "player-1", "player-2"),
			as(send("attack", "", "n1", 100*ms, ""), "player-2", "player-2"),
		}},
		{name: "an unknown action", steps: []step{send("teleport", "", "n1", 0, ReasonMalformed)}},
		{name: "no nonce", steps: []step{send("attack", "", "", 0, ReasonMalformed)}},
		{name: "use names no item", owned: []string{"ice-sword"}, steps: []step{send("use", "", "n1", 0, ReasonMalformed)}},
		{name: "a replayed envelope", steps: []step{
			send("attack", "", "n1", 0, ""),
			sentAt(send("attack", "", "n1", time.Second, ReasonReplay), 0),
		}},
		{name: "a rejected envelope sent again is a replay", steps: []step{
			send("attack", "", "n1", 0, ""),
			send("attack", "", "n2", 100*ms, ReasonCooldown),
			sentAt(send("attack", "", "n2", time.Second, ReasonReplay), 100*ms),
		}},
		{name: "nonces are per player", steps: []step{
			send("attack", "", "n1", 0, ""),
			as(send("attack", "", "n1", 0, ""), "player-2", "player-2"),
		}},
		{name: "cooldowns are per action", steps: []step{
			send("attack", "", "n1", 0, ""),
			send("loot", "", "n2", 100*ms, ""),
			send("attack", "", "n3", 499*ms, ReasonCooldown),
			send("attack", "", "n4", 500*ms, ""),
		}},
		{name: "the cooldown runs on the server's clock, not the client's", steps: []step{
			send("attack", "", "n1", 0, ""),
			sentAt(send("attack", "", "n2", 100*ms, ReasonCooldown), time.Second),
		}},
		{name: "an item never given", steps: []step{send("use", "golden-sword", "n1", 0, ReasonNotOwned)}},
		{name: "an item given once is used once", owned: []string{"ice-sword"}, steps: []step{
			send("use", "ice-sword", "n1", 0, ""),
			send("use", "ice-sword", "n2", time.Second, ReasonNotOwned),
		}},
		{name: "ownership is checked after the cooldown", owned: []string{"ice-sword"}, steps: []step{
			send("use", "ice-sword", "n1", 0, ""),
			send("use", "ice-sword", "n2", 100*ms, ReasonCooldown),
		}},
		{name: "sent longer ago than MaxAge", steps: []step{sentAt(send("attack", "", "n1", 6*time.Second, ReasonExpired), 0)}},
		{name: "sent from further in the future than MaxSkew", steps: []step{sentAt(send("attack", "", "n1", 0, ReasonExpired), 3*time.Second)}},
		{name: "within MaxSkew in the future", steps: []step{sentAt(send("attack", "", "n1", 0, ""), time.Second)}},
		{name: "a nonce forgotten to make room is not accepted again", steps: []step{
			send("attack", "", "n1", 0, ""),
			send("attack", "", "n2", 500*ms, ""),
			send("attack", "", "n3", 1000*ms, ""),
			send("attack", "", "n4", 1500*ms, ""), // forgets n1
			sentAt(send("attack", "", "n1", 2000*ms, ReasonExpired), 0),
			send("attack", "", "n5", 2500*ms, ""), // fresh envelopes still pass
		}},
		{name: "a nonce older than MaxAge is forgotten, and its envelope refused", steps: []step{
			send("attack", "", "n1", 0, ""),
			sentAt(send("attack", "", "n1", 5100*ms, ReasonExpired), 0),
			send("attack", "", "n2", 5200*ms, ""),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := NewValidator(rules)
			for _, item := range tt.owned {
				v.Grant("player-1", item)
			}
			for i, s := range tt.steps {
				s.e.At = t0.Add(s.at)
				err := v.Validate(s.conn, s.e, t0.Add(s.now))
				var got Reason
				if err != nil {
					var rej *Rejection
					if !errors.As(err, &rej) {
						t.Fatalf("step %d: error %v is not a *Rejection", i+1, err)
					}
					got = rej.Reason
				}
				if got != s.want {
					t.Errorf("step %d (%s %+v at +%s): got %q (%v), want %q", i+1, s.conn, s.e, s.now, got, err, s.want)
				}
			}
		})
	}
}

// TestNonceWindowBounded checks that a player sending nonces without end
// never makes the server remember more than MaxNonces of them.
func TestNonceWindowBounded(t *testing.T) {
	rules := Rules{Cooldown: 0, MaxAge: time.Hour, MaxSkew: time.Second, MaxNonces: 8}
	v := NewValidator(rules)
	t0 := time.Now()
	for i := range 1000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		e := Envelope{Actor: "p", Action: "attack", Nonce: now.String(), At: now}
		if err := v.Validate("p", e, now); err != nil {
			t.Fatalf("envelope %d: %v", i, err)
		}
	}
	if n := len(v.players["p"].nonces.seen); n > rules.MaxNonces {
		t.Errorf("remembers %d nonces, want at most %d", n, rules.MaxNonces)
	}
}
