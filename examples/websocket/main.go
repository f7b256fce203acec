// Command websocket fronts a WebSocket service with Verge's engine. Upgrade requests under
// /ws/ go to the socket backend and are tunnelled both ways once it answers 101; other paths
// go to the web backend. Cross-site WebSocket hijacking is refused: an upgrade whose Origin is
// not in -origins is answered 403 before any backend sees it.
//
//	go run ./examples/websocket -listen 127.0.0.1:8080 -ws 127.0.0.1:9001 -web 127.0.0.1:9002 -origins https://app.example.test
package main

import (
	"flag"
	"log"
	"net"
	"slices"
	"strings"

	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/server"
	"github.com/verge-edge/verge/upstream"
)

type wsProxy struct {
	proxy.Base[struct{}]
	ws, web *upstream.Peer
	origins []string
}

func isUpgrade(s *proxy.Session) bool {
	return s.Req.Header.HasToken("Connection", "upgrade") && s.Req.Header.HasToken("Upgrade", "websocket")
}

// Request refuses upgrades from pages of other sites.
func (p *wsProxy) Request(s *proxy.Session, _ *struct{}) (bool, error) {
	if isUpgrade(s) && !slices.Contains(p.origins, s.Req.Header.Get("Origin")) {
		return true, s.Respond(403, nil, []byte("origin not allowed\n"))
	}
	return false, nil
}

func (p *wsProxy) UpstreamPeer(s *proxy.Session, _ *struct{}) (*upstream.Peer, error) {
	if strings.HasPrefix(s.Req.Path(), "/ws/") {
		return p.ws, nil
	}
	return p.web, nil
}

func newWSProxy(ws, web, origins string) *proxy.Proxy[struct{}] {
	p := &wsProxy{
		ws:      &upstream.Peer{Address: ws},
		web:     &upstream.Peer{Address: web},
		origins: strings.Split(origins, ","),
	}
	return &proxy.Proxy[struct{}]{Phases: p, Transport: &upstream.Transport{}}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	ws := flag.String("ws", "127.0.0.1:9001", "WebSocket backend")
	web := flag.String("web", "127.0.0.1:9002", "web backend")
	origins := flag.String("origins", "http://127.0.0.1:8080", "comma-separated allowed Origin values")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &server.Server{Handler: newWSProxy(*ws, *web, *origins)}
	log.Fatal(srv.Serve(ln))
}
