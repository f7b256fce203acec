package proxy

import (
	"errors"
	"io"
	"net"
	"sync"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

var errNoUpgrade = errors.New("upstream switched protocols but the downstream connection cannot")

// tunnel completes a protocol switch (WebSocket and other Upgrade requests) or an allowed
// CONNECT: the 101 (or 2xx) goes to the client and bytes are then copied both ways until
// either side closes.
func (p *Proxy[C]) tunnel(s *Session, c *C, resp *message.Response) *fault.Error {
	up, ok := resp.Body.(io.ReadWriteCloser)
	u, canUpgrade := s.ex.(message.Upgrader)
	connect := s.Req.Method == "CONNECT"
	if !ok || !canUpgrade || !connect && !isUpgrade(s.Req) {
		return &fault.Error{Source: fault.Upstream, Kind: fault.InvalidResponse, Cause: errNoUpgrade}
	}
	stripHopByHop(&resp.Header, !connect)
	if !connect {
		resp.Header.Add("Connection", "Upgrade") // RFC 9110 section 7.8: the 101 names the upgrade
	}
	if err := p.Phases.UpstreamResponse(s, resp, c); err != nil {
		return fault.As(err)
	}
	if err := p.Phases.Response(s, resp, c); err != nil {
		return fault.As(err)
	}
	down, err := u.Upgrade(resp)
	if err != nil {
		return fault.Classify(fault.Downstream, err)
	}
	s.Status = resp.Status
	defer down.Close()

	var wg sync.WaitGroup
	var sent int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		pipeOneWay(up, down, &s.BytesReceived)
	}()
	pipeOneWay(down, up, &sent)
	wg.Wait()
	s.BytesSent += sent
	return nil
}

// pipeOneWay copies src to dst, then half-closes dst's write side when it can (so the peer
// sees EOF) or closes it.
func pipeOneWay(dst io.WriteCloser, src io.Reader, n *int64) {
	bp := bodyBuffer(32 << 10)
	defer putBodyBuffer(bp)
	w, _ := io.CopyBuffer(dst, src, *bp)
	*n += w
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
		return
	}
	dst.Close()
}
