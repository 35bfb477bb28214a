package web_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/snapshot/snapshottest"
	"github.com/solsticehq/solstice/store/storetest"
	"github.com/solsticehq/solstice/web"
)

// Benchmarks of the game-server path, GET /v1/snapshots/{env}, against a
// control plane serving 1,000 flags of snapshottest.GenerateSet, wired as
// `solstice serve` wires it (SQLite store, keyring, publisher listening to
// the flags service). Run them with
//
//	go test -run '^$' -bench 'SnapshotEndpoint|Propagation' -benchmem ./web/
//
// Their goals and how to read the figures are in docs/benchmarks.md.

// benchFlags is the size of the benchmarked environment.
const benchFlags = 1000

// benchPlane is a control plane for benchmarks: testing.TB where the test
// harness needs a *testing.T, and loaded with a generated flag set.
type benchPlane struct {
	flags     *flags.Service
	pub       *snapshot.Publisher
	server    *web.Server
	env       string
	serverKey string              // secret of a server key of env
	trusted   []ed25519.PublicKey // env's public keys, what game servers are configured with
}

func newBenchPlane(tb testing.TB, n int) *benchPlane {
	tb.Helper()
	quiet := slog.New(slog.DiscardHandler)
	db := storetest.Open(tb)
	var pub *snapshot.Publisher
	fs := flags.NewService(db, flags.OnRevision(func(ctx context.Context, env string, _ flags.Revision) {
		if pub == nil {
			return
		}
		if _, err := pub.Publish(context.WithoutCancel(ctx), env); err != nil {
			tb.Errorf("publish snapshot of %s: %v", env, err)
		}
	}))
	keyring := snapshot.NewKeyring(tb.TempDir(), snapshot.WithKeyringLogger(quiet))
	pub = snapshot.NewPublisher(fs, db, keyring, snapshot.WithLogger(quiet), snapshot.WithHeads(fs))
	as := auth.NewService(db, nil)
	ctx := solstice.WithActor(context.Background(), solstice.System("benchmark"))
	if err := fs.EnsureDefaultEnvironments(ctx); err != nil {
		tb.Fatal(err)
	}

	// The generated set goes in as one document, as `solstice apply` would
	// load it: one revision, validated like any other write.
	set := snapshottest.GenerateSet(n)
	doc := flags.Document{Environment: set.Environment, Segments: set.Segments}
	for _, f := range set.Flags {
		doc.Flags = append(doc.Flags, flags.DocumentFlag{Key: f.Key, Type: f.Type, Config: f.Config})
	}
	if _, err := fs.Apply(ctx, set.Environment, doc, flags.ApplyOptions{Message: fmt.Sprintf("Load %d generated flags", n)}); err != nil {
		tb.Fatalf("load %d generated flags: %v", n, err)
	}
	if err := pub.Tick(ctx, time.Now()); err != nil {
		tb.Fatalf("publish snapshots: %v", err)
	}
	if b, ok := pub.Current(set.Environment); !ok || b.FlagCount() != n {
		tb.Fatalf("snapshot of %s after loading %d flags: %v flags, published %t", set.Environment, n, b.FlagCount(), ok)
	}

	key, err := as.Create(ctx, auth.NewToken{Name: "bench-game-server", Kind: auth.KindServer, Environment: set.Environment})
	if err != nil {
		tb.Fatal(err)
	}
	pem, err := keyring.ExportPublic(set.Environment)
	if err != nil {
		tb.Fatal(err)
	}
	trusted, err := snapshot.ParsePublicKeys(pem)
	if err != nil {
		tb.Fatal(err)
	}
	srv := web.New(web.Deps{Flags: fs, Auth: as, Logger: quiet, Publisher: pub, Ready: db.Ping})
	return &benchPlane{flags: fs, pub: pub, server: srv, env: set.Environment, serverKey: key.Secret, trusted: trusted}
}

func (p *benchPlane) current(tb testing.TB) *snapshot.Built {
	tb.Helper()
	b, ok := p.pub.Current(p.env)
	if !ok {
		tb.Fatalf("no snapshot of %s", p.env)
	}
	return b
}

func (p *benchPlane) path() string { return "/v1/snapshots/" + p.env }

// snapshotRequest describes a game server's poll: the headers it sends and
// the status it expects.
type snapshotRequest struct {
	name   string
	header http.Header
	status int
}

// snapshotRequests are the two polls a game server makes: the first, for a
// snapshot it does not hold (200, gzip), and every later one, for the one it
// holds (304).
func (p *benchPlane) snapshotRequests(b *snapshot.Built) []snapshotRequest {
	base := http.Header{
		"Authorization":         {"Bearer " + p.serverKey},
		"Accept-Encoding":       {"gzip"},
		"User-Agent":            {"solstice-bench"},
		snapshot.HeaderServerID: {"gs-bench"},
	}
	held := base.Clone()
	held.Set("If-None-Match", b.ETag())
	held.Set(snapshot.HeaderVersion, strconv.FormatInt(b.Version(), 10))
	return []snapshotRequest{
		{name: "200-gzip", header: base, status: http.StatusOK},
		{name: "304", header: held, status: http.StatusNotModified},
	}
}

// bareSnapshotHandler is the baseline: a plain net/http handler writing the
// bytes and headers Solstice writes for b, with nothing else (no router,
// middleware, authentication, metrics or fleet tracking).
func bareSnapshotHandler(b *snapshot.Built) http.HandlerFunc {
	etag, version := b.ETag(), strconv.FormatInt(b.Version(), 10)
	gz, identity := b.Gzip(), b.Envelope()
	gzLen, identityLen := strconv.Itoa(len(gz)), strconv.Itoa(len(identity))
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("ETag", etag)
		h.Set(snapshot.HeaderVersion, version)
		h.Set("Cache-Control", "no-cache")
		h.Set("Vary", "Accept-Encoding")
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", snapshot.EnvelopeContentType)
		body, n := identity, identityLen
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			h.Set("Content-Encoding", "gzip")
			body, n = gz, gzLen
		}
		h.Set("Content-Length", n)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	}
}

// sameResponse fails the benchmark unless both handlers answer req with the
// same status, headers and body: the comparison is only fair if they do.
func sameResponse(tb testing.TB, solstice, bare http.Handler, req snapshotRequest, path string) {
	tb.Helper()
	record := func(h http.Handler) *http.Response {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Header = req.header.Clone()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Result()
	}
	s, b := record(solstice), record(bare)
	sb, _ := io.ReadAll(s.Body)
	bb, _ := io.ReadAll(b.Body)
	if s.StatusCode != req.status {
		tb.Fatalf("%s: Solstice answered %d, want %d: %s", req.name, s.StatusCode, req.status, sb)
	}
	if diff := cmp.Diff(s.Header, b.Header); diff != "" {
		tb.Fatalf("%s: the bare handler's headers differ from Solstice's (-solstice +bare):\n%s", req.name, diff)
	}
	if b.StatusCode != s.StatusCode || !bytes.Equal(sb, bb) {
		tb.Fatalf("%s: the bare handler answered %d with %d bytes, Solstice %d with %d", req.name, b.StatusCode, len(bb), s.StatusCode, len(sb))
	}
}

// BenchmarkSnapshotEndpoint measures the throughput of the snapshot
// endpoint against a bare net/http handler serving the same bytes with the
// same headers, side by side in one run: the goal is Solstice at 0.7 or
// more of the bare handler's throughput.
//
// Each iteration is one request to each handler. The requests run on
// GOMAXPROCS goroutines (in-memory) or 16 keep-alive clients (loopback) in
// ten alternating rounds, so that the noise of a shared machine falls on
// both alike. ns/op, B/op and allocs/op are Solstice's per request;
// solstice-ns/req and bare-ns/req are wall time per request at that
// concurrency (the inverse of throughput); ratio is bare / solstice time,
// which is Solstice's throughput as a fraction of the bare handler's.
//
// The in-memory pair calls ServeHTTP with a ResponseWriter that discards
// the body: the whole Echo chain (recover, metrics, body limit, security
// headers), server-key authentication (a SHA-256 and a cache hit, as in
// production, the cache trusting a key for auth.CacheTTL) and fleet
// tracking. The loopback pair adds what a game server sees: TCP on
// 127.0.0.1, net/http's server and client.
func BenchmarkSnapshotEndpoint(b *testing.B) {
	p := newBenchPlane(b, benchFlags)
	built := p.current(b)
	bare := bareSnapshotHandler(built)
	for _, req := range p.snapshotRequests(built) {
		sameResponse(b, p.server, bare, req, p.path())
		b.Run(req.name, func(b *testing.B) {
			workers := runtime.GOMAXPROCS(0)
			reqs := make([]*http.Request, workers)
			writers := make([]*discardWriter, workers)
			for i := range reqs {
				reqs[i] = httptest.NewRequest(http.MethodGet, p.path(), nil)
				reqs[i].Header = req.header.Clone()
				reqs[i].Header.Set(snapshot.HeaderServerID, fmt.Sprintf("gs-%04d", i))
				writers[i] = &discardWriter{header: http.Header{}}
			}
			call := func(h http.Handler) func(w int) error {
				return func(w int) error {
					r, rw := reqs[w], writers[w]
					r.Body = http.NoBody // Echo's body limit replaces it on every request
					rw.reset()
					h.ServeHTTP(rw, r)
					if rw.status != req.status {
						return fmt.Errorf("status %d, want %d", rw.status, req.status)
					}
					return nil
				}
			}
			sideBySide(b, workers, call(p.server), call(bare))
		})
	}
	for _, req := range p.snapshotRequests(built) {
		b.Run("loopback/"+req.name, func(b *testing.B) {
			const clients = 16
			call := func(h http.Handler) func(w int) error {
				srv := httptest.NewServer(h)
				b.Cleanup(srv.Close)
				tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients, DisableCompression: true}
				b.Cleanup(tr.CloseIdleConnections)
				client := &http.Client{Transport: tr, Timeout: time.Minute}
				url := srv.URL + p.path()
				return func(w int) error {
					r, err := http.NewRequest(http.MethodGet, url, nil)
					if err != nil {
						return err
					}
					r.Header = req.header.Clone()
					r.Header.Set(snapshot.HeaderServerID, fmt.Sprintf("gs-%04d", w))
					res, err := client.Do(r)
					if err != nil {
						return err
					}
					_, err = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != req.status {
						return fmt.Errorf("status %d, want %d", res.StatusCode, req.status)
					}
					return err
				}
			}
			sideBySide(b, clients, call(p.server), call(bare))
		})
	}
}

// discardWriter is an http.ResponseWriter that keeps the status and
// headers and discards the body: a handler's cost without a network.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.header }

func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(p), nil
}

func (w *discardWriter) reset() {
	clear(w.header)
	w.status = 0
}

// loadCost is what a batch of requests took.
type loadCost struct {
	wall          time.Duration
	allocs, bytes uint64
}

func (c *loadCost) add(d loadCost) {
	c.wall += d.wall
	c.allocs += d.allocs
	c.bytes += d.bytes
}

// alternate makes b.N calls of each of solstice and bare, on workers
// goroutines, in ten alternating rounds (so that the machine's noise falls on
// both alike), and returns what each side cost.
func alternate(b *testing.B, workers int, solstice, bare func(worker int) error) (sol, base loadCost) {
	const rounds = 10
	b.ResetTimer()
	for r := range rounds {
		n := b.N / rounds
		if r < b.N%rounds {
			n++
		}
		if n == 0 {
			continue
		}
		steps := []struct {
			total *loadCost
			call  func(int) error
		}{{&sol, solstice}, {&base, bare}}
		if r%2 == 1 {
			steps[0], steps[1] = steps[1], steps[0]
		}
		for _, step := range steps {
			c, err := runLoad(n, workers, step.call)
			if err != nil {
				b.Fatal(err)
			}
			step.total.add(c)
		}
	}
	b.StopTimer()
	return sol, base
}

// sideBySide measures solstice and bare with alternate and reports the
// figures described on BenchmarkSnapshotEndpoint.
func sideBySide(b *testing.B, workers int, solstice, bare func(worker int) error) {
	sol, base := alternate(b, workers, solstice, bare)
	n := float64(b.N)
	b.ReportMetric(float64(sol.wall.Nanoseconds())/n, "ns/op")
	b.ReportMetric(float64(sol.bytes)/n, "B/op")
	b.ReportMetric(float64(sol.allocs)/n, "allocs/op")
	b.ReportMetric(float64(sol.wall.Nanoseconds())/n, "solstice-ns/req")
	b.ReportMetric(float64(base.wall.Nanoseconds())/n, "bare-ns/req")
	b.ReportMetric(float64(base.wall)/float64(sol.wall), "ratio")
}

// runLoad makes n calls of call, spread over workers goroutines, and
// returns the wall time and heap allocations they took, or the first
// call's error.
func runLoad(n, workers int, call func(worker int) error) (loadCost, error) {
	const batch = 32 // calls taken from the shared counter at once, so that it costs nothing
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for {
				hi := next.Add(batch)
				lo := hi - batch
				if lo >= int64(n) || failed.Load() != nil {
					return
				}
				for range min(hi, int64(n)) - lo {
					if err := call(w); err != nil {
						first := err // a copy, so that err does not escape on every call
						failed.CompareAndSwap(nil, &first)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	runtime.ReadMemStats(&after)
	if err := failed.Load(); err != nil {
		return loadCost{}, *err
	}
	return loadCost{wall: wall, allocs: after.Mallocs - before.Mallocs, bytes: after.TotalAlloc - before.TotalAlloc}, nil
}

// propagationClients is the number of long-polling game servers of
// BenchmarkPropagation. Each holds a loopback connection, two file
// descriptors in this process (client and server end): with fewer than
// about 2,100 (ulimit -n), lower it.
const propagationClients = 1000

// BenchmarkPropagation measures how fast a change reaches a fleet of
// long-polling game servers: 1,000 clients poll GET
// /v1/snapshots/{env}?wait=30s on loopback, each holding the current
// snapshot; once all are parked, one flag is changed through
// flags.Service.PutConfig, whose listener publishes the new snapshot. For
// each client the benchmark measures the time from the start of that call
// until the client has received the new snapshot (recv-*) and until it has
// also verified it with snapshot.Open and the environment's public key
// (p50-ms, p99-ms, max-ms). The goal is a p99 under a second.
//
// NOTE: every client runs in this process, so their verifications share
// its cores; in production each game server verifies on its own machine.
// Verifying a 1,000-flag snapshot takes 15-30 ms of CPU (BenchmarkOpen in
// snapshot/), so a thousand of them queue behind each other here. The verify=each variant does exactly that, with at most
// GOMAXPROCS verifications at a time (more would only interleave them and
// hold their memory longer), and is the figure the goal names as measured
// on one machine. The verify=once variant has every client receive its copy
// and then checks that all copies are byte-identical and verifies that one
// envelope once, after the clock stops: its recv-* figures are the control
// plane's fan-out without the simulated clients' verification competing for
// the cores, and verify-ms is what one game server adds to them.
//
// Each iteration is one change; ns/op is the whole round, parking the
// clients included. A round is bounded: it fails after two minutes.
func BenchmarkPropagation(b *testing.B) {
	p := newBenchPlane(b, benchFlags)
	var parked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("wait") {
			parked.Add(1)
			defer parked.Add(-1)
		}
		p.server.ServeHTTP(w, r)
	}))
	b.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: propagationClients, MaxConnsPerHost: propagationClients, DisableCompression: true, IdleConnTimeout: 5 * time.Minute}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}

	held := p.fetchHeld(b, client, srv.URL)
	for _, each := range []bool{true, false} {
		name := "verify=each"
		if !each {
			name = "verify=once"
		}
		b.Run(fmt.Sprintf("clients=%d/%s", propagationClients, name), func(b *testing.B) {
			var recv, verified []time.Duration
			var commit, verify time.Duration
			for b.Loop() {
				r := p.propagate(b, client, srv.URL, &parked, held, each)
				recv = append(recv, r.recv...)
				verified = append(verified, r.verified...)
				commit += r.commit
				verify += r.verify
				held = r.next
			}
			n := time.Duration(b.N)
			if each {
				b.ReportMetric(millis(quantile(verified, 0.50)), "p50-ms")
				b.ReportMetric(millis(quantile(verified, 0.99)), "p99-ms")
				b.ReportMetric(millis(quantile(verified, 1)), "max-ms")
			} else {
				b.ReportMetric(millis(verify/n), "verify-ms")
			}
			b.ReportMetric(millis(quantile(recv, 0.50)), "recv-p50-ms")
			b.ReportMetric(millis(quantile(recv, 0.99)), "recv-p99-ms")
			b.ReportMetric(millis(quantile(recv, 1)), "recv-max-ms")
			b.ReportMetric(millis(commit/n), "commit-ms")
		})
	}
}

// heldSnapshot is what a game server keeps of the snapshot it holds.
type heldSnapshot struct {
	etag    string
	version int64
	payload []byte
}

// fetchHeld fetches and verifies the current snapshot, as every client
// does before it starts long-polling.
func (p *benchPlane) fetchHeld(tb testing.TB, client *http.Client, base string) heldSnapshot {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, base+p.path(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+p.serverKey)
	req.Header.Set("Accept-Encoding", "gzip")
	res, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK {
		tb.Fatalf("fetch snapshot: %d, %v", res.StatusCode, err)
	}
	o, err := p.open(body, heldSnapshot{})
	if err != nil {
		tb.Fatal(err)
	}
	return heldSnapshot{etag: res.Header.Get("ETag"), version: o.Payload.Version, payload: o.RawPayload}
}

// open verifies a gzip-compressed snapshot response body as a game server
// holding held would.
func (p *benchPlane) open(body []byte, held heldSnapshot) (*snapshot.Opened, error) {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("gunzip snapshot: %w", err)
	}
	envelope, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("gunzip snapshot: %w", err)
	}
	return snapshot.Open(envelope, snapshot.OpenOptions{
		Trusted: p.trusted, Environment: p.env, HeldVersion: held.version, HeldPayload: held.payload, Now: time.Now(),
	})
}

// propagation is one round of BenchmarkPropagation.
type propagation struct {
	recv, verified []time.Duration // per client, since the change started
	commit         time.Duration   // the PutConfig call, publish included
	verify         time.Duration   // one verification alone (verify=once)
	next           heldSnapshot    // the new snapshot, which every client now holds
}

// propagate parks propagationClients long polls holding held, changes a
// flag and waits for every client to get the new snapshot.
func (p *benchPlane) propagate(b *testing.B, client *http.Client, base string, parked *atomic.Int64, held heldSnapshot, verifyEach bool) propagation {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute)
	defer cancel()
	const key = "flag-000000"
	fc, err := p.flags.GetConfig(ctx, p.env, key)
	if err != nil {
		b.Fatal(err)
	}
	change := fc.Config
	change.Enabled = !change.Enabled

	type result struct {
		recv, verified time.Time
		body           []byte
		version        int64
		err            error
	}
	results := make([]result, propagationClients)
	verifying := make(chan struct{}, runtime.GOMAXPROCS(0))
	url := base + p.path() + "?wait=30s"
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			res := &results[i]
			body, err := pollNewSnapshot(ctx, client, url, p.serverKey, fmt.Sprintf("gs-%04d", i), held)
			res.recv = time.Now()
			if err != nil {
				res.err = err
				return
			}
			if !verifyEach {
				res.body = body
				return
			}
			verifying <- struct{}{}
			o, err := p.open(body, held)
			<-verifying
			res.verified = time.Now()
			if err != nil {
				res.err = err
				return
			}
			res.version = o.Payload.Version
		})
	}

	// Change the flag once every client is parked in its long poll.
	failRound := func(format string, args ...any) {
		cancel()
		wg.Wait()
		msg := fmt.Sprintf(format, args...)
		for _, r := range results {
			if r.err != nil {
				msg += fmt.Sprintf("; first client error: %v", r.err)
				if errors.Is(r.err, syscall.EMFILE) {
					msg += fmt.Sprintf(" (out of file descriptors: each of the %d clients needs two; raise ulimit -n or lower propagationClients)", propagationClients)
				}
				break
			}
		}
		b.Fatal(msg)
	}
	parkBy := time.Now().Add(time.Minute)
	for parked.Load() < propagationClients {
		if ctx.Err() != nil || time.Now().After(parkBy) {
			failRound("only %d of %d clients parked in their long poll", parked.Load(), propagationClients)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // from the counting wrapper into Publisher.Wait
	start := time.Now()
	if _, err := p.flags.PutConfig(ctx, p.env, key, change, fc.Revision, "Benchmark: toggle "+key); err != nil {
		failRound("change %s: %v", key, err)
	}
	commit := time.Since(start)
	wg.Wait()
	if ctx.Err() != nil {
		failRound("round did not finish: %v", ctx.Err())
	}

	out := propagation{commit: commit}
	cur := p.current(b)
	for i, r := range results {
		if r.err != nil {
			failRound("client %d: %v", i, r.err)
		}
		out.recv = append(out.recv, r.recv.Sub(start))
		if verifyEach {
			if r.version != cur.Version() {
				b.Fatalf("client %d verified version %d, want %d", i, r.version, cur.Version())
			}
			out.verified = append(out.verified, r.verified.Sub(start))
		}
	}
	// Every client got the same bytes; verify them (again, for
	// verify=each: the next round's clients hold this snapshot).
	for i, r := range results[1:] {
		if !verifyEach && !bytes.Equal(r.body, results[0].body) {
			b.Fatalf("client %d received other bytes than client 0", i+1)
		}
	}
	body := results[0].body
	if verifyEach {
		body = cur.Gzip()
	}
	vstart := time.Now()
	o, err := p.open(body, held)
	out.verify = time.Since(vstart)
	if err != nil {
		b.Fatalf("verify the new snapshot: %v", err)
	}
	if o.Payload.Version != cur.Version() {
		b.Fatalf("clients received version %d, want %d", o.Payload.Version, cur.Version())
	}
	out.next = heldSnapshot{etag: cur.ETag(), version: o.Payload.Version, payload: o.RawPayload}
	return out
}

// pollNewSnapshot polls url until it answers with a new snapshot and
// returns the response body (gzip). It polls again after a 304: the wait
// ran out before the change.
func pollNewSnapshot(ctx context.Context, client *http.Client, url, key, id string, held heldSnapshot) ([]byte, error) {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Accept-Encoding", "gzip")
		req.Header.Set("If-None-Match", held.etag)
		req.Header.Set(snapshot.HeaderVersion, strconv.FormatInt(held.version, 10))
		req.Header.Set(snapshot.HeaderServerID, id)
		res, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		switch {
		case err != nil:
			return nil, err
		case res.StatusCode == http.StatusNotModified:
			continue
		case res.StatusCode != http.StatusOK:
			return nil, fmt.Errorf("long poll: status %d: %s", res.StatusCode, body)
		}
		return body, nil
	}
}

// quantile returns the q-quantile of ds (nearest rank), 0 for none.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
