package lb

import (
	"context"
	"errors"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"
)

// fakeResolver answers from in-memory records and counts lookups.
type fakeResolver struct {
	mu      sync.Mutex
	ips     map[string][]net.IPAddr
	srvs    map[string][]*net.SRV
	err     error
	lookups int
}

func (f *fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if f.err != nil {
		return nil, f.err
	}
	return append([]net.IPAddr(nil), f.ips[host]...), nil
}

func (f *fakeResolver) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if f.err != nil {
		return "", nil, f.err
	}
	q := name
	if service != "" {
		q = "_" + service + "._" + proto + "." + name
	}
	return q, f.srvs[q], nil
}

func (f *fakeResolver) set(fn func(f *fakeResolver)) {
	f.mu.Lock()
	fn(f)
	f.mu.Unlock()
}

func ipAddrs(ss ...string) []net.IPAddr {
	out := make([]net.IPAddr, len(ss))
	for i, s := range ss {
		out[i] = net.IPAddr{IP: net.ParseIP(s)}
	}
	return out
}

func TestDNSDiscover(t *testing.T) {
	r := &fakeResolver{
		ips: map[string][]net.IPAddr{"api.test": ipAddrs("10.0.0.2", "10.0.0.1", "::1", "10.0.0.1")},
		srvs: map[string][]*net.SRV{
			"_http._tcp.api.test": {
				{Target: "a.test.", Port: 8080, Priority: 10, Weight: 60},
				{Target: "b.test.", Port: 8081, Priority: 10, Weight: 0},
				{Target: "backup.test.", Port: 8080, Priority: 20, Weight: 100},
			},
			"srv.api.test": {{Target: "c.test.", Port: 9000, Priority: 1, Weight: 5}},
		},
	}
	tests := []struct {
		name string
		d    DNS
		want []Target
	}{
		{"a and aaaa", DNS{Name: "api.test", Port: 80}, []Target{
			{"10.0.0.1:80", 1}, {"10.0.0.2:80", 1}, {"[::1]:80", 1}}},
		{"ipv4 only", DNS{Name: "api.test", Port: 80, Family: IPv4Only}, []Target{
			{"10.0.0.1:80", 1}, {"10.0.0.2:80", 1}}},
		{"ipv6 only", DNS{Name: "api.test", Port: 443, Family: IPv6Only}, []Target{{"[::1]:443", 1}}},
		{"srv lowest priority", DNS{Name: "api.test", SRV: true, Service: "http"}, []Target{
			{"a.test:8080", 60}, {"b.test:8081", 1}}},
		{"srv by name", DNS{Name: "srv.api.test", SRV: true}, []Target{{"c.test:9000", 5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.d.Resolver = r
			got, err := tt.d.Discover(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	for _, d := range []DNS{{Port: 80}, {Name: "api.test"}, {Name: "api.test", Port: 70000}} {
		d.Resolver = r
		if _, err := d.Discover(context.Background()); err == nil {
			t.Errorf("%+v: got nil error", d)
		}
	}
}

func TestDNSDiscoveryUpdates(t *testing.T) {
	r := &fakeResolver{ips: map[string][]net.IPAddr{"api.test": ipAddrs("10.0.0.1", "10.0.0.2")}}
	var ev eventLog
	lb, err := New(Options{
		Discovery:         &DNS{Name: "api.test", Port: 8080, Resolver: r},
		DiscoveryInterval: 10 * time.Millisecond,
		Observer:          &ev,
		Logger:            quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	if err := lb.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	addrsOf := func() []string {
		var out []string
		for _, b := range lb.Backends() {
			out = append(out, b.Address)
		}
		return out
	}
	if got, want := addrsOf(), []string{"10.0.0.1:8080", "10.0.0.2:8080"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	stay := lb.Backend("10.0.0.2:8080")
	stay.Drain()

	// 10.0.0.1 leaves, 10.0.0.3 joins; 10.0.0.2 keeps its state.
	r.set(func(f *fakeResolver) { f.ips["api.test"] = ipAddrs("10.0.0.3", "10.0.0.2") })
	want := []string{"10.0.0.2:8080", "10.0.0.3:8080"}
	waitFor(t, "new set", func() bool { return reflect.DeepEqual(addrsOf(), want) })
	if b := lb.Backend("10.0.0.2:8080"); b != stay || !b.Draining() {
		t.Errorf("remaining backend lost its state: got %p draining=%v, want %p draining", b, b.Draining(), stay)
	}
	if got := ev.count(BackendRemoved); got != 1 {
		t.Errorf("got %d removed events, want 1", got)
	}

	// Failures and empty answers keep the last good set.
	r.set(func(f *fakeResolver) { f.err = errors.New("servfail") })
	waitFor(t, "failure reported", func() bool { return ev.count(DiscoveryFailed) >= 2 })
	if got := addrsOf(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after failure: got %v, want %v kept", got, want)
	}
	r.set(func(f *fakeResolver) { f.err = nil; f.ips["api.test"] = nil })
	n := ev.count(DiscoveryFailed)
	waitFor(t, "empty answer reported", func() bool { return ev.count(DiscoveryFailed) >= n+2 })
	if got := addrsOf(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after empty answer: got %v, want %v kept", got, want)
	}
	if b := lb.Select(nil); b == nil || b.Address != "10.0.0.3:8080" {
		t.Fatalf("got %v, want the undrained 10.0.0.3", b)
	} else {
		b.Done(true)
	}
}

func TestSRVDiscoveryWeights(t *testing.T) {
	r := &fakeResolver{srvs: map[string][]*net.SRV{"_http._tcp.api.test": {
		{Target: "10.0.0.1.", Port: 80, Priority: 1, Weight: 3},
		{Target: "10.0.0.2.", Port: 80, Priority: 1, Weight: 1},
	}}}
	w := &WeightedRoundRobin{}
	lb, err := New(Options{
		Discovery: &DNS{Name: "api.test", SRV: true, Service: "http", Proto: "tcp", Resolver: r},
		Selector:  w,
		Logger:    quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	if err := lb.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The discovery goroutine's first round starts in New and may land anywhere in this loop;
	// it resolves the same set and must not move a pick.
	counts := map[string]int{}
	for range 400 {
		b := lb.Select(nil)
		counts[b.Address]++
		b.Done(true)
	}
	if counts["10.0.0.1:80"] != 300 || counts["10.0.0.2:80"] != 100 {
		t.Errorf("got %v, want 300/100 by SRV weight", counts)
	}
}

// TestSRVDiscoveryRefreshKeepsCycle refreshes the discovered set between every two picks, as
// a background round landing mid-cycle does. An unchanged answer must leave the smooth
// weighted round robin where it was (it used to restart the cycle, giving 301/99 or worse);
// a changed weight must take effect.
func TestSRVDiscoveryRefreshKeepsCycle(t *testing.T) {
	r := &fakeResolver{srvs: map[string][]*net.SRV{"_http._tcp.api.test": {
		{Target: "10.0.0.1.", Port: 80, Priority: 1, Weight: 3},
		{Target: "10.0.0.2.", Port: 80, Priority: 1, Weight: 1},
	}}}
	lb, err := New(Options{
		Discovery:         &DNS{Name: "api.test", SRV: true, Service: "http", Resolver: r},
		DiscoveryInterval: time.Hour, // only the first background round, which Refresh races
		Selector:          &WeightedRoundRobin{},
		Logger:            quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	pick := func() string {
		b := lb.Select(nil)
		if b == nil {
			t.Fatal("no backend selected")
		}
		b.Done(true)
		return b.Address
	}
	if err := lb.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := lb.Backends()
	// Smooth order for weights 3,1: a a b a.
	want := []string{"10.0.0.1:80", "10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80"}
	for i := range 400 {
		if got := pick(); got != want[i%4] {
			t.Fatalf("pick %d: got %s, want %s", i, got, want[i%4])
		}
		if i%2 == 1 {
			if err := lb.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	after := lb.Backends()
	if len(after) != len(before) {
		t.Fatalf("got %d backends, want %d", len(after), len(before))
	}
	for i := range after {
		if after[i] != before[i] {
			t.Errorf("backend %d: unchanged answer replaced %p with %p", i, before[i], after[i])
		}
	}

	// Weights 1,1 now: the set changes and the policy alternates.
	r.set(func(f *fakeResolver) {
		f.srvs["_http._tcp.api.test"] = []*net.SRV{
			{Target: "10.0.0.1.", Port: 80, Priority: 1, Weight: 1},
			{Target: "10.0.0.2.", Port: 80, Priority: 1, Weight: 1},
		}
	})
	if err := lb.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for range 100 {
		counts[pick()]++
	}
	if counts["10.0.0.1:80"] != 50 || counts["10.0.0.2:80"] != 50 {
		t.Errorf("after weight change: got %v, want 50/50", counts)
	}
}
