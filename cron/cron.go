// Package cron parses standard five-field cron expressions and fires scheduled worker
// events at their slots: once per slot across a cluster (a claim on a JetStream key-value
// bucket) or on one machine (a state file under the data directory), never twice for one
// slot across restarts. Schedules are evaluated in UTC, as Cloudflare's cron triggers are.
//
// An expression has five fields separated by spaces: minute (0-59), hour (0-23), day of
// month (1-31), month (1-12 or jan-dec) and day of week (0-7 or sun-sat; 0 and 7 are
// Sunday). Each field is "*", a value, a range "a-b", a step "*/n" or "a-b/n" or "a/n"
// (from a to the field's end), or a comma-separated list of these. When both the day of
// month and the day of week are restricted (neither starts with "*"), a day matches when
// either does, as in Vixie cron. The macros @yearly (@annually), @monthly, @weekly, @daily
// (@midnight) and @hourly stand for their usual expressions.
package cron

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxExprLen bounds the length of an expression.
const MaxExprLen = 256

// Schedule is a parsed expression: the set of minutes it fires at.
type Schedule struct {
	expr   string
	minute uint64 // bits 0-59
	hour   uint32 // bits 0-23
	dom    uint32 // bits 1-31
	month  uint16 // bits 1-12
	dow    uint8  // bits 0-6
	// domStar and dowStar record a field written as "*" (or "*/n"): with both restricted, a
	// day matches when either matches.
	domStar, dowStar bool
}

// String returns the expression as written.
func (s *Schedule) String() string { return s.expr }

// FieldError is a parse error naming the offending field.
type FieldError struct {
	// Field is "minute", "hour", "day of month", "month" or "day of week"; empty when the
	// expression as a whole is wrong.
	Field string
	// Value is the offending text.
	Value string
	// Msg says what is wrong.
	Msg string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return fmt.Sprintf("%s field %q: %s", e.Field, e.Value, e.Msg)
}

var macros = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

var monthNames = []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}
var dayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

type fieldSpec struct {
	name     string
	min, max int
	names    []string // names[i] is value i+nameBase
	nameBase int
}

var fields = [5]fieldSpec{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: monthNames, nameBase: 1},
	{name: "day of week", min: 0, max: 7, names: dayNames, nameBase: 0},
}

// Parse parses a five-field expression or a macro.
func Parse(expr string) (*Schedule, error) {
	if len(expr) > MaxExprLen {
		return nil, &FieldError{Msg: fmt.Sprintf("expression longer than %d bytes", MaxExprLen)}
	}
	text := strings.TrimSpace(expr)
	if strings.HasPrefix(text, "@") {
		m, ok := macros[strings.ToLower(text)]
		if !ok {
			return nil, &FieldError{Msg: fmt.Sprintf("unknown macro %q (want @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)", text)}
		}
		text = m
	}
	parts := strings.Fields(text)
	if len(parts) != 5 {
		return nil, &FieldError{Msg: fmt.Sprintf("%d fields in %q, want 5: minute hour day-of-month month day-of-week", len(parts), expr)}
	}
	s := &Schedule{expr: expr}
	var bits [5]uint64
	for i, p := range parts {
		b, err := parseField(&fields[i], p)
		if err != nil {
			return nil, err
		}
		bits[i] = b
	}
	s.minute = bits[0]
	s.hour = uint32(bits[1])
	s.dom = uint32(bits[2])
	s.month = uint16(bits[3])
	dow := bits[4]
	if dow&(1<<7) != 0 {
		dow |= 1 // 7 is Sunday
	}
	s.dow = uint8(dow & 0x7f)
	s.domStar = strings.HasPrefix(parts[2], "*")
	s.dowStar = strings.HasPrefix(parts[4], "*")
	return s, nil
}

// parseField returns the bit set of one field.
func parseField(f *fieldSpec, text string) (uint64, error) {
	var set uint64
	for _, item := range strings.Split(text, ",") {
		ferr := func(msg string, args ...any) error {
			return &FieldError{Field: f.name, Value: text, Msg: fmt.Sprintf(msg, args...)}
		}
		if item == "" {
			return 0, ferr("empty list item")
		}
		rng, stepText, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n < 1 || n > f.max {
				return 0, ferr("step %q: want a number from 1 to %d", stepText, f.max)
			}
			step = n
		}
		lo, hi := f.min, f.max
		if f.name == "day of week" {
			hi = 6 // "*" is Sunday to Saturday once
		}
		switch {
		case rng == "*":
		default:
			a, b, isRange := strings.Cut(rng, "-")
			var err error
			if lo, err = f.value(a); err != nil {
				return 0, ferr("%v", err)
			}
			switch {
			case isRange:
				if hi, err = f.value(b); err != nil {
					return 0, ferr("%v", err)
				}
				if hi < lo {
					return 0, ferr("range %s-%s runs backwards", a, b)
				}
			case hasStep:
				// "a/n": from a to the end (Saturday for days of the week).
				hi = f.max
				if f.name == "day of week" {
					hi = 6
				}
			default:
				hi = lo
			}
		}
		for v := lo; v <= hi; v += step {
			set |= 1 << uint(v)
		}
	}
	return set, nil
}

// value parses one number or name of the field.
func (f *fieldSpec) value(s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("missing value")
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < f.min || n > f.max {
			return 0, fmt.Errorf("%d out of range %d-%d", n, f.min, f.max)
		}
		return n, nil
	}
	for i, name := range f.names {
		if strings.EqualFold(s, name) {
			return i + f.nameBase, nil
		}
	}
	if f.names != nil {
		return 0, fmt.Errorf("%q is neither a number nor a name (%s-%s)", s, f.names[0], f.names[len(f.names)-1])
	}
	return 0, fmt.Errorf("%q is not a number", s)
}

// dayMatches reports whether the date of t is one of the schedule's days.
func (s *Schedule) dayMatches(t time.Time) bool {
	dom := s.dom&(1<<uint(t.Day())) != 0
	dow := s.dow&(1<<uint(t.Weekday())) != 0
	if s.domStar || s.dowStar {
		return dom && dow
	}
	return dom || dow
}

// searchYears bounds how far Next and Prev look: a schedule that fires at all fires
// within 8 years (29 February comes at least once in any 8 consecutive years).
const searchYears = 8

// Next returns the first slot strictly after t, in UTC, truncated to the minute; the zero
// Time when there is none within 8 years (e.g. "0 0 30 2 *").
func (s *Schedule) Next(t time.Time) time.Time {
	t = t.UTC().Truncate(time.Minute).Add(time.Minute)
	limit := t.AddDate(searchYears, 0, 0)
	for t.Before(limit) {
		if s.month&(1<<uint(t.Month())) == 0 {
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if !s.dayMatches(t) {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if s.hour&(1<<uint(t.Hour())) == 0 {
			t = t.Truncate(time.Hour).Add(time.Hour)
			continue
		}
		if s.minute&(1<<uint(t.Minute())) == 0 {
			t = t.Add(time.Minute)
			continue
		}
		return t
	}
	return time.Time{}
}

// Prev returns the latest slot at or before t, in UTC; the zero Time when there is none
// within 8 years.
func (s *Schedule) Prev(t time.Time) time.Time {
	t = t.UTC().Truncate(time.Minute)
	limit := t.AddDate(-searchYears, 0, 0)
	for t.After(limit) {
		if s.month&(1<<uint(t.Month())) == 0 {
			// The last minute of the previous month.
			t = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC).Add(-time.Minute)
			continue
		}
		if !s.dayMatches(t) {
			t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC).Add(-time.Minute)
			continue
		}
		if s.hour&(1<<uint(t.Hour())) == 0 {
			t = t.Truncate(time.Hour).Add(-time.Minute)
			continue
		}
		if s.minute&(1<<uint(t.Minute())) == 0 {
			t = t.Add(-time.Minute)
			continue
		}
		return t
	}
	return time.Time{}
}
