package http1

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/verge-edge/verge/message"
)

// hibernateAfter is how long a keep-alive connection served by ServeConnAsync waits for its
// next request on the goroutine that served the last one. After that it hibernates: its
// serverConn goes back to the pool and a fresh goroutine, whose stack is the runtime's
// minimum, waits for readability. An idle connection then costs a small struct and a minimal
// stack instead of its busiest request's stack and working state. Busy connections, whose
// next request comes sooner, never pay for the move.
const hibernateAfter = 250 * time.Millisecond

// connLife is the part of a connection's state that lives as long as the connection. It is
// all a hibernating connection keeps. It is not pooled, so a late drain callback can never
// reach another connection.
type connLife struct {
	srv  *Server
	ctx  context.Context
	conn net.Conn
	info *message.ConnInfo
	// raw, when the connection exposes its file descriptor, lets the idle wait watch for
	// readability without a buffer; without it the connection never hibernates.
	raw syscall.RawConn
	// done, set by ServeConnAsync, is called when the connection has ended; it is what
	// allows hibernation.
	done func()
	// stopDrain unregisters the DrainContext callback.
	stopDrain func() bool
	state     atomic.Int32 // stateActive, stateIdle or stateWaking (see stateWaking)
	shutdown  atomic.Bool
	// grace is the server's DrainIdleGrace in force for this connection: zero when idle
	// connections close at once on a drain.
	grace time.Duration
	// drainBy is when the drain that began gives up waiting for a request on an idle
	// connection (mono); it is written before shutdown is set.
	drainBy int64
	// idleUntil is the idle deadline a hibernating connection keeps (zero: none).
	idleUntil time.Time
	peekCalls int
	peekErr   error
	// slot, sleepGen and dueIdx place the connection in the sleeper (sleeper_linux.go);
	// slot is -1 when it is not there.
	slot     int32
	sleepGen uint32
	dueIdx   int32
	// prev and next link the connection into its Server's drain list.
	prev, next *connLife
}

// start prepares the connection's life and a pooled serverConn for it.
func (s *Server) start(ctx context.Context, c net.Conn, info *message.ConnInfo, prefix []byte, done func()) *serverConn {
	if info == nil {
		info = connInfo(c)
	}
	l := &connLife{srv: s, ctx: ctx, conn: c, info: info, done: done, slot: -1}
	if scn, ok := c.(syscall.Conn); ok && rawIdleWait {
		if raw, err := scn.SyscallConn(); err == nil {
			l.raw = raw
		}
	}
	switch {
	case s.DrainContext != nil:
		l.grace = timeoutOr(s.DrainIdleGrace, DefaultDrainIdleGrace)
		s.drains.add(s.DrainContext, l)
	case ctx.Done() != nil:
		l.stopDrain = context.AfterFunc(ctx, l.onShutdown)
	}
	sc := l.attach()
	if len(prefix) > 0 {
		sc.in.acquire()
		if len(prefix) > len(sc.in.buf) {
			sc.in.grow(len(prefix))
		}
		sc.in.w = copy(sc.in.buf, prefix)
	}
	return sc
}

// attach takes a pooled serverConn and sets it up for l's connection.
func (l *connLife) attach() *serverConn {
	sc := serverConnPool.Get().(*serverConn)
	sc.life = l
	sc.cfg = l.srv.config(l.conn, l.info)
	sc.ctx, sc.conn, sc.info = l.ctx, l.conn, l.info
	sc.in = inbuf{conn: l.conn, raw: l.raw}
	sc.out = outbuf{conn: l.conn, perWrite: sc.cfg.write}
	sc.hibernate = false
	sc.ex.reset()
	return sc
}

// detach returns sc, with its buffers, to the pool.
func (sc *serverConn) detach() {
	sc.in.release()
	sc.out.release()
	sc.ex.req.Reset()
	sc.ex.body = bodyReader{}
	sc.cfg, sc.ctx, sc.conn, sc.info, sc.life = serverConfig{}, nil, nil, nil, nil
	sc.in.conn, sc.out.conn = nil, nil
	serverConnPool.Put(sc)
}

// run serves the connection on the calling goroutine until it ends or hibernates. waited
// means the connection was already seen readable (a hibernation ending).
func (sc *serverConn) run(waited bool) {
	sc.serve(waited)
	l, upgraded, hibernate := sc.life, sc.ex.upgraded, sc.hibernate
	sc.detach()
	if hibernate {
		if !hibernateConn(l) {
			go l.sleep()
		}
		return
	}
	l.end(upgraded)
}

// end closes the connection (unless a handler took it over with Upgrade) and calls done.
func (l *connLife) end(upgraded bool) {
	if l.stopDrain != nil {
		l.stopDrain()
	}
	if l.srv.DrainContext != nil {
		l.srv.drains.remove(l)
	}
	if !upgraded {
		l.conn.Close()
	}
	if l.done != nil {
		l.done()
	}
}

// resume serves a connection the sleeper saw readable, on a new goroutine. While the server
// drains, what arrived is served too, with "Connection: close".
func (l *connLife) resume() {
	if l.shutdown.Load() && l.grace <= 0 {
		l.end(false)
		return
	}
	sc := l.attach()
	sc.activate()
	sc.in.acquire()
	sc.run(true)
}

// sleep is a hibernating connection's goroutine where there is no sleeper: it waits for the
// next request holding no buffer and no serverConn, then serves on. It keeps its frames small
// so that the wait fits the runtime's minimal stack.
func (l *connLife) sleep() {
	l.conn.SetReadDeadline(l.idleUntil)
	for {
		// Checked after the deadline is set: a drain that began before it was set may have
		// had its own deadline overridden by it.
		if l.shutdown.Load() {
			if l.grace <= 0 {
				l.end(false)
				return
			}
			l.conn.SetReadDeadline(epoch.Add(time.Duration(l.drainBy)))
		}
		l.peekCalls, l.peekErr = 0, nil
		err := l.raw.Read(l.peekReady)
		if err == nil {
			err = l.peekErr
		}
		if err == nil {
			l.resume()
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && l.shutdown.Load() && l.grace > 0 {
			if mono() < l.drainBy {
				continue // woken early: wait on until the drain's deadline
			}
			if l.pending() {
				l.resume() // the deadline and a request came together
				return
			}
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
			l.debug(err)
		}
		l.end(false)
		return
	}
}

// onShutdown runs when the drain context is done. A busy connection learns of it from the
// shutdown flag: its next response says "Connection: close". An idle (or hibernating) one
// gets the drain's deadline for its wait, and closes at once when the server has no grace
// for idle connections.
func (l *connLife) onShutdown() {
	l.markDraining()
	if !l.state.CompareAndSwap(stateIdle, stateWaking) {
		return // busy: the connection sees the flag itself
	}
	if l.grace <= 0 {
		if unhibernate(l) {
			l.end(false)
			return
		}
		l.conn.SetReadDeadline(time.Unix(1, 0))
	} else if !drainHibernated(l) {
		// Waiting on its own goroutine: shorten (or lengthen, past a short idle or
		// hibernation deadline) the wait to the drain's deadline.
		l.conn.SetReadDeadline(epoch.Add(time.Duration(l.drainBy)))
	}
	l.state.Store(stateIdle)
}

// markDraining sets the drain's deadline for idle waits (with a grace) and then the shutdown
// flag, whose store publishes the deadline to the connection's goroutine.
func (l *connLife) markDraining() {
	if l.grace > 0 {
		l.drainBy = mono() + int64(l.grace)
	}
	l.shutdown.Store(true)
}

// drainList is a Server's set of connections to wake when its DrainContext is done: one
// context registration for the Server instead of one per connection.
type drainList struct {
	mu      sync.Mutex
	ctx     context.Context // the DrainContext the registration is for
	head    *connLife
	drained bool
	// after, when set (by tests), is called once every connection was told of the drain.
	after func()
}

// add links l in, registering the Server's callback on the first use of ctx.
func (d *drainList) add(ctx context.Context, l *connLife) {
	d.mu.Lock()
	if d.ctx != ctx {
		d.ctx, d.drained = ctx, false
		context.AfterFunc(ctx, func() { d.drain(ctx) })
	}
	if d.drained {
		d.mu.Unlock()
		l.markDraining()
		return
	}
	l.prev, l.next = nil, d.head
	if d.head != nil {
		d.head.prev = l
	}
	d.head = l
	d.mu.Unlock()
}

// remove unlinks l; it is a no-op for a connection that is not linked.
func (d *drainList) remove(l *connLife) {
	d.mu.Lock()
	if l.prev != nil {
		l.prev.next = l.next
	} else if d.head == l {
		d.head = l.next
	}
	if l.next != nil {
		l.next.prev = l.prev
	}
	l.prev, l.next = nil, nil
	d.mu.Unlock()
}

// drain runs onShutdown for every connection linked when ctx ended.
func (d *drainList) drain(ctx context.Context) {
	d.mu.Lock()
	if d.ctx != ctx {
		d.mu.Unlock()
		return
	}
	d.drained = true
	var ls []*connLife
	for l := d.head; l != nil; l = l.next {
		ls = append(ls, l)
	}
	d.mu.Unlock()
	for _, l := range ls {
		l.onShutdown()
	}
	if d.after != nil {
		d.after()
	}
}

func (l *connLife) debug(err error) {
	log := l.srv.logger()
	if log.Enabled(l.ctx, slog.LevelDebug) {
		log.LogAttrs(l.ctx, slog.LevelDebug, "http1: waiting for a request",
			slog.Any("error", err), slog.String("remote", l.info.RemoteAddr.String()))
	}
}
