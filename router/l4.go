package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/internal/proxyproto"
	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/observe"
)

// maxClientHello bounds the bytes read to find the server name of a TLS ClientHello for SNI
// routing without terminating TLS.
const maxClientHello = 64 << 10

// l4Attempts is how many servers a TCP connection tries before it is closed.
const l4Attempts = 3

// l4Set holds the running l4 listeners of a Runtime, by name, and the replaced ones whose
// connections may still be going.
type l4Set struct {
	servers map[string]*l4Server
	retired []*l4Server
	udp     map[string]*udpServer     // by name
	packets map[string]net.PacketConn // udp sockets by configured address
	pending map[string]net.PacketConn // opened for a generation not yet in effect
}

// discardPending closes the udp sockets opened for a generation that failed.
func (s *l4Set) discardPending() {
	for _, pc := range s.pending {
		pc.Close()
	}
	s.pending = nil
}

// l4Server is one running l4 listener: it accepts on its socket and proxies each connection
// under the settings in effect when it was accepted. A reload that keeps its address and
// TLS/PROXY settings swaps its settings in place; connections in progress keep going.
type l4Server struct {
	rt     *Runtime
	name   string
	key    string // what needs a new server when it changes
	sock   *Handoff
	ln     net.Listener
	cur    atomic.Pointer[l4Settings]
	sem    chan struct{}
	conns  sync.Map // net.Conn -> struct{}: the client connections, closed by closeAll
	active atomic.Int64
	wg     sync.WaitGroup
	done   chan struct{} // closed when the accept loop has returned
}

// l4Settings are the parts of an l4 listener a reload may change in place.
type l4Settings struct {
	cfg *config.L4Listener
	tls *tls.Config // nil: no termination
	sni sniTable
}

// sniTable maps server names to groups: exact names, then one-label wildcards.
type sniTable struct {
	exact map[string]string
	wild  map[string]string // ".example.com" for "*.example.com"
}

func newSNITable(routes []config.SNIRoute) sniTable {
	t := sniTable{exact: map[string]string{}, wild: map[string]string{}}
	for _, r := range routes {
		for _, n := range r.ServerNames {
			n = strings.ToLower(n)
			if suffix, ok := strings.CutPrefix(n, "*"); ok {
				t.wild[suffix] = r.Upstream
			} else {
				t.exact[n] = r.Upstream
			}
		}
	}
	return t
}

// group returns the group of server name n, or def.
func (t *sniTable) group(n, def string) string {
	n = strings.ToLower(strings.TrimSuffix(n, "."))
	if g, ok := t.exact[n]; ok {
		return g
	}
	if i := strings.IndexByte(n, '.'); i > 0 {
		if g, ok := t.wild[n[i:]]; ok {
			return g
		}
	}
	return def
}

func l4Key(l *config.L4Listener) string {
	return fmt.Sprintf("%s|%d|%s", l.Address, l.MaxConns, proxyProtocolKey(l.ProxyProtocol))
}

func newL4Settings(l *config.L4Listener) (*l4Settings, error) {
	s := &l4Settings{cfg: l, sni: newSNITable(l.SNIRoutes)}
	if l.TLS != nil {
		tc, err := buildServerTLS(&config.Listener{TLS: l.TLS}, nil) // no ACME on l4 listeners (validated)
		if err != nil {
			return nil, fmt.Errorf("l4 listener %q: %w", l.Name, err)
		}
		tc.NextProtos = nil // bytes, not HTTP: no ALPN
		s.tls = tc
	}
	return s, nil
}

// openL4 opens the sockets of l4 listeners whose address has none yet, into opened (the
// runtime's sockets map takes them with the HTTP listeners' ones).
func (rt *Runtime) openL4(cfg *config.Config, opened map[string]*Handoff) error {
	for i := range cfg.L4 {
		l := &cfg.L4[i]
		if l.Protocol == "udp" {
			if rt.l4.packets[l.Address] != nil || rt.l4.pending[l.Address] != nil {
				continue
			}
			pc, err := rt.opts.ListenPacket("udp", l.Address)
			if err != nil {
				return fmt.Errorf("l4 listener %q: %w", l.Name, err)
			}
			if rt.l4.pending == nil {
				rt.l4.pending = map[string]net.PacketConn{}
			}
			rt.l4.pending[l.Address] = pc
			continue
		}
		if rt.sockets[l.Address] != nil || opened[l.Address] != nil {
			continue
		}
		ln, err := rt.opts.Listen("tcp", l.Address)
		if err != nil {
			return fmt.Errorf("l4 listener %q: %w", l.Name, err)
		}
		opened[l.Address] = newHandoff(ln, rt.log)
	}
	return nil
}

// buildL4 builds the settings of every l4 listener of cfg, by name.
func buildL4(cfg *config.Config) (map[string]*l4Settings, error) {
	out := map[string]*l4Settings{}
	for i := range cfg.L4 {
		st, err := newL4Settings(&cfg.L4[i])
		if err != nil {
			return nil, err
		}
		out[cfg.L4[i].Name] = st
	}
	return out, nil
}

// applyL4 makes the l4 listeners of cfg the running ones. Called with rt.mu held once the
// generation is in effect and its sockets are in rt.sockets; it marks the addresses it uses
// in inUse.
func (rt *Runtime) applyL4(cfg *config.Config, settings map[string]*l4Settings, inUse map[string]bool) {
	if rt.l4.servers == nil {
		rt.l4.servers = map[string]*l4Server{}
	}
	live := rt.l4.retired[:0]
	for _, s := range rt.l4.retired {
		if s.active.Load() > 0 {
			live = append(live, s)
		}
	}
	clear(rt.l4.retired[len(live):])
	rt.l4.retired = live
	rt.applyUDP(cfg, settings)
	next := map[string]*l4Server{}
	for i := range cfg.L4 {
		l := &cfg.L4[i]
		if l.Protocol == "udp" {
			continue
		}
		inUse[l.Address] = true
		st := settings[l.Name]
		if old := rt.l4.servers[l.Name]; old != nil && old.key == l4Key(l) {
			old.cur.Store(st)
			next[l.Name] = old
			delete(rt.l4.servers, l.Name)
			continue
		}
		if old := rt.l4.servers[l.Name]; old != nil {
			old.ln.Close()
			rt.l4.retired = append(rt.l4.retired, old)
			delete(rt.l4.servers, l.Name)
		}
		next[l.Name] = rt.newL4Server(l, st, rt.sockets[l.Address])
	}
	for _, old := range rt.l4.servers {
		old.ln.Close() // connections in progress keep going
		rt.l4.retired = append(rt.l4.retired, old)
	}
	rt.l4.servers = next
}

func (rt *Runtime) newL4Server(l *config.L4Listener, st *l4Settings, sock *Handoff) *l4Server {
	s := &l4Server{rt: rt, name: l.Name, key: l4Key(l), sock: sock, sem: make(chan struct{}, l.MaxConns),
		done: make(chan struct{})}
	s.cur.Store(st)
	s.ln = rt.proxyProtocolL4(l, sock.attach())
	rt.log.Info("l4 listener started", "listener", l.Name, "protocol", "tcp", "addr", sock.Addr().String())
	go s.serve()
	return s
}

// proxyProtocolL4 wraps ln in a proxyListener when l reads PROXY headers.
func (rt *Runtime) proxyProtocolL4(l *config.L4Listener, ln net.Listener) net.Listener {
	if l.ProxyProtocol == nil {
		return ln
	}
	return newProxyListener(ln, l.ProxyProtocol, nil, rt.log)
}

// closeAll closes every connection in progress.
func (s *l4Server) closeAll() {
	s.conns.Range(func(k, _ any) bool {
		k.(net.Conn).Close()
		return true
	})
}

// serve accepts connections until the listener is closed.
func (s *l4Server) serve() {
	defer close(s.done)
	for {
		s.sem <- struct{}{}
		c, err := s.ln.Accept()
		if err != nil {
			<-s.sem
			if !errors.Is(err, net.ErrClosed) {
				s.rt.log.Error("l4 listener stopped", "listener", s.name, "err", err)
			}
			return
		}
		s.conns.Store(c, struct{}{})
		s.active.Add(1)
		s.wg.Add(1)
		go s.handle(c, s.cur.Load())
	}
}

// l4Conn is the state of one proxied connection, for its access log line.
type l4Conn struct {
	start    time.Time
	client   netip.AddrPort
	sni      string
	group    string
	upstream string
	attempts int
	in, out  atomic.Int64 // bytes client to server, server to client
	err      error
}

// handle proxies one client connection.
func (s *l4Server) handle(c net.Conn, st *l4Settings) {
	defer func() {
		s.conns.Delete(c)
		c.Close()
		s.active.Add(-1)
		<-s.sem
		s.wg.Done()
	}()
	cfg := st.cfg
	lc := &l4Conn{start: time.Now(), client: addrPortOf(c.RemoteAddr()), group: cfg.Upstream}
	defer s.logConn(lc)

	client := c
	var early []byte // bytes read from the client before the upstream is dialed
	switch {
	case st.tls != nil:
		tc := tls.Server(c, st.tls)
		ctx, cancel := context.WithTimeout(context.Background(), cfg.HandshakeTimeout.Std())
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			lc.err = fmt.Errorf("tls handshake: %w", err)
			return
		}
		lc.sni = tc.ConnectionState().ServerName
		client = tc
	case len(cfg.SNIRoutes) > 0:
		name, hello, err := peekServerName(c, cfg.HandshakeTimeout.Std())
		if err != nil {
			lc.err = fmt.Errorf("reading the TLS ClientHello: %w", err)
			return
		}
		lc.sni, early = name, hello
	}
	if len(cfg.SNIRoutes) > 0 {
		lc.group = st.sni.group(lc.sni, cfg.Upstream)
	}
	if lc.group == "" {
		lc.err = fmt.Errorf("no sni_routes entry for server name %q and no default upstream", lc.sni)
		return
	}
	in := s.rt.cur.Load()
	g := in.groups[lc.group]
	if g == nil {
		lc.err = fmt.Errorf("upstream group %q is gone", lc.group)
		return
	}
	up, b, err := s.dial(g, lc, c)
	if err != nil {
		lc.err = err
		return
	}
	defer up.Close()
	if len(early) > 0 {
		if _, err := up.Write(early); err != nil {
			g.bal.Report(b, err)
			lc.err = err
			return
		}
		lc.in.Add(int64(len(early)))
	}
	err = pipe(client, up, cfg.IdleTimeout.Std(), lc)
	b.Done(true)
	if err != nil {
		lc.err = err
	}
}

// dial connects to a server of g, trying up to l4Attempts servers, and writes the PROXY
// header the group asks for. The backend returned must be finished with Done or Report.
func (s *l4Server) dial(g *group, lc *l4Conn, c net.Conn) (net.Conn, *lb.Backend, error) {
	var key [18]byte
	a := lc.client.Addr().As16()
	copy(key[:], a[:])
	var lastErr error
	for range l4Attempts {
		b := g.bal.Select(key[:16])
		if b == nil {
			if lastErr == nil {
				lastErr = errors.New("no server available")
			}
			return nil, nil, fmt.Errorf("upstream %q: %w", lc.group, lastErr)
		}
		lc.attempts++
		lc.upstream = b.Address
		timeout := b.Peer.Timeouts.Connect
		if timeout <= 0 {
			timeout = config.DefaultConnectTimeout
		}
		d := net.Dialer{Timeout: timeout}
		up, err := d.Dial("tcp", b.Address)
		if err == nil && b.Peer.ProxyProtocol != 0 {
			up.SetWriteDeadline(time.Now().Add(timeout))
			err = proxyproto.Write(up, b.Peer.ProxyProtocol, lc.client, addrPortOf(c.LocalAddr()))
			up.SetWriteDeadline(time.Time{})
			if err != nil {
				up.Close()
			}
		}
		if err != nil {
			g.bal.Report(b, err)
			lastErr = err
			continue
		}
		return up, b, nil
	}
	return nil, nil, fmt.Errorf("upstream %q: %w", lc.group, lastErr)
}

// L4Metrics is the optional capability of a Metrics that counts l4 connections, flows and
// bytes (*observe.Metrics has it).
type L4Metrics interface {
	ObserveL4(listener, proto string, in, out int64, failed bool)
	L4Dropped(listener string)
}

var _ L4Metrics = (*observe.Metrics)(nil)

// observeL4 counts a finished connection or flow in the metrics, when they can.
func observeL4(in *Instance, listener, proto string, lc *l4Conn) {
	if m, ok := in.metric.(L4Metrics); ok {
		m.ObserveL4(listener, proto, lc.in.Load(), lc.out.Load(), lc.err != nil)
	}
}

// logConn writes the access log line and the metrics of a finished connection.
func (s *l4Server) logConn(lc *l4Conn) {
	in := s.rt.cur.Load()
	if in == nil {
		return
	}
	observeL4(in, s.name, "tcp", lc)
	if in.access == nil {
		return
	}
	rec := observe.Record{
		Time:          lc.start,
		RemoteAddr:    lc.client,
		Host:          lc.sni,
		Proto:         "TCP",
		BytesReceived: lc.in.Load(),
		BytesSent:     lc.out.Load(),
		Duration:      time.Since(lc.start),
		UpstreamAddr:  lc.upstream,
		Route:         s.name,
		Attempts:      lc.attempts,
		Error:         lc.err,
	}
	in.access.Log(&rec)
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// pipe copies bytes both ways until both directions have ended: an end of stream in one
// direction is passed on as a half-close (CloseWrite) and the other direction goes on. A
// connection with no bytes moved either way for idle is closed; a read or a write that is
// stuck counts as no bytes moved, so a client that half-closed and stopped reading cannot
// hold the connection forever. It returns the first error other than an end of stream.
func pipe(client, up net.Conn, idle time.Duration, lc *l4Conn) error {
	w := newIdleWatch(idle)
	errc := make(chan error, 2)
	go func() { errc <- copyHalf(up, client, w, 0, &lc.in) }()
	err := copyHalf(client, up, w, 1, &lc.out)
	err2 := <-errc
	if err == nil {
		err = err2
	}
	return err
}

// idleWatch decides when a piped connection is idle. Each direction copies in windows of at
// most idle/2 (the deadlines of its read and of its write); a window that moved no bytes
// extends the direction's known quiet time, one that moved bytes restarts it. Bytes moved
// inside a splice are only counted when the window returns, so the connection is idle only
// once the quiet times both directions have confirmed overlap for idle: a busy direction
// in the middle of a long transfer is never mistaken for a silent one.
type idleWatch struct {
	idle, window time.Duration
	mu           sync.Mutex
	quietFrom    [2]time.Time // since when direction i moved nothing, as far as it knows
	checked      [2]time.Time // up to when direction i has confirmed it (end of its last window)
}

func newIdleWatch(idle time.Duration) *idleWatch {
	now := time.Now()
	w := &idleWatch{idle: idle, window: max(idle/2, time.Millisecond)}
	w.quietFrom = [2]time.Time{now, now}
	w.checked = [2]time.Time{now, now}
	return w
}

// progress records the end of a window of direction i that moved bytes.
func (w *idleWatch) progress(i int) {
	now := time.Now()
	w.mu.Lock()
	w.quietFrom[i], w.checked[i] = now, now
	w.mu.Unlock()
}

// ended records that direction i has finished: it stays quiet from now on.
func (w *idleWatch) ended(i int) {
	now := time.Now()
	w.mu.Lock()
	w.quietFrom[i], w.checked[i] = now, time.Unix(1<<62, 0)
	w.mu.Unlock()
}

// quiet records the end of a window of direction i that moved nothing and reports whether
// the connection has now been idle for idle.
func (w *idleWatch) quiet(i int) bool {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.checked[i] = now
	from := w.quietFrom[0]
	if w.quietFrom[1].After(from) {
		from = w.quietFrom[1]
	}
	to := w.checked[0]
	if w.checked[1].Before(to) {
		to = w.checked[1]
	}
	return to.Sub(from) >= w.idle
}

// chunk is how much one splice or copy call moves at most.
const chunk = 4 << 20

// copyHalf copies src to dst until src ends, then half-closes dst; dir is its direction's
// index in w. On a failure or when idle it closes both, which ends the other direction too.
// On Linux, TCP to TCP is spliced by the kernel (net.TCPConn.ReadFrom with an
// io.LimitedReader over a *net.TCPConn).
func copyHalf(dst, src net.Conn, w *idleWatch, dir int, n *atomic.Int64) error {
	lr := &io.LimitedReader{R: src}
	_, splice := dst.(io.ReaderFrom)
	for {
		readBy := time.Now().Add(w.window)
		src.SetReadDeadline(readBy)
		writeBy := readBy.Add(w.idle)
		if splice {
			// A write started before readBy that has not finished by writeBy was stuck for
			// idle. (The write deadline must not fire while the read side can still go on:
			// bytes a splice has read but not written are dropped when its write fails.)
			dst.SetWriteDeadline(writeBy)
		}
		lr.N = chunk
		m, err := copyChunk(dst, lr, w.idle)
		if m > 0 {
			n.Add(m)
			w.progress(dir)
		}
		if splice && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(writeBy) {
			err = errWriteStuck
		}
		switch {
		case err == nil && lr.N > 0: // end of stream
			w.ended(dir)
			closeWrite(dst)
			return nil
		case err == nil:
			continue
		case errors.Is(err, os.ErrDeadlineExceeded) && m > 0:
			continue
		case errors.Is(err, os.ErrDeadlineExceeded) && !w.quiet(dir):
			continue // the other direction moved bytes: not idle
		case errors.Is(err, io.EOF):
			w.ended(dir)
			closeWrite(dst)
			return nil
		}
		dst.Close()
		src.Close()
		if errors.Is(err, net.ErrClosed) {
			return nil // the other direction failed and closed both
		}
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, errWriteStuck) {
			return errors.New("idle timeout")
		}
		return err
	}
}

// copyChunk moves what lr allows from its reader to dst, by splice when both are TCP. When
// dst cannot take a reader (TLS, a connection with a PROXY header), each write gets a
// deadline of idle of its own: a write deadline breaks a TLS connection for good, so it
// only fires on a write that made no headway for the whole idle time.
func copyChunk(dst net.Conn, lr *io.LimitedReader, idle time.Duration) (int64, error) {
	if rf, ok := dst.(io.ReaderFrom); ok {
		return rf.ReadFrom(lr)
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(deadlineWriter{dst, idle}, lr, *buf)
}

// errWriteStuck is a write that did not finish within the idle time.
var errWriteStuck = errors.New("write stuck for the idle time")

// deadlineWriter gives each write to a connection a deadline.
type deadlineWriter struct {
	c    net.Conn
	idle time.Duration
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.c.SetWriteDeadline(time.Now().Add(d.idle))
	n, err := d.c.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = errWriteStuck
	}
	return n, err
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// errHelloRead stops the handshake peekServerName starts once the ClientHello is read.
var errHelloRead = errors.New("client hello read")

// peekServerName reads the client's TLS ClientHello (at most maxClientHello bytes, within
// timeout) and returns the server name it asks for ("" without SNI) and the bytes read,
// which the caller passes on to the server before anything else. Nothing is written to the
// client.
func peekServerName(c net.Conn, timeout time.Duration) (string, []byte, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	rec := &recordingConn{Conn: c}
	var name string
	var got bool
	err := tls.Server(rec, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		name, got = h.ServerName, true
		return nil, errHelloRead
	}}).Handshake()
	if !got {
		if err == nil {
			err = errors.New("no ClientHello")
		}
		return "", nil, err
	}
	return name, rec.buf, nil
}

// recordingConn keeps what is read through it, refuses to read more than maxClientHello
// bytes, and writes nothing (the handshake it serves is never answered).
type recordingConn struct {
	net.Conn
	buf []byte
}

func (r *recordingConn) Read(p []byte) (int, error) {
	room := maxClientHello - len(r.buf)
	if room <= 0 {
		return 0, errors.New("ClientHello larger than 64KiB")
	}
	if len(p) > room {
		p = p[:room]
	}
	n, err := r.Conn.Read(p)
	r.buf = append(r.buf, p[:n]...)
	return n, err
}

func (r *recordingConn) Write(p []byte) (int, error) { return len(p), nil }

// closeL4 closes every l4 listener and connection at once. With rt.mu held.
func (rt *Runtime) closeL4() {
	rt.closeUDP()
	for _, s := range rt.l4.servers {
		s.ln.Close()
		s.closeAll()
	}
	for _, s := range rt.l4.retired {
		s.closeAll()
	}
	rt.l4.servers, rt.l4.retired = nil, nil
}

// shutdownL4 stops accepting on every l4 listener, waits for their connections (those of
// replaced listeners too) until ctx ends, and then closes the rest. With rt.mu held.
func (rt *Runtime) shutdownL4(ctx context.Context) error {
	defer rt.closeUDP()
	all := rt.l4.retired
	for _, s := range rt.l4.servers {
		all = append(all, s)
	}
	rt.l4.servers, rt.l4.retired = nil, nil
	for _, s := range all {
		s.ln.Close()
	}
	done := make(chan struct{})
	go func() {
		for _, s := range all {
			<-s.done
			s.wg.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, s := range all {
			s.closeAll()
		}
		<-done
		return ctx.Err()
	}
}
