// Package httpdate parses HTTP-dates (RFC 9110 section 5.6.7) exactly: the preferred
// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") and the two obsolete formats, RFC 850
// ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime ("Sun Nov  6 08:49:37 1994").
//
// The grammar is followed to the byte: single spaces, two-digit hours, minutes and seconds,
// a four-digit year (two digits only in the RFC 850 format), the zone "GMT" and nothing else.
// Following the section's advice to be robust where it costs nothing, the names of days and
// months and the zone are matched without regard to case, and the day name is not checked
// against the date. Anything else is invalid; for Expires that means "already expired"
// (RFC 9111 section 5.3). Parsing does not allocate.
package httpdate

import (
	"time"

	"github.com/verge-edge/verge/message"
)

// Parse parses an HTTP-date in any of the three formats, ignoring surrounding spaces and tabs.
// An RFC 850 date's two-digit year is read as the nearest such year not more than 50 years
// ahead of the current one (RFC 9110 section 5.6.7).
func Parse(s string) (time.Time, bool) {
	return ParseAt(s, time.Time{})
}

// ParseAt is Parse with the current time given, for the RFC 850 format's century. A zero now
// means the current time, read only for a date in that format.
func ParseAt(s string, now time.Time) (time.Time, bool) {
	s = message.TrimOWS(s)
	switch {
	case len(s) == len("Sun, 06 Nov 1994 08:49:37 GMT") && s[3] == ',':
		return parseIMF(s)
	case len(s) == len("Sun Nov  6 08:49:37 1994") && s[3] == ' ':
		return parseASC(s)
	default:
		return parse850(s, now)
	}
}

// parseIMF parses "Sun, 06 Nov 1994 08:49:37 GMT" (length already checked).
func parseIMF(s string) (time.Time, bool) {
	if dayName(s[:3]) < 0 || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s[25] != ' ' {
		return time.Time{}, false
	}
	day, ok1 := digits(s[5:7])
	mon := month(s[8:11])
	year, ok2 := digits(s[12:16])
	h, m, sec, ok3 := clock(s[17:25])
	if !ok1 || !ok2 || !ok3 || mon < 0 || !gmt(s[26:]) {
		return time.Time{}, false
	}
	return build(year, mon, day, h, m, sec)
}

// parseASC parses "Sun Nov  6 08:49:37 1994" (length already checked).
func parseASC(s string) (time.Time, bool) {
	if dayName(s[:3]) < 0 || s[7] != ' ' || s[10] != ' ' || s[19] != ' ' {
		return time.Time{}, false
	}
	mon := month(s[4:7])
	var day int
	var ok1 bool
	if s[8] == ' ' {
		day, ok1 = digits(s[9:10])
	} else {
		day, ok1 = digits(s[8:10])
	}
	h, m, sec, ok2 := clock(s[11:19])
	year, ok3 := digits(s[20:24])
	if !ok1 || !ok2 || !ok3 || mon < 0 {
		return time.Time{}, false
	}
	return build(year, mon, day, h, m, sec)
}

// parse850 parses "Sunday, 06-Nov-94 08:49:37 GMT".
func parse850(s string, now time.Time) (time.Time, bool) {
	comma := -1
	for i := 0; i < len(s) && i < 10; i++ {
		if s[i] == ',' {
			comma = i
			break
		}
	}
	if comma < 0 || longDayName(s[:comma]) < 0 {
		return time.Time{}, false
	}
	s = s[comma:]
	// ", 06-Nov-94 08:49:37 GMT"
	if len(s) != len(", 06-Nov-94 08:49:37 GMT") || s[1] != ' ' || s[4] != '-' || s[8] != '-' || s[11] != ' ' || s[20] != ' ' {
		return time.Time{}, false
	}
	day, ok1 := digits(s[2:4])
	mon := month(s[5:8])
	yy, ok2 := digits(s[9:11])
	h, m, sec, ok3 := clock(s[12:20])
	if !ok1 || !ok2 || !ok3 || mon < 0 || !gmt(s[21:]) {
		return time.Time{}, false
	}
	if now.IsZero() {
		now = time.Now()
	}
	cur := now.UTC().Year()
	year := cur - cur%100 + yy
	if year > cur+50 {
		year -= 100
	} else if year < cur-49 {
		year += 100
	}
	return build(year, mon, day, h, m, sec)
}

// build checks the calendar fields and returns the time in UTC.
func build(year, mon, day, h, m, sec int) (time.Time, bool) {
	if day < 1 || day > 31 || h > 23 || m > 59 || sec > 60 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(mon+1), day, h, m, 0, 0, time.UTC)
	if t.Day() != day {
		return time.Time{}, false // 31 Feb and the like
	}
	// A leap second (60) is allowed by the grammar; it reads as the next minute's first.
	return t.Add(time.Duration(sec) * time.Second), true
}

// clock parses "08:49:37".
func clock(s string) (h, m, sec int, ok bool) {
	if len(s) != 8 || s[2] != ':' || s[5] != ':' {
		return 0, 0, 0, false
	}
	h, ok1 := digits(s[0:2])
	m, ok2 := digits(s[3:5])
	sec, ok3 := digits(s[6:8])
	return h, m, sec, ok1 && ok2 && ok3
}

// digits parses a run of ASCII digits, all of s.
func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, len(s) > 0
}

func gmt(s string) bool { return message.EqualFold(s, "gmt") }

const days = "sunmontuewedthufrisat"
const months = "janfebmaraprmayjunjulaugsepoctnovdec"

var longDays = [...]string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}

// dayName returns the index of a three-letter day name, or -1.
func dayName(s string) int { return index3(days, s) }

// month returns the index (0 = January) of a three-letter month name, or -1.
func month(s string) int { return index3(months, s) }

func longDayName(s string) int {
	for i, d := range longDays {
		if message.EqualFold(s, d) {
			return i
		}
	}
	return -1
}

func index3(list, s string) int {
	if len(s) != 3 {
		return -1
	}
	for i := 0; i+3 <= len(list); i += 3 {
		if message.EqualFold(s, list[i:i+3]) {
			return i / 3
		}
	}
	return -1
}
