package rollout

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
)

// Limits enforced by ValidateEvent.
const (
	MaxPhases          = 20
	MaxChangesPerPhase = 100
	MaxEventNameLength = flags.MaxNameLength
)

// Event is a seasonal event of one environment: a named window in a time
// zone, with phases (teaser, live, wind-down...) that each change several
// flags when they start. When the event ends, every flag it changed is set
// back to what it was before the event (only the parts the event changed;
// see Change), then EndState, if any, applies. A phase's change may start a
// rollout plan of its flag: the ramp then runs on its own, and is cancelled
// if still running when the event ends.
//
// Start, End and each phase's start are wall-clock times in TimeZone, so
// "10:00 in Europe/Paris" stays 10:00 across a daylight-saving change.
type Event struct {
	Key         string `json:"key"`
	Environment string `json:"environment"`
	// UID is assigned when the event is created and never reused: it names
	// the event's scheduled changes, so a new event with the key of a
	// deleted one starts afresh.
	UID         string    `json:"uid"`
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	TimeZone    string    `json:"time_zone"` // an IANA name: "Europe/Paris", "America/New_York", "UTC"
	Start       LocalTime `json:"start"`
	End         LocalTime `json:"end"`
	Phases      []Phase   `json:"phases"`
	EndState    []Change  `json:"end_state,omitempty"`
	// CancelledAt ends the event early: phases not started by then never
	// start, and the end applies at that time (not at all when no phase
	// had started).
	CancelledAt *time.Time `json:"cancelled_at,omitempty"`
	CancelledBy string     `json:"cancelled_by,omitempty"`

	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// Phase is a part of an event that starts at a local time and lasts until
// the next phase starts or the event ends.
type Phase struct {
	Name    string    `json:"name"`
	Start   LocalTime `json:"start"`
	Changes []Change  `json:"changes"`
}

// Change is a scheduled change of one flag's configuration. It sets only
// what it names, on the configuration in force when it applies, so that
// unrelated edits made in the meantime survive:
//
//   - Config replaces the whole configuration (nothing else may be set);
//   - Rollout starts a rollout plan of the flag (nothing else may be set);
//   - otherwise any of Enabled (turn the flag on or off), Serve (serve a
//     variant to everyone no rule matches: the default variant, with the
//     default split removed) and Values (new values for variants, by key).
type Change struct {
	Flag    string                     `json:"flag"`
	Config  *flags.Config              `json:"config,omitempty"`
	Enabled *bool                      `json:"enabled,omitempty"`
	Serve   string                     `json:"serve,omitempty"`
	Values  map[string]json.RawMessage `json:"values,omitempty"`
	Rollout string                     `json:"rollout,omitempty"`
	// BaseRevision is the revision of the flag's configuration the change
	// was scheduled against (the Service fills it in when it is 0). A
	// configuration changed since, by anyone but the event, is a conflict
	// reported before saving.
	BaseRevision int64 `json:"base_revision,omitempty"`
}

// LocalTime is a wall-clock time without a zone, written
// "2006-01-02T15:04" or "2006-01-02T15:04:05".
type LocalTime struct {
	Year   int        `json:"-"`
	Month  time.Month `json:"-"`
	Day    int        `json:"-"`
	Hour   int        `json:"-"`
	Minute int        `json:"-"`
	Second int        `json:"-"`
}

// Local returns the local time y-m-d h:min.
func Local(y int, m time.Month, d, h, minute int) LocalTime {
	return LocalTime{Year: y, Month: m, Day: d, Hour: h, Minute: minute}
}

// ParseLocalTime reads "2006-01-02T15:04" or "2006-01-02T15:04:05". It
// returns an error for anything else, including an offset or a zone.
func ParseLocalTime(s string) (LocalTime, error) {
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return LocalTime{Year: t.Year(), Month: t.Month(), Day: t.Day(), Hour: t.Hour(), Minute: t.Minute(), Second: t.Second()}, nil
		}
	}
	return LocalTime{}, fmt.Errorf("%q is not a local time such as 2026-12-18T10:00 (no offset: the event's time zone applies)", s)
}

// String returns the local time as ParseLocalTime reads it.
func (l LocalTime) String() string {
	s := fmt.Sprintf("%04d-%02d-%02dT%02d:%02d", l.Year, int(l.Month), l.Day, l.Hour, l.Minute)
	if l.Second != 0 {
		s += fmt.Sprintf(":%02d", l.Second)
	}
	return s
}

// IsZero reports whether l is unset.
func (l LocalTime) IsZero() bool { return l == LocalTime{} }

// MarshalText implements encoding.TextMarshaler.
func (l LocalTime) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; see ParseLocalTime.
func (l *LocalTime) UnmarshalText(b []byte) error {
	v, err := ParseLocalTime(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// In returns the instant at which clocks in loc show l. A local time that
// happens twice (when clocks go back) is its first occurrence; one that
// does not happen (when clocks go forward) is read with the offset in force
// before the change, which moves it forward by the gap: 02:30 on the night
// Paris moves from 02:00 to 03:00 is 03:30. These are the rules of
// iCalendar (RFC 5545, 3.3.5). It cannot fail.
func (l LocalTime) In(loc *time.Location) time.Time {
	wall := time.Date(l.Year, l.Month, l.Day, l.Hour, l.Minute, l.Second, 0, time.UTC)
	offset := func(t time.Time) time.Duration {
		_, off := t.In(loc).Zone()
		return time.Duration(off) * time.Second
	}
	before, after := offset(wall.Add(-36*time.Hour)), offset(wall.Add(36*time.Hour))
	a, b := wall.Add(-before), wall.Add(-after)
	okA, okB := offset(a) == before, offset(b) == after
	switch {
	case okA && okB && b.Before(a):
		return b.UTC()
	case okA, !okB:
		return a.UTC() // the first occurrence, or a gap read with the offset before it
	default:
		return b.UTC()
	}
}

// Times are an event's instants, in UTC.
type Times struct {
	Start  time.Time   `json:"start"`
	End    time.Time   `json:"end"`
	Phases []time.Time `json:"phases"`
	// Close is when the event actually ends: End, or CancelledAt if
	// earlier.
	Close time.Time `json:"close"`
}

// Location returns the event's time zone. It returns a KindInvalid error
// for an empty or unknown name.
func (e Event) Location() (*time.Location, error) {
	if e.TimeZone == "" || e.TimeZone == "Local" {
		return nil, solstice.Invalid("invalid event", solstice.FieldError{Pointer: "/time_zone", Message: "is required: an IANA time zone such as Europe/Paris or UTC"})
	}
	loc, err := time.LoadLocation(e.TimeZone)
	if err != nil {
		return nil, solstice.Invalid("invalid event", solstice.FieldError{Pointer: "/time_zone", Message: fmt.Sprintf("%q is not an IANA time zone such as Europe/Paris or UTC", e.TimeZone)})
	}
	return loc, nil
}

// Times returns the event's instants. It returns a KindInvalid error for
// an unknown time zone.
func (e Event) Times() (Times, error) {
	loc, err := e.Location()
	if err != nil {
		return Times{}, err
	}
	t := Times{Start: e.Start.In(loc), End: e.End.In(loc), Phases: make([]time.Time, len(e.Phases))}
	for i, p := range e.Phases {
		t.Phases[i] = p.Start.In(loc)
	}
	t.Close = t.End
	if e.CancelledAt != nil && e.CancelledAt.Before(t.Close) {
		t.Close = e.CancelledAt.UTC()
	}
	return t, nil
}

// Actor returns the system actor that authors the event's revisions.
func (e Event) Actor() solstice.Actor { return solstice.System("event:" + e.Key) }

// Flags returns the keys of the flags the event changes, sorted.
func (e Event) Flags() []string {
	var out []string
	for _, p := range e.Phases {
		for _, c := range p.Changes {
			out = append(out, c.Flag)
		}
	}
	for _, c := range e.EndState {
		out = append(out, c.Flag)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Plans returns the IDs of the plans the event's phases start.
func (e Event) Plans() []string {
	var out []string
	for _, p := range e.Phases {
		for _, c := range p.Changes {
			if c.Rollout != "" && !slices.Contains(out, c.Rollout) {
				out = append(out, c.Rollout)
			}
		}
	}
	return out
}

// PhaseChangeID returns the ID of the scheduled change that starts phase
// name of e.
func PhaseChangeID(e Event, name string) string {
	return fmt.Sprintf("event/%s/%s/phase/%s", e.Environment, e.UID, name)
}

// EndChangeID returns the ID of the scheduled change that ends e.
func EndChangeID(e Event) string { return fmt.Sprintf("event/%s/%s/end", e.Environment, e.UID) }

// ValidateEvent checks an event's definition on its own: key, name, time
// zone, a window that ends after it starts, phases with unique names that
// start in order within the window, and well-formed changes. What depends
// on other objects (flags, variants, plans, other events) is checked by
// Service and DetectConflicts. It returns nil or a KindInvalid
// *solstice.Error listing every problem with its JSON pointer.
func ValidateEvent(e Event) error {
	var fs []solstice.FieldError
	add := func(ptr, format string, args ...any) {
		fs = append(fs, solstice.FieldError{Pointer: ptr, Message: fmt.Sprintf(format, args...)})
	}
	if !flags.ValidKey(e.Key) {
		add("/key", "must be 1 to 128 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit")
	}
	if e.Environment == "" {
		add("/environment", "is required")
	}
	if strings.TrimSpace(e.Name) == "" {
		add("/name", "is required")
	} else if len(e.Name) > MaxEventNameLength {
		add("/name", "must be at most %d characters", MaxEventNameLength)
	}
	if len(e.Description) > flags.MaxDescriptionLength {
		add("/description", "must be at most %d characters", flags.MaxDescriptionLength)
	}
	for _, lt := range []struct {
		ptr string
		t   LocalTime
	}{{"/start", e.Start}, {"/end", e.End}} {
		if lt.t.IsZero() {
			add(lt.ptr, "is required: a local time such as 2026-12-18T10:00")
		}
	}
	loc, err := e.Location()
	if err != nil {
		fs = append(fs, solstice.ErrorFields(err)...)
	}
	switch {
	case len(e.Phases) == 0:
		add("/phases", "must list at least one phase")
	case len(e.Phases) > MaxPhases:
		add("/phases", "at most %d phases are allowed, got %d", MaxPhases, len(e.Phases))
	}
	var start, end time.Time
	if loc != nil && !e.Start.IsZero() && !e.End.IsZero() {
		start, end = e.Start.In(loc), e.End.In(loc)
		if !end.After(start) {
			add("/end", "must be after the start (%s then %s in %s)", e.Start, e.End, e.TimeZone)
		}
	}
	names := map[string]bool{}
	var prev time.Time
	for i, p := range e.Phases {
		pp := "/phases/" + strconv.Itoa(i)
		switch {
		case !flags.ValidKey(p.Name):
			add(pp+"/name", "must be a key such as teaser or live")
		case names[p.Name]:
			add(pp+"/name", "phase %q is listed twice", p.Name)
		}
		names[p.Name] = true
		if p.Start.IsZero() {
			add(pp+"/start", "is required: a local time such as 2026-12-18T10:00")
		} else if loc != nil && !start.IsZero() {
			at := p.Start.In(loc)
			switch {
			case at.Before(start):
				add(pp+"/start", "%s is before the event starts (%s)", p.Start, e.Start)
			case !at.Before(end):
				add(pp+"/start", "%s is not before the event ends (%s)", p.Start, e.End)
			case i > 0 && !at.After(prev):
				add(pp+"/start", "%s must be after the previous phase's start", p.Start)
			}
			prev = at
		}
		if len(p.Changes) > MaxChangesPerPhase {
			add(pp+"/changes", "at most %d changes are allowed, got %d", MaxChangesPerPhase, len(p.Changes))
		}
		for j, c := range p.Changes {
			fs = append(fs, validateChange(fmt.Sprintf("%s/changes/%d", pp, j), c, true)...)
		}
	}
	if len(e.EndState) > MaxChangesPerPhase {
		add("/end_state", "at most %d changes are allowed, got %d", MaxChangesPerPhase, len(e.EndState))
	}
	for j, c := range e.EndState {
		fs = append(fs, validateChange(fmt.Sprintf("/end_state/%d", j), c, false)...)
	}
	if len(fs) > 0 {
		return solstice.Invalid(fmt.Sprintf("invalid event %q", e.Key), fs...)
	}
	return nil
}

func validateChange(ptr string, c Change, rollout bool) []solstice.FieldError {
	var fs []solstice.FieldError
	add := func(p, format string, args ...any) {
		fs = append(fs, solstice.FieldError{Pointer: ptr + p, Message: fmt.Sprintf(format, args...)})
	}
	if !flags.ValidKey(c.Flag) {
		add("/flag", "must be a flag key")
	}
	partial := c.Enabled != nil || c.Serve != "" || len(c.Values) > 0
	switch {
	case c.Config != nil && (partial || c.Rollout != ""):
		add("/config", "replaces the whole configuration: set nothing else in the same change")
	case c.Rollout != "" && !rollout:
		add("/rollout", "a rollout can only be started by a phase, not at the end of an event")
	case c.Rollout != "" && partial:
		add("/rollout", "starting a rollout enables the flag and sets its split: set nothing else in the same change")
	case c.Rollout != "" && (!flags.ValidKey(c.Rollout) || len(c.Rollout) > MaxPlanIDLength):
		add("/rollout", "must be the ID of a rollout plan")
	case c.Config == nil && c.Rollout == "" && !partial:
		add("", "changes nothing: set config, enabled, serve, values or rollout")
	}
	if c.Serve != "" && !flags.ValidKey(c.Serve) {
		add("/serve", "must be a variant key")
	}
	for _, k := range slices.Sorted(maps.Keys(c.Values)) {
		switch {
		case !flags.ValidKey(k):
			add("/values/"+flags.PointerToken(k), "must be a variant key")
		case !json.Valid(c.Values[k]):
			add("/values/"+k, "is not valid JSON")
		}
	}
	if c.BaseRevision < 0 {
		add("/base_revision", "must not be negative")
	}
	return fs
}

// fields is the set of the parts of a flag's configuration that changes
// touch: what an event's end sets back.
type fields struct {
	all     bool
	enabled bool
	def     bool // default variant
	split   bool
	values  map[string]bool
	rules   map[string]bool // by rule ID
}

func (f *fields) add(c Change) {
	switch {
	case c.Config != nil:
		f.all = true
	case c.Rollout != "":
		f.enabled, f.split = true, true
		f.rule(RuleID(c.Rollout))
	default:
		f.enabled = f.enabled || c.Enabled != nil
		if c.Serve != "" {
			f.def, f.split = true, true
		}
		for k := range c.Values {
			if f.values == nil {
				f.values = map[string]bool{}
			}
			f.values[k] = true
		}
	}
}

func (f *fields) rule(id string) {
	if f.rules == nil {
		f.rules = map[string]bool{}
	}
	f.rules[id] = true
}

// restore returns cur with the fields f set back to their value in before.
func restore(cur, before flags.Config, f fields) flags.Config {
	if f.all {
		return cloneConfig(before)
	}
	out := cloneConfig(cur)
	before = cloneConfig(before)
	if f.enabled {
		out.Enabled = before.Enabled
	}
	if f.def {
		out.DefaultVariant = before.DefaultVariant
	}
	if f.split {
		out.Split = before.Split
	}
	for k := range f.values {
		i := slices.IndexFunc(out.Variants, func(v flags.Variant) bool { return v.Key == k })
		j := slices.IndexFunc(before.Variants, func(v flags.Variant) bool { return v.Key == k })
		if i >= 0 && j >= 0 {
			out.Variants[i].Value = before.Variants[j].Value
		}
	}
	for id := range f.rules {
		out.Rules = withoutRule(out.Rules, id)
		if j := slices.IndexFunc(before.Rules, func(r flags.Rule) bool { return r.ID == id }); j >= 0 {
			out.Rules = append(out.Rules, before.Rules[j])
		}
	}
	return out
}

// applyChange returns cur with c (not a rollout) applied. Values for
// variants cur does not have are an error, as is serving one: KindInvalid
// with a pointer into the change.
func applyChange(cur flags.Config, c Change) (flags.Config, error) {
	if c.Config != nil {
		return cloneConfig(*c.Config), nil
	}
	out := cloneConfig(cur)
	if c.Enabled != nil {
		out.Enabled = *c.Enabled
	}
	has := func(k string) bool {
		return slices.ContainsFunc(out.Variants, func(v flags.Variant) bool { return v.Key == k })
	}
	if c.Serve != "" {
		if !has(c.Serve) {
			return cur, solstice.Invalid("the change cannot apply", solstice.FieldError{Pointer: "/serve", Message: fmt.Sprintf("%s has no variant %q", c.Flag, c.Serve)})
		}
		out.DefaultVariant, out.Split = c.Serve, nil
	}
	for _, k := range slices.Sorted(maps.Keys(c.Values)) {
		i := slices.IndexFunc(out.Variants, func(v flags.Variant) bool { return v.Key == k })
		if i < 0 {
			return cur, solstice.Invalid("the change cannot apply", solstice.FieldError{Pointer: "/values/" + k, Message: fmt.Sprintf("%s has no variant %q", c.Flag, k)})
		}
		out.Variants[i].Value = slices.Clone(c.Values[k])
	}
	return out, nil
}
