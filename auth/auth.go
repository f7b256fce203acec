// Package auth authenticates requests for the router: HTTP Basic against bcrypt hashes
// (golang.org/x/crypto/bcrypt), JSON Web Tokens against a JSON Web Key Set fetched over HTTP
// (github.com/go-jose/go-jose/v4), forward authentication by an external service (like NGINX
// auth_request), and CORS preflights. Each checker is built once per config generation and is
// safe for concurrent use; docs/auth.md documents the behaviour and docs/security.md the
// attacks each one resists.
package auth

import (
	"context"
	"github.com/verge-edge/verge/message"
	"net/netip"
)

// Denial is the response a refused request gets.
type Denial struct {
	Status int
	Header *message.Header
	Body   []byte
}

// Checker decides whether a request may pass. On success it may change s.Req (remove
// client-sent identity fields, add the verified ones) and returns the user, "" when the
// method names none; otherwise it returns the answer to send.
type Checker interface {
	Check(ctx context.Context, req *message.Request, client netip.Addr) (user string, deny *Denial)
}

func plain(status int, body string, extra ...string) *Denial {
	h := &message.Header{}
	h.Add("Content-Type", "text/plain; charset=utf-8")
	h.Add("Cache-Control", "no-store")
	for i := 0; i+1 < len(extra); i += 2 {
		h.Add(extra[i], extra[i+1])
	}
	return &Denial{Status: status, Header: h, Body: []byte(body)}
}
