package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
)

var (
	errConnectRefused = errors.New("CONNECT is not enabled")
	errTraceRefused   = errors.New("TRACE is not enabled")
)

// RoundTripper sends a request to a peer and returns the streamed response. *upstream.Transport
// implements it; errors should be *fault.Error.
type RoundTripper interface {
	RoundTrip(ctx context.Context, peer *upstream.Peer, req *message.Request) (*message.Response, error)
}

// Proxy runs the phases for every exchange handed to ServeExchange. Its zero value, with
// Phases and Transport set, is ready to use; fields must not change once serving.
type Proxy[C any] struct {
	// Phases implements the proxy's behaviour. Required.
	Phases Phases[C]
	// Transport reaches the peers. Required.
	Transport RoundTripper
	// MaxRetries bounds the retries after a retryable failure. Zero means 2; negative means none.
	MaxRetries int
	// AllowConnect enables the CONNECT method. Off by default: CONNECT is answered 405 with
	// Allow.
	AllowConnect bool
	// AllowTrace forwards the TRACE method. Off by default: TRACE is answered 405 with Allow,
	// since echoing a request back can reveal what this proxy added to it.
	AllowTrace bool
	// Upgrades lists the protocols (Upgrade tokens, e.g. "websocket") a request may switch to;
	// a request offering anything else is forwarded as a plain request without Upgrade. Nil
	// means DefaultUpgrades (websocket only); h2c and other HTTP versions are never
	// forwarded. Session.AllowUpgrades overrides it per request.
	Upgrades []string
	// TrustedProxies are the peers whose forwarding fields (X-Forwarded-For, -Proto, -Host,
	// X-Real-IP, Forwarded) are kept and appended to, and through whose X-Forwarded-For the
	// client address is resolved (Session.ClientAddr). From any other peer those fields are
	// dropped and replaced. Empty means no peer is trusted.
	TrustedProxies []netip.Prefix
	// Forwarded also sends the standard Forwarded field (RFC 7239, for=;host=;proto=), appended
	// to a trusted proxy's. Off by default: an untrusted peer's Forwarded is still dropped,
	// and a trusted proxy's passes unchanged.
	Forwarded bool
	// TrustForwarded trusts every peer, as if TrustedProxies held every address: set it only
	// when nothing but a proxy can reach the listener. Off by default.
	TrustForwarded bool
	// Pseudonym names this proxy in Via fields. Empty means "verge".
	Pseudonym string
	// NoVia stops the engine from adding Via fields.
	NoVia bool
	// BodyBufferSize is the size of the buffer used to copy bodies. Zero means 32 KiB.
	BodyBufferSize int
	// Logger receives internal errors. Nil means slog.Default().
	Logger *slog.Logger
	// TunnelIdleTimeout closes an upgraded connection (WebSocket and other 101 switches) or a
	// CONNECT tunnel when no byte moved in either direction for this long. Zero means
	// DefaultTunnelIdleTimeout (5 minutes); negative means no limit.
	TunnelIdleTimeout time.Duration
	// Cache, when set, is consulted after the Request phase and stores origin responses after
	// UpstreamResponse (see Cache and CachePhases). Nil means no caching.
	Cache Cache

	pool sync.Pool // of *state[C]
}

type state[C any] struct {
	s   Session
	c   C
	pf  phaseFilter[C]
	ctl CacheControl
	tx  CacheTx // nil unless the cache takes part in the request
}

var bufPools sync.Map // size -> *sync.Pool of *[]byte

func bodyBuffer(size int) *[]byte {
	p, ok := bufPools.Load(size)
	if !ok {
		p, _ = bufPools.LoadOrStore(size, &sync.Pool{New: func() any { b := make([]byte, size); return &b }})
	}
	return p.(*sync.Pool).Get().(*[]byte)
}

func putBodyBuffer(b *[]byte) {
	if p, ok := bufPools.Load(cap(*b)); ok {
		p.(*sync.Pool).Put(b)
	}
}

func (p *Proxy[C]) maxRetries() int {
	switch {
	case p.MaxRetries == 0:
		return 2
	case p.MaxRetries < 0:
		return 0
	}
	return p.MaxRetries
}

// DefaultTunnelIdleTimeout is the default of Proxy.TunnelIdleTimeout.
const DefaultTunnelIdleTimeout = 5 * time.Minute

func (p *Proxy[C]) tunnelIdleTimeout() time.Duration {
	switch {
	case p.TunnelIdleTimeout == 0:
		return DefaultTunnelIdleTimeout
	case p.TunnelIdleTimeout < 0:
		return 0
	}
	return p.TunnelIdleTimeout
}

func (p *Proxy[C]) bufSize() int {
	if p.BodyBufferSize > 0 {
		return p.BodyBufferSize
	}
	return 32 << 10
}

func (p *Proxy[C]) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

// ServeExchange runs one request through the phases. It implements the handler the protocol
// adapters call.
func (p *Proxy[C]) ServeExchange(ex message.ServerExchange) {
	st, _ := p.pool.Get().(*state[C])
	if st == nil {
		st = new(state[C])
	}
	s := &st.s
	s.ex = ex
	s.ctx = ex.Context()
	s.Req = ex.Request()
	s.Start = time.Now()
	s.interim.init(s)
	st.pf = phaseFilter[C]{ph: p.Phases, c: &st.c}
	s.reqBody.init(s, &st.pf)
	p.resolveClient(s)

	err := p.run(st)
	if err != nil {
		if status := p.Phases.FailToProxy(s, err, &st.c); s.Status == 0 {
			s.Status = status
		}
	}
	if st.tx != nil {
		p.cacheDone(st, err)
	}
	p.Phases.Logging(s, err, &st.c)

	s.reset()
	var zero C
	st.c = zero
	p.pool.Put(st)
}

func (p *Proxy[C]) run(st *state[C]) *fault.Error {
	s, c := &st.s, &st.c
	if err := p.Phases.EarlyRequest(s, c); err != nil {
		return fault.As(err)
	}
	switch s.Req.Method {
	case "CONNECT":
		if !p.AllowConnect {
			return &fault.Error{Source: fault.Downstream, Kind: fault.MethodNotAllowed, Cause: errConnectRefused}
		}
	case "TRACE":
		if !p.AllowTrace {
			return &fault.Error{Source: fault.Downstream, Kind: fault.MethodNotAllowed, Cause: errTraceRefused}
		}
	}
	handled, err := p.Phases.Request(s, c)
	if err != nil {
		return fault.As(err)
	}
	if handled {
		if !s.Responded() {
			return &fault.Error{Source: fault.Internal, Kind: fault.Unknown, Cause: errNoResponse}
		}
		return nil
	}
	if p.Cache != nil {
		hit, ferr := p.lookup(st)
		if ferr != nil {
			return ferr
		}
		if hit != nil {
			return p.respond(st, hit, true)
		}
	}
	resp, ferr := p.connect(st)
	if ferr != nil {
		if st.tx != nil {
			if stale := st.tx.UpstreamError(s, ferr); stale != nil {
				return p.respond(st, stale, true)
			}
		}
		return ferr
	}
	return p.respond(st, resp, false)
}

// connect chooses a peer and sends the request, retrying retryable failures.
func (p *Proxy[C]) connect(st *state[C]) (*message.Response, *fault.Error) {
	s, c := &st.s, &st.c
	for {
		peer, err := p.Phases.UpstreamPeer(s, c)
		if err != nil {
			return nil, fault.As(err)
		}
		if peer == nil {
			return nil, &fault.Error{Source: fault.Internal, Kind: fault.NoUpstream, Cause: errNoPeer}
		}
		s.Peer = peer
		s.Attempts++
		req := &s.upReq
		p.buildUpstreamRequest(s, peer, req)
		if s.interim.w != nil {
			// The origin's 1xx responses go downstream as they arrive (interim.go).
			req.Interim = s.interim.relay
		}
		if st.tx != nil {
			st.tx.UpstreamRequest(s, req)
		}
		if err := p.Phases.UpstreamRequest(s, req, c); err != nil {
			return nil, fault.As(err)
		}
		t0 := time.Now()
		resp, rerr := p.Transport.RoundTrip(s.ctx, peer, req)
		s.UpstreamWait = time.Since(t0)
		if s.interim.w != nil {
			s.interim.wait() // the relayed 1xx are written: the final head may follow
		}
		if rerr == nil {
			s.UpstreamStatus = resp.Status
			return resp, nil
		}
		fe := fault.Classify(fault.Upstream, rerr)
		if isConnectFailure(fe) {
			fe = p.Phases.FailToConnect(s, peer, fe, c)
		} else {
			if fe.Retry && !fe.Unprocessed && !message.Idempotent(s.Req.Method) {
				// The request may have reached the origin (a reused connection that looked
				// alive can be closed by the origin after reading it): RFC 9112 section 9.3.1
				// forbids an automatic retry of a non-idempotent request. A phase may still
				// ask for one by setting Retry again.
				fe.Retry = false
			}
			fe = p.Phases.ErrorWhileProxy(s, peer, fe, c)
		}
		if fe == nil || !p.mayRetry(s, fe) {
			if fe == nil {
				fe = fault.Classify(fault.Upstream, rerr)
			}
			return nil, fe
		}
		s.upReq.Reset()
	}
}

func isConnectFailure(e *fault.Error) bool {
	switch e.Kind {
	case fault.ConnectTimeout, fault.ConnectRefused, fault.TLSHandshake:
		return true
	}
	return false
}

// mayRetry applies the engine's retry rules on top of the phase's decision: the phase's result
// asks for a retry, the budget allows one, the client is still there and no byte of the request
// body was consumed. Which failures arrive at the phase retryable is decided in connect: a
// connect failure (nothing was sent) for any method; a failure after sending (a stale reused
// connection before any response byte) only for an idempotent method.
func (p *Proxy[C]) mayRetry(s *Session, e *fault.Error) bool {
	if !e.Retry || s.Attempts > p.maxRetries() || s.ctx.Err() != nil {
		return false
	}
	return !s.reqBody.started
}

// respond sends a response downstream through the response phases: an upstream response, or
// one from the cache (stored), which skips UpstreamResponse and the store step.
func (p *Proxy[C]) respond(st *state[C], resp *message.Response, stored bool) *fault.Error {
	s, c := &st.s, &st.c
	defer func() {
		if resp.Body != nil {
			resp.Body.Close()
		}
	}()
	if resp.Status == 101 || s.Req.Method == "CONNECT" && resp.Status/100 == 2 {
		return p.tunnel(s, c, resp)
	}
	if !stored {
		stripHopByHop(&resp.Header, false)
		if err := p.Phases.UpstreamResponse(s, resp, c); err != nil {
			return fault.As(err)
		}
		if st.tx != nil {
			out, err := p.cacheResponse(st, resp)
			resp = out
			if err != nil {
				return err
			}
		}
	}
	if !p.NoVia {
		p.addVia(s, &resp.Header, resp.Proto)
	}
	if err := p.Phases.Response(s, resp, c); err != nil {
		return fault.As(err)
	}
	if err := s.ex.WriteHeader(resp); err != nil {
		return fault.ClassifyWrite(fault.Downstream, err)
	}
	s.Status = resp.Status
	if resp.Body == nil || s.Req.Method == "HEAD" {
		if _, err := p.Phases.ResponseBody(s, nil, true, c); err != nil {
			return fault.As(err)
		}
		return finish(s, resp)
	}
	bp := bodyBuffer(p.bufSize())
	defer putBodyBuffer(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		eos := rerr == io.EOF
		if rerr != nil && !eos {
			return fault.Classify(fault.Upstream, rerr)
		}
		if n > 0 || eos {
			out, err := p.Phases.ResponseBody(s, buf[:n], eos, c)
			if err != nil {
				return fault.As(err)
			}
			if len(out) > 0 {
				w, werr := s.ex.Write(out)
				s.BytesSent += int64(w)
				if werr != nil {
					return fault.ClassifyWrite(fault.Downstream, werr)
				}
				// Stream promptly: flush when the origin has nothing more right now, unless
				// the body is complete (Finish flushes then).
				if !eos && n < len(buf) && !(resp.ContentLength >= 0 && s.BytesSent >= resp.ContentLength) {
					if err := s.ex.Flush(); err != nil {
						return fault.ClassifyWrite(fault.Downstream, err)
					}
				}
			}
		}
		if eos {
			return finish(s, resp)
		}
	}
}

func finish(s *Session, resp *message.Response) *fault.Error {
	var tr *message.Header
	if resp.Trailer.Len() > 0 {
		tr = &resp.Trailer
	}
	if err := s.ex.Finish(tr); err != nil {
		return fault.ClassifyWrite(fault.Downstream, err)
	}
	return nil
}
