package web_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkOFREPBulk measures one OFREP bulk evaluation of the 1,000 flags of
// snapshottest.GenerateSet for one player, through the whole server
// (middleware, server-key authentication, the flag set's revision check,
// evaluation and serialization) into an in-memory ResponseWriter. Run it with
//
//	go test -run '^$' -bench OFREP -benchmem ./web/
//
// Goal: under 0.5 ms of CPU per request (ns/op, one request at a time). The
// not-modified case is a poller whose ETag is current: 304 before anything
// is evaluated.
func BenchmarkOFREPBulk(b *testing.B) {
	p := newBenchPlane(b, benchFlags)
	body := []byte(`{"context":{"targetingKey":"player-00042137","country":"DE","platform":"pc","level":31,"premium":true}}`)

	// The first request builds the set's OFREP encoding; measure the steady state.
	first := httptest.NewRecorder()
	p.server.ServeHTTP(first, ofrepBenchRequest(p, body, ""))
	if first.Code != http.StatusOK || first.Header().Get("ETag") == "" {
		b.Fatalf("bulk evaluation: %d %s", first.Code, first.Body.Bytes()[:min(first.Body.Len(), 300)])
	}
	etag := first.Header().Get("ETag")

	for _, bc := range []struct {
		name        string
		ifNoneMatch string
		status      int
	}{
		{"evaluate", "", http.StatusOK},
		{"not-modified", etag, http.StatusNotModified},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := ofrepBenchRequest(p, body, bc.ifNoneMatch)
			rd := bytes.NewReader(body)
			rc := io.NopCloser(rd)
			w := &countingWriter{discardWriter: discardWriter{header: http.Header{}}}
			b.ReportAllocs()
			for b.Loop() {
				rd.Reset(body)
				req.Body = rc // the body-limit middleware wraps whatever is there
				w.reset()
				p.server.ServeHTTP(w, req)
				if w.status != bc.status {
					b.Fatalf("status %d, want %d", w.status, bc.status)
				}
			}
			b.ReportMetric(float64(w.bytes), "body-bytes")
		})
	}
}

func ofrepBenchRequest(p *benchPlane, body []byte, ifNoneMatch string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/ofrep/v1/evaluate/flags", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+p.serverKey)
	if ifNoneMatch != "" {
		req.Header.Set("If-None-Match", ifNoneMatch)
	}
	return req
}

// countingWriter is a discardWriter that counts the body bytes of the last
// response.
type countingWriter struct {
	discardWriter
	bytes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.bytes += len(p)
	return w.discardWriter.Write(p)
}

func (w *countingWriter) reset() {
	w.discardWriter.reset()
	w.bytes = 0
}
