package snapshot_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/snapshot/snapshottest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// t0 is the issue time of the test snapshots.
var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

const testEnv = "production"

// testSet is a small flag set that exercises every part of the payload.
func testSet() flags.Set {
	return flags.Set{
		Environment: testEnv,
		Revision:    7,
		Flags: []flags.FlagState{
			{
				Key:  "double-xp",
				Type: flags.TypeBoolean,
				Config: flags.Config{
					Enabled:        true,
					Variants:       []flags.Variant{{Key: "off", Value: json.RawMessage(`false`)}, {Key: "on", Value: json.RawMessage(`true`)}},
					DefaultVariant: "off",
					OffVariant:     "off",
					Rules: []flags.Rule{{
						ID:         "beta",
						Conditions: []flags.Condition{{Op: flags.OpInSegment, Segment: "beta-testers"}},
						Variant:    "on",
					}},
				},
			},
			{
				Key:  "winter-event",
				Type: flags.TypeObject,
				Config: flags.Config{
					Enabled: true,
					Variants: []flags.Variant{
						{Key: "control", Value: json.RawMessage(`{"drops": [], "xp": 1}`)},
						{Key: "festive", Value: json.RawMessage(`{"drops":["snowglobe","<scarf> & hat"],"xp":1.5}`)},
					},
					DefaultVariant: "control",
					OffVariant:     "control",
					Split:          &flags.Split{Weights: []flags.Weight{{Variant: "festive", Weight: 1000}, {Variant: "control", Weight: 9000}}},
				},
			},
		},
		Segments: []flags.Segment{{
			Key:     "beta-testers",
			Members: []string{"player-1", "player-2"},
		}},
	}
}

// key returns the fixed test key of a name and its public half.
func key(name string) (snapshot.Signer, ed25519.PublicKey) {
	s := snapshottest.Signer(name)
	return s, s.Public()
}

// build builds testSet at version 42, issued at t0, valid for 24h, signed
// by the named test keys.
func build(t testing.TB, names ...string) *snapshot.Built {
	t.Helper()
	var signers []snapshot.Signer
	for _, n := range names {
		s, _ := key(n)
		signers = append(signers, s)
	}
	b, err := snapshot.Build(testSet(), 42, t0, 24*time.Hour, signers)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return b
}

// opts returns options for opening a test snapshot an hour after t0,
// trusting the named test keys.
func opts(names ...string) snapshot.OpenOptions {
	o := snapshot.OpenOptions{Environment: testEnv, Now: t0.Add(time.Hour)}
	for _, n := range names {
		_, pub := key(n)
		o.Trusted = append(o.Trusted, pub)
	}
	return o
}

// rawSig is one signature for rawEnvelope.
type rawSig struct {
	keyid string
	sig   []byte
}

// sigBy signs payloadType and payload with the named test key, computing
// the PAE independently of package snapshot.
func sigBy(name, payloadType string, payload []byte) rawSig {
	priv := snapshottest.Key(name)
	pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload)
	return rawSig{keyid: snapshot.KeyID(priv.Public().(ed25519.PublicKey)), sig: ed25519.Sign(priv, []byte(pae))}
}

// rawEnvelope writes an envelope by hand, so tests can make any envelope,
// including ones Sign refuses to make.
func rawEnvelope(payloadType string, payload []byte, sigs ...rawSig) []byte {
	parts := make([]string, len(sigs))
	for i, s := range sigs {
		parts[i] = fmt.Sprintf(`{"keyid":%q,"sig":%q}`, s.keyid, base64.StdEncoding.EncodeToString(s.sig))
	}
	return fmt.Appendf(nil, `{"payloadType":%q,"payload":%q,"signatures":[%s]}`,
		payloadType, base64.StdEncoding.EncodeToString(payload), strings.Join(parts, ","))
}

// payloadJSON marshals testSet's payload with edits applied.
func payloadJSON(t testing.TB, edit func(p *snapshot.Payload)) []byte {
	t.Helper()
	s := testSet()
	p := snapshot.Payload{
		Schema: snapshot.Schema, Environment: s.Environment, Version: 42, Revision: s.Revision,
		IssuedAt: t0.Unix(), ExpiresAt: t0.Add(24 * time.Hour).Unix(),
		Flags: s.Flags, Segments: s.Segments,
	}
	if edit != nil {
		edit(&p)
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signed returns an envelope of payload signed by the named test key.
func signed(name string, payload []byte) []byte {
	return rawEnvelope(snapshot.PayloadType, payload, sigBy(name, snapshot.PayloadType, payload))
}
