package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/telemetry"
)

// winterSchema constrains the demo seasonal-event config.
const winterSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["event", "xp_multiplier", "drops"],
  "additionalProperties": false,
  "properties": {
    "event": {"type": "string", "minLength": 1},
    "xp_multiplier": {"type": "number", "minimum": 1, "maximum": 5},
    "drops": {
      "type": "array", "minItems": 1,
      "items": {
        "type": "object", "required": ["item", "weight"], "additionalProperties": false,
        "properties": {"item": {"type": "string"}, "weight": {"type": "integer", "minimum": 1}}
      }
    },
    "quests": {"type": "array", "items": {"type": "string"}}
  }
}`

// seedDemo fills an empty database with a small demo project, through the
// same domain service as every other write. It reports whether it seeded
// anything; a database that has flags already is left alone.
func seedDemo(ctx context.Context, svc *flags.Service) (bool, error) {
	existing, err := svc.Store().ListFlags(ctx)
	if err != nil {
		return false, err
	}
	if len(existing) > 0 {
		return false, nil
	}
	if _, err := svc.PutSegment(ctx, "development", flags.Segment{
		Key: "beta-testers", Name: "Beta testers", Description: "Players who opted into early content",
		Members: []string{"player-1", "player-2", "player-3"},
	}, 0, "Seed: beta testers"); err != nil {
		return false, err
	}
	winter := flags.NewFlag{
		Key: "winter-festival", Name: "Winter Festival config", Type: flags.TypeObject,
		Description: "Seasonal event: drop table, XP multiplier and quests",
		Tags:        []string{"seasonal", "winter"},
		Schema:      json.RawMessage(winterSchema),
		Variants: []flags.Variant{
			{Key: "control", Value: json.RawMessage(`{"event":"none","xp_multiplier":1,"drops":[{"item":"coal","weight":1}]}`)},
			{Key: "festival", Value: json.RawMessage(`{"event":"winter-festival","xp_multiplier":2,"drops":[{"item":"snow-globe","weight":5},{"item":"ice-sword","weight":1}],"quests":["build-a-snowman","gift-run"]}`)},
		},
		DefaultVariant: "control", OffVariant: "control",
	}
	specs := []flags.NewFlag{
		winter,
		{Key: "double-xp", Name: "Double XP weekend", Type: flags.TypeBoolean, Tags: []string{"economy"}},
		{Key: "shop-banner", Name: "Shop banner text", Type: flags.TypeString, Tags: []string{"ui"},
			Variants: []flags.Variant{{Key: "default", Value: json.RawMessage(`"Welcome to the shop"`)}, {Key: "winter", Value: json.RawMessage(`"Winter sale: 30% off"`)}}},
		{Key: "match-size", Name: "Players per match", Type: flags.TypeNumber,
			Variants: []flags.Variant{{Key: "standard", Value: json.RawMessage(`16`)}, {Key: "large", Value: json.RawMessage(`24`)}}},
	}
	for _, spec := range specs {
		if _, err := svc.CreateFlag(ctx, spec); err != nil {
			return false, fmt.Errorf("create %s: %w", spec.Key, err)
		}
	}
	// In development: the festival for beta testers, then half of everyone else.
	fc, err := svc.GetConfig(ctx, "development", "winter-festival")
	if err != nil {
		return false, err
	}
	cfg := fc.Config
	cfg.Enabled = true
	cfg.Rules = []flags.Rule{{ID: "beta", Description: "Beta testers get the festival",
		Conditions: []flags.Condition{{Op: flags.OpInSegment, Segment: "beta-testers"}}, Variant: "festival"}}
	cfg.Split = &flags.Split{BucketBy: "userId", Weights: []flags.Weight{{Variant: "festival", Weight: 5000}, {Variant: "control", Weight: 5000}}}
	if _, err := svc.PutConfig(ctx, "development", "winter-festival", cfg, fc.Revision, "Seed: festival for beta testers and 50% of players"); err != nil {
		return false, err
	}
	xp, err := svc.GetConfig(ctx, "development", "double-xp")
	if err != nil {
		return false, err
	}
	xpc := xp.Config
	xpc.Enabled = true
	xpc.Rules = []flags.Rule{{ID: "ios-new-clients", Conditions: []flags.Condition{
		{Attribute: "platform", Op: flags.OpEquals, Value: json.RawMessage(`"ios"`)},
		{Attribute: "clientVersion", Op: flags.OpSemverGtEq, Value: json.RawMessage(`"2.4.0"`)},
	}, Variant: "on"}}
	xpc.DefaultVariant = "off"
	if _, err := svc.PutConfig(ctx, "development", "double-xp", xpc, xp.Revision, "Seed: double XP on iOS 2.4+"); err != nil {
		return false, err
	}
	return true, nil
}

// seedGuardrail watches the seeded festival's reject rate in development.
func seedGuardrail(ctx context.Context, g *guardrails.Service) error {
	_, err := g.Put(ctx, guardrails.Rule{
		Ref:    guardrails.Ref{Environment: "development", Flag: "winter-festival", Key: "reject-rate"},
		Metric: guardrails.RejectRate(), Comparison: guardrails.RelativeToControl(0.1),
		Treatment: "festival", Control: "control",
	}, 0)
	return err
}

// Seeded telemetry: three hours of a simulated game server reporting the
// festival and control arms of winter-festival in development, so that the
// seeded guardrail's chart has something to show on the first start.
const (
	seedServer  = "seed-simulator"
	seedMinutes = 180
	seedBatch   = 30 // minutes per batch
)

// seedTelemetry ingests the seeded telemetry through the same validation
// and storage as a game server's batches, ending at the minute before now.
// The festival's reject rate (2.1%) is close to control's (2.0%), well
// inside the guardrail's 10% margin: a healthy rollout whose confidence
// band narrows as data arrives. The data is deterministic.
func seedTelemetry(ctx context.Context, tel *telemetry.Service, now time.Time) error {
	rng := rand.New(rand.NewPCG(2026, 12)) //nolint:gosec // simulated data, deterministic on purpose
	arms := []struct {
		variant string
		reject  float64
	}{{"control", 0.020}, {"festival", 0.021}}
	end := now.UTC().Truncate(time.Minute)
	start := end.Add(-seedMinutes * time.Minute)
	players := 0
	for from := start; from.Before(end); from = from.Add(seedBatch * time.Minute) {
		b := telemetry.Batch{
			BatchID:  "seed-" + from.Format("20060102T1504"),
			ServerID: seedServer,
			Through:  from.Add(seedBatch * time.Minute).Format(time.RFC3339),
		}
		for m := from; m.Before(from.Add(seedBatch*time.Minute)) && m.Before(end); m = m.Add(time.Minute) {
			for _, arm := range arms {
				w := telemetry.Window{Start: m.Format(time.RFC3339), Flag: "winter-festival", Variant: arm.variant}
				actions := 100 + rng.IntN(60)
				rejected := 0
				for range actions {
					if rng.Float64() < arm.reject {
						rejected++
					}
				}
				w.Accepted = int64(actions - rejected)
				if rejected > 0 {
					w.Rejected = map[string]int64{"inventory_full": int64(rejected)}
				}
				for range 3 + rng.IntN(4) {
					players++
					at := m.Add(time.Duration(rng.IntN(60)) * time.Second)
					w.Exposures = append(w.Exposures, telemetry.PlayerEvent{Player: fmt.Sprintf("seed-player-%d", players), At: at.Format(time.RFC3339)})
				}
				b.Windows = append(b.Windows, w)
			}
		}
		if _, err := tel.Ingest(ctx, "development", b); err != nil {
			return fmt.Errorf("ingest seeded telemetry %s: %w", b.BatchID, err)
		}
	}
	return nil
}
