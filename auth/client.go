package auth

import (
	"net/http"
	"time"
)

// DefaultClient fetches key sets and asks forward-auth services when a config gives no
// Client: it follows no redirects (a redirect is the service's answer, not a place to go),
// takes no proxy from the environment, and bounds response heads and its idle pool; each
// checker bounds its own waits and bodies. The router uses it for every generation.
var DefaultClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport: &http.Transport{
		Proxy:                  nil,
		MaxIdleConnsPerHost:    64,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		ForceAttemptHTTP2:      true,
	},
}
