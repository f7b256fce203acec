package upstream

import (
	"context"
	"net"
	"time"

	"github.com/verge-edge/verge/internal/proxyproto"
)

// writeProxyHeader writes the PROXY protocol header of k at the start of a new connection,
// within the connect deadline of ctx.
//
// Reuse rule: a PROXY header describes one client connection and is sent once, first on
// the upstream connection; every request later sent on that connection is taken by the
// server as coming from that client. So the pool key holds the header's addresses
// (PoolKey.ProxySource, ProxyDest) and a pooled connection serves only requests of the same
// client connection (HAProxy's rule too: a connection that sent a PROXY header is reused only
// for an identical one). Keep-alive to the server still works within one client connection;
// buckets of closed clients are removed by the pool's reaper once their connections expire.
func writeProxyHeader(ctx context.Context, conn net.Conn, k *PoolKey) error {
	b, err := proxyproto.Format(k.Proxy, k.ProxySource, k.ProxyDest)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetWriteDeadline(dl)
		defer conn.SetWriteDeadline(time.Time{})
	}
	_, err = conn.Write(b)
	return err
}
