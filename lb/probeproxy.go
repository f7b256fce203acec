package lb

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/verge-edge/verge/internal/proxyproto"
	"github.com/verge-edge/verge/upstream"
)

// probeDial returns the dial function of HTTP and TLS checks of p: a plain dial, followed
// for a peer that sends the PROXY protocol by a header with the LOCAL command (v2) or an
// UNKNOWN line (v1), which tells the server the connection is the proxy's own, as HAProxy's
// check-send-proxy does. TCP checks only connect and send nothing.
func probeDial(p *upstream.Peer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	if p.ProxyProtocol == 0 {
		return d.DialContext
	}
	version := p.ProxyProtocol
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); ok {
			c.SetWriteDeadline(dl)
		}
		if err := proxyproto.Write(c, version, netip.AddrPort{}, netip.AddrPort{}); err != nil {
			c.Close()
			return nil, err
		}
		c.SetWriteDeadline(time.Time{})
		return c, nil
	}
}
