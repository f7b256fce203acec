package router

import (
	"slices"
	"strings"
	"sync"

	"github.com/verge-edge/verge/acl"
	"github.com/verge-edge/verge/ai"
	"github.com/verge-edge/verge/cache"
	"github.com/verge-edge/verge/compression"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/files"
	"github.com/verge-edge/verge/htmlrewrite"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
	"github.com/verge-edge/verge/worker"
)

// route is a config.Route compiled for the hot path: no maps to range over, no parsing, no
// regular expressions.
type route struct {
	name  string
	index int // position in the file, the last tie-breaker

	path    string // exact path, or ""
	prefix  string // path prefix, or ""
	methods []string
	headers []message.Field // Value "*" means presence only

	group    *group // upstream action (or the worker's fallback)
	redirect *redirect
	respond  *respond

	reqOps  headerOps
	respOps headerOps

	retries    int
	upgrades   []string          // Upgrade protocols requests may switch to (never nil)
	allowTrace bool              // TRACE is forwarded, not answered 405
	cache      *cache.Policy     // nil: not cached
	timeouts   upstream.Timeouts // overrides of the group's; zero fields keep the group's
	peers      sync.Map          // *lb.Backend -> *upstream.Peer with timeouts applied

	ipRules     *acl.Live // nil: every client may
	lowPriority bool      // shed while the process is overloaded

	worker *worker.Worker // worker action; nil when none
	// workerPeer, on a cached worker route, is the peer workerTransport runs the worker
	// for: the worker is the route's origin.
	workerPeer *upstream.Peer
	html       *htmlrewrite.Rules // html_rewrite rules; nil when none
	// workerFallback passes requests to group when the worker fails before responding.
	workerFallback bool
	files          *files.Handler      // files action; nil when none
	ai             *ai.Gateway         // ai_gateway action; nil when none
	compress       *compression.Policy // compress; nil when none
	// ext holds the route's auth, cors, rewrite and header rules (access.go); nil: none.
	ext *routeExtras
}

// conditions counts the conditions beyond host and path, to rank equally specific routes.
func (r *route) conditions() int { return len(r.methods) + len(r.headers) }

// matches checks the conditions other than host and path.
func (r *route) matches(req *message.Request) bool {
	if len(r.methods) > 0 && !slices.Contains(r.methods, req.Method) {
		return false
	}
	for _, h := range r.headers {
		if h.Value == "*" {
			if !req.Header.Has(h.Name) {
				return false
			}
			continue
		}
		v, ok := req.Header.Lookup(h.Name)
		if !ok || v != h.Value {
			return false
		}
	}
	return true
}

// headerOps are header changes in application order: remove, set, add.
type headerOps struct {
	remove []string
	set    []message.Field
	add    []message.Field
}

func compileOps(c config.HeaderOps) headerOps {
	return headerOps{remove: c.Remove, set: sortedFields(c.Set), add: sortedFields(c.Add)}
}

func (o *headerOps) empty() bool { return len(o.remove)+len(o.set)+len(o.add) == 0 }

// apply changes h. It does not allocate once h's storage has grown.
func (o *headerOps) apply(h *message.Header) {
	for _, n := range o.remove {
		h.Del(n)
	}
	for _, f := range o.set {
		h.Set(f.Name, f.Value)
	}
	for _, f := range o.add {
		h.Add(f.Name, f.Value)
	}
}

// sortedFields turns a map into fields sorted by name, so output order is deterministic.
func sortedFields(m map[string]string) []message.Field {
	fs := make([]message.Field, 0, len(m))
	for k, v := range m {
		fs = append(fs, message.Field{Name: k, Value: v})
	}
	slices.SortFunc(fs, func(a, b message.Field) int { return strings.Compare(a.Name, b.Name) })
	return fs
}

// respond is a precomputed fixed response.
type respond struct {
	status int
	header *message.Header
	body   []byte
}

func compileRespond(c *config.Respond, ops headerOps) *respond {
	h := &message.Header{}
	for _, f := range sortedFields(c.Headers) {
		h.Add(f.Name, f.Value)
	}
	if c.Body != "" && !h.Has("Content-Type") {
		h.Add("Content-Type", "text/plain; charset=utf-8")
	}
	ops.apply(h)
	return &respond{status: c.Status, header: h, body: []byte(c.Body)}
}

// redirect is a Location template split into literal text and placeholders.
type redirect struct {
	status int
	parts  []tmplPart
	header *message.Header // response header ops applied, without Location
}

type tmplPart struct {
	lit string
	v   string // placeholder name, or "" for a literal
}

func compileRedirect(c *config.Redirect, ops headerOps) *redirect {
	rd := &redirect{status: c.Status, header: &message.Header{}}
	ops.apply(rd.header)
	s := c.To
	for s != "" {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			rd.parts = append(rd.parts, tmplPart{lit: s})
			break
		}
		j := strings.IndexByte(s[i:], '}') // validated: present
		if i > 0 {
			rd.parts = append(rd.parts, tmplPart{lit: s[:i]})
		}
		rd.parts = append(rd.parts, tmplPart{v: s[i+1 : i+j]})
		s = s[i+j+1:]
	}
	return rd
}

// location expands the template for req into b.
func (rd *redirect) location(b []byte, req *message.Request, tls bool) []byte {
	for _, p := range rd.parts {
		switch p.v {
		case "":
			b = append(b, p.lit...)
		case "scheme":
			switch {
			case req.Scheme != "":
				b = append(b, req.Scheme...)
			case tls:
				b = append(b, "https"...)
			default:
				b = append(b, "http"...)
			}
		case "host":
			b = append(b, req.Host()...)
		case "path":
			b = append(b, req.Path()...)
		case "query":
			b = append(b, req.RawQuery()...)
		case "uri":
			b = append(b, req.Target...)
		}
	}
	return b
}

// redirectScratch holds the per-redirect header and Location buffer, pooled.
type redirectScratch struct {
	h message.Header
	b []byte
}

var redirectPool = sync.Pool{New: func() any { return new(redirectScratch) }}
