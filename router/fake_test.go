package router

import (
	"bytes"
	"context"
	"net/netip"
	"testing"

	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/message"
)

// fakeExchange is an in-memory message.ServerExchange recording the response.
type fakeExchange struct {
	req      message.Request
	conn     message.ConnInfo
	resp     message.Response
	body     bytes.Buffer
	finished bool
}

func newExchange(method, host, target string) *fakeExchange {
	ex := &fakeExchange{conn: message.ConnInfo{
		RemoteAddr: netip.MustParseAddrPort("192.0.2.7:5555"),
		LocalAddr:  netip.MustParseAddrPort("127.0.0.1:8080"),
		Proto:      message.HTTP11,
	}}
	ex.req = message.Request{Method: method, Authority: host, Target: target, Proto: message.HTTP11, Scheme: "http"}
	return ex
}

func (e *fakeExchange) Request() *message.Request   { return &e.req }
func (e *fakeExchange) Context() context.Context    { return context.Background() }
func (e *fakeExchange) Conn() *message.ConnInfo     { return &e.conn }
func (e *fakeExchange) Write(p []byte) (int, error) { return e.body.Write(p) }
func (e *fakeExchange) Flush() error                { return nil }
func (e *fakeExchange) Abort(error)                 {}
func (e *fakeExchange) WriteHeader(r *message.Response) error {
	e.resp.Status, e.resp.ContentLength = r.Status, r.ContentLength
	e.resp.Header.CopyFrom(&r.Header)
	return nil
}
func (e *fakeExchange) Finish(*message.Header) error { e.finished = true; return nil }

// mustConfig parses a config for a test.
func mustConfig(t testing.TB, y string) *config.Config {
	t.Helper()
	c, err := config.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}
