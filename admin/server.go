package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults and limits of the admin server.
const (
	// DefaultAddr is the admin listener's address when Server.Addr is empty: loopback only.
	DefaultAddr = "127.0.0.1:9901"
	// DefaultMaxBodyBytes bounds a request body (a configuration) when Server.MaxBodyBytes is 0.
	DefaultMaxBodyBytes = 4 << 20

	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	// writeTimeout leaves room for a configuration load that opens listeners and runs first
	// health checks.
	writeTimeout   = 60 * time.Second
	idleTimeout    = 120 * time.Second
	maxHeaderBytes = 64 << 10
)

// Server is the admin API server. Set its fields, then call Start (or Serve with a listener
// of your own) and, to stop, Shutdown. Fields must not change after Start.
type Server struct {
	// Addr is the TCP address to listen on. Empty means DefaultAddr (127.0.0.1:9901).
	Addr string
	// Token is the bearer token every endpoint but /healthz requires, sent as
	// "Authorization: Bearer <token>", at least MinTokenBytes long. Empty means no
	// authentication, which is only allowed on a loopback address: Start and Serve refuse any
	// other address without a token.
	Token string
	// AllowedHosts are extra host names, optionally with ":port", accepted in the Host and
	// Origin fields (for example the name of a TLS proxy in front). Without them only the
	// listen address and, on a loopback or wildcard address, localhost, 127.0.0.1 and [::1]
	// (and on a wildcard address the machine's interface addresses) with the listening port
	// are accepted: a web page that rebinds its DNS name to the admin address is refused.
	AllowedHosts []string
	// Controller is the running server the API drives. Required.
	Controller Controller
	// Metrics serves GET /metrics (observe.Metrics.Handler). Nil means /metrics answers 404.
	Metrics http.Handler
	// MaxBodyBytes bounds request bodies; larger ones get 413. Zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger receives configuration changes made through the API and server errors. Nil
	// means slog.Default().
	Logger *slog.Logger
	// Dashboard serves the web dashboard under /dashboard/ (and redirects / there). Its
	// static files need no token; the data they show comes from the API, which does.
	Dashboard bool
	// Timeline feeds GET /stats and the live stream GET /stats/events. Nil means both
	// answer 501 (the dashboard then shows no charts).
	Timeline Timeline

	mu      sync.Mutex
	srv     *http.Server
	ln      net.Listener
	handler http.Handler
	once    sync.Once
	hosts   atomic.Pointer[hostPolicy]

	streams   atomic.Int64 // open GET /stats/events streams
	closeOnce sync.Once
	closeMu   sync.Mutex
	closing   chan struct{} // closed at Shutdown: ends the streams
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Server) addr() string {
	if s.Addr == "" {
		return DefaultAddr
	}
	return s.Addr
}

func (s *Server) maxBody() int64 {
	if s.MaxBodyBytes > 0 {
		return s.MaxBodyBytes
	}
	return DefaultMaxBodyBytes
}

// check validates the fields that do not depend on the listener.
func (s *Server) check() error {
	if s.Controller == nil {
		return errors.New("admin: Server.Controller is nil")
	}
	return checkToken(s.Token)
}

// Start validates the configuration, listens on Addr and serves in the background until
// Shutdown. ctx bounds only the listen call. It refuses a non-loopback Addr when Token is
// empty, and a Token shorter than MinTokenBytes.
func (s *Server) Start(ctx context.Context) error {
	if err := s.check(); err != nil {
		return err
	}
	addr := s.addr()
	if s.Token == "" && !isLoopbackAddr(addr) {
		return errNotLoopback(addr)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("admin: listen: %w", err)
	}
	srv, err := s.prepare(ln)
	if err != nil {
		ln.Close()
		return err
	}
	go s.serveBackground(srv, ln)
	return nil
}

// serveBackground is the goroutine Start runs; Shutdown ends it.
func (s *Server) serveBackground(srv *http.Server, ln net.Listener) {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.logger().Error("admin server stopped", "err", err)
	}
}

// Serve serves the API on ln until Shutdown, then returns nil. It refuses a listener that is
// not on a loopback address (or a Unix socket) when Token is empty, and closes ln on return.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.check(); err != nil {
		ln.Close()
		return err
	}
	if s.Token == "" && !isLocalListener(ln.Addr()) {
		ln.Close()
		return errNotLoopback(ln.Addr().String())
	}
	srv, err := s.prepare(ln)
	if err != nil {
		ln.Close()
		return err
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: serve: %w", err)
	}
	return nil
}

// prepare builds the http.Server for ln; a Server serves one listener.
func (s *Server) prepare(ln net.Listener) (*http.Server, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil, errors.New("admin: server already started")
	}
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.logger().Handler(), slog.LevelWarn),
	}
	s.srv.RegisterOnShutdown(s.endStreams)
	s.ln = ln
	s.hosts.Store(newHostPolicy(ln.Addr(), s.addr(), s.AllowedHosts))
	return s.srv, nil
}

// ListenAddr returns the address the server listens on, nil before Start or Serve.
func (s *Server) ListenAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops the server gracefully: it ends the live streams (GET /stats/events), closes
// the listener, then waits for requests in progress until ctx ends, then closes the
// remaining connections. Without Start or Serve (Handler mounted on a server of your own)
// it only ends the streams, which that server's Shutdown would otherwise wait for.
func (s *Server) Shutdown(ctx context.Context) error {
	s.endStreams()
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	return nil
}

func errNotLoopback(addr string) error {
	return fmt.Errorf("admin: refusing to serve on %q without a token: the admin API can change the "+
		"configuration, so on a non-loopback address it requires a bearer token (set admin.token) "+
		"or listen on 127.0.0.1", addr)
}

// isLoopbackAddr reports whether a host:port names only loopback interfaces: "localhost" or
// a loopback IP. An empty or unspecified host (all interfaces) and other names are not.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// isLocalListener reports whether a listener's address is loopback or a Unix socket.
func isLocalListener(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return isLoopbackAddr(a.String())
}

// authorized reports whether r carries the bearer token, comparing in constant time (the
// SHA-256 digests are compared so the token's length does not leak either).
func (s *Server) authorized(r *http.Request) bool {
	if s.Token == "" {
		return true
	}
	h := r.Header.Get("Authorization")
	const scheme = "bearer "
	if len(h) < len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(h[len(scheme):])))
	want := sha256.Sum256([]byte(s.Token))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}
