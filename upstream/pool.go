package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/fault"
)

// ErrClosed is the cause of the error returned by a round trip on a closed Transport.
var ErrClosed = errors.New("upstream transport closed")

// errBucketGone tells the transport that the reaper removed the bucket it looked up; it looks
// the key up again. It never leaves the package.
var errBucketGone = errors.New("pool bucket removed")

// bucketKey selects a pool bucket: the peer's PoolKey plus the settings baked into a codec at
// creation (read and write timeouts) and the idle timeout, so a connection is never reused
// under settings other than the ones it was made with.
type bucketKey struct {
	PoolKey
	read, write, idle time.Duration
}

// bucket holds the connections of one bucketKey.
type bucket struct {
	key         PoolKey
	idleTimeout time.Duration // zero: no expiry
	tlsConfig   *tls.Config   // nil without TLS; holds the per-key session cache
	opts        codecOptions

	mu      sync.Mutex
	idle    []*pconn // idle HTTP/1 conns, oldest first; checkout takes the newest (LIFO)
	h2      []*pconn // HTTP/2 conns, shared
	conns   int      // open or being dialed, HTTP/1 and HTTP/2, detached ones excluded
	active  int      // HTTP/1 conns checked out
	dialing int
	h2dial  *dialCall // the dial that may yield an HTTP/2 conn, for others to wait on
	sawH1   bool      // ALPN with this key picked HTTP/1 before: do not coalesce dials
	waiters []chan struct{}
	used    time.Time // last checkout or checkin
	removed bool      // the reaper dropped the bucket from the pool's map
	n       counts
}

// dialCall lets concurrent requests wait for one dial that may produce a shared HTTP/2 conn.
type dialCall struct{ done chan struct{} }

// counts are a bucket's cumulative counters, guarded by bucket.mu.
type counts struct {
	dials, dialErrors, requests, reused, retries, stale, expired, evicted uint64
}

func (c *counts) add(o *counts) {
	c.dials += o.dials
	c.dialErrors += o.dialErrors
	c.requests += o.requests
	c.reused += o.reused
	c.retries += o.retries
	c.stale += o.stale
	c.expired += o.expired
	c.evicted += o.evicted
}

// mayBeH2 reports whether a dial for b can produce an HTTP/2 connection that concurrent
// requests should wait for instead of dialing their own.
func (b *bucket) mayBeH2() bool {
	switch b.key.Protocol {
	case HTTP2, HTTP3:
		return true
	case HTTP2OrHTTP1:
		return b.key.TLS && !b.sawH1
	}
	return false
}

// notifyOne wakes the oldest request waiting for a connection slot. Called with b.mu held.
func (b *bucket) notifyOne() {
	if len(b.waiters) == 0 {
		return
	}
	ch := b.waiters[0]
	copy(b.waiters, b.waiters[1:])
	b.waiters[len(b.waiters)-1] = nil
	b.waiters = b.waiters[:len(b.waiters)-1]
	close(ch)
}

// Pool holds a Transport's upstream connections. Connections are reused only between
// requests whose peers have identical PoolKeys (and identical read, write and idle timeouts).
// Idle HTTP/1 connections are kept last-in first-out; HTTP/2 connections are shared by
// concurrent requests up to the peer's stream limit. The Pool belongs to its Transport; use it
// for Stats and CloseIdle.
type Pool struct {
	t *Transport

	mu      sync.RWMutex
	buckets map[bucketKey]*bucket
	retired counts // counters of buckets the reaper removed, guarded by mu

	idleTotal atomic.Int64
	closed    atomic.Bool
	minIdle   atomic.Int64 // smallest positive idle timeout among buckets, for the reaper

	reapMu   sync.Mutex
	reaping  atomic.Bool
	reapStop chan struct{}
	reapDone chan struct{}
}

// bucketFor returns the bucket of peer pr under timeouts to, creating it on first use.
func (p *Pool) bucketFor(pr *Peer, to *resolvedTimeouts) *bucket {
	k := bucketKey{PoolKey: pr.Key(), read: to.read, write: to.write, idle: to.idle}
	p.mu.RLock()
	b := p.buckets[k]
	p.mu.RUnlock()
	if b != nil {
		return b
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if b = p.buckets[k]; b != nil {
		return b
	}
	if p.buckets == nil {
		p.buckets = make(map[bucketKey]*bucket)
	}
	b = &bucket{
		key:         k.PoolKey,
		idleTimeout: to.idle,
		opts: codecOptions{
			ReadTimeout:            to.read,
			WriteTimeout:           to.write,
			IdleTimeout:            to.idle,
			MaxResponseHeaderBytes: p.t.cfg.maxHeaderBytes,
		},
		used: time.Now(),
	}
	if k.TLS || k.Protocol == HTTP3 {
		b.tlsConfig = tlsConfigFor(&k.PoolKey)
	}
	p.buckets[k] = b
	if to.idle > 0 {
		for {
			cur := p.minIdle.Load()
			if cur != 0 && cur <= int64(to.idle) || p.minIdle.CompareAndSwap(cur, int64(to.idle)) {
				break
			}
		}
	}
	return b
}

// get returns a connection for one request on b: a shared HTTP/2 conn with room, the newest
// live idle HTTP/1 conn, or a new one. fresh skips the pool and always dials. reused reports
// that the conn served requests before.
//
// checkAlive asks for the liveness probe before an idle connection is reused; callers skip it
// for requests the transport may retry on a new connection anyway (retryable), which saves a
// system call per request on busy connections.
func (p *Pool) get(ctx context.Context, b *bucket, to *resolvedTimeouts, fresh, checkAlive bool) (pc *pconn, reused bool, err error) {
	cfg := &p.t.cfg
	var waitUntil time.Time
	counted := false
	for {
		b.mu.Lock()
		if b.removed {
			b.mu.Unlock()
			return nil, false, errBucketGone
		}
		if p.closed.Load() {
			b.mu.Unlock()
			return nil, false, &fault.Error{Source: fault.Internal, Cause: ErrClosed}
		}
		if !counted {
			b.n.requests++
			counted = true
		}
		now := time.Now()
		b.used = now
		if !fresh {
			if pc := b.pickH2(now); pc != nil {
				b.n.reused++
				b.mu.Unlock()
				return pc, true, nil
			}
			if n := len(b.idle); n > 0 {
				pc := b.idle[n-1]
				b.idle[n-1] = nil
				b.idle = b.idle[:n-1]
				p.idleTotal.Add(-1)
				if pc.expired(now) {
					b.conns--
					b.n.expired++
					b.mu.Unlock()
					pc.close()
					continue
				}
				b.active++
				b.n.reused++
				b.mu.Unlock()
				if !checkAlive || pc.alive() {
					return pc, true, nil
				}
				b.mu.Lock()
				b.active--
				b.conns--
				b.n.reused--
				b.n.stale++
				b.notifyOne()
				b.mu.Unlock()
				pc.close()
				continue
			}
			if call := b.h2dial; call != nil && b.mayBeH2() {
				b.mu.Unlock()
				select {
				case <-call.done:
					continue
				case <-ctx.Done():
					return nil, false, classifyDial(ctx, fault.ConnectTimeout, ctx.Err())
				}
			}
		}
		if cfg.maxConnsPerPeer > 0 && b.conns >= cfg.maxConnsPerPeer {
			if waitUntil.IsZero() {
				wait := cfg.maxConnWait
				if wait == 0 {
					wait = to.connect
				}
				if wait == 0 {
					wait = DefaultConnectTimeout
				}
				waitUntil = now.Add(wait)
			}
			if err := p.waitSlot(ctx, b, waitUntil); err != nil {
				return nil, false, err
			}
			continue
		}
		b.conns++
		b.dialing++
		var call *dialCall
		if b.mayBeH2() && b.h2dial == nil {
			call = &dialCall{done: make(chan struct{})}
			b.h2dial = call
		}
		b.mu.Unlock()
		pc, err := p.dialConn(ctx, b, to)
		b.mu.Lock()
		b.dialing--
		if call != nil {
			b.h2dial = nil
			close(call.done)
		}
		if err != nil {
			b.conns--
			b.n.dialErrors++
			b.notifyOne()
			b.mu.Unlock()
			return nil, false, err
		}
		b.n.dials++
		if pc.h2 != nil {
			pc.idleAt = time.Now()
			b.h2 = append(b.h2, pc)
		} else {
			b.active++
			if b.key.Protocol == HTTP2OrHTTP1 {
				b.sawH1 = true
			}
		}
		b.mu.Unlock()
		if pc.h2 != nil {
			p.startReaper()
		}
		return pc, false, nil
	}
}

// waitSlot waits, with b.mu held on entry and released on return, until a connection of b is
// released or closed, ctx ends or until passes.
func (p *Pool) waitSlot(ctx context.Context, b *bucket, until time.Time) error {
	ch := make(chan struct{})
	b.waiters = append(b.waiters, ch)
	b.mu.Unlock()
	timer := time.NewTimer(time.Until(until))
	defer timer.Stop()
	var err error
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		err = classifyDial(ctx, fault.ConnectTimeout, ctx.Err())
	case <-timer.C:
		err = &fault.Error{Source: fault.Upstream, Kind: fault.ConnectTimeout, Retry: true,
			Cause: fmt.Errorf("no connection to %s became free within the wait (max %d per peer)",
				b.key.Address, p.t.cfg.maxConnsPerPeer)}
	}
	b.mu.Lock()
	found := false
	for i, w := range b.waiters {
		if w == ch {
			b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
			found = true
			break
		}
	}
	if !found {
		// We were woken as we gave up: pass the wake-up on.
		b.notifyOne()
	}
	b.mu.Unlock()
	return err
}

// pickH2 returns a shared HTTP/2 conn that can take a stream, dropping dead ones. Called with
// b.mu held.
func (b *bucket) pickH2(now time.Time) *pconn {
	for i := 0; i < len(b.h2); i++ {
		pc := b.h2[i]
		if pc.h2.CanTakeNewRequest() {
			pc.idleAt = now
			return pc
		}
		if idle, _ := pc.h2.Idle(); idle {
			// Closed or going away with no stream left: drop it.
			b.removeH2(i)
			i--
			b.conns--
			b.notifyOne()
			pc.close()
		}
	}
	return nil
}

func (b *bucket) removeH2(i int) {
	copy(b.h2[i:], b.h2[i+1:])
	b.h2[len(b.h2)-1] = nil
	b.h2 = b.h2[:len(b.h2)-1]
}

// dialConn connects to b's peer and wraps the conn in the codec for the negotiated protocol.
func (p *Pool) dialConn(ctx context.Context, b *bucket, to *resolvedTimeouts) (*pconn, error) {
	if b.key.Protocol == HTTP3 {
		return p.dialQUIC(ctx, b, to.connect)
	}
	d, err := p.t.connect(ctx, b, to.connect)
	if err != nil {
		return nil, err
	}
	pc := newPconn(p, b, d)
	codecs := &p.t.cfg.codecs
	if d.h2 {
		mc, err := codecs.http2(d.conn, &b.opts)
		if err != nil {
			d.conn.Close()
			// Nothing of the request was sent: any method may go elsewhere.
			fe := fault.Classify(fault.Upstream, err)
			fe.Retry, fe.Unprocessed = true, true
			return nil, fe
		}
		pc.h2 = mc
		return pc, nil
	}
	pc.h1 = codecs.http1(d.conn, &b.opts, pc.release)
	return pc, nil
}

// put takes back an HTTP/1 conn whose exchange ended: into the idle stack when reusable and
// within the caps, closed otherwise.
func (p *Pool) put(pc *pconn, reusable bool) {
	b := pc.b
	b.mu.Lock()
	b.active--
	if reusable && !p.closed.Load() && len(b.idle) < p.t.cfg.maxIdlePerPeer && p.reserveIdle() {
		now := time.Now()
		pc.idleAt = now
		b.used = now
		b.idle = append(b.idle, pc)
		b.notifyOne()
		b.mu.Unlock()
		p.startReaper()
		return
	}
	if reusable {
		b.n.evicted++
	}
	b.conns--
	b.notifyOne()
	b.mu.Unlock()
	pc.close()
}

// reserveIdle counts one more idle conn against MaxIdleTotal, reporting false at the cap.
func (p *Pool) reserveIdle() bool {
	n := p.idleTotal.Add(1)
	if max := p.t.cfg.maxIdleTotal; max > 0 && n > int64(max) {
		p.idleTotal.Add(-1)
		return false
	}
	return true
}

// detach removes an upgraded conn from the pool's accounting; its stream now owns it.
func (p *Pool) detach(pc *pconn) {
	b := pc.b
	b.mu.Lock()
	b.active--
	b.conns--
	b.notifyOne()
	b.mu.Unlock()
}

// retried counts a transparent retry on b.
func (b *bucket) retried() {
	b.mu.Lock()
	b.n.retries++
	b.mu.Unlock()
}

// CloseIdle closes every idle HTTP/1 connection and every HTTP/2 connection without an open
// stream. Connections in use are not touched.
func (p *Pool) CloseIdle() {
	var doomed []*pconn
	p.mu.RLock()
	for _, b := range p.buckets {
		b.mu.Lock()
		doomed = b.takeIdle(doomed, p, func(*pconn) bool { return true })
		b.mu.Unlock()
	}
	p.mu.RUnlock()
	for _, pc := range doomed {
		pc.close()
	}
}

// takeIdle moves b's idle HTTP/1 conns and idle HTTP/2 conns for which drop returns true to
// doomed. Idle HTTP/1 conns are taken oldest first and the scan stops at the first one kept,
// since the stack is ordered by age. Called with b.mu held.
func (b *bucket) takeIdle(doomed []*pconn, p *Pool, drop func(*pconn) bool) []*pconn {
	n := 0
	for n < len(b.idle) && drop(b.idle[n]) {
		doomed = append(doomed, b.idle[n])
		n++
	}
	if n > 0 {
		copy(b.idle, b.idle[n:])
		clear(b.idle[len(b.idle)-n:])
		b.idle = b.idle[:len(b.idle)-n]
		p.idleTotal.Add(-int64(n))
		b.conns -= n
	}
	for i := 0; i < len(b.h2); i++ {
		pc := b.h2[i]
		if idle, _ := pc.h2.Idle(); idle && (drop(pc) || !pc.h2.CanTakeNewRequest()) {
			doomed = append(doomed, pc)
			b.removeH2(i)
			i--
			b.conns--
			n++
		}
	}
	for ; n > 0 && len(b.waiters) > 0; n-- {
		b.notifyOne()
	}
	return doomed
}

// close shuts the pool: idle and HTTP/2 conns are closed, the reaper stops, conns in use are
// closed when their exchange ends, and waiting requests fail.
func (p *Pool) close() {
	if !p.closed.CompareAndSwap(false, true) {
		return
	}
	p.stopReaper()
	var doomed []*pconn
	p.mu.RLock()
	for _, b := range p.buckets {
		b.mu.Lock()
		doomed = b.takeIdle(doomed, p, func(*pconn) bool { return true })
		for _, pc := range b.h2 {
			// HTTP/2 conns with streams still open: shutting down resets them.
			doomed = append(doomed, pc)
			b.conns--
		}
		clear(b.h2)
		b.h2 = b.h2[:0]
		for len(b.waiters) > 0 {
			b.notifyOne()
		}
		b.mu.Unlock()
	}
	p.mu.RUnlock()
	for _, pc := range doomed {
		pc.close()
	}
}
