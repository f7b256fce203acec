package router

import (
	"errors"
	"log/slog"
	"time"

	"github.com/verge-edge/verge/ai"
	"github.com/verge-edge/verge/compression"
	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/limits"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/observe"
	"github.com/verge-edge/verge/overload"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/upstream"
)

// Metrics receives per-request observations. *observe.Metrics implements it.
type Metrics interface {
	ObserveRequest(route, proto string, status int, dur time.Duration)
	ObserveUpstream(group, addr string, wait time.Duration, err bool)
	ObserveTraffic(listener, route string, status int, in, out int64)
	SetUpstreamHealth(group, addr string, healthy bool)
	ForgetUpstream(group, addr string)
}

// AccessLogger writes one access-log line per request. *observe.AccessLog implements it.
type AccessLogger interface {
	Log(rec *observe.Record)
}

type nopMetrics struct{}

func (nopMetrics) ObserveRequest(string, string, int, time.Duration)   {}
func (nopMetrics) ObserveUpstream(string, string, time.Duration, bool) {}
func (nopMetrics) ObserveTraffic(string, string, int, int64, int64)    {}
func (nopMetrics) SetUpstreamHealth(string, string, bool)              {}
func (nopMetrics) ForgetUpstream(string, string)                       {}

var _ Metrics = (*observe.Metrics)(nil)
var _ AccessLogger = (*observe.AccessLog)(nil)

// reqCtx is the per-request state the phases share. The engine zeroes it between requests.
type reqCtx struct {
	route   *route
	backend *lb.Backend // selected and not yet reported to its balancer
	hashBuf [64]byte
	rec     observe.Record
	// limitHeader, when set, is the rate limit whose fields the response carries
	// (response_headers), with its decision.
	limitHeader   *routeLimit
	limitDecision limits.Decision
	html          proxy.HTMLRewrite
	comp          compression.Encoder
	// reqID is the request's ID (request_id), "" when off; reqIDField is the field that
	// returns it on responses, "" when they do not carry it.
	reqID, reqIDField string
	user              string // the authenticated user, for the access log
	// path is the normalized request path once normPath computed it (access.go).
	path    string
	pathSet bool
	ai      *ai.Result // the ai_gateway's account of the request; nil for other routes
}

// phases implements proxy.Phases for one listener of one config generation.
type phases struct {
	proxy.Base[reqCtx]
	table  *table
	tls    bool
	metric Metrics
	access AccessLogger // nil: no access log
	log    *slog.Logger // the error log
	// limits are the rate limits of each route (by index) on this listener: the listener's
	// rules, then the route's. Nil when none anywhere.
	limits [][]*routeLimit
	// overload, when set, marks the process overloaded: low-priority routes answer 503.
	overload *overload.Monitor
	// reqID configures request IDs; nil when off (access.go).
	reqID *requestIDs

	// listener is the listener's name, for the per-listener metrics.
	listener string
}

// noRoute is the route name logged and counted for requests no route matched, and for
// requests the protocol layer rejected before routing.
const noRoute = "none"

var _ proxy.Phases[reqCtx] = (*phases)(nil)

// errTraceRefused answers TRACE on a route without allow_trace: 405 with Allow.
var errTraceRefused = &fault.Error{Source: fault.Downstream, Kind: fault.MethodNotAllowed, Cause: errors.New("TRACE is not enabled on this route")}

var notFound = []byte("404 Not Found: no route matches this request\n")

var overloadedBody = []byte("503 Service Unavailable: the server is overloaded; this route is shed first\n")

var overloadedHeader = func() *message.Header {
	h := &message.Header{}
	h.Add("Content-Type", "text/plain; charset=utf-8")
	h.Add("Retry-After", "5")
	h.Add("Cache-Control", "no-store")
	return h
}()

var forbidden = []byte("403 Forbidden: this address may not use this route\n")

var plainHeader = func() *message.Header {
	h := &message.Header{}
	h.Add("Content-Type", "text/plain; charset=utf-8")
	return h
}()

// Request finds the route and answers redirect, respond and unmatched requests.
func (p *phases) Request(s *proxy.Session, c *reqCtx) (bool, error) {
	if p.reqID != nil {
		p.reqID.assign(s, c)
	}
	r := p.table.match(s.Req)
	if r == nil {
		return true, p.respond(s, c, 404, plainHeader, notFound)
	}
	c.route = r
	if r.ipRules != nil && !r.ipRules.Allowed(s.ClientAddr().Addr()) {
		return true, p.respond(s, c, 403, plainHeader, forbidden)
	}
	if r.lowPriority && p.overload.Overloaded() {
		p.overload.ShedLowPriority.Add(1)
		return true, p.respond(s, c, 503, overloadedHeader, overloadedBody)
	}
	if p.limits != nil && len(p.limits[r.index]) > 0 {
		if done, err := p.checkLimits(s, c); done || err != nil {
			return true, err
		}
	}
	if r.ext != nil {
		if done, err := p.checkAccess(s, c, r.ext); done || err != nil {
			return true, err
		}
	}
	if s.Req.Method == "TRACE" && !r.allowTrace {
		return false, errTraceRefused
	}
	s.AllowUpgrades(r.upgrades)
	switch {
	case r.worker != nil:
		if r.workerPeer != nil && !isUpgrade(s.Req) {
			return false, nil // through the cache; the worker is the origin (workercache.go)
		}
		return p.serveWorker(s, r)
	case r.files != nil:
		return p.serveFiles(s, c, r)
	case r.ai != nil:
		return p.serveAI(s, c, r)
	case r.respond != nil:
		return true, p.respond(s, c, r.respond.status, r.respond.header, r.respond.body)
	case r.redirect != nil:
		sc := redirectPool.Get().(*redirectScratch)
		sc.h.CopyFrom(r.redirect.header)
		sc.b = r.redirect.location(sc.b[:0], s.Req, p.tls)
		sc.h.Add("Location", string(sc.b))
		err := p.respond(s, c, r.redirect.status, &sc.h, nil)
		sc.h.Reset()
		if cap(sc.b) <= 4096 {
			redirectPool.Put(sc)
		}
		return true, err
	}
	return false, nil
}

// UpstreamPeer picks a server of the route's group.
func (p *phases) UpstreamPeer(s *proxy.Session, c *reqCtx) (*upstream.Peer, error) {
	r := c.route
	if r.workerPeer != nil {
		return r.workerPeer, nil
	}
	g := r.group
	b := g.bal.Select(g.hashKey(c.hashBuf[:], s.Req, s.ClientAddr()))
	if b == nil {
		return nil, &fault.Error{Source: fault.Upstream, Kind: fault.NoUpstream, Cause: errNoServer}
	}
	c.backend = b
	return withClient(s, r.peerFor(b)), nil
}

// peerFor returns b's peer with the route's timeout overrides applied; the copy is made once
// per backend and route.
func (r *route) peerFor(b *lb.Backend) *upstream.Peer {
	if r.timeouts == (upstream.Timeouts{}) {
		return b.Peer
	}
	if p, ok := r.peers.Load(b); ok {
		return p.(*upstream.Peer)
	}
	p := *b.Peer
	t := &p.Timeouts
	t.Connect = override(t.Connect, r.timeouts.Connect)
	t.Read = override(t.Read, r.timeouts.Read)
	t.Write = override(t.Write, r.timeouts.Write)
	t.Total = override(t.Total, r.timeouts.Total)
	actual, _ := r.peers.LoadOrStore(b, &p)
	return actual.(*upstream.Peer)
}

func override(v, o time.Duration) time.Duration {
	if o != 0 {
		return o
	}
	return v
}

// UpstreamRequest applies the route's request header operations.
func (p *phases) UpstreamRequest(s *proxy.Session, req *message.Request, c *reqCtx) error {
	c.route.reqOps.apply(&req.Header)
	if e := c.route.ext; e != nil {
		e.upstreamRequest(s, c, req)
	}
	return nil
}

// Response applies the route's response header operations and starts its HTML rewriting.
func (p *phases) Response(s *proxy.Session, resp *message.Response, c *reqCtx) error {
	c.route.respOps.apply(&resp.Header)
	if e := c.route.ext; e != nil {
		e.response(s, c, resp.Status, &resp.Header)
	}
	p.addRequestID(c, &resp.Header)
	if c.limitHeader != nil {
		c.limitHeader.addFields(&resp.Header, c.limitDecision)
	}
	if c.route.html != nil {
		c.html.Start(c.route.html, s.Req, resp)
	}
	if resp.Body != nil || resp.Status == 304 || s.Req.Method == "HEAD" {
		// After html_rewrite and the header ops. A response without a body is never
		// encoded: the engine sends no body bytes for it, not even an empty stream's. A
		// HEAD gets its GET's head (Start encodes nothing for it).
		c.comp.Start(c.route.compress, s.Req, resp)
	}
	return nil
}

// ResponseBody rewrites HTML bodies (html_rewrite), then compresses (compress).
func (p *phases) ResponseBody(_ *proxy.Session, chunk []byte, eos bool, c *reqCtx) ([]byte, error) {
	return c.comp.Body(c.html.Body(chunk, eos), len(chunk) < compressFlushBelow, eos)
}

// FailToConnect reports the failure to the balancer and applies the route's retry budget.
func (p *phases) FailToConnect(s *proxy.Session, peer *upstream.Peer, err *fault.Error, c *reqCtx) *fault.Error {
	return p.failed(s, peer, err, c)
}

// ErrorWhileProxy does the same for failures after connecting.
func (p *phases) ErrorWhileProxy(s *proxy.Session, peer *upstream.Peer, err *fault.Error, c *reqCtx) *fault.Error {
	return p.failed(s, peer, err, c)
}

func (p *phases) failed(s *proxy.Session, peer *upstream.Peer, err *fault.Error, c *reqCtx) *fault.Error {
	if b := c.backend; b != nil {
		c.backend = nil
		c.route.group.bal.Report(b, err)
		p.metric.ObserveUpstream(c.route.group.name, b.Address, s.UpstreamWait, true)
	}
	if s.Attempts > c.route.retries {
		err.Retry = false
	}
	return err
}

// Logging finishes the balancer bookkeeping and records metrics and the access-log line.
func (p *phases) Logging(s *proxy.Session, err *fault.Error, c *reqCtx) {
	c.html.Release()
	c.comp.Release()
	name := noRoute
	if r := c.route; r != nil {
		name = r.name
		if b := c.backend; b != nil {
			c.backend = nil
			var rerr error
			if err != nil && err.Source == fault.Upstream {
				rerr = err
			}
			r.group.bal.Report(b, rerr)
			p.metric.ObserveUpstream(r.group.name, b.Address, s.UpstreamWait, rerr != nil)
		}
	}
	if err != nil && err.Source == fault.Upstream && err.Kind != fault.Canceled {
		p.logUpstreamFailure(s, name, c.reqID, err)
	}
	p.metric.ObserveRequest(name, s.Req.Proto, s.Status, time.Since(s.Start))
	p.observeAI(name, c)
	p.metric.ObserveTraffic(p.listener, name, s.Status, s.BytesReceived, s.BytesSent)
	if p.access != nil {
		rec := &c.rec
		rec.FromSession(s)
		rec.Route = name
		if p.reqID != nil {
			rec.RequestID = c.reqID
		}
		rec.User = c.user
		recordAI(rec, c)
		if err != nil {
			rec.Error = err
		}
		p.access.Log(rec)
		*rec = observe.Record{}
	}
}

// logUpstreamFailure writes the error-log line of a request that an upstream failure ended or
// cut short (a 502, 503 or 504 answer, or a response broken off mid-body), as NGINX does, so
// that these leave a trace with the access log off.
func (p *phases) logUpstreamFailure(s *proxy.Session, route, reqID string, err *fault.Error) {
	ctx := s.Context()
	if !p.log.Enabled(ctx, slog.LevelError) {
		return
	}
	status := s.Status
	if status == 0 {
		status = err.StatusCode()
	}
	var upstreamAddr, client string
	if s.Peer != nil {
		upstreamAddr = s.Peer.Address
	}
	if ca := s.ClientAddr(); ca.Port() != 0 {
		client = ca.String()
	} else if ca.IsValid() {
		client = ca.Addr().String() // resolved through trusted proxies: no port
	}
	p.log.LogAttrs(ctx, slog.LevelError, "upstream request failed",
		slog.Int("status", status), slog.String("route", route),
		slog.String("method", s.Req.Method), slog.String("host", s.Req.Authority),
		slog.String("path", s.Req.Path()), slog.String("upstream", upstreamAddr),
		slog.Int("attempts", s.Attempts), slog.String("client", client),
		slog.String("request_id", reqID), slog.String("err", err.Error()))
}
