// Command rewrite routes by host and path and rewrites headers on the way, with Verge's engine:
//
//   - api.example.test/...       -> the API origin, with X-Api-Version added upstream;
//
//   - any host, /static/...      -> the static origin, with the /static prefix removed;
//
//   - everything else            -> the web origin;
//
//   - responses lose Server and X-Powered-By and gain Strict-Transport-Security.
//
//     go run ./examples/rewrite -listen 127.0.0.1:8080 -api 127.0.0.1:9001 -static 127.0.0.1:9002 -web 127.0.0.1:9003
package main

import (
	"flag"
	"log"
	"net"
	"strings"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/server"
	"github.com/verge-edge/verge/upstream"
)

type route uint8

const (
	routeWeb route = iota
	routeAPI
	routeStatic
)

// routeCtx carries the routing decision from the Request phase to the later ones.
type routeCtx struct {
	route route
}

type rewriter struct {
	proxy.Base[routeCtx]
	api, static, web *upstream.Peer
}

// Request decides the route once, from the host and the path.
func (r *rewriter) Request(s *proxy.Session, c *routeCtx) (bool, error) {
	switch {
	case s.Req.Host() == "api.example.test":
		c.route = routeAPI
	case strings.HasPrefix(s.Req.Path(), "/static/"):
		c.route = routeStatic
	}
	return false, nil
}

func (r *rewriter) UpstreamPeer(_ *proxy.Session, c *routeCtx) (*upstream.Peer, error) {
	switch c.route {
	case routeAPI:
		return r.api, nil
	case routeStatic:
		return r.static, nil
	}
	return r.web, nil
}

func (r *rewriter) UpstreamRequest(_ *proxy.Session, req *message.Request, c *routeCtx) error {
	switch c.route {
	case routeAPI:
		req.Header.Set("X-Api-Version", "2")
	case routeStatic:
		req.Target = strings.TrimPrefix(req.Target, "/static")
	}
	return nil
}

func (r *rewriter) Response(_ *proxy.Session, resp *message.Response, _ *routeCtx) error {
	resp.Header.Del("Server")
	resp.Header.Del("X-Powered-By")
	resp.Header.Set("Strict-Transport-Security", "max-age=31536000")
	return nil
}

func newRewriter(api, static, web string) *proxy.Proxy[routeCtx] {
	r := &rewriter{
		api:    &upstream.Peer{Address: api},
		static: &upstream.Peer{Address: static},
		web:    &upstream.Peer{Address: web},
	}
	return &proxy.Proxy[routeCtx]{Phases: r, Transport: &upstream.Transport{}}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	api := flag.String("api", "127.0.0.1:9001", "API origin")
	static := flag.String("static", "127.0.0.1:9002", "static files origin")
	web := flag.String("web", "127.0.0.1:9003", "web origin")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &server.Server{Handler: newRewriter(*api, *static, *web)}
	log.Fatal(srv.Serve(ln))
}
