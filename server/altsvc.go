package server

import (
	"io"
	"sync"

	"github.com/verge-edge/verge/message"
)

// altSvcExchange adds the Server's Alt-Svc field to final response heads of an HTTP/1.1 or
// HTTP/2 exchange. The response's header is copied into pooled scratch space rather than
// changed in place, since handlers may answer with a shared read-only header. Wrappers are
// pooled, so this costs no allocation per request in steady state.
type altSvcExchange struct {
	message.ServerExchange
	value string
	resp  message.Response
}

// WriteHeader sends resp with Alt-Svc appended, unless resp already has one or is
// informational.
func (e *altSvcExchange) WriteHeader(resp *message.Response) error {
	if resp.Status < 200 || resp.Header.Has("Alt-Svc") {
		return e.ServerExchange.WriteHeader(resp)
	}
	// Every field of resp is kept (a new one cannot be forgotten here), except the header,
	// copied into the scratch storage, and what the head does not carry: the body and the
	// trailer, whose storage is the handler's.
	r := &e.resp
	h := r.Header
	*r = *resp
	r.Header, r.Trailer, r.Body = h, message.Header{}, nil
	r.Header.CopyFrom(&resp.Header)
	r.Header.Add("Alt-Svc", e.value)
	return e.ServerExchange.WriteHeader(r)
}

// WriteInterim sends an informational response through the wrapped exchange (HTTP/1.1 and
// HTTP/2 exchanges are message.InterimWriters), without Alt-Svc; it does nothing when the
// wrapped exchange cannot.
func (e *altSvcExchange) WriteInterim(status int, h *message.Header) error {
	if w, ok := e.ServerExchange.(message.InterimWriter); ok {
		return w.WriteInterim(status, h)
	}
	return nil
}

var _ message.InterimWriter = (*altSvcExchange)(nil)

// altSvcUpgrader keeps the HTTP/1.1 exchange's Upgrader capability visible through the wrapper.
type altSvcUpgrader struct {
	altSvcExchange
}

// Upgrade switches protocols on the wrapped HTTP/1.1 exchange.
func (e *altSvcUpgrader) Upgrade(resp *message.Response) (io.ReadWriteCloser, error) {
	return e.ServerExchange.(message.Upgrader).Upgrade(resp)
}

var (
	altSvcPool   = sync.Pool{New: func() any { return new(altSvcExchange) }}
	altSvcUpPool = sync.Pool{New: func() any { return new(altSvcUpgrader) }}
)

// serveAltSvc runs h on ex wrapped so its responses advertise value.
func serveAltSvc(h Handler, ex message.ServerExchange, value string) {
	if _, ok := ex.(message.Upgrader); ok {
		w := altSvcUpPool.Get().(*altSvcUpgrader)
		w.ServerExchange, w.value = ex, value
		h.ServeExchange(w)
		w.release()
		altSvcUpPool.Put(w)
		return
	}
	w := altSvcPool.Get().(*altSvcExchange)
	w.ServerExchange, w.value = ex, value
	h.ServeExchange(w)
	w.release()
	altSvcPool.Put(w)
}

// release drops references to the exchange, keeping header storage for the next one.
func (e *altSvcExchange) release() {
	e.ServerExchange = nil
	e.resp.Header.Reset()
	e.resp.Trailer.Reset()
	e.resp.Body = nil
}
