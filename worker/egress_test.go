package worker

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func TestSpecialAddresses(t *testing.T) {
	refused := []string{
		"127.0.0.1", "127.255.255.254", "0.0.0.0", "0.1.2.3", "10.0.0.1", "172.16.0.1", "172.31.255.255",
		"192.168.1.1", "100.64.0.1", "100.127.255.255", "169.254.169.254", "169.254.1.1", "224.0.0.1",
		"239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.0.8", "192.0.2.1", "198.51.100.1",
		"203.0.113.9", "198.18.0.1", "192.88.99.1",
		"::", "::1", "fc00::1", "fd00:ec2::254", "fd12:3456::1", "fe80::1", "fec0::1", "ff02::1", "ff05::2",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1", "::10.0.0.1",
		"64:ff9b::127.0.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b::10.1.2.3", "64:ff9b:1::1", "2002:7f00:1::1",
		"2002:a9fe:a9fe::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:db8::1", "100::1",
	}
	for _, s := range refused {
		if special(netip.MustParseAddr(s)) == "" {
			t.Errorf("%s: not refused", s)
		}
	}
	for _, s := range []string{"1.1.1.1", "8.8.8.8", "93.184.216.34", "100.63.255.255", "100.128.0.1", "172.32.0.1",
		"2606:4700::1111", "2a00:1450::1", "64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8"} {
		if why := special(netip.MustParseAddr(s)); why != "" {
			t.Errorf("%s: refused as %s", s, why)
		}
	}
}

func TestEgressCheck(t *testing.T) {
	listeners := func() []Listener {
		return []Listener{
			{Addr: netip.MustParseAddrPort("127.0.0.1:9901"), Admin: true},
			{Addr: netip.MustParseAddrPort("0.0.0.0:8080")},
			{Addr: netip.MustParseAddrPort("[::]:8443")},
		}
	}
	e, err := newEgress(FetchPolicy{Allow: []string{"10.1.0.0/16", "127.0.0.0/8", "::1", "192.168.1.5:8080", "api.internal:8443", "[fd00::5]:443"}}, listeners)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ap     string
		byName bool
		ok     bool
	}{
		{"10.1.2.3:80", false, true},
		{"10.2.0.1:80", false, false},
		{"127.0.0.1:3000", false, true},
		{"[::ffff:127.0.0.1]:3000", false, true},
		{"[::1]:3000", false, true},
		{"192.168.1.5:8080", false, true},
		{"192.168.1.5:8081", false, false},
		{"[fd00::5]:443", false, true},
		{"[fd00::5]:80", false, false},
		{"169.254.169.254:80", false, false},
		{"8.8.8.8:443", false, true},
		// Verge's own listeners: the admin API never, the others only as ip:port.
		{"127.0.0.1:9901", false, false},
		{"127.0.0.1:9901", true, false},
		{"[::ffff:127.0.0.1]:9901", false, false},
		{"127.0.0.1:8080", false, false},
		{"127.0.0.2:8080", false, false},
		{"[::1]:8443", false, false},
		{"127.0.0.1:8443", true, true},
		{"10.9.9.9:80", true, true},
	} {
		err := e.check(netip.MustParseAddrPort(c.ap), c.byName)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrRefused)) {
			t.Errorf("%s (by name %v): got %v, want ok=%v", c.ap, c.byName, err, c.ok)
		}
	}
	if !e.allowedName("API.internal", "8443") || e.allowedName("api.internal", "443") {
		t.Error("host:port entries match host and port")
	}
	for _, bad := range []string{"", "10.0.0.0/33", "host", "host:0", "host:99999", "[::1]", "a/b:80", "1.2.3.4:0"} {
		if _, err := newEgress(FetchPolicy{Allow: []string{bad}}, nil); err == nil {
			t.Errorf("allow %q: accepted", bad)
		}
	}
}

// Probe is a listener on 127.0.0.1 that must not be reached: it counts connections, and
// Settle proves the count is final by making one connection of its own and waiting until
// the listener has seen it (connections are accepted in arrival order).
type Probe struct {
	ln      net.Listener
	n       atomic.Int32
	markers int32
	marker  chan struct{}
}

// NewProbe starts a Probe, closed at cleanup. (Exported for the package's external tests.)
func NewProbe(t *testing.T) *Probe {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Probe{ln: ln, marker: make(chan struct{}, 1)}
	go p.serve()
	t.Cleanup(func() { ln.Close() })
	return p
}

func (p *Probe) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.n.Add(1)
		go func() {
			defer c.Close()
			b := make([]byte, 1)
			if _, err := c.Read(b); err == nil && b[0] == 'M' {
				p.marker <- struct{}{}
			}
		}()
	}
}

func (p *Probe) Port() string { return strconv.Itoa(p.ln.Addr().(*net.TCPAddr).Port) }

// AddrPort is the probe's address.
func (p *Probe) AddrPort() netip.AddrPort { return p.ln.Addr().(*net.TCPAddr).AddrPort() }

// Settle returns the connections seen besides its own marker connections.
func (p *Probe) Settle(t *testing.T) int32 {
	t.Helper()
	c, err := net.Dial("tcp", p.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("M"))
	select {
	case <-p.marker:
	case <-time.After(time.Minute):
		t.Fatal("probe listener did not see the marker connection")
	}
	p.markers++
	return p.n.Load() - p.markers
}

// TestGuardedDialChecksResolvedAddress: the dialer's Control hook sees the address after
// name resolution, so a name that resolves (or rebinds) to loopback is refused at connect.
func TestGuardedDialChecksResolvedAddress(t *testing.T) {
	p := NewProbe(t)
	dial := guardedDial(&net.Dialer{})
	e, _ := newEgress(FetchPolicy{}, nil)
	ctx := context.WithValue(context.Background(), egressKey{}, &egressCtx{e: e})
	for _, addr := range []string{"localhost:" + p.Port(), "127.0.0.1:" + p.Port(), "[::ffff:127.0.0.1]:" + p.Port()} {
		c, err := dial(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			t.Fatalf("%s: dialed", addr)
		}
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("%s: got %v, want ErrRefused", addr, err)
		}
	}
	if _, err := dial(context.Background(), "tcp", "127.0.0.1:"+p.Port()); !errors.Is(err, ErrRefused) {
		t.Fatalf("a dial without a policy: got %v, want ErrRefused", err)
	}
	if n := p.Settle(t); n != 0 {
		t.Fatalf("the listener saw %d refused connections", n)
	}
	open, _ := newEgress(FetchPolicy{Allow: []string{"127.0.0.1:" + p.Port()}}, nil)
	c, err := dial(context.WithValue(context.Background(), egressKey{}, &egressCtx{e: open}), "tcp", "127.0.0.1:"+p.Port())
	if err != nil {
		t.Fatalf("allowed dial: %v", err)
	}
	c.Close()
	if n := p.Settle(t); n != 1 {
		t.Fatalf("the listener saw %d connections, want the allowed one", n)
	}
}

func FuzzParseFetchAllow(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "127.0.0.1", "[::1]:8080", "api.internal:8443", "host:0", "::ffff:1.2.3.4/104", "[fe80::1%eth0]:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		prefix, ap, hp, err := ParseFetchAllow(s)
		if err != nil {
			return
		}
		n := 0
		for _, ok := range []bool{prefix.IsValid(), ap.IsValid(), hp != ""} {
			if ok {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%q: parsed as %v %v %q", s, prefix, ap, hp)
		}
		if ap.IsValid() && ap.Port() == 0 {
			t.Fatalf("%q: port 0 accepted", s)
		}
	})
}

// BenchmarkEgressCheckListenerPort is a subrequest to a public address on the port of a
// listener bound to every address (":443"): the check asks whether the address is one of
// this machine's.
func BenchmarkEgressCheckListenerPort(b *testing.B) {
	e, err := newEgress(FetchPolicy{}, func() []Listener {
		return []Listener{{Addr: netip.MustParseAddrPort("0.0.0.0:443")}}
	})
	if err != nil {
		b.Fatal(err)
	}
	ap := netip.MustParseAddrPort("8.8.8.8:443")
	b.ReportAllocs()
	for b.Loop() {
		if err := e.check(ap, false); err != nil {
			b.Fatal(err)
		}
	}
}
