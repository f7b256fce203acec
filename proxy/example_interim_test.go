package proxy_test

import (
	"strings"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/upstream"
)

// hintingProxy sends 103 Early Hints for HTML pages before it asks the origin.
type hintingProxy struct {
	proxy.Base[struct{}]
	origin *upstream.Peer
}

func (p hintingProxy) Request(s *proxy.Session, _ *struct{}) (bool, error) {
	if path := s.Req.Path(); path == "/" || strings.HasSuffix(path, ".html") {
		var h message.Header
		h.Add("Link", "</static/app.css>; rel=preload; as=style")
		h.Add("Link", "</static/app.js>; rel=preload; as=script")
		// Nothing is sent to HTTP/1.0 clients; an error means the client is gone.
		if err := s.WriteEarlyHints(&h); err != nil {
			return false, err
		}
	}
	return false, nil
}

func (p hintingProxy) UpstreamPeer(*proxy.Session, *struct{}) (*upstream.Peer, error) {
	return p.origin, nil
}

// A phase sends 103 Early Hints so that browsers fetch the page's assets while the origin is
// still rendering it; the origin's own 1xx responses are forwarded as well.
func ExampleSession_WriteEarlyHints() {
	p := &proxy.Proxy[struct{}]{
		Phases:    hintingProxy{origin: &upstream.Peer{Address: "127.0.0.1:8080"}},
		Transport: &upstream.Transport{},
	}
	_ = p // serve it with server.Server{Handler: p}
}
