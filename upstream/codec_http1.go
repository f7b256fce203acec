package upstream

import (
	"net"

	"github.com/verge-edge/verge/http1"
)

// defaultCodecs are the http1, h2 and h3 packages' client connections.
var defaultCodecs = codecFactory{http1: newH1Codec, http2: newH2Codec, http3: newH3Codec}

var _ codec = (*http1.ClientConn)(nil)

// newH1Codec wraps c in an http1.ClientConn with the bucket's settings. The release adapter
// is made once per connection.
func newH1Codec(c net.Conn, o *codecOptions, release func(reusable bool)) codec {
	return http1.NewClientConn(c, http1.ClientOptions{
		MaxHeaderBytes: o.MaxResponseHeaderBytes,
		ReadTimeout:    o.ReadTimeout,
		WriteTimeout:   o.WriteTimeout,
		Release:        func(_ *http1.ClientConn, reusable bool) { release(reusable) },
	})
}
