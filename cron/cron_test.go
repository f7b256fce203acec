package cron

import (
	"strings"
	"testing"
	"time"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestNext(t *testing.T) {
	tests := []struct {
		expr, from, want string
	}{
		{"*/5 * * * *", "2026-12-02T12:03:10Z", "2026-12-02T12:05:00Z"},
		{"*/5 * * * *", "2026-12-02T12:05:00Z", "2026-12-02T12:10:00Z"},
		{"* * * * *", "2026-12-31T23:59:30Z", "2027-01-01T00:00:00Z"},
		{"0 3 * * mon", "2026-12-02T12:00:00Z", "2026-12-07T03:00:00Z"}, // a Wednesday
		{"0 3 * * MON-FRI", "2026-12-04T03:00:00Z", "2026-12-07T03:00:00Z"},
		{"30 1 1,15 * *", "2026-12-02T00:00:00Z", "2026-12-15T01:30:00Z"},
		{"0 0 29 feb *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z"},
		{"@hourly", "2026-12-02T12:00:00Z", "2026-12-02T13:00:00Z"},
		{"@daily", "2026-12-02T12:00:00Z", "2026-12-03T00:00:00Z"},
		{"@weekly", "2026-12-02T12:00:00Z", "2026-12-06T00:00:00Z"},
		{"@monthly", "2026-12-02T12:00:00Z", "2027-01-01T00:00:00Z"},
		{"@yearly", "2026-12-02T12:00:00Z", "2027-01-01T00:00:00Z"},
		{"0 0 * * 7", "2026-12-02T12:00:00Z", "2026-12-06T00:00:00Z"}, // 7 is Sunday
		// Both day fields restricted: either matches (the 13th, or a Friday).
		{"0 0 13 * fri", "2026-12-02T12:00:00Z", "2026-12-04T00:00:00Z"},
		{"0 0 13 * fri", "2026-12-12T12:00:00Z", "2026-12-13T00:00:00Z"},
		// Day of month restricted, day of week "*": the 13th only.
		{"0 0 13 * *", "2026-12-02T12:00:00Z", "2026-12-13T00:00:00Z"},
		{"10-20/5 4 * * *", "2026-12-02T04:16:00Z", "2026-12-02T04:20:00Z"},
		{"50/5 * * * *", "2026-12-02T04:56:00Z", "2026-12-02T05:50:00Z"},
		{"0 0 1 jan-mar/2 *", "2026-12-02T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"0 0 1 jan-mar/2 *", "2027-01-02T00:00:00Z", "2027-03-01T00:00:00Z"},
		// Evaluated in UTC whatever the input's zone.
		{"0 3 * * *", "2026-12-02T01:00:00+05:00", "2026-12-02T03:00:00Z"},
	}
	for _, tt := range tests {
		s, err := Parse(tt.expr)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.expr, err)
		}
		got := s.Next(mustTime(t, tt.from))
		if want := mustTime(t, tt.want); !got.Equal(want) {
			t.Errorf("%q.Next(%s) = %s, want %s", tt.expr, tt.from, got.Format(time.RFC3339), tt.want)
		}
	}
}

func TestPrevInvertsNext(t *testing.T) {
	exprs := []string{"*/5 * * * *", "0 3 * * mon", "30 1 1,15 * *", "0 0 29 feb *", "@hourly", "0 0 13 * fri", "10-20/5 4 * 1,6 *", "59 23 31 * *"}
	from := mustTime(t, "2026-12-02T12:03:10Z")
	for _, e := range exprs {
		s, err := Parse(e)
		if err != nil {
			t.Fatal(err)
		}
		cur := from
		for range 50 {
			n := s.Next(cur)
			if n.IsZero() {
				t.Fatalf("%q: no next after %s", e, cur)
			}
			if p := s.Prev(n); !p.Equal(n) {
				t.Fatalf("%q.Prev(%s) = %s, want the slot itself", e, n, p)
			}
			if p := s.Prev(n.Add(-time.Second)); !p.Before(n) || (!cur.Before(p) && !p.Equal(s.Prev(cur))) {
				t.Fatalf("%q.Prev(just before %s) = %s", e, n, p)
			}
			if p := s.Prev(n.Add(-time.Minute)); s.Next(p) != n {
				t.Fatalf("%q: Next(Prev(before %s)) = %s", e, n, s.Next(p))
			}
			cur = n
		}
	}
}

func TestNeverFires(t *testing.T) {
	s, err := Parse("0 0 30 2 *")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.Next(mustTime(t, "2026-01-01T00:00:00Z")); !n.IsZero() {
		t.Fatalf("Next = %s, want none", n)
	}
	if p := s.Prev(mustTime(t, "2026-01-01T00:00:00Z")); !p.IsZero() {
		t.Fatalf("Prev = %s, want none", p)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ expr, want string }{
		{"* * * *", "4 fields"},
		{"* * * * * *", "6 fields"},
		{"60 * * * *", `minute field "60": 60 out of range 0-59`},
		{"* 24 * * *", `hour field "24"`},
		{"* * 0 * *", `day of month field "0"`},
		{"* * * 13 *", `month field "13"`},
		{"* * * foo *", `month field "foo": "foo" is neither a number nor a name (jan-dec)`},
		{"* * * * 8", `day of week field "8"`},
		{"* * * * mon-sun2", `day of week field`},
		{"*/0 * * * *", `step "0"`},
		{"5-1 * * * *", "runs backwards"},
		{"1,,2 * * * *", "empty list item"},
		{"@reboot", "unknown macro"},
		{strings.Repeat("1,", 200) + "1 * * * *", "longer than"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.expr)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tt.expr, err, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"*/5 * * * *", "0 3 * * mon", "@hourly", "1-5/2,7 0 1 jan sun", "0 0 13 * fri"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		s, err := Parse(expr)
		if err != nil {
			return
		}
		from := time.Date(2026, 12, 2, 12, 3, 0, 0, time.UTC)
		n := s.Next(from)
		if n.IsZero() {
			return
		}
		if !n.After(from) || n.Second() != 0 {
			t.Fatalf("%q.Next = %s", expr, n)
		}
		if p := s.Prev(n); !p.Equal(n) {
			t.Fatalf("%q.Prev(%s) = %s", expr, n, p)
		}
	})
}

func BenchmarkNext(b *testing.B) {
	s, err := Parse("0 3 * * mon")
	if err != nil {
		b.Fatal(err)
	}
	t := time.Date(2026, 12, 2, 12, 3, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		s.Next(t)
	}
}
