package httpdate

import (
	"testing"
	"time"
)

var now = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func TestParse(t *testing.T) {
	ref := time.Date(1994, 11, 6, 8, 49, 37, 0, time.UTC)
	future := time.Date(2050, 8, 18, 2, 1, 18, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time // zero: invalid
	}{
		// The three formats of RFC 9110 section 5.6.7.
		{"Sun, 06 Nov 1994 08:49:37 GMT", ref},
		{"Sunday, 06-Nov-94 08:49:37 GMT", ref},
		{"Sun Nov  6 08:49:37 1994", ref},
		{"Thu Aug 18 02:01:18 2050", future},
		{"Thu Aug  8 02:01:18 2050", time.Date(2050, 8, 8, 2, 1, 18, 0, time.UTC)},
		{"Thursday, 18-Aug-50 02:01:18 GMT", future},
		{"  Sun, 06 Nov 1994 08:49:37 GMT\t", ref},
		// Beyond 32 bits, and exactly at it.
		{"Sun, 21 Nov 2286 04:46:39 GMT", time.Date(2286, 11, 21, 4, 46, 39, 0, time.UTC)},
		{"Tue, 19 Jan 2038 14:14:08 GMT", time.Date(2038, 1, 19, 14, 14, 8, 0, time.UTC)},
		// Case is not significant in names and the zone.
		{"THU, 18 Aug 2050 02:01:18 GMT", future},
		{"Thu, 18 AUG 2050 02:01:18 GMT", future},
		{"Thu, 18 Aug 2050 02:01:18 gMT", future},
		{"thursday, 18-aug-50 02:01:18 gmt", future},
		// A leap second.
		{"Wed, 31 Dec 2008 23:59:60 GMT", time.Date(2009, 1, 1, 0, 0, 0, 0, time.UTC)},
		// Invalid.
		{"Thu, 18 Aug 2050 02:01:18 UTC", time.Time{}},
		{"Thu, 18 Aug 2050 02:01:18 AEST", time.Time{}},
		{"Thu, 18 Aug 2050 02:01:18 +0000", time.Time{}},
		{"Thu, 18 Aug 50 02:01:18 GMT", time.Time{}},
		{"Thu 18 Aug 2050 02:01:18 GMT", time.Time{}},
		{"Thu, 18  Aug  2050 02:01:18 GMT", time.Time{}},
		{"Thu,  18 Aug 2050 02:01:18 GMT", time.Time{}},
		{"Thu, 18-Aug-2050 02:01:18 GMT", time.Time{}},
		{"Thu, 18 Aug 2050 02.01.18 GMT", time.Time{}},
		{"Thu, 18 Aug 2050 2:01:18 GMT", time.Time{}},
		{"Thu, 8 Aug 2050 02:01:18 GMT", time.Time{}},
		{"Thu, 18 Aug 2050 24:01:18 GMT", time.Time{}},
		{"Thu, 18 Aug 2050 02:60:18 GMT", time.Time{}},
		{"Thu, 18 Aug 2050 02:01:61 GMT", time.Time{}},
		{"Thu, 31 Feb 2050 02:01:18 GMT", time.Time{}},
		{"Thu, 00 Aug 2050 02:01:18 GMT", time.Time{}},
		{"Xyz, 18 Aug 2050 02:01:18 GMT", time.Time{}},
		{"Thu, 18 Foo 2050 02:01:18 GMT", time.Time{}},
		{"Thu, 18 Aug 2050 02:01:18", time.Time{}},
		{"Thu, 18 Aug 2050 02:01:18 GMTX", time.Time{}},
		{"Thu, +8 Aug 2050 02:01:18 GMT", time.Time{}},
		{"Thurs, 18-Aug-50 02:01:18 GMT", time.Time{}},
		{"Thursday, 18 Aug 50 02:01:18 GMT", time.Time{}},
		{"Thursday, 18-Aug-2050 02:01:18 GMT", time.Time{}},
		{"Thursday,18-Aug-50 02:01:18 GMT", time.Time{}},
		{"Thu Aug 18 02:01:18 50", time.Time{}},
		{"Thu Aug 18  2:01:18 2050", time.Time{}},
		{"Thu  Aug 8 02:01:18 2050", time.Time{}},
		{"Thu Aug 08 02:01:18 2050", time.Date(2050, 8, 8, 2, 1, 18, 0, time.UTC)}, // 2DIGIT day
		{"0", time.Time{}},
		{"", time.Time{}},
		{"-1", time.Time{}},
	}
	for _, tc := range tests {
		got, ok := ParseAt(tc.in, now)
		if tc.want.IsZero() {
			if ok {
				t.Errorf("ParseAt(%q) = %v, want invalid", tc.in, got)
			}
			continue
		}
		if !ok || !got.Equal(tc.want) {
			t.Errorf("ParseAt(%q) = %v, %v; want %v", tc.in, got, ok, tc.want)
		}
	}
}

// TestRFC850Century checks the two-digit year rule: more than 50 years ahead means the
// previous century.
func TestRFC850Century(t *testing.T) {
	for _, tc := range []struct {
		yy   string
		want int
	}{{"76", 2076}, {"77", 1977}, {"26", 2026}, {"00", 2000}, {"99", 1999}} {
		got, ok := ParseAt("Monday, 01-Jan-"+tc.yy+" 00:00:00 GMT", now)
		if !ok || got.Year() != tc.want {
			t.Errorf("year %s: got %v %v, want %d", tc.yy, got, ok, tc.want)
		}
	}
}

// TestParseReadsClockForRFC850 checks that Parse, which reads the clock only for the RFC 850
// format, gives that format the current century.
func TestParseReadsClockForRFC850(t *testing.T) {
	const s = "Sunday, 06-Nov-94 08:49:37 GMT"
	got, ok := Parse(s)
	want, _ := ParseAt(s, time.Now())
	if !ok || !got.Equal(want) {
		t.Fatalf("Parse(%q) = %v %v, want %v", s, got, ok, want)
	}
}

// imf formats t as an IMF-fixdate, in UTC.
func imf(t time.Time) string { return t.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT") }

func TestIMFRoundTrip(t *testing.T) {
	ts := time.Date(2031, 3, 4, 5, 6, 7, 0, time.FixedZone("x", 3600))
	s := imf(ts)
	if s != "Tue, 04 Mar 2031 04:06:07 GMT" {
		t.Fatalf("imf = %q", s)
	}
	if got, ok := Parse(s); !ok || !got.Equal(ts) {
		t.Fatalf("Parse(imf) = %v %v", got, ok)
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	for _, s := range []string{"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "garbage"} {
		if n := testing.AllocsPerRun(100, func() { ParseAt(s, now) }); n != 0 {
			t.Errorf("ParseAt(%q): %v allocations", s, n)
		}
	}
}

// FuzzParse checks that Parse never panics, that what it accepts formats back to a date it
// accepts again with the same instant, and agrees with time.Parse on IMF-fixdates.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "Thu, 18 Aug 2050 02:01:18 gMT", "Wed, 31 Dec 2008 23:59:60 GMT"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := ParseAt(s, now)
		if !ok {
			return
		}
		if got.Location() != time.UTC {
			t.Fatalf("%q: not UTC", s)
		}
		again, ok2 := ParseAt(imf(got), now)
		if got.Year() >= 0 && got.Year() <= 9999 && (!ok2 || !again.Equal(got)) {
			t.Fatalf("%q: %v does not round-trip (%v %v)", s, got, again, ok2)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ParseAt("Sun, 06 Nov 1994 08:49:37 GMT", now)
	}
}

// BenchmarkParseNow measures Parse, the cache's entry point, which reads the clock only for
// an RFC 850 date.
func BenchmarkParseNow(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Parse("Sun, 06 Nov 1994 08:49:37 GMT")
	}
}
