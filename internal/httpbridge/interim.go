package httpbridge

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// MaxInterim bounds the informational (1xx) responses an HTTP/2 or HTTP/3 client accepts
// before the final response, as the HTTP/1.1 client does; one more fails the round trip.
const MaxInterim = 16

var (
	errTooManyInterim  = errors.New("too many interim responses")
	errInterimTooLarge = errors.New("interim response heads exceed the response header limit")
)

// InterimRelay passes the informational responses an HTTP library reports through
// httptrace.ClientTrace.Got1xxResponse to a neutral request's Interim callback, and keeps the
// callback's contract (message.Request.Interim): calls are serialized and none happens after
// End, which the adapter calls when the library's RoundTrip returned. Interim heads are
// bounded in number (MaxInterim) and in total size (the response header limit).
type InterimRelay struct {
	mu    sync.Mutex
	fn    func(status int, h *message.Header) error
	name  string // the adapter's name, prefixing errors
	limit int
	size  int
	count int
	done  bool
	err   error
	h     message.Header
	keys  []string
	trace httptrace.ClientTrace // in the relay's allocation
}

// WithInterim returns ctx with a client trace relaying req's 1xx responses to req.Interim,
// and the relay. maxBytes bounds the interim heads together (each field counts its name and
// value and 32 bytes, as HPACK and QPACK do). When req.Interim is nil it returns ctx and nil;
// End accepts a nil relay.
func WithInterim(ctx context.Context, req *message.Request, name string, maxBytes int) (context.Context, *InterimRelay) {
	if req.Interim == nil {
		return ctx, nil
	}
	r := &InterimRelay{fn: req.Interim, name: name, limit: maxBytes}
	r.trace.Got1xxResponse = r.got1xx
	return httptrace.WithClientTrace(ctx, &r.trace), r
}

// got1xx is the trace's Got1xxResponse. A 101 is not an interim response (the HTTP/3 library
// reports it as final; HTTP/2 has none) and is ignored.
func (r *InterimRelay) got1xx(code int, mh textproto.MIMEHeader) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done || r.err != nil || code == http.StatusSwitchingProtocols {
		return r.err
	}
	r.count++
	for k, vs := range mh {
		for _, v := range vs {
			r.size += len(k) + len(v) + 32
		}
	}
	switch {
	case r.count > MaxInterim:
		r.err = &fault.Error{Source: fault.Upstream, Kind: fault.InvalidResponse,
			Cause: errors.New(r.name + ": " + errTooManyInterim.Error())}
	case r.limit > 0 && r.size > r.limit:
		r.err = &fault.Error{Source: fault.Upstream, Kind: fault.HeaderTooLarge,
			Cause: errors.New(r.name + ": " + errInterimTooLarge.Error())}
	default:
		r.h.Reset()
		r.keys = FillFromMap(&r.h, http.Header(mh), r.keys)
		if err := r.fn(code, &r.h); err != nil {
			r.err = err
		}
		r.h.Reset()
	}
	return r.err
}

// End stops the relay, waiting for a call in progress; a later report from the library is
// ignored. It returns the round trip's outcome: err from the library's RoundTrip, or, when
// that succeeded but the relay failed (a limit was exceeded or the callback failed), the
// relay's error, with res's body closed. The adapter calls it as soon as RoundTrip returned:
// the HTTP/3 library does not act on the trace's error, so the relay fails the round trip.
func (r *InterimRelay) End(res *http.Response, err error) error {
	if r == nil {
		return err
	}
	r.mu.Lock()
	r.done = true
	rerr := r.err
	r.mu.Unlock()
	if err == nil && rerr != nil {
		res.Body.Close()
		return rerr
	}
	return err
}
