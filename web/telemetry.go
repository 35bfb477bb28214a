package web

import (
	"errors"
	"math"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/telemetry"
)

// keyEnvironment authenticates a server key (Bearer or X-API-Key) for a
// game-server route whose path names no environment (telemetry): the
// environment is the key's, as for OFREP. 401 for a missing, unknown or
// revoked key; 403 for an admin token, which names no environment. what
// names the endpoint in that message.
//
// NOTE: ofrep.serverKey is this check with an OFREP message; it could
// become keyEnvironment("OFREP").
func (s *Server) keyEnvironment(what string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			t, err := s.serverCredential(c)
			if err != nil {
				return err
			}
			if t.Kind != auth.KindServer || t.Environment == "" {
				return solstice.Errorf(solstice.KindForbidden, "%s takes a server key, which names the environment; an admin token names none", what)
			}
			actAsServer(c, t)
			return next(c)
		}
	}
}

// postTelemetry is POST /v1/telemetry: a game server's batch of counters,
// exposures and activity for the environment of its key (docs/telemetry.md).
// 200 with telemetry.Result, whose duplicate is true for a batch received
// before (acknowledged, not counted again); 400 for a body that is not a
// batch (malformed JSON, unknown fields); 413 over telemetry.MaxBatchBytes;
// 422 with a JSON pointer per problem, and nothing stored, for an invalid
// batch; 409 for a batch id reused with other content; 429 with
// Retry-After (seconds) when the key sends more than its rate.
func (s *Server) postTelemetry(c echo.Context) error {
	req := c.Request()
	key, _ := req.Context().Value(serverKeyKey{}).(auth.Token)
	// Before reading the body: a flood should cost as little as possible.
	if err := s.telemetry.Admit(key.ID); err != nil {
		var rl *telemetry.RateLimitError
		if errors.As(err, &rl) {
			secs := max(1, int64(math.Ceil(rl.RetryAfter.Seconds())))
			c.Response().Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		}
		return err
	}
	req.Body = http.MaxBytesReader(c.Response(), req.Body, telemetry.MaxBatchBytes)
	var b telemetry.Batch
	if err := decodeJSONStream(c, &b); err != nil {
		return err
	}
	res, err := s.telemetry.Ingest(req.Context(), key.Environment, b)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}
