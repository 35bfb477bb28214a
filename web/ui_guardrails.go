package web

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
)

// The guardrail pages: the environment's guardrails with their state, and
// one guardrail's current test as two charts drawn here as inline SVG
// (no script, no style attribute: the CSP allows neither; the classes are
// in app.css).

// guardrailURL returns the address of a guardrail's page.
func guardrailURL(env, flag, key string) string {
	return configURL(env, flag) + "/guardrails/" + url.PathEscape(key)
}

// ---- the list ----

type guardrailRow struct {
	Flag, Key         string
	URL, FlagURL      string
	Metric, Compared  string
	Variants          string
	Phase             guardrails.Phase
	Status            guardrails.Status
	Hold              guardrails.HoldReason
	PValue, Alpha     string
	Reason            string
	LastEvent, LastAt string
}

type guardrailsData struct {
	Env flags.Environment
	// Unavailable is true when this server does not run the guardrails.
	Unavailable bool
	Rows        []guardrailRow
}

func (u *ui) guardrailsPage(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	d := guardrailsData{Env: env, Unavailable: u.s.guardrails == nil}
	if !d.Unavailable {
		ctx := c.Request().Context()
		defs, err := u.s.guardrails.List(ctx, env.Name, "")
		if err != nil {
			return err
		}
		for _, def := range defs {
			st, err := u.s.guardrails.Status(ctx, def.Ref)
			if err != nil {
				return err
			}
			ev := st.Verdict.Evidence
			row := guardrailRow{
				Flag: def.Flag, Key: def.Key, URL: guardrailURL(env.Name, def.Flag, def.Key), FlagURL: configURL(env.Name, def.Flag),
				Metric: metricLabel(def.Metric), Compared: comparisonLabel(def.Rule), Variants: variantsLabel(def.Rule),
				Phase: st.State.Phase, Status: st.Verdict.Status, Hold: st.Verdict.Hold, Reason: st.Verdict.Reason,
				PValue: pValue(ev.PValue), Alpha: strconv.FormatFloat(ev.Alpha, 'g', 3, 64),
			}
			if l := st.State.Last; l != nil {
				row.LastEvent, row.LastAt = eventLabel(l.Event, l.Action), l.Time.UTC().Format("2006-01-02 15:04 UTC")
			}
			d.Rows = append(d.Rows, row)
		}
	}
	p := u.page(c, "Guardrails in "+env.Name)
	p.Nav, p.Data = "guardrails", d
	return u.render(c, http.StatusOK, "guardrails", p)
}

// ---- one guardrail ----

type guardrailData struct {
	Env              flags.Environment
	Def              guardrails.Definition
	FlagURL          string
	Metric, Compared string
	Series           guardrails.Series
	PValue, Alpha    string
	LogE, Threshold  string
	Confidence       string // of each bound of the confidence sequence, "95%"
	Arms             []armRow
	NLabel, XLabel   string // what an arm's n and x count
	Rates, Effect    *chart // nil: nothing to draw
	EffectNote       string // why there is no effect chart
	Table            []pointRow
	Incidents        []guardrailIncident
	Points           int
}

type armRow struct {
	Role, Variant string
	Exposures     int64
	N, X          int64
	Rate          string
}

type pointRow struct {
	Time                 string
	TN, TX, CN, CX       int64
	TRate, CRate, Limit  string
	Effect, Lower, Upper string
	PValue, Status       string
}

type guardrailIncident struct {
	Number                int64
	Anchor                string // the id of its row here
	URL                   string // its page
	Time                  string
	Event, Actor, Outcome string
	Reason                string
	Acked                 string
	Current               bool // of the current test
}

func (u *ui) guardrailPage(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	if u.s.guardrails == nil {
		return solstice.Errorf(solstice.KindNotFound, "this server does not run the guardrails")
	}
	ref := guardrails.Ref{Environment: env.Name, Flag: c.Param("key"), Key: c.Param("guardrail")}
	s, err := u.s.guardrails.Series(c.Request().Context(), ref, guardrails.SeriesOptions{})
	if err != nil {
		return err
	}
	r := s.Definition.WithDefaults()
	ev := s.Verdict.Evidence
	d := guardrailData{
		Env: env, Def: s.Definition, FlagURL: configURL(env.Name, ref.Flag), Series: s,
		Metric: metricLabel(r.Metric), Compared: comparisonLabel(r),
		PValue: pValue(ev.PValue), Alpha: strconv.FormatFloat(ev.Alpha, 'g', 3, 64),
		LogE: strconv.FormatFloat(ev.LogE, 'f', 2, 64), Threshold: strconv.FormatFloat(ev.Threshold, 'f', 2, 64),
		Confidence: strconv.FormatFloat(100*(1-ev.Alpha), 'g', 4, 64) + "%", Points: len(s.Points),
	}
	d.NLabel, d.XLabel = armCounts(r.Metric)
	d.Arms = []armRow{{Role: "Treatment", Variant: r.Treatment, Exposures: ev.Treatment.Exposures, N: ev.Treatment.N, X: ev.Treatment.X, Rate: pct(ev.Treatment.Rate)}}
	if r.Control != "" {
		d.Arms = append(d.Arms, armRow{Role: "Control", Variant: r.Control, Exposures: ev.Control.Exposures, N: ev.Control.N, X: ev.Control.X, Rate: pct(ev.Control.Rate)})
	}
	for _, rec := range s.Incidents {
		row := guardrailIncident{Number: rec.Number, Anchor: fmt.Sprintf("incident-%d", rec.Number), URL: incidentURL(env.Name, rec.Number), Time: rec.Time.UTC().Format("2006-01-02 15:04:05 UTC"),
			Event: eventLabel(rec.Event, rec.Action), Actor: rec.Actor.Name, Outcome: rec.Outcome, Reason: rec.Reason, Current: rec.Test == s.State.Test}
		if rec.AckedBy != nil {
			row.Acked = rec.AckedBy.Name
		}
		d.Incidents = append(d.Incidents, row)
	}
	if len(s.Points) > 0 {
		g := newGeometry(s)
		d.Rates = ratesChart(s, r, g)
		d.Effect, d.EffectNote = effectChart(s, r, g, d.Confidence)
		for _, p := range s.Points {
			row := pointRow{Time: p.Time.UTC().Format("2006-01-02 15:04 UTC"), TN: p.Treatment.N, TX: p.Treatment.X, CN: p.Control.N, CX: p.Control.X,
				TRate: pct(p.Treatment.Rate), CRate: pct(p.Control.Rate), PValue: pValue(p.PValue), Status: string(p.Status)}
			if p.Hold != "" {
				row.Status += " (" + strings.ReplaceAll(string(p.Hold), "_", " ") + ")"
			}
			if p.Limit != nil {
				row.Limit = pct(*p.Limit)
			}
			if p.Estimated {
				row.Effect, row.Lower, row.Upper = pp(p.Effect), pp(p.Lower), pp(p.Upper)
			}
			d.Table = append(d.Table, row)
		}
	}
	p := u.page(c, ref.Key+" · "+ref.Flag+" in "+env.Name)
	p.Nav, p.Data = "guardrails", d
	return u.render(c, http.StatusOK, "guardrail", p)
}

// ---- words ----

func metricLabel(m guardrails.Metric) string {
	switch m.Kind {
	case guardrails.KindRejectRate:
		return "reject rate"
	case guardrails.KindD1Retention:
		return "D1 retention"
	default:
		return m.Numerator + " / " + m.Denominator
	}
}

// comparisonLabel says what the treatment is held to.
func comparisonLabel(r guardrails.Rule) string {
	switch {
	case r.Comparison.Kind == guardrails.KindAbsoluteCeiling:
		return "at most " + pct(r.Comparison.Ceiling)
	case r.Metric.Kind == guardrails.KindD1Retention:
		return "at most " + ppAbs(r.Comparison.Margin) + " below the control's"
	case r.Comparison.Margin == 0:
		return "no higher than the control's"
	default:
		return "at most " + pct(r.Comparison.Margin) + " above the control's"
	}
}

func variantsLabel(r guardrails.Rule) string {
	if r.Control == "" {
		return r.Treatment
	}
	return r.Treatment + " vs " + r.Control
}

// armCounts names what n and x count for the metric.
func armCounts(m guardrails.Metric) (n, x string) {
	switch m.Kind {
	case guardrails.KindRejectRate:
		return "Actions", "Rejected"
	case guardrails.KindD1Retention:
		return "Players past 48 h", "Returned on day 1"
	default:
		return m.Denominator, m.Numerator
	}
}

func eventLabel(e guardrails.Event, a guardrails.Action) string {
	switch e {
	case guardrails.EventTrip:
		return "tripped: " + string(a)
	case guardrails.EventFailSafe:
		return "failed safe: " + string(a)
	case guardrails.EventHold:
		return "held"
	case guardrails.EventRelease:
		return "released"
	case guardrails.EventResume:
		return "resumed"
	}
	return string(e)
}

// pct formats a proportion as a percentage, with more digits for small
// ones and no trailing zeros: "2%", "2.05%", "0.125%".
func pct(v float64) string {
	a := math.Abs(100 * v)
	prec := 2
	switch {
	case a >= 100:
		prec = 0
	case a >= 10:
		prec = 1
	case a < 0.1:
		prec = 3
	}
	s := strconv.FormatFloat(100*v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s + "%"
}

// pp formats a difference of proportions in percentage points, signed.
func pp(v float64) string {
	s := ppAbs(v)
	if v > 0 {
		s = "+" + s
	}
	return s
}

func ppAbs(v float64) string {
	a := math.Abs(100 * v)
	prec := 2
	switch {
	case a >= 10:
		prec = 1
	case a < 0.1 && a > 0:
		prec = 3
	}
	return strconv.FormatFloat(100*v, 'f', prec, 64) + " pp"
}

func pValue(p float64) string {
	switch {
	case p >= 1:
		return "1"
	case p < 1e-4:
		return "< 0.0001"
	case p < 0.01:
		return fmt.Sprintf("%.2g", p)
	default:
		return strconv.FormatFloat(p, 'f', 2, 64)
	}
}

// ---- charts ----

// chart is an SVG line chart as the "chart" template draws it; every
// coordinate is in the units of its viewBox, formatted.
type chart struct {
	ID, Title, Desc string
	W, H            int
	Left, Right     string
	Top, Bottom     string
	XTicks, YTicks  []chartTick
	TickLabelX      string // the right end of the y-axis labels
	TickLabelY      string // the baseline of the x-axis labels
	TickEnd         string // the lower end of the x-axis ticks
	XLabel, YLabel  string
	XLabelX         string
	XLabelY         string
	YLabelX         string // in the rotated frame: minus the middle of the plot
	Bands           []chartShape
	Rules           []chartRule
	Lines           []chartShape
	Dots            []chartDot
	Markers         []chartMarker
	Legend          []chartLegend
}

type chartTick struct{ Pos, Label string }

type chartShape struct{ Class, Points string }

type chartDot struct{ Class, X, Y string }

type chartRule struct{ Class, Y, LabelY, Label string }

type chartMarker struct{ X, LabelX, LabelY, Label, Href, Title string }

type chartLegend struct{ Class, Label string }

// The charts' size and margins, in viewBox units.
const (
	chartW, chartH                               = 760, 300
	chartLeft, chartRight, chartTop, chartBottom = 72, chartW - 20, 20, chartH - 50
)

// geometry is the time axis shared by a guardrail's charts, with the
// incidents that mark it.
type geometry struct {
	x0, x1  time.Time
	ticks   []chartTick
	markers []chartMarker
	acted   []guardrails.Record // the trips and fail-safes in view, oldest first
}

func newGeometry(s guardrails.Series) geometry {
	g := geometry{x0: s.Since, x1: s.Watermark}
	if g.x0.IsZero() {
		g.x0 = s.Points[0].Time
	}
	for i := len(s.Incidents) - 1; i >= 0; i-- {
		rec := s.Incidents[i]
		if (rec.Event == guardrails.EventTrip || rec.Event == guardrails.EventFailSafe) && !rec.Time.Before(g.x0) {
			g.acted = append(g.acted, rec)
			if rec.Time.After(g.x1) {
				g.x1 = rec.Time
			}
		}
	}
	if !g.x1.After(g.x0) {
		g.x1 = g.x0.Add(time.Minute)
	}
	g.ticks = timeTicks(g.x0, g.x1, g.x)
	for _, rec := range g.acted {
		x := g.x(rec.Time)
		g.markers = append(g.markers, chartMarker{X: coord(x), LabelX: coord(x + 4), LabelY: coord(chartTop + 12),
			Label: fmt.Sprintf("%s #%d", rec.Action, rec.Number), Href: fmt.Sprintf("#incident-%d", rec.Number),
			Title: fmt.Sprintf("Incident #%d: %s at %s", rec.Number, eventLabel(rec.Event, rec.Action), rec.Time.UTC().Format("2006-01-02 15:04:05 UTC"))})
	}
	return g
}

func (g geometry) x(t time.Time) float64 {
	f := float64(t.Sub(g.x0)) / float64(g.x1.Sub(g.x0))
	return chartLeft + f*(chartRight-chartLeft)
}

// actedSentence says when the guardrail acted, for a chart's description.
func (g geometry) actedSentence() string {
	var parts []string
	for _, rec := range g.acted {
		parts = append(parts, fmt.Sprintf("%s at %s (incident #%d)", eventLabel(rec.Event, rec.Action), rec.Time.UTC().Format("2006-01-02 15:04:05 UTC"), rec.Number))
	}
	if len(parts) == 0 {
		return ""
	}
	return " The guardrail " + strings.Join(parts, "; ") + "."
}

// yScale maps values onto the plot, clamped to its range.
type yScale struct{ lo, hi float64 }

func (s yScale) y(v float64) float64 {
	v = min(max(v, s.lo), s.hi)
	return chartBottom - (v-s.lo)/(s.hi-s.lo)*(chartBottom-chartTop)
}

func newChart(id, title, desc, ylabel string, g geometry) *chart {
	return &chart{ID: id, Title: title, Desc: desc, W: chartW, H: chartH,
		Left: coord(chartLeft), Right: coord(chartRight), Top: coord(chartTop), Bottom: coord(chartBottom),
		XTicks: g.ticks, TickLabelX: coord(chartLeft - 8), TickLabelY: coord(chartBottom + 18), TickEnd: coord(chartBottom + 5),
		XLabel: "time (UTC)", YLabel: ylabel, XLabelX: coord((chartLeft + chartRight) / 2), XLabelY: coord(chartH - 8),
		YLabelX: coord(-(chartTop + chartBottom) / 2), Markers: g.markers}
}

// ratesChart draws the metric's rate per arm with the limit the rule
// holds the treatment to.
func ratesChart(s guardrails.Series, r guardrails.Rule, g geometry) *chart {
	hi := 0.0
	for _, p := range s.Points {
		hi = max(hi, p.Treatment.Rate, p.Control.Rate)
		if p.Limit != nil {
			hi = max(hi, *p.Limit)
		}
	}
	if hi == 0 {
		hi = 0.01
	}
	ticks, lo, top := niceTicks(0, hi*1.08, 5)
	ys := yScale{lo, top}
	metric := metricLabel(r.Metric)
	first, last := s.Points[0], s.Points[len(s.Points)-1]
	desc := fmt.Sprintf("%s from %s to %s UTC, %d points. Treatment (%s): %s to %s.", upperFirst(metric),
		first.Time.UTC().Format("2006-01-02 15:04"), last.Time.UTC().Format("2006-01-02 15:04"), len(s.Points), r.Treatment, pct(first.Treatment.Rate), pct(last.Treatment.Rate))
	if r.Control != "" {
		desc += fmt.Sprintf(" Control (%s): %s to %s.", r.Control, pct(first.Control.Rate), pct(last.Control.Rate))
	}
	if last.Limit != nil {
		desc += " The limit at the end: " + pct(*last.Limit) + "."
	}
	c := newChart("chart-rates", upperFirst(metric)+" per variant", desc+g.actedSentence(), metric+" (%)", g)
	c.YTicks = valueTicks(ticks, ys, pct)

	add := func(class, label string, keep func(guardrails.SeriesPoint) (float64, bool)) {
		segs, dots := polyline(s.Points, g, ys, keep)
		for _, seg := range segs {
			c.Lines = append(c.Lines, chartShape{Class: class, Points: seg})
		}
		for _, d := range dots {
			d.Class = class
			c.Dots = append(c.Dots, d)
		}
		c.Legend = append(c.Legend, chartLegend{Class: class, Label: label})
	}
	if r.Comparison.Kind == guardrails.KindAbsoluteCeiling {
		y := ys.y(r.Comparison.Ceiling)
		c.Rules = append(c.Rules, chartRule{Class: "chart-limit", Y: coord(y), LabelY: coord(y - 5), Label: "ceiling " + pct(r.Comparison.Ceiling)})
		c.Legend = append(c.Legend, chartLegend{Class: "chart-limit", Label: "ceiling " + pct(r.Comparison.Ceiling)})
	} else {
		label := "highest allowed: the control's × " + strconv.FormatFloat(1+r.Comparison.Margin, 'g', 4, 64)
		if r.Metric.Kind == guardrails.KindD1Retention {
			label = "lowest allowed: the control's − " + ppAbs(r.Comparison.Margin)
		}
		add("chart-limit", label, func(p guardrails.SeriesPoint) (float64, bool) {
			if p.Limit == nil {
				return 0, false
			}
			return *p.Limit, true
		})
	}
	if r.Control != "" {
		add("chart-control", "control ("+r.Control+")", func(p guardrails.SeriesPoint) (float64, bool) { return p.Control.Rate, p.Control.N > 0 })
	}
	add("chart-treatment", "treatment ("+r.Treatment+")", func(p guardrails.SeriesPoint) (float64, bool) { return p.Treatment.Rate, p.Treatment.N > 0 })
	return c
}

// effectChart draws the estimated effect with its confidence sequence and
// the margin (0), or says why it cannot yet.
func effectChart(s guardrails.Series, r guardrails.Rule, g geometry, confidence string) (*chart, string) {
	var est []guardrails.SeriesPoint
	for _, p := range s.Points {
		if p.Estimated {
			est = append(est, p)
		}
	}
	if len(est) == 0 {
		return nil, "No estimate yet: both arms need trials, and some spread in them, before the effect can be estimated."
	}
	last := est[len(est)-1]
	lo, hi := min(0, last.Lower), max(0, last.Upper)
	for _, p := range est {
		lo, hi = min(lo, p.Effect), max(hi, p.Effect)
	}
	pad := (hi - lo) * 0.08
	if pad == 0 {
		pad = 0.001
	}
	ticks, lo, hi := niceTicks(lo-pad, hi+pad, 6)
	ys := yScale{lo, hi}
	var zero string
	switch {
	case r.Comparison.Kind == guardrails.KindAbsoluteCeiling:
		zero = "the ceiling (" + pct(r.Comparison.Ceiling) + ")"
	case r.Metric.Kind == guardrails.KindD1Retention:
		zero = "the margin (" + ppAbs(r.Comparison.Margin) + " below the control)"
	case r.Comparison.Margin > 0:
		zero = "the margin (" + pct(r.Comparison.Margin) + " above the control)"
	default:
		zero = "the margin (the control's rate)"
	}
	desc := fmt.Sprintf("Estimated harm beyond %s, in percentage points, with its always-valid confidence sequence (each edge holds with probability %s at every look), %d points. Latest: %s, between %s and %s. The guardrail trips when the lower edge reaches 0.",
		zero, confidence, len(est), pp(last.Effect), pp(last.Lower), pp(last.Upper))
	c := newChart("chart-effect", "Estimated harm beyond "+zero, desc+g.actedSentence(), "harm (pp)", g)
	c.YTicks = valueTicks(ticks, ys, func(v float64) string { return strconv.FormatFloat(100*v, 'f', tickDigits(ticks), 64) })

	// The band: one polygon per run of estimated points.
	var run []guardrails.SeriesPoint
	flush := func() {
		if len(run) == 0 {
			return
		}
		var b strings.Builder
		if len(run) == 1 {
			x := g.x(run[0].Time)
			fmt.Fprintf(&b, "%s,%s %s,%s %s,%s %s,%s", coord(x-2), coord(ys.y(run[0].Upper)), coord(x+2), coord(ys.y(run[0].Upper)),
				coord(x+2), coord(ys.y(run[0].Lower)), coord(x-2), coord(ys.y(run[0].Lower)))
		} else {
			for _, p := range run {
				fmt.Fprintf(&b, "%s,%s ", coord(g.x(p.Time)), coord(ys.y(p.Upper)))
			}
			for i := len(run) - 1; i >= 0; i-- {
				fmt.Fprintf(&b, "%s,%s ", coord(g.x(run[i].Time)), coord(ys.y(run[i].Lower)))
			}
		}
		c.Bands = append(c.Bands, chartShape{Class: "chart-band", Points: strings.TrimSpace(b.String())})
		run = run[:0]
	}
	for _, p := range s.Points {
		if p.Estimated {
			run = append(run, p)
		} else {
			flush()
		}
	}
	flush()
	y0 := ys.y(0)
	c.Rules = append(c.Rules, chartRule{Class: "chart-zero", Y: coord(y0), LabelY: coord(y0 - 5), Label: "0 = " + zero})
	segs, dots := polyline(s.Points, g, ys, func(p guardrails.SeriesPoint) (float64, bool) { return p.Effect, p.Estimated })
	for _, seg := range segs {
		c.Lines = append(c.Lines, chartShape{Class: "chart-effect", Points: seg})
	}
	for _, d := range dots {
		d.Class = "chart-effect"
		c.Dots = append(c.Dots, d)
	}
	c.Legend = []chartLegend{
		{Class: "chart-effect", Label: "estimated harm"},
		{Class: "chart-band", Label: "confidence sequence (" + confidence + " each edge)"},
		{Class: "chart-zero", Label: zero},
	}
	return c, ""
}

// polyline returns the points keep accepts as polylines, split where it
// refuses one, and the runs of a single point as dots.
func polyline(points []guardrails.SeriesPoint, g geometry, ys yScale, keep func(guardrails.SeriesPoint) (float64, bool)) ([]string, []chartDot) {
	var segs []string
	var dots []chartDot
	var cur []string
	var last chartDot
	end := func() {
		switch len(cur) {
		case 0:
		case 1:
			dots = append(dots, last)
		default:
			segs = append(segs, strings.Join(cur, " "))
		}
		cur = cur[:0]
	}
	for _, p := range points {
		v, ok := keep(p)
		if !ok {
			end()
			continue
		}
		last = chartDot{X: coord(g.x(p.Time)), Y: coord(ys.y(v))}
		cur = append(cur, last.X+","+last.Y)
	}
	end()
	return segs, dots
}

// niceTicks returns about n round values spanning [lo, hi], and the range
// widened to the outer ones.
func niceTicks(lo, hi float64, n int) ([]float64, float64, float64) {
	if !(hi > lo) {
		hi = lo + 1e-3
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	first, last := math.Floor(lo/step+1e-9), math.Ceil(hi/step-1e-9)
	var out []float64
	for k := first; k <= last; k++ {
		out = append(out, k*step)
	}
	return out, first * step, last * step
}

// tickDigits returns the decimals that tell percentage-point ticks apart.
func tickDigits(ticks []float64) int {
	if len(ticks) < 2 {
		return 1
	}
	step := 100 * (ticks[1] - ticks[0])
	return max(0, int(math.Ceil(-math.Log10(step)-1e-9)))
}

func valueTicks(ticks []float64, ys yScale, label func(float64) string) []chartTick {
	out := make([]chartTick, len(ticks))
	for i, v := range ticks {
		if math.Abs(v) < 1e-15 {
			v = 0
		}
		out[i] = chartTick{Pos: coord(ys.y(v)), Label: label(v)}
	}
	return out
}

// timeSteps are the spacings of time ticks.
var timeSteps = []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour}

// timeTicks returns ticks at round times between x0 and x1, about six.
func timeTicks(x0, x1 time.Time, x func(time.Time) float64) []chartTick {
	span := x1.Sub(x0)
	step := timeSteps[len(timeSteps)-1]
	for _, s := range timeSteps {
		if span/s <= 6 {
			step = s
			break
		}
	}
	layout := "15:04"
	switch {
	case step >= 24*time.Hour:
		layout = "Jan 2"
	case span > 24*time.Hour:
		layout = "Jan 2 15:04"
	}
	var out []chartTick
	for t := x0.UTC().Truncate(step); !t.After(x1); t = t.Add(step) {
		if t.Before(x0) {
			continue
		}
		out = append(out, chartTick{Pos: coord(x(t)), Label: t.Format(layout)})
	}
	return out
}

func coord(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
