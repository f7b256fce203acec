package upstream

import (
	"errors"
	"net"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
	"context"
)

// TEMPORARY until http1/h2 client conns land.
var defaultCodecs = codecFactory{
	http1: func(c net.Conn, o *codecOptions, release func(bool)) codec { return &noCodec{c, release} },
	http2: newH2Codec,
}

type noCodec struct {
	c       net.Conn
	release func(bool)
}

func (n *noCodec) RoundTrip(ctx context.Context, req *message.Request) (*message.Response, error) {
	n.release(false)
	return nil, fault.New(fault.Upstream, fault.Unknown, errors.New("http1 client codec unavailable"))
}
func (n *noCodec) Close() error { return n.c.Close() }
