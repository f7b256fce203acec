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
type interimState struct {
	// mu orders writes: an HTTP/2 or HTTP/3 upstream relays from its connection's reader, and
	// a RequestBody phase may run on the upstream codec's body goroutine.
	mu sync.Mutex
	// w is the downstream exchange's InterimWriter; nil when the downstream cannot carry
	// interim responses (HTTP/1.0 client, an exchange without the capability).
	w      message.InterimWriter
	sent   int  // interim responses written
	broken bool // a write failed: send no more
	h      message.Header
	// relay is Session.relayInterim, bound once for the pooled session so that setting the
	// callback on an upstream request does not allocate.
	relay func(status int, h *message.Header) error
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
	st.w, st.sent, st.broken = nil, 0, false
	st.h.Reset()
}

// relayInterim forwards an origin's informational response downstream (RFC 9110 section
// 15.2): hop-by-hop fields are removed, 101 is never relayed (it is the answer to an upgrade,
// handled as a final response), and a 100 Continue the downstream adapter already sent on its
// own is not repeated (the adapter drops it). A failed downstream write stops the relaying
// but not the request: the final response meets the same failure.
func (s *Session) relayInterim(status int, h *message.Header) error {
	if status < 100 || status > 199 || status == 101 {
		return nil
	}
	st := &s.interim
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.w == nil || st.broken || st.sent >= MaxInterimResponses {
		return nil
	}
	st.h.CopyFrom(h)
	stripHopByHop(&st.h, false)
	err := st.w.WriteInterim(status, &st.h)
	st.h.Reset()
	if err != nil {
		st.broken = true
		return nil
	}
	st.sent++
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
	defer st.mu.Unlock()
	if st.w == nil || st.sent >= MaxInterimResponses {
		return nil
	}
	if err := st.w.WriteInterim(status, h); err != nil {
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
