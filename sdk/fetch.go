package sdk

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/snapshot"
)

// userAgent names the SDK in requests.
const userAgent = "solstice-sdk-go"

// gzipSlack is how much larger than MaxSnapshotSize a gzip-compressed body
// may be: incompressible content grows by a few bytes per block.
const gzipSlack = 64 << 10

// maxErrorBody bounds the problem document read from an error response.
const maxErrorBody = 64 << 10

// poll does one request and handles its answer. It returns the server's
// Retry-After, if any, for Run's backoff.
func (c *Client) poll(ctx context.Context) (time.Duration, error) {
	c.pollMu.Lock()
	defer c.pollMu.Unlock()
	var evs []Event
	defer func() { c.deliver(evs) }()

	h := c.cur.Load()
	wait := c.cfg.PollWait
	c.mu.Lock()
	if !c.failingSince.IsZero() {
		// After a failure, ask without waiting: that the control plane is
		// back is news even when the snapshot did not change.
		wait = 0
	}
	c.mu.Unlock()
	reqCtx, cancel := context.WithTimeout(ctx, max(wait, 0)+requestGrace)
	defer cancel()
	req, err := c.newRequest(reqCtx, h, wait)
	if err != nil { // cannot happen: New checked BaseURL
		return 0, err
	}
	c.mu.Lock()
	c.stats.Polls++
	c.mu.Unlock()

	res, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err() // shutting down: not a failure
		}
		err = fmt.Errorf("fetch snapshot of %q: %w", c.cfg.Environment, err)
		c.failed(c.cfg.Clock.Now(), err, failTransient, &evs)
		return 0, err
	}
	defer res.Body.Close()

	switch res.StatusCode {
	case http.StatusOK:
		body, err := c.readBody(res)
		now := c.cfg.Clock.Now()
		var verr *snapshot.VerifyError
		switch {
		case err == nil:
			return 0, c.accept(body, now, &evs)
		case ctx.Err() != nil:
			return 0, ctx.Err()
		case errors.As(err, &verr):
			return 0, c.rejected(now, verr, &evs)
		default:
			err = fmt.Errorf("read snapshot of %q: %w", c.cfg.Environment, err)
			c.failed(now, err, failTransient, &evs)
			return 0, err
		}
	case http.StatusNotModified:
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxErrorBody))
		c.succeeded(c.cfg.Clock.Now(), &evs)
		return 0, nil
	default:
		err := c.statusError(res)
		retryAfter := parseRetryAfter(res.Header.Get("Retry-After"))
		code := res.StatusCode
		kind := failTransient
		if code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests {
			kind = failConfig
		}
		c.failed(c.cfg.Clock.Now(), err, kind, &evs)
		return retryAfter, err
	}
}

func (c *Client) newRequest(ctx context.Context, h *held, wait time.Duration) (*http.Request, error) {
	u := c.url
	if wait > 0 && h != nil {
		u += "?wait=" + formatWait(wait)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch snapshot of %q: %w", c.cfg.Environment, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.ServerKey)
	req.Header.Set("Accept", snapshot.EnvelopeContentType)
	// Set explicitly, so that net/http does not decompress on its own and
	// the size cap applies to what is decompressed.
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(snapshot.HeaderServerID, c.cfg.ServerID)
	if h != nil {
		req.Header.Set("If-None-Match", h.etag)
		req.Header.Set(snapshot.HeaderVersion, strconv.FormatInt(h.version, 10))
	}
	return req, nil
}

// formatWait writes a long-poll wait as the control plane reads it: whole
// seconds, or a Go duration below a second's precision.
func formatWait(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10)
	}
	return d.String()
}

// errTooLarge is returned by capReader past its limit.
var errTooLarge = errors.New("over the size limit")

// capReader fails with errTooLarge once more than left bytes were read.
type capReader struct {
	r    io.Reader
	left int64
}

func (r *capReader) Read(p []byte) (int, error) {
	if r.left < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > r.left+1 {
		p = p[:r.left+1]
	}
	n, err := r.r.Read(p)
	r.left -= int64(n)
	if r.left < 0 {
		return n, errTooLarge
	}
	return n, err
}

// readBody reads a snapshot response, decompressing gzip, with the size
// cap applied to the bytes received and to the bytes decompressed. An
// oversized or undecodable body is a *snapshot.VerifyError (too_large,
// malformed); a transport failure is returned as is.
func (c *Client) readBody(res *http.Response) ([]byte, error) {
	limit := int64(c.cfg.MaxSnapshotSize)
	tooLarge := func(format string, args ...any) error {
		return &snapshot.VerifyError{Reason: snapshot.ReasonTooLarge, Message: fmt.Sprintf(format, args...)}
	}
	var r io.Reader
	switch enc := strings.ToLower(strings.TrimSpace(res.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		if res.ContentLength > limit {
			return nil, tooLarge("snapshot response is %d bytes, over the limit of %d", res.ContentLength, limit)
		}
		r = &capReader{r: res.Body, left: limit}
	case "gzip", "x-gzip":
		if res.ContentLength > limit+gzipSlack {
			return nil, tooLarge("compressed snapshot response is %d bytes, over the limit of %d", res.ContentLength, limit)
		}
		zr, err := gzip.NewReader(&capReader{r: res.Body, left: limit + gzipSlack})
		if err != nil {
			if errors.Is(err, errTooLarge) {
				return nil, tooLarge("compressed snapshot response is over the limit of %d bytes", limit)
			}
			if errors.Is(err, gzip.ErrHeader) {
				return nil, &snapshot.VerifyError{Reason: snapshot.ReasonMalformed, Message: "snapshot response is not valid gzip", Err: err}
			}
			return nil, err
		}
		defer func() { _ = zr.Close() }()
		r = &capReader{r: zr, left: limit}
	default:
		return nil, &snapshot.VerifyError{Reason: snapshot.ReasonMalformed, Message: fmt.Sprintf("snapshot response has unsupported Content-Encoding %q", enc)}
	}
	b, err := io.ReadAll(r)
	if errors.Is(err, errTooLarge) {
		return nil, tooLarge("snapshot is over the limit of %d bytes (after decompression)", limit)
	}
	return b, err
}

// statusError turns an HTTP error answer into a *solstice.Error of the
// matching kind, with the problem document's detail.
func (c *Client) statusError(res *http.Response) error {
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	b, _ := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
	msg := ""
	if json.Unmarshal(b, &p) == nil {
		msg = p.Detail
		if msg == "" {
			msg = p.Title
		}
	}
	if msg == "" {
		msg = http.StatusText(res.StatusCode)
	}
	var kind solstice.Kind
	switch code := res.StatusCode; {
	case code == http.StatusUnauthorized:
		kind = solstice.KindUnauthorized
	case code == http.StatusForbidden:
		kind = solstice.KindForbidden
	case code == http.StatusNotFound:
		kind = solstice.KindNotFound
	case code == http.StatusTooManyRequests:
		kind = solstice.KindRateLimited
	case code >= 400 && code < 500 && code != http.StatusRequestTimeout:
		kind = solstice.KindInvalid
	default:
		kind = solstice.KindInternal
	}
	return solstice.Errorf(kind, "fetch snapshot of %q: the control plane answered %d: %s", c.cfg.Environment, res.StatusCode, msg)
}

// parseRetryAfter reads Retry-After in seconds or as an HTTP date; 0 when
// absent or unreadable.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
