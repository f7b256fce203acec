package acl

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func prefixes(t *testing.T, ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		p, err := ParsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestRules(t *testing.T) {
	r := &Rules{
		Restrict: true,
		Allow:    NewSet(prefixes(t, "10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::ffff:198.51.100.0/120")),
		Deny:     NewSet(prefixes(t, "10.9.0.0/16", "2001:db8:bad::/48")),
	}
	for addr, want := range map[string]bool{
		"10.1.2.3": true, "10.9.1.1": false, "192.0.2.7": true, "192.0.2.8": false,
		"::ffff:10.1.2.3": true, "::ffff:10.9.0.1": false, "2001:db8::1": true, "2001:db8:bad::1": false,
		"2001:db9::1": false, "198.51.100.20": true, "198.51.101.1": false,
	} {
		if got := r.Allowed(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Allowed(%s) = %v, want %v", addr, got, want)
		}
	}
	var zero Rules
	if !zero.Allowed(netip.MustParseAddr("192.0.2.1")) {
		t.Error("the zero Rules refuse")
	}
	deny := Rules{Deny: NewSet(prefixes(t, "192.0.2.0/24"))}
	if deny.Allowed(netip.MustParseAddr("192.0.2.1")) || !deny.Allowed(netip.MustParseAddr("192.0.3.1")) {
		t.Error("deny-only rules")
	}
}

func TestParseList(t *testing.T) {
	ps, err := ParseList("l.txt", []byte("# blocked\n192.0.2.0/24  # a net\n\n2001:db8::1\n"))
	if err != nil || len(ps) != 2 || ps[1].Bits() != 128 {
		t.Fatalf("%v %v", ps, err)
	}
	_, err = ParseList("l.txt", []byte("192.0.2.0/24\nnot-an-address\n"))
	if err == nil || !strings.Contains(err.Error(), "l.txt:2:") {
		t.Fatalf("error %v, want one naming l.txt:2", err)
	}
}

// TestLiveReload changes a deny file: Check picks the new list up; a malformed edit keeps
// the rules in effect.
func TestLiveReload(t *testing.T) {
	f := filepath.Join(t.TempDir(), "deny.txt")
	os.WriteFile(f, []byte("192.0.2.1\n"), 0o644)
	l, err := NewLive(Source{DenyFiles: []string{f}}, time.Hour, nil) // the test calls Check itself
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	if l.Allowed(a) || !l.Allowed(b) {
		t.Fatal("initial rules")
	}
	os.WriteFile(f, []byte("192.0.2.2\n192.0.2.3\n"), 0o644)
	if !l.Check() || !l.Allowed(a) || l.Allowed(b) {
		t.Fatal("rules not reloaded")
	}
	os.WriteFile(f, []byte("192.0.2.2\nbogus line\n192.0.2.1\n"), 0o644)
	if l.Check() || !l.Allowed(a) || l.Allowed(b) {
		t.Fatal("a malformed file changed the rules")
	}
	if _, err := NewLive(Source{DenyFiles: []string{f + ".missing"}}, time.Hour, nil); err == nil {
		t.Fatal("a missing file was accepted")
	}
}

// TestEmptyAllowFileRefuses: an allow file that is (or becomes) empty refuses everyone.
func TestEmptyAllowFileRefuses(t *testing.T) {
	f := filepath.Join(t.TempDir(), "allow.txt")
	os.WriteFile(f, []byte("192.0.2.1\n"), 0o644)
	l, err := NewLive(Source{AllowFiles: []string{f}}, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	if !l.Allowed(a) || l.Allowed(b) {
		t.Fatal("initial rules")
	}
	os.WriteFile(f, nil, 0o644)
	if !l.Check() || l.Allowed(a) || l.Allowed(b) {
		t.Fatal("an emptied allow file did not refuse everyone")
	}
}

func BenchmarkContains(b *testing.B) {
	var ps []netip.Prefix
	for i := range 100000 {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32))
	}
	for i := range 1000 {
		p, _ := netip.ParsePrefix(fmt.Sprintf("172.%d.%d.0/24", 16+i/256, i%256))
		ps = append(ps, p)
	}
	s := NewSet(ps)
	a := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		s.Contains(a)
	}
}
