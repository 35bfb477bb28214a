// Package snapshot builds, signs, publishes and opens the signed config
// snapshots that game servers poll: the whole compiled flag set of one
// environment, as one payload, in a DSSE v1 envelope signed with the
// environment's Ed25519 keys (see "Signed snapshots" in the design notes).
//
// The two halves of the package are deliberately asymmetric:
//
//   - The control plane side: Build serializes, signs and compresses a
//     flags.Set once; Publisher keeps the newest Built per environment and
//     re-signs it before it expires; Keyring manages the per-environment
//     signing keys on disk.
//   - The client side (the SDK, the CLI): Open checks an envelope in the
//     order the design fixes and returns the payload only if every check
//     passes. It never returns content that was not verified; a rejection
//     is a *VerifyError whose Reason says why.
//
// The package imports only the standard library and Solstice's own
// vocabulary (the root package and flags), so the game-server SDK can use
// it without pulling in the control plane's HTTP or database stack.
package snapshot
