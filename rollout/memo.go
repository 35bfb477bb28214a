package rollout

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/solsticehq/solstice/guardrails"
)

// Memo renders d as a decision memo in Markdown that a team can keep: a
// title with the flag and the plan, the outcome in one sentence, the facts,
// the timeline of the plan, the guardrail evidence in a table, what the
// numbers mean in plain words, and the next steps. It depends on d alone
// and is deterministic (times in UTC), so the memo of a stored decision
// never changes.
func Memo(d ExperimentDecision) string {
	var b strings.Builder
	m := memo{b: &b, d: d}
	m.header()
	m.timeline()
	m.evidence()
	m.meaning()
	m.nextSteps()
	return b.String()
}

type memo struct {
	b *strings.Builder
	d ExperimentDecision
}

func (m memo) line(format string, args ...any) {
	fmt.Fprintf(m.b, format, args...)
	m.b.WriteByte('\n')
}

func (m memo) header() {
	d := m.d
	m.line("# Experiment decision: %s, plan %s", d.Flag, d.Plan)
	m.line("")
	switch d.Outcome {
	case OutcomeShip:
		m.line("**Ship `%s`.** %s", d.Treatment, sentence(d.Reason))
	case OutcomeRollBack:
		m.line("**Roll back: keep `%s`.** %s", d.Baseline, sentence(d.Reason))
	default:
		m.line("**Inconclusive.** %s", sentence(d.Reason))
	}
	m.line("")
	m.line("| | |")
	m.line("|---|---|")
	m.line("| Environment | %s |", cell(d.Environment))
	m.line("| Flag | `%s` |", d.Flag)
	plan := "`" + d.Plan + "`"
	if d.Description != "" {
		plan += ": " + cell(d.Description)
	}
	m.line("| Plan | %s |", plan)
	m.line("| Arms | treatment `%s` against control `%s`, of equal size; everyone else keeps the baseline `%s` |", d.Treatment, d.Control, d.Baseline)
	if d.StartedAt.IsZero() {
		m.line("| Ran | never |")
	} else {
		m.line("| Ran | %s to %s (%s) |", stamp(d.StartedAt), stamp(d.EndedAt), span(d.EndedAt.Sub(d.StartedAt)))
	}
	ended := strings.ReplaceAll(string(d.Status), "_", " ")
	if d.Step >= 0 {
		ended += fmt.Sprintf(" at step %d of %d", d.Step+1, d.Steps)
	}
	if d.StatusReason != "" {
		ended += ": " + d.StatusReason
	}
	m.line("| Ended | %s |", cell(ended))
	m.line("| Outcome | `%s` |", d.Outcome)
	m.line("")
}

func (m memo) timeline() {
	m.line("## Timeline")
	m.line("")
	if len(m.d.Timeline) == 0 {
		m.line("The plan has no history.")
		m.line("")
		return
	}
	m.line("| When (UTC) | What | By | Why | Revision |")
	m.line("|---|---|---|---|---|")
	for _, h := range m.d.Timeline {
		rev := ""
		if h.Revision > 0 {
			rev = strconv.FormatInt(h.Revision, 10)
		}
		m.line("| %s | %s | %s | %s | %s |", h.Time.UTC().Format("2006-01-02 15:04"), move(h, m.d.Steps), cell(h.Actor), cell(h.Reason), rev)
	}
	m.line("")
}

// move says what a history entry did.
func move(h HistoryEntry, steps int) string {
	at := ""
	if h.Weight > 0 {
		at = fmt.Sprintf(" step %d of %d (treatment %s, control %s)", h.Step+1, steps, pct(h.Weight), pct(ControlWeight(h.Weight)))
	}
	switch {
	case h.To == StatusScheduled:
		return "scheduled"
	case h.To == StatusDraft:
		return "unscheduled"
	case h.From == StatusRunning && h.To == StatusRunning:
		return "advanced to" + at
	case h.From == StatusPaused && h.To == StatusRunning:
		return "resumed at" + at
	case h.To == StatusRunning:
		return "started at" + at
	case h.To == StatusPaused:
		return "paused at" + at
	case h.To == StatusCompleted:
		return "completed at" + at
	case h.To == StatusRolledBack:
		return "rolled back at" + at
	case h.To == StatusCancelled && at != "":
		return "cancelled at" + at
	default:
		return string(h.To)
	}
}

func (m memo) evidence() {
	m.line("## Guardrail evidence")
	m.line("")
	if m.d.Error != "" {
		m.line("The guardrails could not be read: %s.", strings.TrimSuffix(m.d.Error, "."))
		m.line("")
		return
	}
	if len(m.d.Guardrails) == 0 {
		m.line("No guardrail of `%s` measured the experiment.", m.d.Flag)
		m.line("")
		return
	}
	m.line("| Guardrail | Metric | Treatment | Control | Effect | Always-valid interval | p-value | State | Sample | Incidents |")
	m.line("|---|---|---|---|---|---|---|---|---|---|")
	for _, g := range m.d.Guardrails {
		key := "`" + g.Key + "`"
		if g.Required {
			key += " (required)"
		}
		state := string(g.Phase)
		if g.Status != "" && string(g.Status) != state {
			state = strings.TrimPrefix(state+", "+string(g.Status), ", ")
		}
		if g.Hold != "" {
			state += " (" + string(g.Hold) + ")"
		}
		var incs []string
		for _, inc := range g.Incidents {
			incs = append(incs, incidentName(inc)+" "+string(inc.Event))
		}
		if len(incs) == 0 {
			incs = []string{"none"}
		}
		if !g.HasEvidence() {
			m.line("| %s | %s | – | – | – | – | – | %s | unknown | %s |", key, cell(metricWords(g)), cell(state), strings.Join(incs, ", "))
			continue
		}
		control := "–"
		if g.comparesControl() {
			control = arm(g.Control)
		}
		sample := fmt.Sprintf("enough (≥ %s per arm)", count(g.MinSample))
		switch {
		case !g.comparesControl() && g.EnoughSample:
			sample = fmt.Sprintf("enough (≥ %s)", count(g.MinSample))
		case !g.comparesControl():
			sample = fmt.Sprintf("too small (needs %s)", count(g.MinSample))
		case !g.EnoughSample:
			sample = fmt.Sprintf("too small (needs %s per arm)", count(g.MinSample))
		}
		m.line("| %s | %s | %s | %s | %s | %s (%s) | %s | %s | %s | %s |", key, cell(metricWords(g)), arm(g.Treatment), control,
			points(g.Effect), interval(g.Lower, g.Upper), coverage(g.Alpha), pvalue(g.PValue), cell(state), sample, strings.Join(incs, ", "))
	}
	m.line("")
}

func (m memo) meaning() {
	if m.d.Error != "" || len(m.d.Guardrails) == 0 {
		return
	}
	m.line("## What the numbers mean")
	m.line("")
	for _, g := range m.d.Guardrails {
		m.line("- **%s**: %s", g.Key, explain(g))
		for _, inc := range g.Incidents {
			what := fmt.Sprintf("  - %s, %s at %s: %s.", incidentName(inc), inc.Event, stamp(inc.Time), strings.TrimSuffix(inc.Reason, "."))
			if inc.Outcome != "" {
				what += " " + sentence(inc.Outcome)
			}
			m.line("%s", what)
		}
	}
	m.line("")
	m.line("Effects and intervals are in percentage points (pp) of the metric, and positive means harm. " +
		"The intervals are confidence sequences: they stay valid however often the guardrail looked at the data, " +
		"which is why they are wider than a one-off test's. Each bound holds with probability 1 − α of the guardrail " +
		"(its share of the flag's α), the pair with 1 − 2α.")
	m.line("")
}

// explain says what one guardrail's numbers mean.
func explain(g GuardrailEvidence) string {
	if !g.HasEvidence() {
		why := g.Error
		if why == "" {
			why = "the guardrail was not evaluated at the end"
		}
		return "no evidence: " + sentence(why)
	}
	t, c := g.Treatment, g.Control
	var s strings.Builder
	allowance := "allowance"
	switch {
	case g.Comparison.Kind == guardrails.KindAbsoluteCeiling:
		fmt.Fprintf(&s, "treatment %s %s (%s of %s) against a ceiling of %s. The treatment's rate minus the ceiling is %s, ",
			metricName(g), rate(t.Rate), count(t.X), count(t.N), rate(g.Comparison.Ceiling), points(g.Effect))
		allowance = "ceiling"
	case g.Metric == string(guardrails.KindD1Retention):
		fmt.Fprintf(&s, "treatment %s %s vs control %s, a difference of %s. ", metricName(g), rate(t.Rate), rate(c.Rate), points(t.Rate-c.Rate))
		if mg := g.Comparison.Margin; mg != 0 {
			fmt.Fprintf(&s, "The guardrail allows the treatment down to %s below the control (%s); ", points(mg), rate(c.Rate-mg))
		} else {
			s.WriteString("The guardrail allows no loss against the control; ")
		}
		fmt.Fprintf(&s, "the loss beyond that allowance is estimated at %s, ", points(g.Effect))
	default:
		fmt.Fprintf(&s, "treatment %s %s vs control %s, a difference of %s. ", metricName(g), rate(t.Rate), rate(c.Rate), points(t.Rate-c.Rate))
		if mg := g.Comparison.Margin; mg != 0 {
			fmt.Fprintf(&s, "The guardrail allows the treatment up to %s × the control's rate (%s); ", strconv.FormatFloat(1+mg, 'f', -1, 64), rate((1+mg)*c.Rate))
		} else {
			s.WriteString("The guardrail allows no increase over the control; ")
		}
		fmt.Fprintf(&s, "the harm beyond that allowance is estimated at %s, ", points(g.Effect))
	}
	fmt.Fprintf(&s, "%s always-valid interval %s. ", coverage(g.Alpha), interval(g.Lower, g.Upper))
	switch {
	case g.Lower >= 0:
		fmt.Fprintf(&s, "The whole interval is above zero: harm beyond the %s is established. ", allowance)
	case g.Upper < 0:
		fmt.Fprintf(&s, "The whole interval is below zero: harm beyond the %s is ruled out. ", allowance)
	default:
		fmt.Fprintf(&s, "The interval contains zero: this sample neither establishes harm beyond the %s nor rules it out, and the data still allow a harm of up to %s beyond it. ", allowance, points(g.Upper))
	}
	fmt.Fprintf(&s, "The always-valid p-value is %s (the guardrail trips once it is at most its α of %s). ", pvalue(g.PValue), strconv.FormatFloat(g.Alpha, 'g', 3, 64))
	trials := "trials"
	if g.Metric == string(guardrails.KindD1Retention) {
		trials = "players whose retention window closed"
	}
	if g.comparesControl() {
		fmt.Fprintf(&s, "Test %d counted %s treatment and %s control %s", g.Test, count(t.N), count(c.N), trials)
	} else {
		fmt.Fprintf(&s, "Test %d counted %s treatment %s", g.Test, count(t.N), trials)
	}
	if !g.TestStarted.IsZero() {
		fmt.Fprintf(&s, " from %s", stamp(g.TestStarted))
	}
	each := " in each arm"
	if !g.comparesControl() {
		each = ""
	}
	if g.EnoughSample {
		fmt.Fprintf(&s, "; its rule needs %s%s, so the sample is big enough.", count(g.MinSample), each)
	} else {
		fmt.Fprintf(&s, "; its rule needs %s%s, so the sample is too small to decide.", count(g.MinSample), each)
	}
	return s.String()
}

func (m memo) nextSteps() {
	d := m.d
	m.line("## Next steps")
	m.line("")
	var steps []string
	switch d.Outcome {
	case OutcomeShip:
		steps = append(steps,
			fmt.Sprintf("Roll `%s` out beyond the experiment: create a plan of `%s` (not an experiment) that ramps it to 100%%, with the guardrails kept on. Until then the last step stays in force, treatment and control at %s each.", d.Treatment, d.Flag, lastWeight(d)),
			fmt.Sprintf("Once everyone has `%s`, retire the variants `%s` and `%s` if nothing else serves them.", d.Treatment, d.Control, d.Baseline))
	case OutcomeRollBack:
		if d.Status == StatusRolledBack {
			steps = append(steps, fmt.Sprintf("Nothing to undo: the plan's rollback served `%s` to its audience again, as a revision of `%s`.", d.Baseline, d.Flag))
		} else {
			steps = append(steps, fmt.Sprintf("Check that `%s` serves `%s`: the plan ended %s, not rolled back.", d.Flag, d.Baseline, d.Status))
		}
		for _, g := range d.Guardrails {
			for _, inc := range g.Incidents {
				if inc.Number > 0 && (inc.Event == guardrails.EventTrip || inc.Event == guardrails.EventFailSafe) {
					steps = append(steps, fmt.Sprintf("Read and acknowledge incident #%d (`GET /api/v1/incidents/%d`), and find the cause of the regression before trying again.", inc.Number, inc.Number))
				}
			}
			if g.Phase == guardrails.PhaseTripped {
				steps = append(steps, fmt.Sprintf("Guardrail `%s` stays tripped until a person resumes it (`POST /api/v1/environments/%s/flags/%s/guardrails/%s/resume`); a resume starts a new test on new data.", g.Key, d.Environment, d.Flag, g.Key))
			}
		}
		steps = append(steps, "To try again, create a new plan: a finished plan does not restart.")
	default:
		switch {
		case d.Status == StatusCompleted:
			steps = append(steps, fmt.Sprintf("Nothing is established either way, and the last step stays in force: treatment and control at %s each. Decide by hand whether to keep it; reverting the plan's revisions sets `%s` back.", lastWeight(d), d.Flag))
		case d.StartedAt.IsZero():
			steps = append(steps, fmt.Sprintf("Nothing changed: the plan never served `%s`.", d.Treatment))
		default:
			steps = append(steps, fmt.Sprintf("Nothing is established either way; the end of the plan's event set `%s` back.", d.Flag))
		}
		if len(d.Guardrails) == 0 {
			steps = append(steps, fmt.Sprintf("Define a guardrail of `%s` before the next experiment (`PUT /api/v1/environments/%s/flags/%s/guardrails/{key}`): without one there is no evidence.", d.Flag, d.Environment, d.Flag))
		}
		steps = append(steps, "To get a decision, run a new experiment (a new plan) with longer steps or a larger treatment, so that every guardrail reaches its minimum sample; if a guardrail was held, fix its telemetry first.")
	}
	steps = append(steps, fmt.Sprintf("Keep this memo: `solstice rollouts decision --env %s %s` prints it again, and `GET /api/v1/environments/%s/rollouts/%s/decision` serves the decision as JSON.", d.Environment, d.Plan, d.Environment, d.Plan))
	for i, s := range steps {
		m.line("%d. %s", i+1, s)
	}
}

// lastWeight returns the share of each arm at the last step reached.
func lastWeight(d ExperimentDecision) string {
	for i := len(d.Timeline) - 1; i >= 0; i-- {
		if w := d.Timeline[i].Weight; w > 0 {
			return pct(w)
		}
	}
	return "0%"
}

// metricWords names a guardrail's metric and comparison.
func metricWords(g GuardrailEvidence) string {
	switch {
	case g.Comparison.Kind == guardrails.KindAbsoluteCeiling:
		return fmt.Sprintf("%s, ceiling %s", metricName(g), rate(g.Comparison.Ceiling))
	case g.Metric == string(guardrails.KindD1Retention):
		return fmt.Sprintf("%s against control, margin %s", metricName(g), points(g.Comparison.Margin))
	default:
		return fmt.Sprintf("%s against control, margin %s", metricName(g), strconv.FormatFloat(100*g.Comparison.Margin, 'f', -1, 64)+"%")
	}
}

func metricName(g GuardrailEvidence) string {
	switch g.Metric {
	case string(guardrails.KindRejectRate):
		return "reject rate"
	case string(guardrails.KindD1Retention):
		return "D1 retention"
	default:
		return g.Metric + " rate"
	}
}

func incidentName(inc IncidentSummary) string {
	if inc.Number > 0 {
		return "#" + strconv.FormatInt(inc.Number, 10)
	}
	return "incident " + inc.ID
}

// arm renders an arm's rate and counts.
func arm(a guardrails.ArmSample) string {
	return fmt.Sprintf("%s (%s of %s)", rate(a.Rate), count(a.X), count(a.N))
}

// rate renders a proportion as a percentage.
func rate(p float64) string { return fmt.Sprintf("%.2f%%", 100*p) }

// points renders a difference of proportions in percentage points, signed.
func points(x float64) string { return signed(100*x) + " pp" }

// interval renders effect bounds in percentage points.
func interval(lo, hi float64) string { return "[" + signed(100*lo) + ", " + signed(100*hi) + "] pp" }

// signed renders x with two decimals and its sign (a true minus sign).
func signed(x float64) string {
	s := strconv.FormatFloat(math.Abs(x), 'f', 2, 64)
	switch {
	case s == "0.00":
		return s
	case x < 0:
		return "−" + s
	default:
		return "+" + s
	}
}

// coverage renders the confidence of a pair of bounds each valid with
// probability 1 − α.
func coverage(alpha float64) string {
	return strconv.FormatFloat(math.Round(1000*(1-2*alpha))/10, 'f', -1, 64) + "%"
}

func pvalue(p float64) string {
	if p < 0.001 {
		return "< 0.001"
	}
	return strconv.FormatFloat(p, 'f', 3, 64)
}

// count renders n with thousands separators.
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// span renders a duration in days or hours and minutes.
func span(d time.Duration) string {
	if d >= 48*time.Hour {
		return strconv.FormatFloat(math.Round(10*d.Hours()/24)/10, 'f', -1, 64) + " days"
	}
	d = d.Round(time.Minute)
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// sentence capitalizes s and ends it with a period.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return s
	}
	r, size := utf8.DecodeRuneInString(s)
	s = string(unicode.ToUpper(r)) + s[size:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// cell makes s safe in a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\r", " ", "\n", " ").Replace(s)
}
