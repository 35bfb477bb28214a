// Package snapshottest provides deterministic flag sets and signing keys
// for tests and benchmarks of snapshots, here and in the packages that
// serve or consume them (web, sdk). It must never be imported by
// non-test code: its keys are public.
package snapshottest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/snapshot"
)

// Environment is the environment of the sets GenerateSet returns.
const Environment = "production"

// GenerateSet returns a flag set of n flags, the same for the same n on
// every run and platform: a third object flags (seasonal-event configs of
// about 20 fields: multipliers, drop tables, quest lists, a nested
// schedule), a third numbers, a sixth booleans, a sixth strings. Every fourth
// flag has a targeting rule (a country list and a segment), every third a
// 50/50 split; every tenth is disabled. There are n/100+1 segments, each
// with 50 members. Flags and segments are sorted by key.
func GenerateSet(n int) flags.Set {
	r := rand.New(rand.NewPCG(uint64(n), 0x5015_71CE)) //nolint:gosec // deterministic test data, not secrets
	nseg := n/100 + 1
	set := flags.Set{Environment: Environment, Revision: int64(n) + 1}
	for i := range nseg {
		seg := flags.Segment{
			Key:  fmt.Sprintf("segment-%04d", i),
			Name: fmt.Sprintf("Segment %d", i),
			Conditions: []flags.Condition{
				{Attribute: "platform", Op: flags.OpIn, Value: raw([]string{"pc", "ps5", "xbox"}[:1+i%3])},
			},
		}
		for j := range 50 {
			seg.Members = append(seg.Members, fmt.Sprintf("player-%08d", r.IntN(100_000_000)+j))
		}
		set.Segments = append(set.Segments, seg)
	}
	for i := range n {
		f := flags.FlagState{Key: fmt.Sprintf("flag-%06d", i)}
		var on, off any
		switch {
		case i%3 == 0:
			f.Type = flags.TypeObject
			on, off = eventConfig(r, i, true), eventConfig(r, i, false)
		case i%3 == 1 && i%2 == 0:
			f.Type = flags.TypeBoolean
			on, off = true, false
		case i%3 == 1:
			f.Type = flags.TypeString
			on, off = fmt.Sprintf("variant-%d-%d", i, r.IntN(1000)), "control"
		default:
			f.Type = flags.TypeNumber
			on, off = float64(r.IntN(10_000))/100, 1
		}
		f.Enabled = i%10 != 9
		f.Variants = []flags.Variant{
			{Key: "on", Value: raw(on)},
			{Key: "off", Value: raw(off)},
		}
		f.DefaultVariant, f.OffVariant = "off", "off"
		if i%4 == 0 {
			f.Rules = append(f.Rules, flags.Rule{
				ID: "rule-1",
				Conditions: []flags.Condition{
					{Attribute: "country", Op: flags.OpIn, Value: raw([]string{"DE", "FR", "JP", "US", "BR"}[:1+r.IntN(5)])},
					{Op: flags.OpInSegment, Segment: set.Segments[r.IntN(nseg)].Key},
				},
				Variant: "on",
			})
		}
		if i%3 == 0 {
			f.Split = &flags.Split{Weights: []flags.Weight{{Variant: "on", Weight: 5000}, {Variant: "off", Weight: 5000}}}
		}
		set.Flags = append(set.Flags, f)
	}
	return set
}

// eventConfig returns a seasonal-event config of 20 top-level fields.
func eventConfig(r *rand.Rand, i int, on bool) map[string]any {
	drops := make([]map[string]any, 4)
	for j := range drops {
		drops[j] = map[string]any{"item": fmt.Sprintf("item-%d", r.IntN(5000)), "weight": r.IntN(100) + 1}
	}
	return map[string]any{
		"enabled":            on,
		"event_id":           fmt.Sprintf("event-%d", i),
		"title":              fmt.Sprintf("Winter Festival %d", i),
		"xp_multiplier":      1 + float64(r.IntN(300))/100,
		"gold_multiplier":    1 + float64(r.IntN(200))/100,
		"drop_rate_bonus":    float64(r.IntN(50)) / 100,
		"max_daily_rewards":  r.IntN(20) + 1,
		"min_level":          r.IntN(30),
		"max_level":          60 + r.IntN(40),
		"queue":              []string{"ranked", "casual", "arena"}[r.IntN(3)],
		"map_rotation":       []string{"frostpeak", "glacier", "tundra"},
		"quests":             []string{fmt.Sprintf("quest-%d", r.IntN(900)), fmt.Sprintf("quest-%d", r.IntN(900))},
		"drop_table":         drops,
		"shop_discount_pct":  r.IntN(60),
		"banner_color":       fmt.Sprintf("#%06x", r.IntN(1<<24)),
		"music_track":        "winter_theme_02",
		"snow_intensity":     float64(r.IntN(100)) / 100,
		"matchmaking_bucket": r.IntN(8),
		"schedule":           map[string]any{"start": "2026-12-01T00:00:00Z", "end": "2027-01-06T00:00:00Z", "timezone": "UTC"},
		"version":            r.IntN(50) + 1,
	}
}

func raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Key returns a fixed Ed25519 private key derived from name (its seed is
// the SHA-256 of "solstice test key " + name): the same name gives the same
// key, so signatures are reproducible.
func Key(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("solstice test key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// Signer returns a snapshot.Signer for Key(name).
func Signer(name string) snapshot.Signer {
	s, err := snapshot.NewSigner(Key(name))
	if err != nil {
		panic(err) // cannot happen: Key returns a well-formed key
	}
	return s
}

// StaticKeys implements snapshot.Keys with fixed signers per environment.
type StaticKeys map[string][]snapshot.Signer

var _ snapshot.Keys = StaticKeys(nil)

// Signers returns env's signers, or a KindNotFound error if there are none.
func (k StaticKeys) Signers(env string) ([]snapshot.Signer, error) {
	s := k[env]
	if len(s) == 0 {
		return nil, solstice.Errorf(solstice.KindNotFound, "no signing keys for %q", env)
	}
	return s, nil
}
