package proxy

import (
	"context"
	"net/netip"
	"strconv"
	"time"
	"unsafe"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
)

// Session is one request as it passes through the phases. It is valid only during the
// exchange; the engine reuses it for later requests.
type Session struct {
	ex  message.ServerExchange
	ctx context.Context

	// Req is the downstream request. Phases may change it before UpstreamPeer; the upstream
	// request is built from it.
	Req *message.Request

	// Start is when the engine received the request head.
	Start time.Time
	// Peer is the peer of the latest upstream attempt, nil if none was made.
	Peer *upstream.Peer
	// Attempts counts upstream attempts (1 + retries).
	Attempts int
	// Status is the status sent downstream, 0 until a response head was sent.
	Status int
	// UpstreamStatus is the status the origin answered, 0 if none.
	UpstreamStatus int
	// BytesReceived counts request body bytes read from the client.
	BytesReceived int64
	// BytesSent counts response body bytes written to the client.
	BytesSent int64
	// UpstreamConnect is the time spent waiting for the upstream response head on the last
	// attempt (connect, send, first byte).
	UpstreamWait time.Duration

	upReq   message.Request
	resp    message.Response // used by Respond
	scratch []byte
	reqBody bodyReader
	interim interimState

	client      netip.AddrPort // the peer, or the client resolved through trusted proxies
	trusted     bool           // the peer is a trusted proxy
	upgrades    []string       // protocols this request may switch to, when upgradesSet
	upgradesSet bool
	upgrade     bool // the upstream request was sent as a protocol switch
}

// ClientAddr is the client's address: the connection's peer, or, when the peer is a trusted
// proxy (Proxy.TrustedProxies), the address resolved from X-Forwarded-For, with port 0 as the
// field carries none. Access logs, consistent hashing on the client address and rate limits
// use it.
func (s *Session) ClientAddr() netip.AddrPort { return s.client }

// PeerTrusted reports whether the connection's peer is a trusted proxy, whose X-Forwarded-*,
// X-Real-IP and Forwarded fields were kept and appended to.
func (s *Session) PeerTrusted() bool { return s.trusted }

// AllowUpgrades sets the protocols (Upgrade tokens such as "websocket", compared without case
// and without a "/version") this request may switch to, in place of Proxy.Upgrades. nil or
// empty allows none. h2c and other HTTP versions are never forwarded, whatever the list. A
// refused upgrade is sent upstream as a plain request without Upgrade. Call it before
// UpstreamPeer, typically from Request.
func (s *Session) AllowUpgrades(protocols []string) {
	s.upgrades, s.upgradesSet = protocols, true
}

// Context is canceled when the client goes away or the server shuts down.
func (s *Session) Context() context.Context { return s.ctx }

// Exchange returns the underlying protocol exchange.
func (s *Session) Exchange() message.ServerExchange { return s.ex }

// Conn describes the downstream connection.
func (s *Session) Conn() *message.ConnInfo { return s.ex.Conn() }

// Responded reports whether a response head was already sent downstream.
func (s *Session) Responded() bool { return s.Status != 0 }

// Respond answers the request directly with status, extra header fields (may be nil) and body.
// It is meant for the Request phase (then return handled=true) and for error pages.
func (s *Session) Respond(status int, header *message.Header, body []byte) error {
	r := &s.resp
	r.Reset()
	r.Status = status
	r.Proto = s.Req.Proto
	if header != nil {
		r.Header.CopyFrom(header)
	}
	r.ContentLength = int64(len(body))
	if err := s.ex.WriteHeader(r); err != nil {
		return fault.ClassifyWrite(fault.Downstream, err)
	}
	s.Status = status
	if len(body) > 0 && s.Req.Method != "HEAD" {
		n, err := s.ex.Write(body)
		s.BytesSent += int64(n)
		if err != nil {
			return fault.ClassifyWrite(fault.Downstream, err)
		}
	}
	if err := s.ex.Finish(nil); err != nil {
		return fault.ClassifyWrite(fault.Downstream, err)
	}
	return nil
}

var plainText = func() *message.Header {
	h := &message.Header{}
	h.Add("Content-Type", "text/plain; charset=utf-8")
	h.Add("Cache-Control", "no-store")
	return h
}()

// RespondError sends the error page for err (its StatusCode and the status text) when no
// response head was sent yet, and otherwise aborts the exchange. It returns the status.
func (s *Session) RespondError(err *fault.Error) int {
	status := err.StatusCode()
	if s.Responded() {
		s.ex.Abort(err)
		return s.Status
	}
	if err.Kind == fault.Canceled || err.Source == fault.Downstream && err.Kind == fault.ConnectionClosed {
		// The client is gone: there is nobody to write an error page to.
		s.ex.Abort(err)
		return status
	}
	h := plainText
	if status == 405 {
		h = notAllowed
	}
	_ = s.Respond(status, h, errorBody(status))
	return status
}

// AllowedMethods is the Allow field of the 405 answered to a refused TRACE or CONNECT.
const AllowedMethods = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"

var notAllowed = func() *message.Header {
	h := plainText.Clone()
	h.Add("Allow", AllowedMethods)
	return &h
}()

var errorBodies = map[int][]byte{}

func init() {
	for _, c := range []int{400, 403, 404, 405, 408, 413, 414, 421, 425, 429, 431, 499, 500, 501, 502, 503, 504} {
		errorBodies[c] = []byte(strconv.Itoa(c) + " " + message.StatusText(c) + "\n")
	}
}

func errorBody(status int) []byte {
	if b, ok := errorBodies[status]; ok {
		return b
	}
	return []byte(strconv.Itoa(status) + " " + message.StatusText(status) + "\n")
}

// appendString builds a string in the session's scratch space without a heap allocation in
// steady state. The returned string stays valid until the session is reset: scratch is only
// appended to, and a full scratch is replaced rather than overwritten.
func (s *Session) appendString(parts ...string) string {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if cap(s.scratch)-len(s.scratch) < n {
		s.scratch = make([]byte, 0, max(2*cap(s.scratch), n, 512))
	}
	start := len(s.scratch)
	for _, p := range parts {
		s.scratch = append(s.scratch, p...)
	}
	b := s.scratch[start:]
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func (s *Session) appendAddr(prefix string, ap message.ConnInfo) string {
	if cap(s.scratch)-len(s.scratch) < len(prefix)+48 {
		s.scratch = make([]byte, 0, max(2*cap(s.scratch), 512))
	}
	start := len(s.scratch)
	s.scratch = append(s.scratch, prefix...)
	s.scratch = ap.RemoteAddr.Addr().Unmap().AppendTo(s.scratch)
	b := s.scratch[start:]
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// appendIP is appendAddr for an address without a port.
func (s *Session) appendIP(prefix string, a netip.Addr) string {
	if cap(s.scratch)-len(s.scratch) < len(prefix)+48 {
		s.scratch = make([]byte, 0, max(2*cap(s.scratch), 512))
	}
	start := len(s.scratch)
	s.scratch = append(s.scratch, prefix...)
	s.scratch = a.AppendTo(s.scratch)
	return unsafeString(s.scratch[start:])
}

// unsafeString views b as a string; b must not change afterwards (scratch is append-only
// until reset).
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func (s *Session) reset() {
	s.client, s.trusted = netip.AddrPort{}, false
	s.upgrades, s.upgradesSet, s.upgrade = nil, false, false
	s.ex, s.ctx, s.Req, s.Peer = nil, nil, nil, nil
	s.Start = time.Time{}
	s.Attempts, s.Status, s.UpstreamStatus = 0, 0, 0
	s.BytesReceived, s.BytesSent, s.UpstreamWait = 0, 0, 0
	s.upReq.Reset()
	s.resp.Reset()
	if cap(s.scratch) > 4096 {
		s.scratch = nil
	}
	s.scratch = s.scratch[:0]
	s.reqBody = bodyReader{}
	s.interim.reset()
}
