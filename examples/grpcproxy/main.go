// Command grpcproxy forwards gRPC with Verge's engine: clients speak HTTP/2 (h2c with prior
// knowledge, or TLS with -cert/-key), the backend is reached over h2c, and streaming calls and
// trailers pass through. When the backend cannot be reached the client gets a proper gRPC
// status (UNAVAILABLE) instead of an HTTP error page gRPC clients cannot read.
//
//	go run ./examples/grpcproxy -listen 127.0.0.1:8443 -backend 127.0.0.1:50051
package main

import (
	"crypto/tls"
	"flag"
	"log"
	"net"
	"strings"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/server"
	"github.com/verge-edge/verge/upstream"
)

type grpcProxy struct {
	proxy.Base[struct{}]
	backend *upstream.Peer
}

func (g *grpcProxy) UpstreamPeer(*proxy.Session, *struct{}) (*upstream.Peer, error) {
	return g.backend, nil
}

// grpcStatus maps an HTTP status to the gRPC code a client should see (the mapping in
// gRPC's "HTTP to gRPC status code mapping" document).
func grpcStatus(httpStatus int) string {
	switch httpStatus {
	case 400:
		return "13" // INTERNAL
	case 401:
		return "16" // UNAUTHENTICATED
	case 403:
		return "7" // PERMISSION_DENIED
	case 404:
		return "12" // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return "14" // UNAVAILABLE
	}
	return "2" // UNKNOWN
}

// FailToProxy answers gRPC requests with a trailers-only response carrying grpc-status.
func (g *grpcProxy) FailToProxy(s *proxy.Session, err *fault.Error, c *struct{}) int {
	if s.Responded() || !strings.HasPrefix(s.Req.Header.Get("Content-Type"), "application/grpc") {
		return g.Base.FailToProxy(s, err, c)
	}
	h := &message.Header{}
	h.Add("Content-Type", "application/grpc")
	h.Add("Grpc-Status", grpcStatus(err.StatusCode()))
	h.Add("Grpc-Message", "verge: "+err.Kind.String())
	s.Respond(200, h, nil)
	return 200
}

func newGRPCProxy(backend string) *proxy.Proxy[struct{}] {
	g := &grpcProxy{backend: &upstream.Peer{Address: backend, Protocol: upstream.HTTP2}}
	return &proxy.Proxy[struct{}]{Phases: g, Transport: &upstream.Transport{}}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8443", "address to serve on")
	backend := flag.String("backend", "127.0.0.1:50051", "gRPC backend (h2c)")
	cert := flag.String("cert", "", "TLS certificate file (PEM); empty serves h2c")
	key := flag.String("key", "", "TLS key file (PEM)")
	flag.Parse()

	srv := &server.Server{Handler: newGRPCProxy(*backend)}
	if *cert != "" {
		pair, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			log.Fatal(err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.Serve(ln))
}
