package fleet_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/fleet"
)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

var _ solstice.Clock = (*clock)(nil)

func TestReport(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	c := &clock{now: t0}
	tr := fleet.New(c)
	tr.Published("production", 1, t0)
	tr.Seen("production", "gs-a", "10.0.0.1", 1)
	tr.Seen("production", "gs-b", "10.0.0.2", 1)
	tr.Seen("production", "gs-old", "10.0.0.3", 1)
	tr.Seen("staging", "gs-s", "10.0.1.1", 1)
	tr.Seen("production", "", "10.0.0.9", 1) // anonymous polls are not tracked

	c.now = t0.Add(time.Minute)
	tr.Published("production", 2, c.now) // e.g. a rollback
	c.now = t0.Add(90 * time.Second)
	tr.Seen("production", "gs-a", "10.0.0.1", 2)
	c.now = t0.Add(2 * time.Minute)
	tr.Seen("production", "gs-b", "10.0.0.2", 1)

	c.now = t0.Add(3 * time.Minute)
	r := tr.Report("production", 0, 2*time.Minute+30*time.Second)
	if r.Newest != 2 || r.NewestAt == nil || !r.NewestAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("newest = %d at %v", r.Newest, r.NewestAt)
	}
	if r.Servers != 2 || r.Converged {
		t.Errorf("servers = %d, converged = %v; want 2, false", r.Servers, r.Converged)
	}
	if diff := cmp.Diff([]fleet.VersionCount{{Version: 2, Servers: 1}, {Version: 1, Servers: 1}}, r.Versions); diff != "" {
		t.Errorf("versions (-want +got):\n%s", diff)
	}
	if len(r.Lagging) != 1 || r.Lagging[0].ID != "gs-b" || r.Lagging[0].LaggingSeconds != 120 {
		t.Errorf("lagging = %+v, want gs-b lagging 120 s (since v2 was published)", r.Lagging)
	}
	if len(r.NotSeen) != 1 || r.NotSeen[0].ID != "gs-old" {
		t.Errorf("not seen = %+v", r.NotSeen)
	}

	// gs-b catches up: converged.
	tr.Seen("production", "gs-b", "10.0.0.2", 2)
	if r := tr.Report("production", 2, 2*time.Minute+30*time.Second); !r.Converged || len(r.Lagging) != 0 || r.Servers != 2 {
		t.Errorf("after catching up: %+v", r)
	}
	// Servers silent for longer than Forget disappear.
	c.now = t0.Add(fleet.Forget + time.Hour)
	if r := tr.Report("production", 2, time.Minute); len(r.NotSeen)+r.Servers != 0 {
		t.Errorf("forgotten servers still reported: %+v", r)
	}
	if r := tr.Report("staging", 0, time.Hour); r.Environment != "staging" || r.Newest != 0 {
		t.Errorf("staging = %+v", r)
	}
}

func TestPublishedIgnoresOlderVersions(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	c := &clock{now: t0}
	tr := fleet.New(c)
	tr.Published("e", 5, t0)
	tr.Published("e", 4, t0.Add(time.Second))
	if r := tr.Report("e", 0, time.Hour); r.Newest != 5 || !r.NewestAt.Equal(t0) {
		t.Errorf("report = %+v", r)
	}
}
