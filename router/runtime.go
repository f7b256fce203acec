package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/acl"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/h2"
	"github.com/verge-edge/verge/h3"
	"github.com/verge-edge/verge/http1"
	"github.com/verge-edge/verge/overload"
	"github.com/verge-edge/verge/server"
)

// Options configure a Runtime.
type Options struct {
	// Deps are shared by every config generation. Deps.Transport is required.
	Deps
	// Listen opens listening sockets. Nil means net.Listen. The verge binary passes the
	// upgrader's Listen so sockets are inherited across binary upgrades.
	Listen func(network, addr string) (net.Listener, error)
	// ListenPacket opens the UDP sockets of listeners with HTTP/3 enabled. Nil means
	// net.ListenPacket. The verge binary passes the upgrader's ListenPacket.
	ListenPacket func(network, addr string) (net.PacketConn, error)
	// ConnHook is told of every client connection opened (+1) and closed (-1) with its
	// protocol (QUIC connections once their handshake completed). Nil means none.
	ConnHook func(proto string, delta int)
	// ShedHook is told of every connection or request a listener's client limits refused,
	// with the reason (server.ShedConnsPerClient, ...). Nil means none.
	ShedHook func(listener, reason string)
	// HandshakeHook is told the outcome of every QUIC handshake: "ok", "failed" or
	// "refused". Nil means none.
	HandshakeHook func(result string)
	// StartBeforeWorkers makes the first Apply start serving before the config's workers
	// are deployed: the listeners accept at once, routes without a worker answer, and a
	// request for a worker waits until that worker is ready (each worker is switched in as
	// soon as it is, in parallel; a request waits at most worker.DefaultPendingWait). Apply
	// still returns only when every worker is deployed, or with the error of those that
	// failed, whose routes then answer 503 (the listeners stay up: Close the runtime to
	// stop). False means the first Apply deploys the workers before it listens, as every
	// later Apply does (the verge binary sets it unless it takes over from a process it
	// upgrades, which serves meanwhile).
	StartBeforeWorkers bool
}

// Runtime runs the listeners of the current config generation and swaps generations on
// Apply: new requests use the new routes at once, requests in flight finish on the old ones,
// and listening sockets whose address stays are kept open throughout.
type Runtime struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex // serializes Apply, Shutdown and Close
	cur       atomic.Pointer[Instance]
	listeners map[string]*lstate    // by listener name
	sockets   map[string]*Handoff   // by configured address
	udp       map[string]*h3.Socket // HTTP/3 sockets by configured address
	l4        l4Set                 // the l4 listeners (l4.go)
	stopped   bool
	bg        sync.WaitGroup // servers and old generations being drained
}

// lstate is one running listener.
type lstate struct {
	name    string
	key     serverKey
	sock    *Handoff
	srv     *server.Server
	tlsCur  atomic.Pointer[tls.Config]
	tickets *ticketKeys
	vl      net.Listener  // the server's listener on sock
	served  chan struct{} // closed when Serve has returned
	h3      *h3.Server    // nil unless HTTP/3 is enabled
}

// stop drains the listener's server gracefully. server.Server.Shutdown cancels the context
// the protocol adapters serve with, which the h2 adapter takes as "close every connection
// now"; so h2 connections are drained first with the adapter's own graceful Shutdown
// (GOAWAY, streams run to completion), then the server's Shutdown closes idle HTTP/1
// connections and the busy ones after their current response.
func (ls *lstate) stop(ctx context.Context) error {
	ls.vl.Close()
	h3done := make(chan error, 1)
	if ls.h3 != nil {
		go func() { h3done <- ls.h3.Shutdown(ctx) }()
	} else {
		h3done <- nil
	}
	var err error
	if ls.key.h2 {
		err = ls.srv.HTTP2.Shutdown(ctx)
	}
	err = errors.Join(err, ls.srv.Shutdown(ctx), <-h3done)
	if ls.tickets != nil {
		ls.tickets.close()
	}
	return err
}

// serverKey is what a server is built from; when it changes on reload the listener gets a
// new server (on the same socket when the address stays).
type serverKey struct {
	address  string
	tls      bool
	h2       bool
	timeouts config.ListenerTimeouts
	limits   string // config.ListenerLimits printed (it holds a slice)
	maxConns int
	http3    config.ListenerHTTP3
	proxy    string // config.ProxyProtocol printed, empty without one
}

func keyOf(l *config.Listener) serverKey {
	return serverKey{
		address:  l.Address,
		tls:      l.TLS != nil,
		h2:       slices.Contains(l.Protocols, "h2"),
		timeouts: l.Timeouts,
		limits:   fmt.Sprintf("%+v", l.Limits),
		maxConns: l.MaxConns,
		http3:    l.HTTP3,
		proxy:    proxyProtocolKey(l.ProxyProtocol),
	}
}

// NewRuntime returns a Runtime with nothing running; the first Apply starts it.
func NewRuntime(opts Options) *Runtime {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Listen == nil {
		opts.Listen = net.Listen
	}
	if opts.ListenPacket == nil {
		opts.ListenPacket = net.ListenPacket
	}
	return &Runtime{opts: opts, log: opts.Logger, listeners: map[string]*lstate{},
		sockets: map[string]*Handoff{}, udp: map[string]*h3.Socket{}}
}

// Current returns the generation in effect, nil before the first Apply.
func (rt *Runtime) Current() *Instance { return rt.cur.Load() }

// Addr returns the bound address of the named listener (useful with port 0), or nil.
func (rt *Runtime) Addr(listener string) net.Addr {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if ls := rt.listeners[listener]; ls != nil {
		return ls.sock.ln.Addr()
	}
	return nil
}

// ErrStopped is returned by Apply after Shutdown or Close.
var ErrStopped = errors.New("router: runtime stopped")

// Apply makes cfg the configuration in effect. The first call opens the listeners; later
// calls are reloads. If building the new generation or opening a new socket fails, nothing
// changes and the error is returned: the old configuration keeps serving. The workers that
// changed are compiled while the old configuration (and their old versions) keep serving,
// and switched over with the new routes. (With Options.StartBeforeWorkers the first call
// serves first and deploys the workers after.)
func (rt *Runtime) Apply(cfg *config.Config) error {
	pending, err := rt.apply(cfg)
	if err != nil || pending == nil {
		return err
	}
	// Serving already: the workers of the first configuration are deployed now, without
	// holding rt.mu (a Close need not wait for them).
	start := time.Now()
	if err := pending(); err != nil {
		return fmt.Errorf("deploying the workers: %w", err)
	}
	rt.log.Info("workers deployed", "workers", len(cfg.Workers), "took", time.Since(start))
	return nil
}

// apply is Apply under rt.mu; it returns the deploys still to do of a first configuration
// started before its workers.
func (rt *Runtime) apply(cfg *config.Config) (func() error, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.stopped {
		return nil, ErrStopped
	}
	// Open the sockets for new addresses first, so a failure changes nothing, and so that
	// health checks of backends served by this process find them bound. Connections wait in
	// the kernel's backlog until a server attaches.
	opened := map[string]*Handoff{}
	closeOpened := func() {
		for _, s := range opened {
			s.close()
		}
		rt.l4.discardPending()
	}
	for i := range cfg.Listeners {
		addr := cfg.Listeners[i].Address
		if rt.sockets[addr] != nil || opened[addr] != nil {
			continue
		}
		ln, err := rt.opts.Listen("tcp", addr)
		if err != nil {
			closeOpened()
			return nil, fmt.Errorf("listener %q: %w", cfg.Listeners[i].Name, err)
		}
		opened[addr] = newHandoff(ln, rt.log)
	}
	if err := rt.openL4(cfg, opened); err != nil {
		closeOpened()
		return nil, err
	}
	l4settings, err := buildL4(cfg)
	if err != nil {
		closeOpened()
		return nil, err
	}
	// HTTP/3 listens on the UDP port with the number the TCP socket got.
	openedUDP := map[string]*h3.Socket{}
	closeOpenedUDP := func() {
		for _, s := range openedUDP {
			s.Close()
		}
	}
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		if !l.HTTP3.Enabled || rt.udp[l.Address] != nil || openedUDP[l.Address] != nil {
			continue
		}
		tcp := rt.sockets[l.Address]
		if tcp == nil {
			tcp = opened[l.Address]
		}
		pc, err := rt.opts.ListenPacket("udp", tcp.Addr().String())
		if err != nil {
			closeOpened()
			closeOpenedUDP()
			return nil, fmt.Errorf("listener %q: http3: %w", l.Name, err)
		}
		openedUDP[l.Address] = h3.NewSocket(pc)
	}
	inst, err := newInstance(cfg, rt.opts.Deps, rt.opts.StartBeforeWorkers && rt.cur.Load() == nil)
	if err != nil {
		closeOpened()
		closeOpenedUDP()
		return nil, err
	}
	for a, s := range opened {
		rt.sockets[a] = s
	}
	for a, s := range openedUDP {
		rt.udp[a] = s
	}

	grace := cfg.Shutdown.GracePeriod.Std()
	next := map[string]*lstate{}
	var retired []*lstate
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		key := keyOf(l)
		if old := rt.listeners[l.Name]; old != nil && old.key == key {
			old.srv.SetHandler(inst.Handler(l.Name))
			if old.h3 != nil {
				old.h3.SetHandler(inst.Handler(l.Name).ServeExchange)
			}
			if tc := inst.TLSConfig(l.Name); tc != nil {
				old.tickets.attach(tc, l.TLS.SessionTicketRotation.Std())
				old.tlsCur.Store(tc)
			}
			next[l.Name] = old
			delete(rt.listeners, l.Name)
			continue
		}
		ls := rt.newListener(l, key, inst)
		next[l.Name] = ls
		if old := rt.listeners[l.Name]; old != nil {
			retired = append(retired, old)
			delete(rt.listeners, l.Name)
		}
	}
	for _, old := range rt.listeners {
		retired = append(retired, old)
	}
	rt.listeners = next
	prev := rt.cur.Swap(inst)
	if mon := rt.opts.Overload; mon != nil {
		o := cfg.Overload
		mon.SetThresholds(overload.Thresholds{CPU: o.CPU, Memory: int64(o.Memory), QueueDelay: o.QueueDelay.Std()})
	}

	// Sockets no listener uses any more stop accepting now.
	inUse := map[string]bool{}
	for _, ls := range next {
		inUse[ls.key.address] = true
	}
	rt.applyL4(cfg, l4settings, inUse)
	for addr, s := range rt.sockets {
		if !inUse[addr] {
			s.close()
			delete(rt.sockets, addr)
		}
	}
	for _, ls := range retired {
		if ls.h3 != nil {
			ls.h3.StopAccepting()
		}
	}
	rt.closeUnusedUDP(next, retired, grace)
	for _, ls := range retired {
		rt.bg.Add(1)
		go rt.retire(ls, grace)
	}
	if prev != nil {
		rt.bg.Add(1)
		go rt.closeInstance(prev, grace)
	}
	return inst.pending, nil
}

// clientLimits converts a listener's per-client caps (validated) for the server.
func (rt *Runtime) clientLimits(l *config.ListenerLimits) server.ClientLimits {
	c := server.ClientLimits{
		MaxConnsPerClient:     l.MaxConnsPerClient,
		ConnRatePerClient:     l.ConnRatePerClient,
		AcceptRate:            l.AcceptRate,
		MaxRequestsPerClient:  l.MaxRequestsPerClient,
		MaxBodyBytesPerClient: int64(l.MaxBodyBytesPerClient),
		UnknownBodyBytes:      int64(l.MaxBody),
		IPv4Prefix:            l.ClientIPv4Prefix,
		IPv6Prefix:            l.ClientIPv6Prefix,
		ShedOverMaxConns:      l.ShedOverMaxConns,
		Respond:               l.ShedResponse == "503",
	}
	if mon := rt.opts.Overload; mon != nil {
		c.ShedForOverload = func(held int) bool {
			if !mon.Overloaded() {
				return false
			}
			if in := rt.cur.Load(); in != nil && held < in.Config.Overload.ConnsPerClient {
				return false
			}
			mon.ShedConns.Add(1)
			return true
		}
	}
	for _, e := range l.ClientExempt {
		if p, err := acl.ParsePrefix(e); err == nil {
			c.Exempt = append(c.Exempt, p)
		}
	}
	return c
}

// newListener builds and starts the server of one listener on its socket.
func (rt *Runtime) newListener(l *config.Listener, key serverKey, inst *Instance) *lstate {
	ls := &lstate{name: l.Name, key: key, sock: rt.sockets[l.Address], served: make(chan struct{})}
	t, lim := l.Timeouts, l.Limits
	srv := &server.Server{
		Handler: inst.Handler(l.Name),
		HTTP1: http1.Server{
			Limits: http1.Limits{
				MaxRequestLine: int(lim.MaxRequestLine),
				MaxHeaderBytes: int(lim.MaxHeaderBytes),
				MaxHeaders:     lim.MaxHeaders,
				MaxBodySize:    int64(lim.MaxBody),
			},
			ReadHeaderTimeout: t.ReadHeader.Std(),
			IdleTimeout:       t.Idle.Std(),
			BodyReadTimeout:   t.BodyRead.Std(),
			WriteTimeout:      t.Write.Std(),
			Logger:            rt.log,
			OnReject:          rt.logReject,
		},
		HTTP2: h2.Server{
			MaxHeaderListSize: uint32(min(int64(lim.MaxHeaderBytes), 1<<30)),
			MaxBodySize:       int64(lim.MaxBody),
			IdleTimeout:       t.Idle.Std(),
			WriteByteTimeout:  t.Write.Std(),
			SendTimeout:       t.Write.Std(),
			BodyReadTimeout:   t.BodyRead.Std(),
		},
		DisableHTTP2: !key.h2,
		MaxConns:     l.MaxConns,
		Limits:       rt.clientLimits(&lim),
		ConnHook:     rt.opts.ConnHook,
		Logger:       rt.log,
	}
	if h := rt.opts.ShedHook; h != nil {
		name := l.Name
		srv.ShedHook = func(reason string) { h(name, reason) }
	}
	if tc := inst.TLSConfig(l.Name); tc != nil {
		ls.tlsCur.Store(tc)
		ls.tickets = newTicketKeys(l.TLS.SessionTicketRotation.Std())
		ls.tickets.attach(tc, l.TLS.SessionTicketRotation.Std())
		srv.TLSConfig = &tls.Config{
			NextProtos: tc.NextProtos,
			GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				tc := ls.tlsCur.Load()
				if tc.GetConfigForClient != nil { // e.g. the ACME TLS-ALPN-01 validation
					if c, err := tc.GetConfigForClient(h); c != nil || err != nil {
						return c, err
					}
				}
				return tc, nil
			},
		}
	}
	if l.HTTP3.Enabled && srv.TLSConfig != nil {
		rt.startH3(ls, l, inst)
		srv.AltSvc = altSvc(ls.sock.Addr(), l.HTTP3.AltSvcMaxAge.Std())
	}
	ls.srv = srv
	ls.vl = rt.proxyProtocol(l, ls.sock.attach())
	rt.bg.Add(1)
	go rt.serve(ls)
	return ls
}

// logReject counts and logs a request the HTTP/1 codec rejected, in the generation in effect.
func (rt *Runtime) logReject(r http1.Reject) {
	if in := rt.cur.Load(); in != nil {
		in.logReject(r)
	}
}

// serve runs one listener's server until it is shut down.
func (rt *Runtime) serve(ls *lstate) {
	defer rt.bg.Done()
	defer close(ls.served)
	err := ls.srv.Serve(ls.vl)
	if err != nil && !errors.Is(err, server.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		rt.log.Error("listener stopped", "listener", ls.name, "err", err)
	}
}

// retire drains a listener server that a reload replaced or removed.
func (rt *Runtime) retire(ls *lstate, grace time.Duration) {
	defer rt.bg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := ls.stop(ctx); err != nil {
		rt.log.Warn("listener drain cut short", "listener", ls.name, "err", err)
	}
}

// closeInstance closes a replaced generation once its requests are done.
func (rt *Runtime) closeInstance(in *Instance, grace time.Duration) {
	defer rt.bg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := in.Close(ctx); err != nil {
		rt.log.Warn("old configuration closed with requests in flight", "err", err)
	}
}

// AwaitH3Handshakes returns once no HTTP/3 listener has a QUIC handshake in flight, or when
// ctx ends (h3.Server.AwaitHandshakes: the old process of an upgrade finishes the
// connection attempts it began instead of refusing them).
func (rt *Runtime) AwaitH3Handshakes(ctx context.Context) error {
	rt.mu.Lock()
	var hs []*h3.Server
	for _, ls := range rt.listeners {
		if ls.h3 != nil {
			hs = append(hs, ls.h3)
		}
	}
	rt.mu.Unlock()
	for _, h := range hs {
		if err := h.AwaitHandshakes(ctx); err != nil {
			return err
		}
	}
	return nil
}

// StopAccepting closes every listening socket, so new connections go elsewhere (to the new
// process during a binary upgrade); connections already accepted keep being served.
func (rt *Runtime) StopAccepting() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for addr, s := range rt.sockets {
		s.close()
		delete(rt.sockets, addr)
	}
	for _, ls := range rt.listeners {
		if ls.h3 != nil {
			ls.h3.StopAccepting()
		}
	}
	rt.closeUDP() // l4 udp: the new process reads the sockets; flows here end
}

// Shutdown stops accepting, lets requests in flight finish (HTTP/1.1 keep-alive connections
// are closed after their current response, HTTP/2 ones get GOAWAY), and returns when all
// connections are closed or ctx ends, in which case the remaining connections are closed.
func (rt *Runtime) Shutdown(ctx context.Context) error {
	rt.mu.Lock()
	rt.stopped = true
	for addr, s := range rt.sockets {
		s.close()
		delete(rt.sockets, addr)
	}
	listeners := rt.listeners
	rt.listeners = map[string]*lstate{}
	rt.mu.Unlock()

	var wg sync.WaitGroup
	errs := make(chan error, len(listeners))
	for _, ls := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ls.stop(ctx); err != nil {
				errs <- fmt.Errorf("listener %q: %w", ls.name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	err := errors.Join(collect(errs)...)
	rt.mu.Lock()
	err = errors.Join(err, rt.shutdownL4(ctx))
	rt.closeAllUDP()
	rt.mu.Unlock()
	if in := rt.cur.Load(); in != nil {
		err = errors.Join(err, in.Close(ctx))
	}
	done := make(chan struct{})
	go func() { rt.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, ctx.Err())
	}
	return err
}

// Close stops at once: sockets and connections are closed, requests in flight fail.
func (rt *Runtime) Close() error {
	rt.mu.Lock()
	rt.stopped = true
	for addr, s := range rt.sockets {
		s.close()
		delete(rt.sockets, addr)
	}
	listeners := rt.listeners
	rt.listeners = map[string]*lstate{}
	rt.mu.Unlock()
	for _, ls := range listeners {
		ls.srv.Close()
		if ls.h3 != nil {
			ls.h3.Close()
		}
		if ls.tickets != nil {
			ls.tickets.close()
		}
	}
	rt.mu.Lock()
	rt.closeL4()
	rt.closeAllUDP()
	rt.mu.Unlock()
	if in := rt.cur.Load(); in != nil {
		in.closed.Store(true)
		in.release()
	}
	return nil
}

func collect(ch <-chan error) []error {
	var out []error
	for e := range ch {
		out = append(out, e)
	}
	return out
}
