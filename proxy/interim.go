package proxy

import (
	"errors"
	"sync"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// MaxInterimResponses bounds the informational (1xx) responses sent downstream for one
// request: those relayed from the origin and those phases write, together. Further ones are
// dropped, so an origin cannot flood a client with them (the upstream codecs bound how many
// they read at all).
const MaxInterimResponses = 10

var errInterimStatus = errors.New("proxy: interim status must be 100-199 and not 101")

// interimState sends informational responses to the downstream exchange: relayed from the
// origin through the upstream request's Interim callback, or written by a phase. Nothing of
// it runs unless a 1xx response arrives or a phase writes one.
//
// Relayed responses are written by a goroutine of their own, started at the first one: an
// HTTP/2 or HTTP/3 upstream calls the Interim callback on its connection's reader, which every
// request on that connection shares, and a client that takes no bytes would hold it for as
// long as the downstream write may block (up to the exchange's interim write timeout, per
// request). The callback only queues; wait ends the goroutine before the final head.
type interimState struct {
	// mu guards the counters and the queue.
	mu sync.Mutex
	// wmu orders the writes to the exchange: the relay goroutine's and a phase's (a
	// RequestBody phase may run on the upstream codec's body goroutine).
	wmu sync.Mutex
	// w is the downstream exchange's InterimWriter; nil when the downstream cannot carry
	// interim responses (HTTP/1.0 client, an exchange without the capability).
	w      message.InterimWriter
	queued int  // interim responses queued or written, against MaxInterimResponses
	sent   int  // interim responses written
	broken bool // a write failed: send no more
	queue  chan *interimHead
	done   chan struct{} // closed when the relay goroutine has ended
	// relay is Session.relayInterim, bound once for the pooled session so that setting the
	// callback on an upstream request does not allocate.
	relay func(status int, h *message.Header) error
}

// interimHead is a relayed interim response waiting for the relay goroutine.
type interimHead struct {
	status int
	h      message.Header
}

func (st *interimState) init(s *Session) {
	st.w = nil
	if s.Req.Proto == message.HTTP10 {
		return // RFC 9110 section 15.2: no 1xx to HTTP/1.0 clients
	}
	if w, ok := s.ex.(message.InterimWriter); ok {
		st.w = w
		if st.relay == nil {
			st.relay = s.relayInterim
		}
	}
}

func (st *interimState) reset() {
	if st.w != nil {
		st.wait()
	}
	st.w, st.queued, st.sent, st.broken = nil, 0, 0, false
}

// wait ends the relay goroutine, if one runs, once it wrote what was queued. The upstream
// codecs make no Interim call after their RoundTrip returned, and the engine calls wait then,
// before anything else is written downstream.
func (st *interimState) wait() {
	st.mu.Lock()
	q, done := st.queue, st.done
	st.queue, st.done = nil, nil
	st.mu.Unlock()
	if q != nil {
		close(q)
		<-done
	}
}

// run writes the queued interim responses downstream.
func (st *interimState) run(w message.InterimWriter, q <-chan *interimHead, done chan<- struct{}) {
	defer close(done)
	for ih := range q {
		st.mu.Lock()
		broken := st.broken
		st.mu.Unlock()
		if broken {
			continue
		}
		st.wmu.Lock()
		err := w.WriteInterim(ih.status, &ih.h)
		st.wmu.Unlock()
		st.mu.Lock()
		if err != nil {
			st.broken = true
		} else {
			st.sent++
		}
		st.mu.Unlock()
	}
}

// relayInterim forwards an origin's informational response downstream (RFC 9110 section
// 15.2): hop-by-hop fields are removed, 101 is never relayed (it is the answer to an upgrade,
// handled as a final response), and a 100 Continue the downstream adapter already sent on its
// own is not repeated (the adapter drops it). It only queues the response for the relay
// goroutine, so it never blocks the upstream codec. A failed downstream write stops the
// relaying but not the request: the final response meets the same failure.
func (s *Session) relayInterim(status int, h *message.Header) error {
	if status < 100 || status > 199 || status == 101 {
		return nil
	}
	st := &s.interim
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.w == nil || st.broken || st.queued >= MaxInterimResponses {
		return nil
	}
	st.queued++
	ih := &interimHead{status: status}
	ih.h.CopyFrom(h)
	stripHopByHop(&ih.h, false)
	if st.queue == nil {
		// Room for every response the cap lets through: sending never blocks.
		st.queue = make(chan *interimHead, MaxInterimResponses)
		st.done = make(chan struct{})
		go st.run(st.w, st.queue, st.done)
	}
	st.queue <- ih
	return nil
}

// WriteInterim sends an informational response (status 100-199 other than 101) downstream
// ahead of the final response, with the fields of h (nil means none). Its main use is 103
// Early Hints (RFC 8297, see WriteEarlyHints). Phases may call it until the final response
// head is sent; connection-specific fields of h are not sent.
//
// It sends nothing and returns nil when the client cannot receive interim responses (an
// HTTP/1.0 client, RFC 9110 section 15.2, or an exchange without message.InterimWriter) or
// when MaxInterimResponses were sent already. It fails after the final head was sent, and
// when the downstream write fails.
func (s *Session) WriteInterim(status int, h *message.Header) error {
	if status < 100 || status > 199 || status == 101 {
		return fault.New(fault.Internal, fault.Unknown, errInterimStatus)
	}
	if s.Responded() {
		return fault.New(fault.Internal, fault.Unknown, errInterimAfterFinal)
	}
	st := &s.interim
	st.mu.Lock()
	if st.w == nil || st.queued >= MaxInterimResponses {
		st.mu.Unlock()
		return nil
	}
	st.queued++
	st.mu.Unlock()
	st.wmu.Lock()
	err := st.w.WriteInterim(status, h)
	st.wmu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	if err != nil {
		st.broken = true
		return fault.Classify(fault.Downstream, err)
	}
	st.sent++
	return nil
}

var errInterimAfterFinal = errors.New("proxy: interim response after the final response head")

// WriteEarlyHints sends 103 Early Hints (RFC 8297) downstream with the fields of h, typically
// Link fields naming resources the final response will need, so that a browser can start
// fetching them while the origin is still working. See WriteInterim for when nothing is sent.
func (s *Session) WriteEarlyHints(h *message.Header) error { return s.WriteInterim(103, h) }

// InterimSent reports how many informational responses were sent downstream so far.
func (s *Session) InterimSent() int {
	st := &s.interim
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sent
}
