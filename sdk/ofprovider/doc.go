// Package ofprovider is the OpenFeature provider of Solstice, for
// github.com/open-feature/go-sdk v1.20: it evaluates flags locally, from
// the verified snapshot an sdk.Client holds, with the same evaluator as the
// control plane. (It is not named openfeature, so that it never needs an
// alias beside the SDK's own package.)
//
//	client, err := sdk.New(cfg)
//	...
//	client.Start(ctx)
//	err = openfeature.SetProviderAndWait(ofprovider.New(client))
//	of := openfeature.NewDefaultClient()
//	on := of.Boolean(ctx, "double-xp", false, openfeature.NewEvaluationContext(playerID, attrs))
//
// # Mapping
//
// The five evaluation types map to flag types: Boolean to boolean, String
// to string, Float to number, Int to number (whose value must then be an
// integer in int64's range), Object to object; any other pairing is
// TYPE_MISMATCH. Reasons are the evaluator's (STATIC, TARGETING_MATCH,
// SPLIT, DISABLED, DEFAULT, ERROR). Error codes: FLAG_NOT_FOUND,
// TYPE_MISMATCH, TARGETING_KEY_MISSING (a split needs a targeting key the
// context lacks) and INVALID_CONTEXT (a targeting key of a kind that
// cannot be bucketed), the last two with the flag's default variant, which
// the OpenFeature SDK replaces by the caller's default as it does for
// every error;
// PROVIDER_NOT_READY while no snapshot is held, or PARSE_ERROR when the
// only snapshot received so far could not be read. Object values are deep
// copies: callers may modify them.
//
// # Lifecycle and events
//
// Init starts the client's polling if it is not running and waits, within
// the context's deadline, for the first snapshot (from the control plane
// or the last-known-good file). Shutdown stops the polling that Start
// began (Init's or the application's); a Run loop the application owns
// ends with its own context. Events follow the client's:
// PROVIDER_CONFIGURATION_CHANGED with the changed flag keys,
// PROVIDER_STALE, PROVIDER_ERROR, and PROVIDER_READY when the client
// recovers (or gets its first snapshot after Init gave up). A refused
// snapshot is no OpenFeature event: the held one is kept, the client logs
// and counts the refusal, and PROVIDER_STALE follows if no good snapshot
// comes.
//
// # Matches
//
// To keep a match on one configuration, pin the client at its start and
// pass the Pinned in the Go context of every evaluation:
//
//	ctx := sdk.WithPinned(ctx, client.Pin())
//	of.Boolean(ctx, "double-xp", false, evalCtx) // the pinned version, whatever arrives later
//
// A Pinned of another client (another environment) is ignored.
package ofprovider
