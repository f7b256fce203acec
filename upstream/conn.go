package upstream

import (
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// HTTP/1 exchange states of a pconn (pconn.state). One request at a time runs on an HTTP/1
// connection; the codec's release callback may come during RoundTrip (errors, bodiless
// responses) or later (when the body is read or closed), and the 101 case must not return the
// connection to the pool, so the three events meet in a small lock-free state machine.
const (
	stIdle        uint32 = iota // in the pool, or being set up
	stInRoundTrip               // RoundTrip running, release not seen yet
	stRelReusable               // release(true) came during RoundTrip
	stRelClose                  // release(false) came during RoundTrip
	stOut                       // RoundTrip returned, the body is with the caller
	stDetached                  // 101 Switching Protocols: the conn left the pool for good
)

// pconn is one pooled upstream connection with its codec.
type pconn struct {
	b    *bucket
	conn net.Conn
	h1   codec    // HTTP/1.1 codec, nil on HTTP/2
	h2   muxCodec // HTTP/2 codec, nil on HTTP/1.1
	pool *Pool

	// idleAt is when the conn last went idle (HTTP/1) or last started a stream (HTTP/2);
	// guarded by b.mu.
	idleAt time.Time
	state  atomic.Uint32
	// release is pc.released as a func value, made once per connection so handing it to the
	// codec costs nothing per request.
	release func(reusable bool)

	// Liveness check state (alive_unix.go): the raw socket of the TCP conn and a read callback
	// made once per connection, so the check is allocation-free.
	rc      syscall.RawConn
	peekFn  func(fd uintptr) bool
	peekN   int
	peekErr error
	peekBuf [1]byte
}

func newPconn(p *Pool, b *bucket, d dialed) *pconn {
	pc := &pconn{b: b, conn: d.conn, pool: p}
	pc.release = pc.released
	pc.initAlive(d.raw)
	return pc
}

// released is the HTTP/1 codec's release callback: exactly once per round trip.
func (pc *pconn) released(reusable bool) {
	st := stRelClose
	if reusable {
		st = stRelReusable
	}
	if pc.state.CompareAndSwap(stInRoundTrip, st) {
		return // RoundTrip has not returned yet; it finishes the exchange (afterRoundTrip)
	}
	if pc.state.CompareAndSwap(stOut, stIdle) {
		pc.pool.put(pc, reusable)
	}
	// stDetached: the upgraded stream owns the connection now.
}

// afterRoundTrip settles the exchange once the codec's RoundTrip returned; upgraded reports
// a 101 response whose body is the raw stream.
func (pc *pconn) afterRoundTrip(upgraded bool) {
	next := stOut
	if upgraded {
		next = stDetached
	}
	if pc.state.CompareAndSwap(stInRoundTrip, next) {
		if upgraded {
			pc.pool.detach(pc)
		}
		return
	}
	// The release came during RoundTrip.
	reusable := pc.state.Load() == stRelReusable
	if upgraded {
		pc.state.Store(stDetached)
		pc.pool.detach(pc)
		return
	}
	pc.state.Store(stIdle)
	pc.pool.put(pc, reusable)
}

// close closes the codec (and so the connection).
func (pc *pconn) close() {
	switch {
	case pc.h1 != nil:
		pc.h1.Close()
	case pc.h2 != nil:
		pc.h2.Close()
	default:
		pc.conn.Close()
	}
}

// expired reports whether an idle conn outlived the idle timeout at now. An HTTP/2 conn is
// idle since its last stream ended (or, before any ended, since its last stream started).
func (pc *pconn) expired(now time.Time) bool {
	d := pc.b.idleTimeout
	if d <= 0 {
		return false
	}
	last := pc.idleAt
	if pc.h2 != nil {
		idle, since := pc.h2.Idle()
		if !idle {
			return false
		}
		if since.After(last) {
			last = since
		}
	}
	return now.Sub(last) >= d
}
