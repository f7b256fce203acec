package router

import (
	"crypto/rand"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/verge-edge/verge/auth"
	"github.com/verge-edge/verge/cache"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
)

// routeExtras are a route's optional request and response treatments: authentication,
// CORS, the path rewrite and conditional header rules (docs/auth.md, docs/rewrites.md). A
// route without any has none, and the hot path pays one nil check.
type routeExtras struct {
	auth       auth.Checker // nil: none
	cors       *auth.CORS   // nil: none
	rewrite    *rewrite     // nil: none
	reqRules   []headerRule
	respRules  []headerRule
	userHeader bool // the checker names a user for the access log
	// forward is auth when it is forward authentication: it is told the normalized path.
	forward *auth.Forward
	// cache, on a cached route with auth, is the route's cache policy marked Authenticated:
	// responses are stored only when they say a shared cache may (RFC 9111 section 3.5),
	// whatever carried the credentials (a cookie, another field, the client's address).
	cache *cache.Policy
}

// compileExtras builds the route's extras, nil when it has none.
func (in *Instance) compileExtras(c *config.Route) *routeExtras {
	e := &routeExtras{
		reqRules:  compileRules(c.RequestHeaders.Rules),
		respRules: compileRules(c.ResponseHeaders.Rules),
	}
	if a := c.Auth; a != nil {
		switch {
		case a.Basic != nil:
			users := map[string]string{}
			if a.Basic.UsersFile != "" {
				users, _ = config.ReadHtpasswd(a.Basic.UsersFile) // validated
			}
			for u, h := range a.Basic.Users {
				users[u] = h
			}
			e.auth = auth.NewBasic(auth.BasicConfig{Realm: a.Basic.Realm, Users: users, UserHeader: a.Basic.UserHeader})
		case a.JWT != nil:
			j := a.JWT
			e.auth = auth.NewJWT(auth.JWTConfig{
				JWKSURL: j.JWKSURL, Issuer: j.Issuer, Audience: j.Audience, Algorithms: j.Algorithms,
				Leeway: j.Leeway.Std(), Cookie: j.Cookie, Header: j.Header, ClaimsToHeaders: j.ClaimsToHeaders,
				CacheMin: j.CacheMin.Std(), CacheMax: j.CacheMax.Std(), RefetchInterval: j.RefetchInterval.Std(),
				FetchTimeout: j.FetchTimeout.Std(), Client: auth.DefaultClient, Logger: in.log,
			})
		case a.Forward != nil:
			f := a.Forward
			var ignore []string
			if rid := &in.Config.RequestID; rid.Enabled {
				ignore = []string{rid.Header} // new on every request: it would defeat the cache
			}
			e.forward = auth.NewForward(auth.ForwardConfig{URL: f.URL, Timeout: f.Timeout.Std(),
				CopyHeaders: f.CopyHeaders, Cache: f.Cache.Std(), KeyIgnore: ignore, Client: auth.DefaultClient, Logger: in.log})
			e.auth = e.forward
		}
		if c.Cache != nil {
			if e.cache = compileCache(c.Cache); e.cache != nil {
				e.cache.Authenticated = true
			}
		}
	}
	if cr := c.CORS; cr != nil {
		e.cors = auth.NewCORS(auth.CORSConfig{AllowOrigins: cr.AllowOrigins, AllowMethods: cr.AllowMethods,
			AllowHeaders: cr.AllowHeaders, ExposeHeaders: cr.ExposeHeaders,
			AllowCredentials: cr.AllowCredentials, MaxAge: cr.MaxAge.Std()})
	}
	if rw := c.Rewrite; rw != nil {
		e.rewrite = &rewrite{strip: strings.TrimSuffix(rw.StripPrefix, "/"), add: strings.TrimSuffix(rw.AddPrefix, "/"), to: rw.To}
		if rw.Regex != "" {
			e.rewrite.re = regexp.MustCompile(rw.Regex) // validated
		}
	}
	if e.auth == nil && e.cors == nil && e.rewrite == nil && e.reqRules == nil && e.respRules == nil {
		return nil
	}
	return e
}

// checkAccess runs the route's CORS preflight and authentication in the Request phase; done
// means the request was answered.
func (p *phases) checkAccess(s *proxy.Session, c *reqCtx, e *routeExtras) (done bool, err error) {
	if e.cors != nil && auth.IsPreflight(s.Req) {
		h := headerPool.Get().(*message.Header)
		status := e.cors.Preflight(s.Req, h)
		p.addRequestID(c, h)
		var body []byte
		if status == 403 {
			body = auth.Refused
		}
		err = s.Respond(status, h, body)
		h.Reset()
		headerPool.Put(h)
		return true, err
	}
	if e.auth != nil {
		var user string
		var d *auth.Denial
		if e.forward != nil {
			user, d = e.forward.CheckPath(s.Context(), s.Req, s.ClientAddr().Addr(), c.normPath(s))
		} else {
			user, d = e.auth.Check(s.Context(), s.Req, s.ClientAddr().Addr())
		}
		if d != nil {
			return true, p.respond(s, c, d.Status, d.Header, d.Body)
		}
		c.user = user
	}
	return false, nil
}

// normPath returns the request's path as route matching saw it (normalize.go): percent-
// encoded unreserved characters decoded, dot segments resolved, repeated slashes merged. It
// is computed once, and allocates only for a path that needs normalizing.
func (c *reqCtx) normPath(s *proxy.Session) string {
	if c.pathSet {
		return c.path
	}
	c.path, c.pathSet = s.Req.Path(), true
	if needsNormalizing(c.path) {
		c.path = normalizePath(c.path, make([]byte, 2*len(c.path)+2))
	}
	return c.path
}

// upstreamRequest applies the rewrite and the request header rules. The rewrite works on
// the normalized path, as NGINX's rewrite works on $uri: a path with dot segments cannot
// climb out of add_prefix, nor escape strip_prefix by another spelling.
func (e *routeExtras) upstreamRequest(s *proxy.Session, c *reqCtx, req *message.Request) {
	if e.rewrite != nil {
		target := req.Target
		path, query, hasQuery := strings.Cut(target, "?")
		if n := c.normPath(s); n != path {
			target = n
			if hasQuery {
				target = n + "?" + query
			}
		}
		req.Target = e.rewrite.apply(target)
	}
	for i := range e.reqRules {
		if r := &e.reqRules[i]; r.holds(0, c.normPath(s), &req.Header) {
			r.ops.apply(&req.Header)
		}
	}
}

// response applies the response header rules and the CORS fields.
func (e *routeExtras) response(s *proxy.Session, c *reqCtx, status int, h *message.Header) {
	for i := range e.respRules {
		if r := &e.respRules[i]; r.holds(status, c.normPath(s), h) {
			r.ops.apply(h)
		}
	}
	if e.cors != nil {
		e.cors.Mark(s.Req.Header.Get("Origin"), h)
	}
}

var headerPool = sync.Pool{New: func() any { return new(message.Header) }}

// respond answers directly like s.Respond, with the route's response rules, CORS fields and
// the request ID added when there are any.
func (p *phases) respond(s *proxy.Session, c *reqCtx, status int, h *message.Header, body []byte) error {
	var e *routeExtras
	if c.route != nil {
		e = c.route.ext
	}
	if e == nil && c.reqIDField == "" {
		return s.Respond(status, h, body)
	}
	sc := headerPool.Get().(*message.Header)
	if h != nil {
		sc.CopyFrom(h)
	}
	if e != nil {
		e.response(s, c, status, sc)
	}
	p.addRequestID(c, sc)
	err := s.Respond(status, sc, body)
	sc.Reset()
	headerPool.Put(sc)
	return err
}

// rewrite is a compiled config.Rewrite.
type rewrite struct {
	strip string // without a trailing '/'
	re    *regexp.Regexp
	to    string
	add   string // without a trailing '/'
}

// apply rewrites target's path and keeps its query.
func (rw *rewrite) apply(target string) string {
	path, query, hasQuery := strings.Cut(target, "?")
	if rw.strip != "" {
		if rest, ok := strings.CutPrefix(path, rw.strip); ok && (rest == "" || rest[0] == '/') {
			path = rest
			if path == "" {
				path = "/"
			}
		}
	}
	if rw.re != nil {
		if m := rw.re.FindStringSubmatchIndex(path); m != nil {
			path = string(rw.re.ExpandString(nil, rw.to, path, m))
			if path == "" || path[0] != '/' {
				path = "/" + path
			}
		}
	}
	if rw.add != "" {
		path = rw.add + path
	}
	if hasQuery {
		return path + "?" + query
	}
	return path
}

// headerRule is a compiled config.HeaderRule.
type headerRule struct {
	status  *statusSet // nil: any
	prefix  string
	headers []message.Field // Value "*" means presence only
	ops     headerOps
}

func compileRules(rules []config.HeaderRule) []headerRule {
	var out []headerRule
	for _, r := range rules {
		hr := headerRule{prefix: r.When.PathPrefix, headers: sortedFields(r.When.Headers),
			ops: compileOps(config.HeaderOps{Add: r.Add, Set: r.Set, Remove: r.Remove})}
		if r.When.Status != "" {
			hr.status = parseStatusSet(r.When.Status)
		}
		out = append(out, hr)
	}
	return out
}

// holds reports whether the rule's condition holds for a message with status (0 for a
// request), the request's normalized path and the message's fields.
func (r *headerRule) holds(status int, path string, h *message.Header) bool {
	if r.status != nil && !r.status.has(status) {
		return false
	}
	if r.prefix != "" && !strings.HasPrefix(path, r.prefix) {
		return false
	}
	for _, f := range r.headers {
		v, ok := h.Lookup(f.Name)
		if !ok || f.Value != "*" && v != f.Value {
			return false
		}
	}
	return true
}

// statusSet is a set of statuses 0..639 as a bitmap.
type statusSet [10]uint64

func (s *statusSet) has(code int) bool {
	return code >= 0 && code < 640 && s[code/64]&(1<<(code%64)) != 0
}

// parseStatusSet parses "200", "200-299", "2xx", comma-separated (validated by config).
func parseStatusSet(spec string) *statusSet {
	s := &statusSet{}
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		lo, hi := 0, 0
		if len(item) == 3 && item[1:] == "xx" {
			lo = int(item[0]-'0') * 100
			hi = lo + 99
		} else {
			a, b, isRange := strings.Cut(item, "-")
			lo, _ = strconv.Atoi(a)
			hi = lo
			if isRange {
				hi, _ = strconv.Atoi(b)
			}
		}
		for c := max(lo, 0); c <= hi && c < 640; c++ {
			s[c/64] |= 1 << (c % 64)
		}
	}
	return s
}

// requestIDs is the compiled config.RequestID.
type requestIDs struct {
	header   string
	trust    string // trusted_proxies, all or none
	response bool
}

func newRequestIDs(c *config.RequestID) *requestIDs {
	if !c.Enabled {
		return nil
	}
	return &requestIDs{header: c.Header, trust: c.Trust, response: *c.Response}
}

// maxRequestIDBytes bounds a kept client ID; a longer one is replaced.
const maxRequestIDBytes = 128

// assign keeps the request's ID when its sender is trusted with it, else replaces it with a
// new one, and notes it in c.
func (q *requestIDs) assign(s *proxy.Session, c *reqCtx) {
	h := &s.Req.Header
	if q.response {
		c.reqIDField = q.header
	}
	if v, ok := h.Lookup(q.header); ok && (q.trust == "all" || q.trust == "trusted_proxies" && s.PeerTrusted()) &&
		validRequestID(v) && h.Count(q.header) == 1 {
		c.reqID = v
		return
	}
	h.Del(q.header)
	var b [36]byte
	newUUID(&b)
	// One allocation: the ID outlives the request in protocol layers that keep header
	// strings (an HTTP/2 frame written later), so it must not point into reused memory.
	c.reqID = string(b[:])
	h.Add(q.header, c.reqID)
}

func validRequestID(v string) bool {
	if v == "" || len(v) > maxRequestIDBytes {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] >= 0x7f || v[i] == '"' || v[i] == '\\' {
			return false
		}
	}
	return true
}

// newUUID writes a random version 4 UUID (RFC 9562 section 5.4) in its text form.
func newUUID(b *[36]byte) {
	var r [16]byte
	rand.Read(r[:])
	r[6] = r[6]&0x0f | 0x40
	r[8] = r[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	j := 0
	for i, c := range r {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j], b[j+1] = hex[c>>4], hex[c&0xf]
		j += 2
	}
}

// addRequestID puts the request's ID on a response when so configured.
func (p *phases) addRequestID(c *reqCtx, h *message.Header) {
	if c.reqIDField != "" {
		h.Set(c.reqIDField, c.reqID)
	}
}

// FailToProxy writes the engine's error page, with the request ID when responses carry it.
func (p *phases) FailToProxy(s *proxy.Session, err *fault.Error, c *reqCtx) int {
	if c.reqIDField == "" || s.Responded() || err.Kind == fault.Canceled ||
		err.Source == fault.Downstream && err.Kind == fault.ConnectionClosed {
		return s.RespondError(err) // no ID to add, or nobody to write a page to
	}
	status := err.StatusCode()
	h := headerPool.Get().(*message.Header)
	h.Add("Content-Type", "text/plain; charset=utf-8")
	h.Add("Cache-Control", "no-store")
	if status == 405 {
		h.Add("Allow", proxy.AllowedMethods)
	}
	h.Set(c.reqIDField, c.reqID)
	_ = s.Respond(status, h, []byte(strconv.Itoa(status)+" "+message.StatusText(status)+"\n"))
	h.Reset()
	headerPool.Put(h)
	return status
}
