package proxy

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

var errNoUpgrade = errors.New("upstream switched protocols but the downstream connection cannot")

// tunnel completes a protocol switch (WebSocket and other Upgrade requests) or an allowed
// CONNECT: the 101 (or 2xx) goes to the client and bytes are then copied both ways until
// either side closes.
func (p *Proxy[C]) tunnel(s *Session, c *C, resp *message.Response) *fault.Error {
	up, ok := resp.Body.(io.ReadWriteCloser)
	u, canUpgrade := s.ex.(message.Upgrader)
	connect := s.Req.Method == "CONNECT"
	if !ok || !canUpgrade || !connect && !s.upgrade {
		return &fault.Error{Source: fault.Upstream, Kind: fault.InvalidResponse, Cause: errNoUpgrade}
	}
	stripHopByHop(&resp.Header, !connect)
	if !connect {
		resp.Header.Add("Connection", "Upgrade") // RFC 9110 section 7.8: the 101 names the upgrade
	}
	if err := p.Phases.UpstreamResponse(s, resp, c); err != nil {
		return fault.As(err)
	}
	if err := p.Phases.Response(s, resp, c); err != nil {
		return fault.As(err)
	}
	down, err := u.Upgrade(resp)
	if err != nil {
		return fault.ClassifyWrite(fault.Downstream, err)
	}
	s.Status = resp.Status
	defer down.Close()

	recv, sent := Join(s.ctx, down, up, p.tunnelIdleTimeout())
	s.BytesReceived += recv
	s.BytesSent += sent
	return nil
}

// Join copies between two switched connections (a WebSocket, a CONNECT tunnel) until both
// directions ended, half-closing a side's write when what it receives ends. When no byte
// moved either way for idle (no limit when idle <= 0), or when ctx ends, it closes both so
// that silent or half-closed peers cannot hold it. It returns the bytes copied from a to b
// and from b to a; the caller closes a and b afterwards.
func Join(ctx context.Context, a, b io.ReadWriteCloser, idle time.Duration) (aToB, bToA int64) {
	w := &tunnelWatch{up: b, down: a, idle: idle, start: time.Now()}
	w.begin(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pipeOneWay(b, a, &aToB, w)
	}()
	pipeOneWay(a, b, &bToA, w)
	wg.Wait()
	w.end()
	return aToB, bToA
}

// tunnelWatch closes both sides of a tunnel when no byte moved either way for idle, or when
// the downstream connection's context ends (a forced server stop), so that a peer that
// half-closes while the other never does, or two silent peers, cannot hold the tunnel, its
// goroutines and its two connections forever.
type tunnelWatch struct {
	up, down io.Closer
	idle     time.Duration
	start    time.Time
	last     atomic.Int64 // time of the latest read, in nanoseconds since start

	mu       sync.Mutex
	timer    *time.Timer
	stopCtx  func() bool
	finished bool // the tunnel ended: the caller closes the sides
}

func (w *tunnelWatch) begin(ctx context.Context) {
	if w.idle > 0 {
		w.mu.Lock() // check may run before the assignment otherwise
		w.timer = time.AfterFunc(w.idle, w.check)
		w.mu.Unlock()
	}
	if ctx != nil && ctx.Done() != nil {
		w.stopCtx = context.AfterFunc(ctx, w.closeBoth)
	}
}

// active records that bytes moved.
func (w *tunnelWatch) active() {
	if w.idle > 0 {
		w.last.Store(int64(time.Since(w.start)))
	}
}

func (w *tunnelWatch) check() {
	quiet := time.Since(w.start) - time.Duration(w.last.Load())
	if quiet < w.idle {
		w.mu.Lock()
		if !w.finished {
			w.timer.Reset(w.idle - quiet)
		}
		w.mu.Unlock()
		return
	}
	w.closeBoth()
}

// closeBoth ends a tunnel still running: both copies fail and return.
func (w *tunnelWatch) closeBoth() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.finished {
		return
	}
	w.finished = true
	w.up.Close()
	w.down.Close()
}

// end stops the watch once both copies returned; after it no close comes from the watch.
func (w *tunnelWatch) end() {
	w.mu.Lock()
	w.finished = true
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
	if w.stopCtx != nil {
		w.stopCtx()
	}
}

// pipeOneWay copies src to dst, then half-closes dst's write side when it can (so the peer
// sees EOF) or closes it.
func pipeOneWay(dst io.WriteCloser, src io.Reader, n *int64, w *tunnelWatch) {
	bp := bodyBuffer(32 << 10)
	defer putBodyBuffer(bp)
	buf := *bp
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			w.active()
			nw, werr := dst.Write(buf[:nr])
			*n += int64(nw)
			if werr != nil {
				break
			}
			w.active()
		}
		if rerr != nil {
			break
		}
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	dst.Close()
}
