package compression

import (
	"github.com/verge-edge/verge/message"
)

// Exchange compresses the response written through it to its embedded exchange, for
// handlers that write to a message.ServerExchange themselves (workers, the static file
// server). Set Policy and ServerExchange, pass it on, and call Release when the handler
// returned. A handler's Flush flushes the encoder too. It also forwards WriteInterim when the
// embedded exchange can send informational responses. Do not use it for a request that may
// switch protocols: it does not offer message.Upgrader.
type Exchange struct {
	message.ServerExchange
	Policy *Policy
	enc    Encoder
	sent   int64
}

var (
	_ message.ServerExchange = (*Exchange)(nil)
	_ message.InterimWriter  = (*Exchange)(nil)
)

// WriteHeader decides on compression and sends the (changed) head.
func (x *Exchange) WriteHeader(resp *message.Response) error {
	x.enc.Start(x.Policy, x.Request(), resp)
	return x.ServerExchange.WriteHeader(resp)
}

// Write compresses p and writes the encoded bytes the encoder has produced.
func (x *Exchange) Write(p []byte) (int, error) {
	if !x.enc.Active() {
		n, err := x.ServerExchange.Write(p)
		x.sent += int64(n)
		return n, err
	}
	out, err := x.enc.Body(p, false, false)
	if err != nil {
		return 0, err
	}
	if len(out) > 0 {
		n, err := x.ServerExchange.Write(out)
		x.sent += int64(n)
		if err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush flushes the encoder, then the exchange.
func (x *Exchange) Flush() error {
	if x.enc.Active() {
		out, err := x.enc.Body(nil, true, false)
		if err != nil {
			return err
		}
		if len(out) > 0 {
			n, err := x.ServerExchange.Write(out)
			x.sent += int64(n)
			if err != nil {
				return err
			}
		}
	}
	return x.ServerExchange.Flush()
}

// Finish ends the encoded stream and the response.
func (x *Exchange) Finish(trailer *message.Header) error {
	if x.enc.Active() {
		out, err := x.enc.Body(nil, false, true)
		if err != nil {
			x.ServerExchange.Abort(err)
			return err
		}
		if len(out) > 0 {
			n, err := x.ServerExchange.Write(out)
			x.sent += int64(n)
			if err != nil {
				return err
			}
		}
	}
	return x.ServerExchange.Finish(trailer)
}

// WriteInterim forwards an informational response when the exchange can send one, and
// drops it otherwise.
func (x *Exchange) WriteInterim(status int, h *message.Header) error {
	if iw, ok := x.ServerExchange.(message.InterimWriter); ok {
		return iw.WriteInterim(status, h)
	}
	return nil
}

// Compressed reports the coding the response was sent with, None when it was not compressed.
func (x *Exchange) Compressed() Algorithm { return x.enc.Algorithm() }

// BytesWritten counts the body bytes written to the embedded exchange (encoded ones when
// compressed).
func (x *Exchange) BytesWritten() int64 { return x.sent }

// Release returns the pooled encoder. The Exchange may be reused after it.
func (x *Exchange) Release() {
	x.enc.Release()
	x.ServerExchange, x.Policy, x.sent = nil, nil, 0
}
