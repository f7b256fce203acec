package auth

import (
	"strconv"
	"strings"
	"time"

	"github.com/verge-edge/verge/message"
)

// CORSConfig configures NewCORS.
type CORSConfig struct {
	// AllowOrigins are exact origins, "scheme://*.domain" patterns or "*".
	AllowOrigins []string
	// AllowMethods, AllowHeaders and ExposeHeaders are the lists sent in the answers.
	AllowMethods, AllowHeaders, ExposeHeaders []string
	// AllowCredentials sends Access-Control-Allow-Credentials: true.
	AllowCredentials bool
	// MaxAge is the preflight's Access-Control-Max-Age.
	MaxAge time.Duration
}

// CORS implements the server side of the Fetch standard's CORS protocol for one route:
// preflights are answered without reaching the upstream, and responses to allowed origins
// get Access-Control-Allow-Origin (the request's own origin, never a reflected arbitrary
// one: only origins that match the list are named) and Vary: Origin.
type CORS struct {
	exact    map[string]bool
	suffixes []wildOrigin
	any      bool
	methods  string
	headers  string
	expose   string
	creds    bool
	maxAge   string
}

type wildOrigin struct{ scheme, suffix string } // "https://", ".example.com"

// NewCORS builds a CORS policy; the origins must be valid (config checks them).
func NewCORS(c CORSConfig) *CORS {
	p := &CORS{exact: map[string]bool{}, creds: c.AllowCredentials,
		methods: strings.Join(c.AllowMethods, ", "), headers: strings.Join(c.AllowHeaders, ", "),
		expose: strings.Join(c.ExposeHeaders, ", "), maxAge: strconv.Itoa(int(c.MaxAge / time.Second))}
	for _, o := range c.AllowOrigins {
		switch {
		case o == "*":
			p.any = true
		case strings.Contains(o, "://*."):
			scheme, host, _ := strings.Cut(o, "*.")
			p.suffixes = append(p.suffixes, wildOrigin{scheme, "." + host})
		default:
			p.exact[o] = true
		}
	}
	return p
}

// Allowed reports whether origin is on the list. "*" allows every origin; a pattern
// "https://*.example.com" allows "https://a.example.com" and "https://a.b.example.com" but
// not "https://example.com" nor another scheme.
func (p *CORS) Allowed(origin string) bool {
	if origin == "" {
		return false
	}
	if origin == "null" { // sandboxed documents, file: pages: only a credential-less "*"
		return p.any && !p.creds
	}
	if p.any || p.exact[origin] {
		return true
	}
	for _, w := range p.suffixes {
		if rest, ok := strings.CutPrefix(origin, w.scheme); ok {
			if label, ok := strings.CutSuffix(rest, w.suffix); ok && label != "" && hostLabels(label) {
				return true
			}
		}
	}
	return false
}

// IsPreflight reports whether req is a CORS preflight: OPTIONS with Origin and
// Access-Control-Request-Method.
func IsPreflight(req *message.Request) bool {
	return req.Method == "OPTIONS" && req.Header.Has("Origin") && req.Header.Has("Access-Control-Request-Method")
}

// Preflight answers a preflight into h and returns the status: 204 with the allowed
// methods and headers for an allowed origin, 403 (with Vary: Origin only) otherwise.
func (p *CORS) Preflight(req *message.Request, h *message.Header) int {
	origin := req.Header.Get("Origin")
	h.Add("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	if !p.Allowed(origin) {
		h.Add("Content-Type", "text/plain; charset=utf-8")
		return 403
	}
	p.allowOrigin(h, origin)
	h.Add("Access-Control-Allow-Methods", p.methods)
	if p.headers != "" {
		h.Add("Access-Control-Allow-Headers", p.headers)
	}
	h.Add("Access-Control-Max-Age", p.maxAge)
	return 204
}

// Refused is the body of a refused preflight.
var Refused = []byte("403 Forbidden: this origin may not use this route\n")

// Mark adds the CORS fields of a response to a request from origin ("" when the request
// had no Origin): Vary: Origin always, and for an allowed origin Access-Control-Allow-Origin,
// -Allow-Credentials and -Expose-Headers, replacing any the upstream set.
func (p *CORS) Mark(origin string, h *message.Header) {
	if !h.HasToken("Vary", "Origin") {
		h.Add("Vary", "Origin")
	}
	h.Del("Access-Control-Allow-Origin")
	h.Del("Access-Control-Allow-Credentials")
	h.Del("Access-Control-Expose-Headers")
	if origin == "" || !p.Allowed(origin) {
		return
	}
	p.allowOrigin(h, origin)
	if p.expose != "" {
		h.Add("Access-Control-Expose-Headers", p.expose)
	}
}

func (p *CORS) allowOrigin(h *message.Header, origin string) {
	if p.any && !p.creds {
		h.Add("Access-Control-Allow-Origin", "*")
		return
	}
	h.Add("Access-Control-Allow-Origin", origin)
	if p.creds {
		h.Add("Access-Control-Allow-Credentials", "true")
	}
}

// hostLabels reports whether s is made of host-name characters only (letters, digits, '-'
// and '.') in non-empty labels, so that a pattern's wildcard cannot swallow a port, a path,
// user info or an empty label.
func hostLabels(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false // an empty label: no host has one
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
