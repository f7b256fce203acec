// Command authgateway is an authenticating gateway built on Verge's engine. The Request phase
// checks a bearer token and answers 401 itself when it is missing or wrong; the user it finds
// travels in the typed per-request context to the UpstreamRequest phase, which tells the
// origin who is calling, and to the Logging phase.
//
//	go run ./examples/authgateway -listen 127.0.0.1:8080 -upstream 127.0.0.1:9000 -tokens s3cret=alice,t0ken=bob
package main

import (
	"crypto/subtle"
	"flag"
	"log"
	"log/slog"
	"net"
	"strings"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/server"
	"github.com/verge-edge/verge/upstream"
)

// authCtx is the per-request context: who the caller is.
type authCtx struct {
	user string
}

type gateway struct {
	proxy.Base[authCtx]
	peer   *upstream.Peer
	tokens map[string]string // token -> user
	log    *slog.Logger
}

var unauthorized = func() *message.Header {
	h := &message.Header{}
	h.Add("WWW-Authenticate", `Bearer realm="verge"`)
	h.Add("Content-Type", "text/plain")
	return h
}()

// Request authenticates the caller or answers 401 directly.
func (g *gateway) Request(s *proxy.Session, c *authCtx) (bool, error) {
	token, ok := strings.CutPrefix(s.Req.Header.Get("Authorization"), "Bearer ")
	if ok {
		for t, user := range g.tokens {
			if subtle.ConstantTimeCompare([]byte(t), []byte(token)) == 1 {
				c.user = user
			}
		}
	}
	if c.user == "" {
		return true, s.Respond(401, unauthorized, []byte("missing or invalid bearer token\n"))
	}
	return false, nil
}

func (g *gateway) UpstreamPeer(*proxy.Session, *authCtx) (*upstream.Peer, error) {
	return g.peer, nil
}

// UpstreamRequest replaces the credential with the identity it proved: the origin trusts
// X-Authenticated-User and never sees tokens.
func (g *gateway) UpstreamRequest(_ *proxy.Session, req *message.Request, c *authCtx) error {
	req.Header.Del("Authorization")
	req.Header.Set("X-Authenticated-User", c.user)
	return nil
}

func (g *gateway) Logging(s *proxy.Session, err *fault.Error, c *authCtx) {
	g.log.Info("request", "user", c.user, "method", s.Req.Method, "path", s.Req.Path(), "status", s.Status)
}

// parseTokens reads "token=user,token=user".
func parseTokens(spec string) map[string]string {
	tokens := map[string]string{}
	for _, pair := range strings.Split(spec, ",") {
		if token, user, ok := strings.Cut(strings.TrimSpace(pair), "="); ok && token != "" {
			tokens[token] = user
		}
	}
	return tokens
}

func newGateway(upstreamAddr, tokens string, logger *slog.Logger) *proxy.Proxy[authCtx] {
	g := &gateway{peer: &upstream.Peer{Address: upstreamAddr}, tokens: parseTokens(tokens), log: logger}
	return &proxy.Proxy[authCtx]{Phases: g, Transport: &upstream.Transport{}}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	origin := flag.String("upstream", "127.0.0.1:9000", "origin address")
	tokens := flag.String("tokens", "", "comma-separated token=user pairs")
	flag.Parse()
	if *tokens == "" {
		log.Fatal("authgateway: -tokens is required")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &server.Server{Handler: newGateway(*origin, *tokens, slog.Default())}
	log.Fatal(srv.Serve(ln))
}
