package accounts

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Login throttling: each username and each client address has a token
// bucket that failed attempts drain. While a bucket is empty, logins for
// that key are refused before any password is checked, so guessing runs at
// the refill rate however fast the requests come.
const (
	userBurst    = 5                // failed attempts for one username before throttling
	userRefill   = 20 * time.Second // then one more attempt every...
	addrBurst    = 20               // failed attempts from one address before throttling
	addrRefill   = 3 * time.Second
	maxThrottled = 10_000 // keys remembered; past it, full buckets are forgotten
)

type throttle struct {
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newThrottle() *throttle { return &throttle{buckets: map[string]*rate.Limiter{}} }

func limiterFor(key string) *rate.Limiter {
	if len(key) > 5 && key[:5] == "addr:" {
		return rate.NewLimiter(rate.Every(addrRefill), addrBurst)
	}
	return rate.NewLimiter(rate.Every(userRefill), userBurst)
}

// allowed reports whether every key still has an attempt left at now.
func (t *throttle) allowed(keys []string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		if l, ok := t.buckets[k]; ok && l.TokensAt(now) < 1 {
			return false
		}
	}
	return true
}

// failed takes one attempt from every key's bucket.
func (t *throttle) failed(keys []string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.buckets) >= maxThrottled {
		for k, l := range t.buckets {
			if l.TokensAt(now) >= float64(l.Burst()) {
				delete(t.buckets, k)
			}
		}
		if len(t.buckets) >= maxThrottled {
			clear(t.buckets) // under a flood of addresses: start over rather than grow
		}
	}
	for _, k := range keys {
		l, ok := t.buckets[k]
		if !ok {
			l = limiterFor(k)
			t.buckets[k] = l
		}
		l.AllowN(now, 1)
	}
}
