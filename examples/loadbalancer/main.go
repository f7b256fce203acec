// Command loadbalancer is a health-checked HTTP load balancer built on Verge's engine: least
// connections across a static backend list, active HTTP health checks, passive ejection of
// failing backends, and a retry on another backend when a connection fails.
//
//	go run ./examples/loadbalancer -listen 127.0.0.1:8080 -backends 127.0.0.1:9001,127.0.0.1:9002
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/server"
	"github.com/verge-edge/verge/upstream"
)

// reqCtx remembers which backend a request went to, so its outcome can be reported.
type reqCtx struct {
	backend *lb.Backend
}

// balancer routes every request through a lb.Balancer.
type balancer struct {
	proxy.Base[reqCtx]
	bal *lb.Balancer
}

func (b *balancer) UpstreamPeer(s *proxy.Session, c *reqCtx) (*upstream.Peer, error) {
	c.backend = b.bal.Select(nil)
	if c.backend == nil {
		return nil, fault.New(fault.Internal, fault.NoUpstream, nil)
	}
	return c.backend.Peer, nil
}

// FailToConnect counts the failure against the backend and lets the engine retry, which calls
// UpstreamPeer again and so picks another backend.
func (b *balancer) FailToConnect(s *proxy.Session, _ *upstream.Peer, err *fault.Error, c *reqCtx) *fault.Error {
	b.report(c, err)
	return err
}

func (b *balancer) ErrorWhileProxy(s *proxy.Session, _ *upstream.Peer, err *fault.Error, c *reqCtx) *fault.Error {
	b.report(c, err)
	return err
}

// Logging runs for every request: a backend still held here served the request.
func (b *balancer) Logging(s *proxy.Session, err *fault.Error, c *reqCtx) {
	if c.backend == nil {
		return
	}
	if err != nil && err.Source == fault.Upstream {
		b.report(c, err)
		return
	}
	b.report(c, nil)
}

func (b *balancer) report(c *reqCtx, err *fault.Error) {
	if c.backend == nil {
		return
	}
	var e error // a nil *fault.Error must reach Report as a nil error
	if err != nil {
		e = err
	}
	b.bal.Report(c.backend, e)
	c.backend = nil
}

// newBalancer builds the proxy for a comma-separated backend list.
func newBalancer(backends, healthPath string, interval time.Duration) (*proxy.Proxy[reqCtx], *lb.Balancer, error) {
	var cfgs []lb.BackendConfig
	for _, addr := range strings.Split(backends, ",") {
		cfgs = append(cfgs, lb.BackendConfig{Address: strings.TrimSpace(addr)})
	}
	bal, err := lb.New(lb.Options{
		Backends:    cfgs,
		Selector:    &lb.LeastConn{},
		HealthCheck: &lb.HealthCheck{Type: lb.CheckHTTP, Path: healthPath, Interval: interval, Rise: 2, Fall: 2},
	})
	if err != nil {
		return nil, nil, err
	}
	p := &proxy.Proxy[reqCtx]{Phases: &balancer{bal: bal}, Transport: &upstream.Transport{}}
	return p, bal, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	backends := flag.String("backends", "127.0.0.1:9001,127.0.0.1:9002", "comma-separated backend addresses")
	health := flag.String("health-path", "/healthz", "path of the HTTP health check")
	flag.Parse()

	p, bal, err := newBalancer(*backends, *health, 2*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	defer bal.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &server.Server{Handler: p}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Printf("load balancing %s across %s", *listen, *backends)
	if err := srv.Serve(ln); err != nil && err != server.ErrServerClosed {
		log.Fatal(err)
	}
}
