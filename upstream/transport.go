package upstream

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

// Transport sends requests to peers over pooled connections: it dials (TCP, TLS with SNI and
// ALPN), keeps connections per PoolKey, speaks HTTP/1.1 or HTTP/2 and streams responses back.
//
// The zero value is ready to use; defaults are applied on first use and the exported fields
// must not change afterwards. A Transport must not be copied after first use. Close it to
// release idle connections and stop its background reaper.
type Transport struct {
	// DialContext, when non-nil, opens TCP connections instead of the default dialer (TCP
	// keep-alive after KeepAlive idle time, TCP_NODELAY). The connect timeout is applied
	// through ctx.
	DialContext DialFunc
	// Timeouts are the defaults for the zero fields of each peer's Timeouts. Zero fields here
	// take the package defaults: Connect 5s, Read 60s, Write 60s, Idle 60s, Total none; a
	// negative field means no limit.
	Timeouts Timeouts
	// KeepAlive is the TCP keep-alive idle time and probe interval of dialed conns. Zero means
	// 15s; negative disables keep-alive probes.
	KeepAlive time.Duration
	// MaxIdlePerPeer caps idle HTTP/1 connections per pool key; a conn released when the cap
	// is reached is closed. Zero means 128; negative disables idle pooling (every HTTP/1
	// request dials).
	MaxIdlePerPeer int
	// MaxIdleTotal caps idle HTTP/1 connections across all keys. Zero means 4096; negative
	// means no cap.
	MaxIdleTotal int
	// MaxConnsPerPeer caps connections per pool key (HTTP/1 and HTTP/2, idle, busy and being
	// dialed). A request that finds the cap reached waits for a connection to be released, at
	// most MaxConnWait. Zero or negative means no cap.
	MaxConnsPerPeer int
	// MaxConnWait bounds the wait for a connection under MaxConnsPerPeer. Zero or negative
	// means the peer's connect timeout (5s when that is unlimited): the wait is always bounded.
	MaxConnWait time.Duration
	// MaxResponseHeaderBytes limits the size of a response head. Zero leaves the codecs'
	// defaults.
	MaxResponseHeaderBytes int
	// DisableRetry turns off the transparent retry: by default, when a request without a body
	// and with an idempotent method (RFC 9110 section 9.2.2) fails on a reused connection
	// before any response byte arrived (the origin had closed it), it is sent once more on a
	// newly dialed connection.
	DisableRetry bool

	inited atomic.Bool
	initMu sync.Mutex
	cfg    config
	pool   Pool
	// codecs, when non-nil, replaces the http1/h2 codecs (tests).
	codecs *codecFactory
}

// init applies the defaults once. The fast path is one atomic load and no allocation.
func (t *Transport) init() {
	if !t.inited.Load() {
		t.initSlow()
	}
}

func (t *Transport) initSlow() {
	t.initMu.Lock()
	defer t.initMu.Unlock()
	if t.inited.Load() {
		return
	}
	t.cfg = newConfig(t)
	t.pool.t = t
	t.inited.Store(true)
}

// Pool returns the transport's connection pool, for Stats and CloseIdle.
func (t *Transport) Pool() *Pool {
	t.init()
	return &t.pool
}

// Stats returns a snapshot of the transport's pool counters.
func (t *Transport) Stats() Stats {
	t.init()
	return t.pool.Stats()
}

// Close closes idle connections and HTTP/2 connections (resetting their open streams), stops
// the background reaper and makes later round trips fail with ErrClosed. HTTP/1 exchanges in
// progress finish; their connections are closed when released. It always returns nil.
func (t *Transport) Close() error {
	t.init()
	t.pool.close()
	return nil
}

// RoundTrip sends req to peer p and returns the response head; the caller must read
// resp.Body to io.EOF or Close it, which returns the connection to the pool (for HTTP/1, a
// body read to the end keeps the connection reusable; one closed early does not).
//
// RoundTrip sets req.Scheme to the peer's scheme and, when p.Host is non-empty, req.Authority
// to p.Host. Errors are *fault.Error with Source Upstream (Internal for ErrClosed), Reused set
// when the failing connection had served earlier requests, and Retry set when nothing was sent
// or nothing of a response arrived on a reused connection.
//
// For a 101 Switching Protocols response, resp.Body is the upgraded stream (it also implements
// io.Writer) and its connection leaves the pool for good; ctx and the total timeout keep
// bounding the upgraded stream until it is closed.
func (t *Transport) RoundTrip(ctx context.Context, p *Peer, req *message.Request) (*message.Response, error) {
	t.init()
	if p.Host != "" {
		req.Authority = p.Host
	}
	req.Scheme = p.Scheme()
	to := t.cfg.resolve(&p.Timeouts)
	var cancel context.CancelFunc
	if to.total > 0 {
		ctx, cancel = context.WithTimeout(ctx, to.total)
	}
	fresh := false
	// A request the transport retries itself on a new connection needs no liveness probe
	// of the pooled one: a stale connection fails fast and the retry covers it.
	checkAlive := !t.cfg.retry || !retryable(req)
	for {
		b := t.pool.bucketFor(p, &to)
		pc, reused, err := t.pool.get(ctx, b, &to, fresh, checkAlive)
		if err == errBucketGone {
			continue
		}
		if err != nil {
			if cancel != nil {
				cancel()
			}
			return nil, err
		}
		resp, fe := t.exchange(ctx, pc, reused, req, cancel)
		if fe == nil {
			return resp, nil
		}
		if fresh || !reused || !fe.Retry || !t.cfg.retry || !retryable(req) || ctx.Err() != nil {
			if cancel != nil {
				cancel()
			}
			return nil, fe
		}
		b.retried()
		fresh = true
	}
}

// exchange runs one request on pc. On success the response body (if any) carries cancel.
func (t *Transport) exchange(ctx context.Context, pc *pconn, reused bool, req *message.Request, cancel context.CancelFunc) (*message.Response, *fault.Error) {
	var resp *message.Response
	var err error
	if pc.h2 != nil {
		resp, err = pc.h2.RoundTrip(ctx, req)
	} else {
		pc.state.Store(stInRoundTrip)
		resp, err = pc.h1.RoundTrip(ctx, req)
		// pc may be back in the pool after this call: do not touch it again.
		pc.afterRoundTrip(err == nil && resp.Status == 101)
	}
	if err != nil {
		fe := fault.Classify(fault.Upstream, err)
		fe.Reused = reused
		if cancel != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			fe.Kind, fe.Retry = fault.TotalTimeout, false
		}
		return nil, fe
	}
	if cancel != nil {
		switch {
		case resp.Body == nil:
			cancel()
		case resp.Status == 101 || req.Method == "CONNECT" && resp.Status/100 == 2:
			if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
				resp.Body = &upgradedBody{ReadWriteCloser: rwc, cancel: cancel}
			} else {
				resp.Body = &totalBody{rc: resp.Body, ctx: ctx, cancel: cancel}
			}
		default:
			resp.Body = &totalBody{rc: resp.Body, ctx: ctx, cancel: cancel}
		}
	}
	return resp, nil
}

// retryable reports whether req may be sent again transparently: no body to replay and an
// idempotent method (RFC 9110 section 9.2.2).
func retryable(req *message.Request) bool {
	return req.Body == nil && message.Idempotent(req.Method)
}

// totalBody ends the total-timeout context with the body and reports reads cut short by it
// as fault.TotalTimeout. It is only used when a total timeout is set.
type totalBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	cancel context.CancelFunc
}

func (b *totalBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == nil {
		return n, nil
	}
	if err == io.EOF {
		b.cancel()
		return n, err
	}
	if errors.Is(b.ctx.Err(), context.DeadlineExceeded) {
		err = &fault.Error{Source: fault.Upstream, Kind: fault.TotalTimeout, Cause: err}
	}
	return n, err
}

func (b *totalBody) Close() error {
	err := b.rc.Close()
	b.cancel()
	return err
}

// upgradedBody keeps the io.Writer (and CloseWrite) of an upgraded stream or a CONNECT tunnel and ends the total-timeout context
// when it is closed.
type upgradedBody struct {
	io.ReadWriteCloser
	cancel context.CancelFunc
}

// CloseWrite half-closes the stream when it can; errors.ErrUnsupported otherwise.
func (b *upgradedBody) CloseWrite() error {
	if cw, ok := b.ReadWriteCloser.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (b *upgradedBody) Close() error {
	err := b.ReadWriteCloser.Close()
	b.cancel()
	return err
}
