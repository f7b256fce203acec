package upstream

import (
	"net"
	"time"

	"github.com/verge-edge/verge/h2"
)

// h2Codec adapts *h2.ClientConn to muxCodec.
type h2Codec struct {
	*h2.ClientConn
}

var _ muxCodec = h2Codec{}

// Idle reports whether no stream is open or waiting for a slot, and since when.
func (c h2Codec) Idle() (bool, time.Time) {
	st := c.State()
	return st.ActiveStreams == 0 && st.PendingRequests == 0, st.IdleSince
}

// newH2Codec starts HTTP/2 on c with the bucket's settings. Unlimited (zero) timeouts become
// the h2 package's "no limit" (negative).
func newH2Codec(c net.Conn, o *codecOptions) (muxCodec, error) {
	cc, err := h2.NewClientConn(c, h2.ClientOptions{
		MaxHeaderListSize:     uint32(o.MaxResponseHeaderBytes),
		ResponseHeaderTimeout: noLimitNegative(o.ReadTimeout),
		WriteByteTimeout:      noLimitNegative(o.WriteTimeout),
		// The pool's reaper closes idle conns; the codec's own timer is a backstop with the
		// same limit.
		IdleTimeout: noLimitNegative(o.IdleTimeout),
	})
	if err != nil {
		return nil, err
	}
	return h2Codec{cc}, nil
}
