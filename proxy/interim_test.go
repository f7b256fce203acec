package proxy

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
)

// interimExchange is a fakeExchange that records interim responses.
type interimExchange struct {
	fakeExchange
	interim []int
	fields  []message.Header
	fail    error
}

func (e *interimExchange) WriteInterim(status int, h *message.Header) error {
	if e.fail != nil {
		return e.fail
	}
	if e.wrote {
		return errors.New("interim after the final head")
	}
	e.interim = append(e.interim, status)
	var c message.Header
	if h != nil {
		c = h.Clone()
	}
	e.fields = append(e.fields, c)
	return nil
}

var _ message.InterimWriter = (*interimExchange)(nil)

func newInterimExchange(proto string) *interimExchange {
	ex := &interimExchange{fakeExchange: *newExchange("GET", "/", "")}
	ex.req.Proto = proto
	return ex
}

// relayOrigin calls the request's Interim callback with each status, then answers 200.
func relayOrigin(saw *bool, statuses ...int) RoundTripper {
	return funcTransport(func(_ context.Context, _ *upstream.Peer, r *message.Request) (*message.Response, error) {
		*saw = r.Interim != nil
		for _, st := range statuses {
			if r.Interim == nil {
				break
			}
			var h message.Header
			h.Add("Link", "</a>")
			h.Add("Connection", "X-Hop")
			h.Add("X-Hop", "1")
			h.Add("Keep-Alive", "timeout=1")
			if err := r.Interim(st, &h); err != nil {
				return nil, err
			}
		}
		return okResponse("final"), nil
	})
}

func TestInterimRelayed(t *testing.T) {
	var saw bool
	p := &Proxy[recordCtx]{Phases: &recorder{peer: testPeer, logged: new([]string)},
		Transport: relayOrigin(&saw, 103, 101, 100, 102)}
	p.ServeExchange(newExchange("GET", "/", ""))
	// That exchange lacks the capability: nothing is relayed.
	if saw {
		t.Fatal("Interim set for an exchange without InterimWriter")
	}
	ex := newInterimExchange(message.HTTP11)
	p.ServeExchange(ex)
	if !slices.Equal(ex.interim, []int{103, 100, 102}) {
		t.Fatalf("interim %v, want [103 100 102] (101 never relayed)", ex.interim)
	}
	h := ex.fields[0]
	if h.Get("Link") != "</a>" || h.Has("X-Hop") || h.Has("Connection") || h.Has("Keep-Alive") {
		t.Fatalf("relayed 103 fields %v, want Link only", h.Fields())
	}
	if ex.resp.Status != 200 || ex.body.String() != "final" {
		t.Fatalf("final %d %q", ex.resp.Status, ex.body.String())
	}
}

func TestInterimCappedAndHTTP10(t *testing.T) {
	var saw bool
	flood := make([]int, 3*MaxInterimResponses)
	for i := range flood {
		flood[i] = 103
	}
	p := &Proxy[recordCtx]{Phases: &recorder{peer: testPeer, logged: new([]string)},
		Transport: relayOrigin(&saw, flood...)}
	ex := newInterimExchange(message.HTTP11)
	p.ServeExchange(ex)
	if len(ex.interim) != MaxInterimResponses || ex.resp.Status != 200 {
		t.Fatalf("flood: %d interim relayed, status %d; want %d and 200", len(ex.interim), ex.resp.Status, MaxInterimResponses)
	}
	ex = newInterimExchange(message.HTTP10)
	p.ServeExchange(ex)
	if saw || len(ex.interim) != 0 || ex.resp.Status != 200 {
		t.Fatalf("HTTP/1.0: callback set %v, interim %v, status %d", saw, ex.interim, ex.resp.Status)
	}
	// A failing downstream write stops the relaying, not the request.
	ex = newInterimExchange(message.HTTP11)
	ex.fail = errors.New("client gone")
	p.ServeExchange(ex)
	if ex.resp.Status != 200 || ex.body.String() != "final" {
		t.Fatalf("after a failed interim write: %d %q", ex.resp.Status, ex.body.String())
	}
}

// hintsPhases sends Early Hints from Request, tries invalid statuses, and with respond set
// answers the request itself and tries once more after that.
type hintsPhases struct {
	Base[recordCtx]
	respond bool
	errs    []error
}

func (p *hintsPhases) UpstreamPeer(*Session, *recordCtx) (*upstream.Peer, error) {
	return testPeer, nil
}

func (p *hintsPhases) Request(s *Session, _ *recordCtx) (bool, error) {
	var h message.Header
	h.Add("Link", "</hero.jpg>; rel=preload; as=image")
	p.errs = append(p.errs, s.WriteEarlyHints(&h), s.WriteInterim(101, nil), s.WriteInterim(200, nil))
	if p.respond {
		err := s.Respond(204, nil, nil)
		p.errs = append(p.errs, s.WriteEarlyHints(&h))
		return true, err
	}
	return false, nil
}

func TestSessionWriteEarlyHints(t *testing.T) {
	var saw bool
	ph := &hintsPhases{}
	p := &Proxy[recordCtx]{Phases: ph, Transport: relayOrigin(&saw, 102)}
	ex := newInterimExchange(message.HTTP2)
	p.ServeExchange(ex)
	if !slices.Equal(ex.interim, []int{103, 102}) || ex.fields[0].Get("Link") != "</hero.jpg>; rel=preload; as=image" {
		t.Fatalf("interim %v, want the phase's 103 then the origin's 102", ex.interim)
	}
	if ph.errs[0] != nil || ph.errs[1] == nil || ph.errs[2] == nil {
		t.Fatalf("errors %v, want nil, then errors for 101 and 200", ph.errs)
	}

	ph = &hintsPhases{respond: true}
	p.Phases = ph
	ex = newInterimExchange(message.HTTP11)
	p.ServeExchange(ex)
	if ex.resp.Status != 204 || len(ex.interim) != 1 || ph.errs[3] == nil {
		t.Fatalf("status %d interim %v errors %v; want 204, one 103, an error after the final head", ex.resp.Status, ex.interim, ph.errs)
	}

	// Without the capability, and for HTTP/1.0, Early Hints are dropped without an error.
	for _, ex := range []message.ServerExchange{newExchange("GET", "/", ""), &newInterimExchange(message.HTTP10).fakeExchange} {
		ph = &hintsPhases{}
		p.Phases = ph
		p.ServeExchange(ex)
		if ph.errs[0] != nil {
			t.Fatalf("dropped Early Hints returned %v", ph.errs[0])
		}
	}
}

// blockingInterimExchange is an interimExchange whose interim writes wait for unblock, as
// writes to a client that reads nothing do.
type blockingInterimExchange struct {
	*interimExchange
	unblock chan struct{}
}

func (e *blockingInterimExchange) WriteInterim(status int, h *message.Header) error {
	<-e.unblock
	return e.interimExchange.WriteInterim(status, h)
}

// The Interim callback runs on an HTTP/2 or HTTP/3 upstream connection's reader, shared by
// every request on it: it must return while the downstream write of the interim response
// blocks, and the final head still comes after the interim ones.
func TestInterimRelayDoesNotBlockUpstream(t *testing.T) {
	ex := &blockingInterimExchange{interimExchange: newInterimExchange(message.HTTP11), unblock: make(chan struct{})}
	returned := make(chan struct{})
	p := &Proxy[recordCtx]{Phases: &recorder{peer: testPeer, logged: new([]string)},
		Transport: funcTransport(func(_ context.Context, _ *upstream.Peer, r *message.Request) (*message.Response, error) {
			var h message.Header
			h.Add("Link", "</a>")
			r.Interim(103, &h)
			r.Interim(103, &h)
			close(returned)
			return okResponse("final"), nil
		})}
	served := make(chan struct{})
	go func() {
		defer close(served)
		p.ServeExchange(ex)
	}()
	select {
	case <-returned:
	case <-time.After(20 * time.Second): // a guard, not a measurement
		t.Error("the Interim callback blocked on the downstream write")
	}
	close(ex.unblock)
	<-served
	if !slices.Equal(ex.interim, []int{103, 103}) || ex.resp.Status != 200 || ex.body.String() != "final" {
		t.Fatalf("interim %v, final %d %q", ex.interim, ex.resp.Status, ex.body.String())
	}
}
