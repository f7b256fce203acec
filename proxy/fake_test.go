package proxy

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"strings"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
)

// fakeExchange is an in-memory downstream exchange that records what the engine wrote.
type fakeExchange struct {
	req      message.Request
	info     message.ConnInfo
	resp     message.Response
	wrote    bool
	body     bytes.Buffer
	trailer  message.Header
	finished bool
	aborted  error
	flushes  int
}

func newExchange(method, target string, body string) *fakeExchange {
	ex := &fakeExchange{}
	ex.req.Method = method
	ex.req.Target = target
	ex.req.Authority = "example.test"
	ex.req.Scheme = "http"
	ex.req.Proto = message.HTTP11
	if body != "" {
		ex.req.Body = strings.NewReader(body)
		ex.req.ContentLength = int64(len(body))
	}
	ex.info = message.ConnInfo{RemoteAddr: netip.MustParseAddrPort("192.0.2.7:5555"), Proto: message.HTTP11}
	return ex
}

func (e *fakeExchange) Request() *message.Request   { return &e.req }
func (e *fakeExchange) Context() context.Context    { return context.Background() }
func (e *fakeExchange) Conn() *message.ConnInfo     { return &e.info }
func (e *fakeExchange) Flush() error                { e.flushes++; return nil }
func (e *fakeExchange) Abort(err error)             { e.aborted = err }
func (e *fakeExchange) Write(p []byte) (int, error) { return e.body.Write(p) }
func (e *fakeExchange) WriteHeader(r *message.Response) error {
	e.wrote = true
	e.resp.Status = r.Status
	e.resp.ContentLength = r.ContentLength
	e.resp.Header = r.Header.Clone()
	return nil
}
func (e *fakeExchange) Finish(tr *message.Header) error {
	e.finished = true
	if tr != nil {
		e.trailer = tr.Clone()
	}
	return nil
}

var _ message.ServerExchange = (*fakeExchange)(nil)

// funcTransport is a RoundTripper built from a function.
type funcTransport func(ctx context.Context, p *upstream.Peer, r *message.Request) (*message.Response, error)

func (f funcTransport) RoundTrip(ctx context.Context, p *upstream.Peer, r *message.Request) (*message.Response, error) {
	return f(ctx, p, r)
}

// okResponse answers 200 with body.
func okResponse(body string) *message.Response {
	r := &message.Response{Status: 200, Proto: message.HTTP11, ContentLength: int64(len(body))}
	r.Header.Add("Content-Type", "text/plain")
	r.Body = io.NopCloser(strings.NewReader(body))
	return r
}

type recordCtx struct {
	order []string
}

// recorder implements every phase and records the order in which they ran.
type recorder struct {
	Base[recordCtx]
	peer     *upstream.Peer
	handle   bool
	logged   *[]string
	logErr   **fault.Error
	peerErrs int
	// forceRetry makes ErrorWhileProxy ask for a retry whatever the method.
	forceRetry bool
}

func (r *recorder) EarlyRequest(s *Session, c *recordCtx) error {
	c.order = append(c.order, "early")
	return nil
}
func (r *recorder) Request(s *Session, c *recordCtx) (bool, error) {
	c.order = append(c.order, "request")
	if r.handle {
		return true, s.Respond(204, nil, nil)
	}
	return false, nil
}
func (r *recorder) UpstreamPeer(s *Session, c *recordCtx) (*upstream.Peer, error) {
	c.order = append(c.order, "peer")
	return r.peer, nil
}
func (r *recorder) UpstreamRequest(s *Session, req *message.Request, c *recordCtx) error {
	c.order = append(c.order, "upstream_request")
	return nil
}
func (r *recorder) RequestBody(s *Session, b []byte, eos bool, c *recordCtx) ([]byte, error) {
	if eos {
		c.order = append(c.order, "request_body_eos")
	}
	return b, nil
}
func (r *recorder) UpstreamResponse(s *Session, resp *message.Response, c *recordCtx) error {
	c.order = append(c.order, "upstream_response")
	return nil
}
func (r *recorder) Response(s *Session, resp *message.Response, c *recordCtx) error {
	c.order = append(c.order, "response")
	return nil
}
func (r *recorder) ResponseBody(s *Session, b []byte, eos bool, c *recordCtx) ([]byte, error) {
	if eos {
		c.order = append(c.order, "response_body_eos")
	}
	return b, nil
}
func (r *recorder) FailToConnect(s *Session, p *upstream.Peer, err *fault.Error, c *recordCtx) *fault.Error {
	c.order = append(c.order, "fail_to_connect")
	return err
}
func (r *recorder) ErrorWhileProxy(s *Session, p *upstream.Peer, err *fault.Error, c *recordCtx) *fault.Error {
	c.order = append(c.order, "error_while_proxy")
	if r.forceRetry {
		err.Retry = true
	}
	return err
}
func (r *recorder) FailToProxy(s *Session, err *fault.Error, c *recordCtx) int {
	c.order = append(c.order, "fail_to_proxy")
	return s.RespondError(err)
}
func (r *recorder) Logging(s *Session, err *fault.Error, c *recordCtx) {
	c.order = append(c.order, "logging")
	*r.logged = append([]string(nil), c.order...)
	if r.logErr != nil {
		*r.logErr = err
	}
}
