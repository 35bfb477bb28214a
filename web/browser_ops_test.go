package web_test

import (
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/solsticehq/solstice/rollout"
)

// TestBrowserLiveOps drives Chromium through the live-operations pages: a
// running rollout advanced by hand through its confirmation, the calendar
// and an event, and a guardrail incident acknowledged; it writes their
// screenshots beside TestBrowserDesignersDay's.
func TestBrowserLiveOps(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	o := newOpsHarness(t)
	// The incident first: the job's counters are those of every
	// guardrail, and the ramp's must not trip.
	o.splitFlag("production", "winter-drops", 5000, false)
	o.rejectRateGuardrail("production", "winter-drops")
	o.trip()
	o.setUpRamp()
	if _, err := o.rollouts.Start(as("alice"), "production", "winter-ramp", 1); err != nil {
		t.Fatal(err)
	}
	o.festival()

	b := newBrowser(t, o.srv.URL)
	b.login("alice")
	wait := func(text string) chromedp.Action[chromedp.Void] {
		return chromedp.WaitVisible(`//main[contains(., ` + xpathString(text) + `)]`)
	}

	b.do("open the rollouts", b.open("/env/production/rollouts"), wait("winter-ramp"))
	b.screenshot("rollouts.png")
	b.do("advance the ramp",
		chromedp.Click(chromedp.CSS(`a[href="/env/production/rollouts/winter-ramp"]`)),
		chromedp.WaitVisible(button("Advance to step 2")),
		chromedp.Click(button("Advance to step 2")),
		chromedp.WaitVisible(button("Advance to 25% now")),
		chromedp.Click(button("Advance to 25% now")),
		chromedp.WaitVisible(textIn("flash", "Advanced winter-ramp to step 2 of 3")),
	)
	if p := o.plan("winter-ramp"); p.Status != rollout.StatusRunning || p.Step != 1 {
		t.Fatalf("after advancing in the browser: %s at step %d, want running at step 2", p.Status, p.Step+1)
	}
	b.screenshot("rollout.png")

	b.do("open the calendar", b.open("/env/production/calendar"), wait("phase teaser starts"))
	b.screenshot("calendar.png")
	b.do("open the event",
		chromedp.Click(chromedp.CSS(`.event-list a[href="/env/production/events/winter-festival"]`)),
		wait("At the end"),
	)
	b.screenshot("event.png")

	b.do("open the incidents", chromedp.Click(chromedp.CSS(`nav.side a[href="/env/production/incidents"]`)), wait("tripped: rollback"))
	b.screenshot("incidents.png")
	b.do("acknowledge the incident",
		chromedp.Click(chromedp.CSS(`a[href="/env/production/incidents/1"]`)),
		chromedp.WaitVisible(button("Acknowledge")),
		chromedp.Click(button("Acknowledge")),
		chromedp.WaitVisible(textIn("flash", "Acknowledged incident #1.")),
	)
	if rec := o.incident(1); rec.AckedBy == nil || rec.AckedBy.Name != "alice" {
		t.Fatalf("after acknowledging in the browser: %+v", rec)
	}
	b.screenshot("incident.png")

	b.do("open the dashboard", b.open("/env/production"), wait("Rollouts under way"))
	b.screenshot("dashboard-ops.png")
}
