package lb

import (
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/upstream"
)

const fastInterval = 20 * time.Millisecond

// statusServer is a loopback origin whose health endpoint answers status and counts the
// checks answered with each status.
type statusServer struct {
	*httptest.Server
	status atomic.Int32
	ok     atomic.Int32
	bad    atomic.Int32
}

func newStatusServer(t *testing.T, tls bool) *statusServer {
	s := &statusServer{}
	s.status.Store(200)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || r.Host != "origin.test" {
			w.WriteHeader(404)
			return
		}
		code := int(s.status.Load())
		if code == 200 {
			s.ok.Add(1)
		} else {
			s.bad.Add(1)
		}
		w.WriteHeader(code)
		w.Write([]byte("status: ready"))
	})
	s.Server = httptest.NewUnstartedServer(h)
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected handshakes are expected
	if tls {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

func (s *statusServer) addr() string { return s.Listener.Addr().String() }

func TestHTTPCheckRiseFall(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "plain"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			srv := newStatusServer(t, useTLS)
			peer := &upstream.Peer{Host: "origin.test"}
			if useTLS {
				pool := x509.NewCertPool()
				pool.AddCert(srv.Certificate())
				peer.TLS = &upstream.TLSOptions{RootCAs: pool, ServerName: "example.com"}
			}
			var ev eventLog
			var badAtDown, okAtUp atomic.Int32
			lb, err := New(Options{
				Backends: []BackendConfig{{Address: srv.addr()}},
				Peer:     peer,
				HealthCheck: &HealthCheck{
					Type: CheckHTTP, Interval: fastInterval, Timeout: time.Second,
					Path: "/healthz", ExpectStatus: "2xx", ExpectBody: "ready", Rise: 2, Fall: 3,
				},
				Observer: ObserverFunc(func(e Event) {
					// Snapshot the origin's counters at the transition itself.
					switch e.Kind {
					case BackendDown:
						badAtDown.Store(srv.bad.Load())
					case BackendUp:
						okAtUp.Store(srv.ok.Load())
					}
					ev.Observe(e)
				}),
				Logger: quietLogger(),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { lb.Close() })
			b := lb.Backends()[0]
			waitFor(t, "two passed checks", func() bool { return srv.ok.Load() >= 2 })
			if !b.Healthy() {
				t.Fatalf("got unhealthy after passed checks (last error %v)", b.Status().LastError)
			}

			srv.status.Store(500)
			waitFor(t, "backend down", func() bool { return ev.count(BackendDown) == 1 })
			if got := badAtDown.Load(); got != 3 {
				t.Errorf("went down after %d failed checks, want fall=3", got)
			}
			if lb.Select(nil) != nil {
				t.Fatal("down backend was selected")
			}

			okBefore := srv.ok.Load() // no check answers 200 until the flip
			srv.status.Store(200)
			waitFor(t, "backend up", func() bool { return ev.count(BackendUp) == 1 })
			if got := okAtUp.Load() - okBefore; got != 2 {
				t.Errorf("came up after %d passed checks, want rise=2", got)
			}
			if sel := lb.Select(nil); sel != b {
				t.Fatal("recovered backend was not selected")
			} else {
				sel.Done(true)
			}
		})
	}
}

func TestHTTPCheckBodyAndStatus(t *testing.T) {
	srv := newStatusServer(t, false)
	tests := []struct {
		name string
		hc   HealthCheck
		up   bool
	}{
		{"body found", HealthCheck{ExpectBody: "ready"}, true},
		{"body missing", HealthCheck{ExpectBody: "draining"}, false},
		{"status not expected", HealthCheck{ExpectStatus: "204"}, false},
		{"wrong path gets 404", HealthCheck{Path: "/other"}, false},
		{"host header override", HealthCheck{Host: "wrong.test"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := tt.hc
			hc.Type = CheckHTTP
			hc.Interval = time.Hour
			if hc.Path == "" {
				hc.Path = "/healthz"
			}
			hc.StartUnhealthy = true
			lb, err := New(Options{
				Backends:    []BackendConfig{{Address: srv.addr()}},
				Peer:        &upstream.Peer{Host: "origin.test"},
				HealthCheck: &hc,
				Logger:      quietLogger(),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { lb.Close() })
			b := lb.Backends()[0]
			waitFor(t, "first check", func() bool { return !b.Status().LastCheck.IsZero() })
			if got := b.Healthy(); got != tt.up {
				t.Errorf("got healthy=%v (err %v), want %v", got, b.Status().LastError, tt.up)
			}
		})
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestTCPCheck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	open, closed := l.Addr().String(), closedPort(t)
	var ev eventLog
	lb, err := New(Options{
		Backends:    []BackendConfig{{Address: open}, {Address: closed}},
		HealthCheck: &HealthCheck{Interval: fastInterval, Timeout: time.Second},
		Observer:    &ev,
		Logger:      quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	// A never-checked backend goes down at its first failed check.
	waitFor(t, "closed port down", func() bool { return !lb.Backend(closed).Healthy() })
	if !lb.Backend(open).Healthy() {
		t.Fatalf("listening backend is down: %v", lb.Backend(open).Status().LastError)
	}
	for range 20 {
		b := lb.Select(nil)
		if b == nil || b.Address != open {
			t.Fatalf("got %v, want only %s", b, open)
		}
		b.Done(true)
	}
	if got := ev.count(BackendDown); got != 1 {
		t.Errorf("got %d down events, want 1", got)
	}
}

func TestTLSCheck(t *testing.T) {
	srv := newStatusServer(t, true)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	tests := []struct {
		name string
		tls  *upstream.TLSOptions
		up   bool
	}{
		{"trusted", &upstream.TLSOptions{RootCAs: pool, ServerName: "example.com"}, true},
		{"wrong server name", &upstream.TLSOptions{RootCAs: pool, ServerName: "other.test"}, false},
		{"untrusted", &upstream.TLSOptions{ServerName: "example.com"}, false},
		{"insecure", &upstream.TLSOptions{InsecureSkipVerify: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lb, err := New(Options{
				Backends:    []BackendConfig{{Address: srv.addr(), Peer: &upstream.Peer{TLS: tt.tls}}},
				HealthCheck: &HealthCheck{Type: CheckTLS, Interval: time.Hour, StartUnhealthy: true},
				Logger:      quietLogger(),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { lb.Close() })
			b := lb.Backends()[0]
			waitFor(t, "first check", func() bool { return !b.Status().LastCheck.IsZero() })
			if got := b.Healthy(); got != tt.up {
				t.Errorf("got healthy=%v (err %v), want %v", got, b.Status().LastError, tt.up)
			}
		})
	}
}

func TestStartUnhealthy(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	lb, err := New(Options{
		Backends:    []BackendConfig{{Address: srv.Listener.Addr().String()}},
		HealthCheck: &HealthCheck{Type: CheckHTTP, Interval: time.Hour, StartUnhealthy: true},
		Logger:      quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	if b := lb.Select(nil); b != nil {
		t.Fatal("got a backend before its first check passed, want nil")
	}
}

func TestParseStatusSet(t *testing.T) {
	tests := []struct {
		in      string
		in200   bool
		in404   bool
		wantErr bool
	}{
		{"2xx", true, false, false},
		{"200-399", true, false, false},
		{"200, 404", true, true, false},
		{"4XX", false, true, false},
		{"6xx", false, false, true},
		{"300-200", false, false, true},
		{"abc", false, false, true},
		{"", false, false, true},
		{"99", false, false, true},
	}
	for _, tt := range tests {
		s, err := parseStatusSet(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("%q: got err %v, want error=%v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if s.contains(200) != tt.in200 || s.contains(404) != tt.in404 {
			t.Errorf("%q: got 200:%v 404:%v, want %v %v", tt.in, s.contains(200), s.contains(404), tt.in200, tt.in404)
		}
	}
	if _, err := New(Options{HealthCheck: &HealthCheck{ExpectStatus: "2yy"}}); err == nil ||
		!strings.Contains(err.Error(), "health check") {
		t.Errorf("New with a bad status: got %v, want a health check error", err)
	}
}

func TestHTTPCheckHTTP2(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			w.WriteHeader(http.StatusHTTPVersionNotSupported)
		}
	})
	tlsSrv := httptest.NewUnstartedServer(h)
	tlsSrv.EnableHTTP2 = true
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	h2cSrv := httptest.NewUnstartedServer(h)
	h2cSrv.Config.Protocols = new(http.Protocols)
	h2cSrv.Config.Protocols.SetUnencryptedHTTP2(true)
	h2cSrv.Start()
	t.Cleanup(h2cSrv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(tlsSrv.Certificate())
	tests := []struct {
		name string
		addr string
		peer upstream.Peer
	}{
		{"h2 over tls", tlsSrv.Listener.Addr().String(), upstream.Peer{Protocol: upstream.HTTP2,
			TLS: &upstream.TLSOptions{RootCAs: pool, ServerName: "example.com"}}},
		{"h2c prior knowledge", h2cSrv.Listener.Addr().String(), upstream.Peer{Protocol: upstream.HTTP2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lb, err := New(Options{
				Backends:    []BackendConfig{{Address: tt.addr, Peer: &tt.peer}},
				HealthCheck: &HealthCheck{Type: CheckHTTP, Interval: time.Hour, StartUnhealthy: true},
				Logger:      quietLogger(),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { lb.Close() })
			b := lb.Backends()[0]
			waitFor(t, "first check", func() bool { return !b.Status().LastCheck.IsZero() })
			if !b.Healthy() {
				t.Errorf("got unhealthy: %v", b.Status().LastError)
			}
		})
	}
}
