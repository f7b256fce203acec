package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// Cache is an HTTP cache the engine consults when Proxy.Cache is set: a lookup step after the
// Request phase (and before UpstreamPeer), and a store step after UpstreamResponse. The cache
// package implements it (RFC 9111); docs/phases.md shows where the steps run.
type Cache interface {
	// Lookup starts caching for one request, after the Request phase and CacheRequest. It
	// returns the request's transaction, nil when the cache takes no part in the request. A
	// non-nil response answers the request without contacting the origin (a fresh hit, a 304
	// to a conditional request, a 206 for a range, a 504 for only-if-cached): the engine sends
	// it through the Response and ResponseBody phases and closes its body.
	Lookup(s *Session, ctl *CacheControl) (CacheTx, *message.Response, error)
}

// CacheTx is one request's cache transaction, returned by Cache.Lookup. The engine calls its
// methods in the order listed, each at most once (UpstreamRequest once per attempt), and
// Done always.
type CacheTx interface {
	// UpstreamRequest adjusts the request sent to the origin, e.g. adds If-None-Match and
	// If-Modified-Since to revalidate a stored response. It runs before the UpstreamRequest
	// phase.
	UpstreamRequest(s *Session, req *message.Request)
	// Decide fills d with the cache's decision about the origin's response (whether it is
	// stored, for how long), after the UpstreamResponse phase. CachePhases.CacheResponse may
	// then change d.
	Decide(s *Session, resp *message.Response, d *CacheDecision)
	// Response applies d and returns the response to send downstream: resp itself, with its
	// body teed into storage when stored, or a stored response that replaces it (a 304 that
	// revalidated it, an error answered with stale-if-error), in which case Response closes
	// resp's body. It may instead close resp's body and return ErrRefetch: the engine then
	// sends the request upstream once more (UpstreamRequest, the UpstreamRequest phase, and
	// for the new answer UpstreamResponse, Decide and Response again). A transaction asks
	// this at most once.
	Response(s *Session, resp *message.Response, d *CacheDecision) (*message.Response, error)
	// UpstreamError is told that no response could be had from the origin. A non-nil result
	// (a stale response allowed by stale-if-error) is sent instead of the error page.
	UpstreamError(s *Session, err *fault.Error) *message.Response
	// Done ends the transaction, before the Logging phase; err is nil on success. It returns
	// true to ask the engine for a background refresh of the key (stale-while-revalidate):
	// the engine then runs a copy of the request through the phases on its own goroutine,
	// with CacheControl.Refresh set.
	Done(s *Session, err *fault.Error) (refresh bool)
}

// ErrRefetch is returned by CacheTx.Response to have the request sent upstream once more, e.g.
// when the origin's answer to a request the cache narrowed (a Range asking for the rest of a
// stored beginning) cannot be used and the client needs the whole response.
var ErrRefetch = errors.New("proxy: the cache asks for the origin's response again")

// CacheControl holds the per-request choices made before the lookup. The engine zeroes it
// for every request.
type CacheControl struct {
	// Bypass keeps the cache out of this request entirely: no lookup, no store.
	Bypass bool
	// Key, when non-empty, replaces the cache's default key (method, scheme, host, path and
	// query). Append to it (it keeps its storage across requests).
	Key []byte
	// Policy carries settings specific to the Cache implementation, e.g. a *cache.Policy for
	// the cache package. Nil means the cache's defaults.
	Policy any
	// Refresh is set by the engine on a background refresh (stale-while-revalidate): the
	// cache must go to the origin and store the answer rather than serve what it holds.
	Refresh bool
}

// CacheDecision is what the cache does with an origin's response.
type CacheDecision struct {
	// Store stores the response.
	Store bool
	// TTL overrides the freshness lifetime when positive. Zero means the lifetime the
	// response's headers give (RFC 9111 section 4.2.1), or the policy's defaults.
	TTL time.Duration
	// Reason says why the response is not stored ("no-store", "private", ...), for the
	// Cache-Status header's detail parameter; empty when stored.
	Reason string
}

// CachePhases is implemented by Phases values that take part in caching decisions when
// Proxy.Cache is set. Both methods are optional in effect: a Phases value without them gets
// the cache's defaults.
type CachePhases[C any] interface {
	// CacheRequest runs after the Request phase, before the lookup: set ctl.Bypass to skip the
	// cache, append a custom key to ctl.Key, or set ctl.Policy.
	CacheRequest(s *Session, ctl *CacheControl, c *C) error
	// CacheResponse runs after the cache decided about an origin's response and may override
	// the decision (store what the cache would not, or the reverse, or set a TTL).
	CacheResponse(s *Session, resp *message.Response, d *CacheDecision, c *C) error
}

// refreshExchange is the downstream side of a background refresh: it carries a copy of the
// original request and discards the response.
type refreshExchange struct {
	req  message.Request
	info message.ConnInfo
	ctx  context.Context
}

func newRefreshExchange(s *Session) *refreshExchange {
	d := s.Req
	ex := &refreshExchange{info: *s.ex.Conn(), ctx: context.WithoutCancel(s.ctx)}
	ex.req = message.Request{
		Method:    cloneStr(d.Method),
		Target:    cloneStr(d.Target),
		Scheme:    cloneStr(d.Scheme),
		Authority: cloneStr(d.Authority),
		Proto:     d.Proto,
		Header:    d.Header.Clone(),
	}
	// A refresh must fetch the full current representation, not answer the client's
	// conditional or range request.
	for _, n := range [...]string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"} {
		ex.req.Header.Del(n)
	}
	return ex
}

func cloneStr(s string) string {
	if s == "" {
		return ""
	}
	return string(append([]byte(nil), s...))
}

func (e *refreshExchange) Request() *message.Request           { return &e.req }
func (e *refreshExchange) Context() context.Context            { return e.ctx }
func (e *refreshExchange) Conn() *message.ConnInfo             { return &e.info }
func (e *refreshExchange) WriteHeader(*message.Response) error { return nil }
func (e *refreshExchange) Write(p []byte) (int, error)         { return len(p), nil }
func (e *refreshExchange) Flush() error                        { return nil }
func (e *refreshExchange) Finish(*message.Header) error        { return nil }
func (e *refreshExchange) Abort(error)                         {}

// lookup runs the cache's lookup step. It returns the stored response answering the request,
// if any.
func (p *Proxy[C]) lookup(st *state[C]) (*message.Response, *fault.Error) {
	s, c := &st.s, &st.c
	ctl := &st.ctl
	ctl.Key = ctl.Key[:0]
	ctl.Bypass, ctl.Policy, ctl.Refresh = false, nil, false
	if _, ok := s.ex.(*refreshExchange); ok {
		ctl.Refresh = true
	}
	if cp, ok := p.Phases.(CachePhases[C]); ok {
		if err := cp.CacheRequest(s, ctl, c); err != nil {
			return nil, fault.As(err)
		}
	}
	if ctl.Bypass {
		return nil, nil
	}
	tx, resp, err := p.Cache.Lookup(s, ctl)
	if err != nil {
		return nil, fault.As(err)
	}
	st.tx = tx
	return resp, nil
}

// cacheResponse runs the cache's store step on an origin response. It returns a nil response
// and error when the cache asked for the origin's response again (ErrRefetch, once).
func (p *Proxy[C]) cacheResponse(st *state[C], resp *message.Response) (*message.Response, *fault.Error) {
	s := &st.s
	var d CacheDecision
	st.tx.Decide(s, resp, &d)
	if cp, ok := p.Phases.(CachePhases[C]); ok {
		if err := cp.CacheResponse(s, resp, &d, &st.c); err != nil {
			return resp, fault.As(err)
		}
	}
	if resp.TransferCoding != "" {
		// The body still carries a transfer coding (an HTTP/1.1 origin's Transfer-Encoding
		// other than chunked): it is not the representation, and a stored copy would be
		// served without the coding that explains its bytes.
		d.Store, d.Reason = false, "transfer-coding"
	}
	out, err := st.tx.Response(s, resp, &d)
	if err == ErrRefetch && !st.refetched {
		st.refetched = true
		return nil, nil
	}
	if err != nil {
		return resp, fault.As(err)
	}
	return out, nil
}

// cacheDone ends the transaction and starts a background refresh when asked to.
func (p *Proxy[C]) cacheDone(st *state[C], err *fault.Error) {
	tx := st.tx
	st.tx, st.refetched = nil, false
	if tx.Done(&st.s, err) {
		ex := newRefreshExchange(&st.s)
		go p.ServeExchange(ex)
	}
}
