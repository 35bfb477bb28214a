package web_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/fleet"
	"github.com/solsticehq/solstice/snapshot"
)

// newServerKey makes a server key for env and returns its secret.
func (h *harness) newServerKey(env string) string {
	h.t.Helper()
	c, err := h.auth.Create(context.Background(), auth.NewToken{Name: "gs-" + env, Kind: auth.KindServer, Environment: env})
	if err != nil {
		h.t.Fatal(err)
	}
	return c.Secret
}

// trusted returns the public keys a game server of env is given.
func (h *harness) trusted(env string) []ed25519.PublicKey {
	h.t.Helper()
	pem, err := h.keyring.ExportPublic(env)
	if err != nil {
		h.t.Fatal(err)
	}
	keys, err := snapshot.ParsePublicKeys(pem)
	if err != nil {
		h.t.Fatal(err)
	}
	return keys
}

// open verifies a snapshot response body as a game server would.
func (h *harness) open(env string, body []byte, held int64) (*snapshot.Opened, error) {
	return snapshot.Open(body, snapshot.OpenOptions{Trusted: h.trusted(env), Environment: env, HeldVersion: held, Now: time.Now()})
}

// toggle flips flag key's kill switch in env through the domain service.
func (h *harness) toggle(env, key string) {
	h.t.Helper()
	ctx := context.Background()
	fc, err := h.flags.GetConfig(ctx, env, key)
	if err != nil {
		h.t.Fatal(err)
	}
	c := fc.Config
	c.Enabled = !c.Enabled
	if _, err := h.flags.PutConfig(ctx, env, key, c, fc.Revision, "toggle"); err != nil {
		h.t.Fatal(err)
	}
}

func TestSnapshotAccess(t *testing.T) {
	h := newHarness(t)
	prod := h.newServerKey("production")
	tests := []struct {
		name, path string
		headers    []string
		status     int
	}{
		{"no key", "/v1/snapshots/production", nil, 401},
		{"unknown key", "/v1/snapshots/production", []string{"Authorization", "Bearer " + auth.ServerPrefix + "nope"}, 401},
		{"key of another environment", "/v1/snapshots/staging", []string{"Authorization", "Bearer " + prod}, 403},
		{"admin token", "/v1/snapshots/production", []string{"Authorization", "Bearer " + h.admin}, 403},
		{"unknown environment", "/v1/snapshots/nowhere", []string{"Authorization", "Bearer " + prod}, 404},
		{"bad wait", "/v1/snapshots/production?wait=soon", []string{"Authorization", "Bearer " + prod}, 400},
		{"bearer", "/v1/snapshots/production", []string{"Authorization", "Bearer " + prod}, 200},
		{"X-API-Key", "/v1/snapshots/production", []string{"X-API-Key", prod}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.want(h.do("GET", tc.path, "", nil, tc.headers...), tc.status)
			if tc.status >= 400 {
				r.problem(t)
			}
		})
	}
	// A revoked key stops working at once.
	ctx := context.Background()
	c, err := h.auth.Create(ctx, auth.NewToken{Name: "short-lived", Kind: auth.KindServer, Environment: "production"})
	if err != nil {
		t.Fatal(err)
	}
	h.want(h.do("GET", "/v1/snapshots/production", "", nil, "Authorization", "Bearer "+c.Secret), 200)
	if err := h.auth.Revoke(ctx, c.Token.ID); err != nil {
		t.Fatal(err)
	}
	h.want(h.do("GET", "/v1/snapshots/production", "", nil, "Authorization", "Bearer "+c.Secret), 401).problem(t)
}

func TestSnapshotETagAndGzip(t *testing.T) {
	h := newHarness(t)
	h.createEventFlag("ev")
	key := h.newServerKey("staging")
	auth := []string{"Authorization", "Bearer " + key}

	r := h.want(h.do("GET", "/v1/snapshots/staging", "", nil, auth...), 200)
	opened, err := h.open("staging", r.body, 0)
	if err != nil {
		t.Fatalf("served snapshot does not verify: %v", err)
	}
	if opened.Payload.Environment != "staging" || len(opened.Payload.Flags) != 1 || opened.Payload.Flags[0].Key != "ev" {
		t.Errorf("payload = %+v", opened.Payload)
	}
	tag := r.header.Get("ETag")
	if tag == "" || r.header.Get("Solstice-Snapshot-Version") != strconv.FormatInt(opened.Payload.Version, 10) {
		t.Errorf("headers = %v", r.header)
	}
	if r.header.Get("Cache-Control") != "no-cache" || r.header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("caching headers = %v", r.header)
	}

	nm := h.want(h.do("GET", "/v1/snapshots/staging", "", nil, append(auth, "If-None-Match", tag)...), 304)
	if nm.header.Get("ETag") != tag || len(nm.body) != 0 {
		t.Errorf("304: ETag %q body %q", nm.header.Get("ETag"), nm.body)
	}
	h.want(h.do("GET", "/v1/snapshots/staging", "", nil, append(auth, "If-None-Match", `"other"`)...), 200)

	// The HTTP client would decompress transparently; ask explicitly.
	req, _ := http.NewRequest("GET", h.srv.URL+"/v1/snapshots/staging", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Accept-Encoding", "gzip")
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding = %q", res.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain, r.body) {
		t.Error("gzip body does not decompress to the envelope")
	}
	if res.Header.Get("ETag") != tag {
		t.Errorf("gzip ETag %q, want %q", res.Header.Get("ETag"), tag)
	}

	// A change publishes a new version with a new ETag.
	h.toggle("staging", "ev")
	r2 := h.want(h.do("GET", "/v1/snapshots/staging", "", nil, append(auth, "If-None-Match", tag)...), 200)
	o2, err := h.open("staging", r2.body, opened.Payload.Version)
	if err != nil {
		t.Fatalf("new snapshot: %v", err)
	}
	if o2.Payload.Revision <= opened.Payload.Revision || r2.header.Get("ETag") == tag {
		t.Errorf("after a change: revision %d → %d, ETag %s → %s", opened.Payload.Revision, o2.Payload.Revision, tag, r2.header.Get("ETag"))
	}
	// A client holding the new version refuses the old one as a rollback.
	if _, err := h.open("staging", r.body, o2.Payload.Version); err == nil {
		t.Error("an older snapshot was accepted after a newer one")
	}
}

func TestSnapshotLongPoll(t *testing.T) {
	h := newHarness(t)
	h.createEventFlag("ev")
	auth := []string{"Authorization", "Bearer " + h.newServerKey("staging")}
	first := h.want(h.do("GET", "/v1/snapshots/staging", "", nil, auth...), 200)
	tag := first.header.Get("ETag")

	t.Run("times out with 304", func(t *testing.T) {
		r := h.want(h.do("GET", "/v1/snapshots/staging?wait=150ms", "", nil, append(auth, "If-None-Match", tag)...), 304)
		if r.header.Get("ETag") != tag {
			t.Errorf("ETag = %q", r.header.Get("ETag"))
		}
	})
	t.Run("wakes on publish", func(t *testing.T) {
		done := make(chan response, 1)
		go func() {
			done <- h.do("GET", "/v1/snapshots/staging?wait=60s", "", nil, append(auth, "If-None-Match", tag)...)
		}()
		// The poll is parked on the current version; any publish (before or
		// after it parks) must answer it with the newer one, not after 60 s.
		time.Sleep(50 * time.Millisecond)
		h.toggle("staging", "ev")
		select {
		case r := <-done:
			h.want(r, 200)
			if r.header.Get("ETag") == tag {
				t.Error("long poll answered with the old snapshot")
			}
		case <-time.After(30 * time.Second):
			t.Fatal("long poll did not wake on publish")
		}
	})
}

func TestSnapshotsUnderConcurrentPublishing(t *testing.T) {
	h := newHarness(t)
	h.createEventFlag("ev")
	key := h.newServerKey("staging")
	trusted := h.trusted("staging")
	const pollers, changes = 8, 25

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, pollers)
	for i := range pollers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var held int64
			var heldPayload []byte
			var tag string
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/v1/snapshots/staging?wait=1s", nil)
				req.Header.Set("Authorization", "Bearer "+key)
				req.Header.Set("Solstice-Server-Id", "poller-"+strconv.Itoa(i))
				req.Header.Set("Solstice-Snapshot-Version", strconv.FormatInt(held, 10))
				if i%2 == 0 && tag != "" {
					req.Header.Set("If-None-Match", tag)
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					return // cancelled
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode == 304 {
					continue
				}
				if res.StatusCode != 200 {
					errs <- &pollError{"status " + strconv.Itoa(res.StatusCode)}
					return
				}
				o, err := snapshot.Open(body, snapshot.OpenOptions{Trusted: trusted, Environment: "staging", HeldVersion: held, HeldPayload: heldPayload, Now: time.Now()})
				if err != nil && !isNotModified(err) {
					errs <- err // a torn, unsigned or older snapshot
					return
				}
				if err == nil {
					held, heldPayload, tag = o.Payload.Version, o.RawPayload, res.Header.Get("ETag")
				}
			}
		}()
	}
	for range changes {
		h.toggle("staging", "ev")
	}
	final, _ := h.pub.Current("staging")
	// Give every poller the chance to reach the final version.
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("poller: %v", err)
	}
	var rep fleet.Report
	h.want(h.do("GET", "/api/v1/environments/staging/fleet?stale_after=1m", h.viewer, nil), 200).json(t, &rep)
	if rep.Servers != pollers || rep.Newest != final.Version() {
		t.Errorf("fleet = %d servers, newest %d; want %d, %d", rep.Servers, rep.Newest, pollers, final.Version())
	}
}

type pollError struct{ msg string }

func (e *pollError) Error() string { return e.msg }

func isNotModified(err error) bool {
	var ve *snapshot.VerifyError
	return err != nil && errors.As(err, &ve) && ve.Reason == snapshot.ReasonNotModified
}

func TestFleetReport(t *testing.T) {
	h := newHarness(t)
	h.createEventFlag("ev")
	auth := []string{"Authorization", "Bearer " + h.newServerKey("production")}
	first := h.want(h.do("GET", "/v1/snapshots/production", "", nil, append(auth, "Solstice-Server-Id", "gs-1")...), 200)
	v1, _ := strconv.ParseInt(first.header.Get("Solstice-Snapshot-Version"), 10, 64)
	h.do("GET", "/v1/snapshots/production", "", nil, append(auth, "Solstice-Server-Id", "gs-1", "Solstice-Snapshot-Version", strconv.FormatInt(v1, 10))...)
	h.do("GET", "/v1/snapshots/production", "", nil, append(auth, "Solstice-Server-Id", "gs-2", "Solstice-Snapshot-Version", strconv.FormatInt(v1, 10))...)
	h.toggle("production", "ev") // a new version: both servers now lag
	h.do("GET", "/v1/snapshots/production", "", nil, append(auth, "Solstice-Server-Id", "gs-2", "Solstice-Snapshot-Version", strconv.FormatInt(v1+1, 10))...)

	var rep fleet.Report
	h.want(h.do("GET", "/api/v1/environments/production/fleet", h.viewer, nil), 200).json(t, &rep)
	if rep.Newest != v1+1 || rep.Servers != 2 || rep.Converged {
		t.Fatalf("fleet = %+v", rep)
	}
	if len(rep.Lagging) != 1 || rep.Lagging[0].ID != "gs-1" || rep.Lagging[0].Version != v1 {
		t.Errorf("lagging = %+v", rep.Lagging)
	}
	h.want(h.do("GET", "/api/v1/environments/nowhere/fleet", h.viewer, nil), 404).problem(t)
	h.want(h.do("GET", "/api/v1/environments/production/fleet?stale_after=x", h.viewer, nil), 400).problem(t)
	var raw map[string]any
	h.want(h.do("GET", "/api/v1/environments/production/fleet", h.viewer, nil), 200).json(t, &raw)
	if _, ok := raw["lagging"].([]any); !ok {
		b, _ := json.Marshal(raw)
		t.Errorf("lagging is not a list: %s", b)
	}
}

func TestSnapshotLongPollDrainsOnShutdown(t *testing.T) {
	h := newHarness(t)
	auth := []string{"Authorization", "Bearer " + h.newServerKey("staging")}
	tag := h.want(h.do("GET", "/v1/snapshots/staging", "", nil, auth...), 200).header.Get("ETag")
	done := make(chan response, 1)
	go func() {
		done <- h.do("GET", "/v1/snapshots/staging?wait=60s", "", nil, append(auth, "If-None-Match", tag)...)
	}()
	time.Sleep(50 * time.Millisecond) // let the poll park; a poll arriving after Drain answers at once too
	h.web.Drain()
	select {
	case r := <-done:
		h.want(r, 304)
	case <-time.After(30 * time.Second):
		t.Fatal("a parked long poll held on after Drain")
	}
	h.want(h.do("GET", "/v1/snapshots/staging?wait=60s", "", nil, append(auth, "If-None-Match", tag)...), 304)
}
