package sdk_test

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/sdk"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/snapshot/snapshottest"
)

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestHostileResponses serves answers no control plane sends, from a bare
// HTTP server: the client must refuse them within its size cap.
func TestHostileResponses(t *testing.T) {
	signer := snapshottest.Signer("transport")
	set := flags.Set{Environment: "production", Revision: 1, Flags: []flags.FlagState{{Key: "f", Type: flags.TypeBoolean, Config: xpConfig}}}
	built, err := snapshot.Build(set, 1, time.Now(), time.Hour, []snapshot.Signer{signer})
	if err != nil {
		t.Fatal(err)
	}
	const limit = 256 << 10
	bomb := gzipped(t, bytes.Repeat([]byte{'{'}, 8<<20)) // 8 MiB from about 8 KiB

	tests := []struct {
		name      string
		serve     func(w http.ResponseWriter)
		wantErr   func(error) bool
		wantKinds []sdk.EventKind
	}{
		{"gzip bomb", func(w http.ResponseWriter) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(bomb)
		}, isReason(snapshot.ErrTooLarge), []sdk.EventKind{sdk.EventRejected}},
		{"oversized, with its length", func(w http.ResponseWriter) {
			w.Header().Set("Content-Length", strconv.Itoa(limit+1))
			w.Write(make([]byte, limit+1))
		}, isReason(snapshot.ErrTooLarge), []sdk.EventKind{sdk.EventRejected}},
		{"oversized, chunked", func(w http.ResponseWriter) {
			for range 10 {
				w.Write(make([]byte, limit/4))
				w.(http.Flusher).Flush()
			}
		}, isReason(snapshot.ErrTooLarge), []sdk.EventKind{sdk.EventRejected}},
		{"unknown content coding", func(w http.ResponseWriter) {
			w.Header().Set("Content-Encoding", "br")
			w.Write(built.Envelope())
		}, isReason(snapshot.ErrMalformed), []sdk.EventKind{sdk.EventRejected}},
		{"not gzip", func(w http.ResponseWriter) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(built.Envelope())
		}, isReason(snapshot.ErrMalformed), []sdk.EventKind{sdk.EventRejected}},
		{"server error: transient, no ERROR", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"title":"Service Unavailable","detail":"database unreachable"}`))
		}, isKind(solstice.KindInternal), nil},
		{"rate limited: transient, no ERROR", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusTooManyRequests)
		}, isKind(solstice.KindRateLimited), nil},
		{"gzip accepted", func(w http.ResponseWriter) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(built.Gzip())
		}, func(err error) bool { return err == nil }, []sdk.EventKind{sdk.EventReady}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { tc.serve(w) }))
			defer srv.Close()
			c := newClient(t, sdk.Config{
				Environment: "production", BaseURL: srv.URL, ServerKey: "ss_x",
				TrustedKeys:     []ed25519.PublicKey{signer.Public()},
				MaxSnapshotSize: limit, Logger: slog.New(slog.DiscardHandler),
			})
			events := subscribe(c)
			err := c.Poll(t.Context())
			if !tc.wantErr(err) {
				t.Errorf("Poll = %v", err)
			}
			if diff := cmp.Diff(tc.wantKinds, events.kinds()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func isReason(sentinel error) func(error) bool {
	return func(err error) bool { return errors.Is(err, sentinel) }
}

func isKind(k solstice.Kind) func(error) bool {
	return func(err error) bool { return solstice.IsKind(err, k) }
}
