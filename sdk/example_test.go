package sdk_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/open-feature/go-sdk/openfeature"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/sdk"
	"github.com/solsticehq/solstice/sdk/ofprovider"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/snapshot/snapshottest"
)

func Example() {
	// A stand-in for the control plane (see exampleControlPlane below).
	baseURL, publicKey, stop := exampleControlPlane()
	defer stop()
	dir, _ := os.MkdirTemp("", "solstice-example")
	defer os.RemoveAll(dir)

	client, err := sdk.New(sdk.Config{
		Environment: "production",
		BaseURL:     baseURL,
		ServerKey:   "sol_server_example",                  // solstice tokens create --server --env production
		TrustedKeys: []ed25519.PublicKey{publicKey},        // or sdk.ReadTrustedKeys("production.pub")
		CacheFile:   filepath.Join(dir, "production.json"), // the last-known-good snapshot
		Logger:      slog.New(slog.DiscardHandler),         // your game server's logger
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	client.Start(ctx)

	// OpenFeature evaluates locally, from the client's verified snapshot.
	if err := openfeature.SetProviderAndWait(ofprovider.New(client)); err != nil {
		log.Fatal(err)
	}
	defer openfeature.Shutdown() // stops the polling too
	of := openfeature.NewDefaultClient()

	player := openfeature.NewEvaluationContext("player-42", map[string]any{"country": "JP"})
	fmt.Println("double xp:", of.Boolean(ctx, "double-xp", false, player))

	// At the start of a match, pin: the whole match sees one version of the
	// configuration, whatever is published meanwhile.
	match := sdk.WithPinned(ctx, client.Pin())
	fmt.Println("banner:", of.String(match, "shop-banner", "default", player))
	// Output:
	// double xp: true
	// banner: blossom
}

// exampleControlPlane serves one signed snapshot as the control plane's
// GET /v1/snapshots/{env} does, and returns its address and public key.
func exampleControlPlane() (string, ed25519.PublicKey, func()) {
	signer := snapshottest.Signer("example")
	set := flags.Set{Environment: "production", Revision: 1, Flags: []flags.FlagState{
		{Key: "double-xp", Type: flags.TypeBoolean, Config: flags.Config{
			Enabled: true, Variants: flags.DefaultBooleanVariants(), DefaultVariant: "on", OffVariant: "off"}},
		{Key: "shop-banner", Type: flags.TypeString, Config: flags.Config{
			Enabled: true, DefaultVariant: "a", OffVariant: "a",
			Variants: []flags.Variant{{Key: "a", Value: raw(`"autumn"`)}, {Key: "b", Value: raw(`"blossom"`)}},
			Rules:    []flags.Rule{{Conditions: []flags.Condition{cond("country", flags.OpEquals, `"JP"`)}, Variant: "b"}}}},
	}}
	built, err := snapshot.Build(set, 1, time.Now(), time.Hour, []snapshot.Signer{signer})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == built.ETag() {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Write(built.Envelope())
	}))
	return srv.URL, signer.Public(), srv.Close
}
