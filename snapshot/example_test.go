package snapshot_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/snapshot/snapshottest"
)

func Example() {
	// The control plane builds and signs...
	signer := snapshottest.Signer("example")
	issued := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	set := flags.Set{Environment: "production", Revision: 3}
	built, err := snapshot.Build(set, 17, issued, 24*time.Hour, []snapshot.Signer{signer})
	if err != nil {
		panic(err)
	}

	// ...and a game server, configured with the environment and its public
	// key, opens what it fetched.
	opts := snapshot.OpenOptions{
		Trusted:     []ed25519.PublicKey{signer.Public()},
		Environment: "production",
		Now:         issued.Add(time.Minute),
	}
	opened, err := snapshot.Open(built.Envelope(), opts)
	if err != nil {
		panic(err)
	}
	fmt.Println("accepted version", opened.Payload.Version, "of revision", opened.Payload.Revision)

	// Polling again brings the same snapshot: a no-op, not a failure.
	opts.HeldVersion, opts.HeldPayload = opened.Payload.Version, opened.RawPayload
	_, err = snapshot.Open(built.Envelope(), opts)
	fmt.Println(errors.Is(err, snapshot.ErrNotModified))

	// A staging client refuses it, and says why.
	opts = snapshot.OpenOptions{Trusted: opts.Trusted, Environment: "staging", Now: opts.Now}
	_, err = snapshot.Open(built.Envelope(), opts)
	var verr *snapshot.VerifyError
	if errors.As(err, &verr) {
		fmt.Println(verr.Reason, "-", err)
	}
	// Output:
	// accepted version 17 of revision 3
	// true
	// wrong_environment - snapshot is for environment "production", want "staging"
}
