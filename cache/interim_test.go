package cache

import (
	"context"
	"io"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/upstream"
)

// interimOrigin sends a 103 through the request's Interim callback, then answers with status
// and a cacheable body; coding sets the response's TransferCoding.
type interimOrigin struct {
	n      atomic.Int64
	status int
	coding string
}

func (o *interimOrigin) RoundTrip(_ context.Context, _ *upstream.Peer, req *message.Request) (*message.Response, error) {
	o.n.Add(1)
	if req.Interim != nil {
		var h message.Header
		h.Add("Link", "</style.css>; rel=preload")
		if err := req.Interim(103, &h); err != nil {
			return nil, err
		}
	}
	body := "cacheable"
	r := &message.Response{Status: o.status, Proto: message.HTTP11, ContentLength: int64(len(body)),
		TransferCoding: o.coding, Body: io.NopCloser(strings.NewReader(body))}
	if o.coding != "" {
		r.ContentLength = -1
	}
	r.Header.Add("Cache-Control", "max-age=600")
	return r, nil
}

// interimExchange is a recExchange that can receive interim responses.
type interimExchange struct {
	recExchange
	interim []int
}

func (e *interimExchange) WriteInterim(status int, _ *message.Header) error {
	e.interim = append(e.interim, status)
	return nil
}

func newInterimEnv(t *testing.T, o *interimOrigin) *proxy.Proxy[struct{}] {
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &proxy.Proxy[struct{}]{Phases: testPhases{}, Transport: o, Cache: c, NoVia: true}
}

func doInterim(p *proxy.Proxy[struct{}]) *interimExchange {
	ex := &interimExchange{}
	ex.req = message.Request{Method: "GET", Target: "/x", Scheme: "http", Authority: "example.test", Proto: message.HTTP11}
	ex.info = message.ConnInfo{RemoteAddr: netip.MustParseAddrPort("127.0.0.1:5000"), Proto: message.HTTP11}
	p.ServeExchange(ex)
	return ex
}

// An origin's 103 reaches the client of the miss but is not part of what is stored: a hit
// replays no interim response and the 103's fields are not in the stored head.
func TestInterimResponsesAreNotStored(t *testing.T) {
	o := &interimOrigin{status: 200}
	p := newInterimEnv(t, o)
	miss := doInterim(p)
	if len(miss.interim) != 1 || miss.interim[0] != 103 || miss.status != 200 {
		t.Fatalf("miss: interim %v status %d, want [103] and 200", miss.interim, miss.status)
	}
	hit := doInterim(p)
	if o.n.Load() != 1 || hit.status != 200 || hit.body.String() != "cacheable" {
		t.Fatalf("second request: origin saw %d, status %d body %q; want a hit", o.n.Load(), hit.status, hit.body.String())
	}
	if len(hit.interim) != 0 || hit.header.Has("Link") {
		t.Fatalf("hit replayed interim %v / Link %q", hit.interim, hit.header.Get("Link"))
	}
}

// A 1xx that a codec would hand over as final (none of Verge's do) is never stored.
func TestInformationalStatusNotStored(t *testing.T) {
	for _, status := range []int{100, 102, 103} {
		o := &interimOrigin{status: status}
		p := newInterimEnv(t, o)
		doInterim(p)
		doInterim(p)
		if o.n.Load() != 2 {
			t.Errorf("status %d: origin saw %d requests, want 2 (stored)", status, o.n.Load())
		}
	}
}

// A body that still carries a transfer coding is not the representation: not stored.
func TestTransferCodedResponseNotStored(t *testing.T) {
	o := &interimOrigin{status: 200, coding: "gzip"}
	p := newInterimEnv(t, o)
	doInterim(p)
	ex := doInterim(p)
	if o.n.Load() != 2 || ex.status != 200 {
		t.Fatalf("origin saw %d requests (status %d), want 2", o.n.Load(), ex.status)
	}
}
