package sdk

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/snapshot"
)

// loadCache installs the last-known-good snapshot from Config.CacheFile,
// once, if no snapshot is held yet. The file is verified with the same
// checks as a snapshot from the network, with one exception: an expired
// snapshot is still used, and reported stale at once, because serving the
// configuration last verified beats serving code defaults (the design's
// "keep the last-known-good one, and say when they are stale"). A file
// that fails any other check is ignored with a warning.
func (c *Client) loadCache() {
	c.pollMu.Lock()
	defer c.pollMu.Unlock()
	if c.cacheTried || c.cfg.CacheFile == "" || c.cur.Load() != nil {
		return
	}
	c.cacheTried = true
	var evs []Event
	defer func() { c.deliver(evs) }()

	path := c.cfg.CacheFile
	b, err := readCapped(path, int64(c.cfg.MaxSnapshotSize))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.log.Info("no last-known-good snapshot yet", "file", path)
		return
	case err != nil:
		c.log.Warn("ignoring the last-known-good snapshot", "file", path, "err", err)
		return
	}
	now := c.cfg.Clock.Now()
	opts := c.openOptions(now, nil)
	o, err := snapshot.Open(b, opts)
	var verr *snapshot.VerifyError
	if errors.As(err, &verr) && verr.Reason == snapshot.ReasonExpired {
		// Every other check passed (expiry is the last): open it again as
		// of just before its expiry, which verifies the signature anew
		// rather than trusting a half-checked result.
		opts.Now = verr.ExpiresAt.Add(-time.Second)
		o, err = snapshot.Open(b, opts)
		if err == nil {
			c.log.Warn("the last-known-good snapshot has expired; serving it, marked stale, until the control plane answers",
				"file", path, "version", o.Payload.Version, "expired_at", verr.ExpiresAt)
		}
	}
	if err != nil {
		c.log.Warn("ignoring the last-known-good snapshot", "file", path, "err", err)
		return
	}
	compiled, err := flags.Compile(o.Payload.Set())
	if err != nil {
		c.log.Warn("ignoring the last-known-good snapshot", "file", path, "err", err)
		return
	}
	c.install(newHeld(o, compiled, true), now, &evs)
}

// readCapped reads a file of at most limit bytes.
func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is over the snapshot size limit of %d bytes", path, limit)
	}
	return b, nil
}

// writeCache saves the exact verified envelope as the last-known-good
// snapshot, atomically: a reader (or a crash) sees the old file or the new
// one, never half of one. Failures are logged: polling goes on without a
// fresh copy on disk.
func (c *Client) writeCache(envelope []byte) {
	if c.cfg.CacheFile == "" {
		return
	}
	err := os.MkdirAll(filepath.Dir(c.cfg.CacheFile), 0o700)
	if err == nil {
		err = snapshot.WriteFileAtomic(c.cfg.CacheFile, envelope)
	}
	if err != nil {
		c.log.Warn("could not save the last-known-good snapshot", "file", c.cfg.CacheFile, "err", err)
	}
}
