package lb

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/verge-edge/verge/upstream"
)

func TestDrain(t *testing.T) {
	lb := newTestBalancer(t, &RoundRobin{}, 1, 1)
	bs := lb.Backends()
	held := lb.Select(nil) // in flight on bs[0]
	if held != bs[0] {
		t.Fatalf("got %v, want first backend", held)
	}
	bs[0].Drain()
	for range 5 {
		b := lb.Select(nil)
		if b != bs[1] {
			t.Fatalf("got %v, want only the undrained backend", b)
		}
		b.Done(true)
	}
	if st := bs[0].Status(); !st.Draining || st.InFlight != 1 {
		t.Fatalf("got %+v, want draining with the held request in flight", st)
	}
	held.Done(true)
	if got := bs[0].InFlight(); got != 0 {
		t.Fatalf("got %d in flight after Done, want 0", got)
	}
	bs[0].Undrain()
	seen := map[*Backend]bool{}
	for range 2 {
		b := lb.Select(nil)
		seen[b] = true
		b.Done(true)
	}
	if !seen[bs[0]] {
		t.Fatal("undrained backend not selected again")
	}
}

func TestStateCarriedOverReload(t *testing.T) {
	store := NewStateStore()
	cfg := []BackendConfig{{Address: "127.0.0.1:10001"}, {Address: "127.0.0.1:10002"}, {Address: "127.0.0.1:10003"}}
	old, err := New(Options{Backends: cfg, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	ob := old.Backends()
	ob[0].Drain()
	failN(t, old, ob[1], DefaultMaxFails, errConnect) // ejected
	inflight := old.Select(nil)                       // on ob[2]
	if inflight != ob[2] {
		t.Fatalf("got %v, want the third backend", inflight)
	}

	// The new configuration drops 10003's weight change (kept), adds 10004.
	next := []BackendConfig{cfg[0], cfg[1], {Address: "127.0.0.1:10003", Weight: 5}, {Address: "127.0.0.1:10004"}}
	nb, err := New(Options{Backends: next, Store: store, Selector: &LeastConn{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nb.Close() })
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	// A request selected through the old balancer finishes after the reload.
	inflight.Done(true)

	b := nb.Backends()
	if !b[0].Draining() {
		t.Error("drain flag lost over reload")
	}
	if !b[1].Status().Ejected {
		t.Error("ejection lost over reload")
	}
	if got := b[2].InFlight(); got != 0 {
		t.Errorf("in-flight count: got %d, want 0 after the old request finished", got)
	}
	if b[2].Weight != 5 {
		t.Errorf("weight: got %d, want the new 5", b[2].Weight)
	}
	if got := store.Len(); got != 4 {
		t.Errorf("store: got %d states, want 4", got)
	}
	if err := nb.Update(next[2:]); err != nil {
		t.Fatal(err)
	}
	if got := store.Len(); got != 2 {
		t.Errorf("store after removal: got %d states, want 2", got)
	}
	nb.Close()
	if got := store.Len(); got != 0 {
		t.Errorf("store after close: got %d states, want 0", got)
	}
}

func TestIdentity(t *testing.T) {
	store := NewStateStore()
	tlsPeer := &upstream.Peer{TLS: &upstream.TLSOptions{ServerName: "a.test"}}
	a, err := New(Options{Store: store, Backends: []BackendConfig{{Address: "127.0.0.1:10001", Peer: tlsPeer}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	a.Backends()[0].Drain()
	tests := []struct {
		name string
		peer *upstream.Peer
		same bool
	}{
		{"same tls settings, new objects", &upstream.Peer{TLS: &upstream.TLSOptions{ServerName: "a.test"}}, true},
		{"other server name", &upstream.Peer{TLS: &upstream.TLSOptions{ServerName: "b.test"}}, false},
		{"plain", &upstream.Peer{}, false},
		{"h2", &upstream.Peer{Protocol: upstream.HTTP2, TLS: &upstream.TLSOptions{ServerName: "a.test"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(Options{Store: store, Backends: []BackendConfig{{Address: "127.0.0.1:10001", Peer: tt.peer}}})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if got := b.Backends()[0].Draining(); got != tt.same {
				t.Errorf("got shared state=%v, want %v", got, tt.same)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  []BackendConfig
		is   error
	}{
		{"no port", []BackendConfig{{Address: "127.0.0.1"}}, nil},
		{"bad port", []BackendConfig{{Address: "127.0.0.1:99999"}}, nil},
		{"no host", []BackendConfig{{Address: ":80"}}, nil},
		{"duplicate", []BackendConfig{{Address: "127.0.0.1:80"}, {Address: "127.0.0.1:80", Weight: 2}}, ErrDuplicateBackend},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{Backends: tt.cfg})
			if err == nil {
				t.Fatal("got nil error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("got %v, want %v", err, tt.is)
			}
		})
	}
}

func TestPeerTemplate(t *testing.T) {
	tmpl := &upstream.Peer{Host: "origin.test", Timeouts: upstream.Timeouts{Connect: time.Second}}
	own := &upstream.Peer{Protocol: upstream.HTTP2}
	lb, err := New(Options{Peer: tmpl, Backends: []BackendConfig{
		{Address: "127.0.0.1:1"}, {Address: "127.0.0.1:2", Peer: own},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	bs := lb.Backends()
	if p := bs[0].Peer; p.Address != "127.0.0.1:1" || p.Host != "origin.test" || p.Timeouts.Connect != time.Second {
		t.Errorf("templated peer: got %+v", *p)
	}
	if p := bs[1].Peer; p.Address != "127.0.0.1:2" || p.Protocol != upstream.HTTP2 || p.Host != "" {
		t.Errorf("own peer: got %+v", *p)
	}
	if tmpl.Address != "" || own.Address != "" {
		t.Error("templates were modified")
	}
}

func TestShutdown(t *testing.T) {
	lb, err := New(Options{
		Backends:    []BackendConfig{{Address: "127.0.0.1:10001"}},
		HealthCheck: &HealthCheck{Interval: time.Millisecond},
		Discovery:   Static{{Address: "127.0.0.1:10001"}},
		Logger:      quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := lb.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := lb.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := lb.Update(nil); err == nil {
		t.Fatal("Update after Close: got nil error")
	}
}
