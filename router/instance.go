// Package router turns a validated config into a running proxy: it implements proxy.Phases
// for the configured routes (host, path, method and header matching without allocation,
// redirects, fixed responses, header rewriting, per-route retries and timeouts, load balancing
// through lb with passive health reports, metrics and access logging), and Runtime runs the
// listeners and swaps config generations on reload without dropping requests.
package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/acl"
	"github.com/verge-edge/verge/acme"
	"github.com/verge-edge/verge/ai"
	"github.com/verge-edge/verge/cache"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/files"
	"github.com/verge-edge/verge/http1"
	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/observe"
	"github.com/verge-edge/verge/overload"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/server"
	"github.com/verge-edge/verge/upstream"
	"github.com/verge-edge/verge/worker"
)

var errNoServer = errors.New("no available server in the upstream group")

// maxEngineRetries caps retries in the engine; each route's own budget (at most 10, see
// config.Route.Retries) is enforced by the phases.
const maxEngineRetries = 10

// Deps are what successive config generations share: the upstream connection pool, the
// balancers' live state and the metrics.
type Deps struct {
	// Transport reaches the origins. Required.
	Transport proxy.RoundTripper
	// Store carries backend health and drain state from one generation to the next. Nil
	// means a private store (no carry-over).
	Store *lb.StateStore
	// Metrics receives observations. Nil means none.
	Metrics Metrics
	// Logger is the error log. Nil means slog.Default().
	Logger *slog.Logger
	// AccessLogWriter, when non-nil, receives access-log lines instead of the configured
	// output (embedding, tests).
	AccessLogWriter io.Writer
	// Workers runs the config's workers; it outlives config generations so that workers
	// keep their instances and Durable Objects across reloads. Nil means a config with
	// workers fails to build.
	Workers *worker.Registry
	// WorkerModules, when non-nil, picks the module each configured worker runs (a cluster
	// deployment in place of the configured one). Nil means the configured module.
	WorkerModules WorkerModules
	// Cache serves and stores responses of routes with caching enabled. Nil means no
	// caching (routes' cache settings are ignored).
	Cache *cache.Cache
	// RateLimits keeps the rate-limit rules' counts across generations. Nil means a private
	// store (counts start over at each reload).
	RateLimits *RateLimits
	// Overload, when set, tells when the process is overloaded: low-priority routes are then
	// answered 503 and the busiest clients' new connections shed. Runtime.Apply sets its
	// thresholds from the config. Nil means no adaptive protection.
	Overload *overload.Monitor
	// ACME obtains and renews the certificates of listeners with tls.acme, and answers
	// their HTTP-01 challenges on plain listeners; it outlives generations. Nil means a
	// config with tls.acme fails to build.
	ACME *acme.Manager
}

// Instance is one config generation: routes, balancers, TLS settings and access log. It is
// immutable once built; a reload builds a new Instance and closes the old one when its
// in-flight requests are done.
type Instance struct {
	// Config is the configuration the instance was built from.
	Config *config.Config

	groups   map[string]*group
	order    []string // group names in config order
	handlers map[string]*handler
	tls      map[string]*tls.Config
	access   *observe.AccessLog
	log      *slog.Logger
	metric   Metrics
	inflight atomic.Int64
	closed   atomic.Bool
	cached   bool // a route has caching enabled
	workers  map[string]*worker.Worker
	ipRules  []*acl.Live // every listener's and route's, closed with the instance
	// staged are the new worker versions, committed when the generation is built and
	// discarded when it fails.
	staged []*worker.Staged
	// acmeSites are the listeners' ACME sites, started when the generation is built.
	acmeSites map[string]*acme.Site
	// pending deploys the reserved workers of a generation built before its workers
	// (Options.StartBeforeWorkers); nil otherwise.
	pending func() error
	// workerPeers maps the peers of cached worker routes to their workers.
	workerPeers map[*upstream.Peer]*worker.Worker
	// fileHandlers are the routes' static file roots, closed with the instance.
	fileHandlers []*files.Handler
	// aiClient reaches the ai providers of the routes' ai_gateway; nil when none.
	aiClient *ai.Client
}

// handler serves one listener's exchanges with an instance's routes.
type handler struct {
	in      *Instance
	proxy   *proxy.Proxy[reqCtx]
	ipRules *acl.Live  // the listener's; nil: none
	edge    *plainEdge // ACME challenges and redirect_https; nil: none
}

// AllowConn applies the listener's ip_rules to a connecting peer (server.ConnFilter).
func (h *handler) AllowConn(a netip.Addr) bool { return h.ipRules == nil || h.ipRules.Allowed(a) }

// ServeExchange counts the exchange in flight on the instance and runs the phases.
func (h *handler) ServeExchange(ex message.ServerExchange) {
	h.in.inflight.Add(1)
	defer h.in.inflight.Add(-1)
	// The listener's IP rules also apply per request: to HTTP/3 (QUIC connections do not
	// pass the TCP accept check) and to connections opened before a rule or list changed.
	if h.ipRules != nil && !h.ipRules.Allowed(ex.Conn().RemoteAddr.Addr()) {
		refuseExchange(ex)
		return
	}
	if h.edge != nil && h.edge.serve(ex) {
		return
	}
	h.proxy.ServeExchange(ex)
}

var forbiddenConn = []byte("403 Forbidden: this address may not use this listener\n")

// refuseExchange answers 403 and closes an HTTP/1.1 connection.
func refuseExchange(ex message.ServerExchange) {
	resp := message.Response{Status: 403, Proto: ex.Request().Proto, ContentLength: int64(len(forbiddenConn))}
	resp.Header.Add("Content-Type", "text/plain; charset=utf-8")
	if ex.Conn().Proto == message.HTTP11 {
		resp.Header.Add("Connection", "close")
	}
	if ex.WriteHeader(&resp) == nil {
		if ex.Request().Method != "HEAD" {
			ex.Write(forbiddenConn)
		}
		ex.Finish(nil)
	}
}

// NewInstance builds a generation from a validated config, deploying its workers that changed
// (all or none: on error none of them is switched). On error nothing is left running.
func NewInstance(cfg *config.Config, d Deps) (*Instance, error) {
	return newInstance(cfg, d, false)
}

// newInstance is NewInstance; with laterWorkers the workers are only reserved and
// Instance.pending deploys them.
func newInstance(cfg *config.Config, d Deps, laterWorkers bool) (_ *Instance, err error) {
	if d.Transport == nil {
		return nil, errors.New("router: Deps.Transport is required")
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Metrics == nil {
		d.Metrics = nopMetrics{}
	}
	if d.Store == nil {
		d.Store = lb.NewStateStore()
	}
	if d.RateLimits == nil {
		d.RateLimits = NewRateLimits()
	}
	in := &Instance{
		Config:   cfg,
		groups:   map[string]*group{},
		handlers: map[string]*handler{},
		tls:      map[string]*tls.Config{},
		log:      d.Logger,
		metric:   d.Metrics,
	}
	defer func() {
		if err != nil {
			for _, s := range in.staged {
				s.Discard()
			}
			in.release()
		}
	}()
	for i := range cfg.Upstreams {
		u := &cfg.Upstreams[i]
		g, err := newGroup(u, d.Store, d.Metrics, d.Logger)
		if err != nil {
			return nil, err
		}
		in.groups[u.Name] = g
		in.order = append(in.order, u.Name)
	}
	if a := cfg.AccessLog; a.Output != "off" || d.AccessLogWriter != nil {
		in.access, err = observe.NewAccessLog(observe.AccessLogConfig{
			Output: a.Output, Format: a.Format, Template: a.Template, Fields: a.Fields, Writer: d.AccessLogWriter, Logger: d.Logger,
		})
		if err != nil {
			return nil, err
		}
	}
	if err := in.deployWorkers(cfg, d.Workers, d.WorkerModules, laterWorkers); err != nil {
		return nil, err
	}
	if in.acmeSites, err = in.prepareACME(cfg, d.ACME); err != nil {
		return nil, err
	}
	routes := make([]*route, len(cfg.Routes))
	for i := range cfg.Routes {
		routes[i] = in.compileRoute(i, &cfg.Routes[i])
		if r := cfg.Routes[i].IPRules; r != nil {
			if routes[i].ipRules, err = in.liveRules(r, d.Logger); err != nil {
				return nil, fmt.Errorf("route %q: ip_rules: %w", cfg.Routes[i].Name, err)
			}
		}
		if err = in.compileFiles(routes[i], &cfg.Routes[i]); err != nil {
			return nil, fmt.Errorf("route %q: %w", cfg.Routes[i].Name, err)
		}
		if err = in.compileAIGateway(routes[i], &cfg.Routes[i], d.RateLimits); err != nil {
			return nil, fmt.Errorf("route %q: %w", cfg.Routes[i].Name, err)
		}
	}
	rules := map[string]*config.RateLimit{}
	for i := range cfg.RateLimits {
		rules[cfg.RateLimits[i].Name] = &cfg.RateLimits[i]
	}
	transport := d.Transport
	if len(in.workerPeers) > 0 {
		transport = &workerTransport{next: d.Transport, peers: in.workerPeers}
	}
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		t := newTable()
		allowTrace := false // the engine lets TRACE through when a route may take it
		for i, r := range routes {
			rc := &cfg.Routes[i]
			if len(rc.Listeners) > 0 && !contains(rc.Listeners, l.Name) {
				continue
			}
			t.add(r, rc.Match.Host)
			allowTrace = allowTrace || r.allowTrace
		}
		ph := &phases{table: t, tls: l.TLS != nil, metric: d.Metrics, log: d.Logger}
		ph.listener = l.Name
		ph.limits = compileLimits(cfg, l, routes, rules, d.RateLimits, d.Logger)
		ph.overload = d.Overload
		ph.reqID = newRequestIDs(&cfg.RequestID)
		if in.access != nil {
			ph.access = in.access
		}
		in.handlers[l.Name] = &handler{in: in, proxy: &proxy.Proxy[reqCtx]{
			Phases:         ph,
			Transport:      transport,
			MaxRetries:     maxEngineRetries,
			TrustForwarded: l.TrustForwarded,
			TrustedProxies: cfg.TrustedProxiesFor(l),
			Forwarded:      l.ForwardedHeader,
			AllowTrace:     allowTrace,
			Logger:         d.Logger,
		}}
		if d.Cache != nil && in.cached {
			in.handlers[l.Name].proxy.Cache = d.Cache
		}
		if l.IPRules != nil {
			if in.handlers[l.Name].ipRules, err = in.liveRules(l.IPRules, d.Logger); err != nil {
				return nil, fmt.Errorf("listener %q: ip_rules: %w", l.Name, err)
			}
		}
		in.handlers[l.Name].edge = newPlainEdge(cfg, l, d.ACME)
		if l.TLS != nil {
			tc, err := buildServerTLS(l, in.acmeSites[l.Name])
			if err != nil {
				return nil, fmt.Errorf("listener %q: %w", l.Name, err)
			}
			in.tls[l.Name] = tc
		}
	}
	for _, s := range in.staged {
		s.Commit()
	}
	in.staged = nil
	in.startACME(&d)
	keep := map[string]bool{}
	for n := range rules {
		keep[n] = true
	}
	d.RateLimits.forget(keep)
	return in, nil
}

func (in *Instance) compileRoute(i int, c *config.Route) *route {
	r := &route{
		name:        c.Name,
		index:       i,
		path:        configPath(c.Match.Path),
		prefix:      configPath(c.Match.PathPrefix),
		methods:     c.Match.Methods,
		headers:     sortedFields(c.Match.Headers),
		reqOps:      compileOps(c.RequestHeaders),
		respOps:     compileOps(c.ResponseHeaders),
		retries:     *c.Retries,
		upgrades:    upgradesOf(c),
		allowTrace:  c.AllowTrace,
		lowPriority: c.Priority == "low",
		timeouts: upstream.Timeouts{
			Connect: c.Timeouts.Connect.Std(),
			Read:    c.Timeouts.Read.Std(),
			Write:   c.Timeouts.Write.Std(),
			Total:   c.Timeouts.Total.Std(),
		},
	}
	if c.Worker != "" {
		r.worker = in.workers[c.Worker]
		r.workerFallback = c.WorkerOnError == config.WorkerOnErrorOrigin
		if c.Cache != nil && r.worker != nil {
			r.cache = compileCache(c.Cache)
			if r.cache != nil {
				in.cached = true
				r.workerPeer = &upstream.Peer{Address: "worker:" + c.Worker}
				if in.workerPeers == nil {
					in.workerPeers = map[*upstream.Peer]*worker.Worker{}
				}
				in.workerPeers[r.workerPeer] = r.worker
			}
		}
	}
	r.html, _ = config.HTMLRewriteRules(c.HTMLRewrite) // validated
	r.ext = in.compileExtras(c)
	switch {
	case c.Upstream != "":
		r.group = in.groups[c.Upstream]
		if c.Cache != nil && r.cache == nil {
			r.cache = compileCache(c.Cache)
			in.cached = in.cached || r.cache != nil
		}
	case c.Redirect != nil:
		r.redirect = compileRedirect(c.Redirect, r.respOps)
	case c.Respond != nil:
		r.respond = compileRespond(c.Respond, r.respOps)
	}
	return r
}

// upgradesOf returns the route's allowed Upgrade protocols, never nil so that the engine
// takes the route's list and not its own default.
func upgradesOf(c *config.Route) []string {
	if c.Upgrades == nil {
		return proxy.DefaultUpgrades
	}
	return append([]string{}, (*c.Upgrades)...)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// logReject counts a request the HTTP/1 codec answered itself (malformed, or over a limit)
// and writes its access-log line, like any other request; its route is "none".
func (in *Instance) logReject(r http1.Reject) {
	in.metric.ObserveRequest(noRoute, message.HTTP11, r.Status, 0)
	if in.access == nil {
		return
	}
	rec := observe.Record{Time: r.Time, Proto: message.HTTP11, Status: r.Status, Route: noRoute, BytesSent: r.BodyBytes, Error: r.Err}
	if r.Conn != nil {
		rec.RemoteAddr = r.Conn.RemoteAddr
	}
	in.access.Log(&rec)
}

// Handler returns the handler for the named listener, or nil if the config has none.
func (in *Instance) Handler(listener string) server.Handler {
	if h := in.handlers[listener]; h != nil {
		return h
	}
	return nil
}

// TLSConfig returns the TLS configuration of the named listener, nil for plain text.
func (in *Instance) TLSConfig(listener string) *tls.Config { return in.tls[listener] }

// InFlight reports the requests being served by this instance.
func (in *Instance) InFlight() int64 { return in.inflight.Load() }

// Balancer returns the balancer of the named upstream group, or nil.
func (in *Instance) Balancer(group string) *lb.Balancer {
	if g := in.groups[group]; g != nil {
		return g.bal
	}
	return nil
}

// Groups returns the upstream group names in config order.
func (in *Instance) Groups() []string { return append([]string(nil), in.order...) }

// Close waits until the requests in flight on this instance are done (or ctx ends), then
// stops its health checks and discovery and closes its access log. Requests that still
// arrive keep working: the balancers select from their last set.
func (in *Instance) Close(ctx context.Context) error {
	if in.closed.Swap(true) {
		return nil
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	var err error
	for in.inflight.Load() > 0 && err == nil {
		select {
		case <-ctx.Done():
			err = fmt.Errorf("router: %d requests still in flight: %w", in.inflight.Load(), ctx.Err())
		case <-t.C:
		}
	}
	in.release()
	return err
}

// liveRules builds ip rules that follow their files while the instance lives.
func (in *Instance) liveRules(r *config.IPRules, log *slog.Logger) (*acl.Live, error) {
	l, err := acl.NewLive(r.Source(), 0, log)
	if err != nil {
		return nil, err
	}
	in.ipRules = append(in.ipRules, l)
	return l, nil
}

func (in *Instance) release() {
	for _, g := range in.groups {
		g.bal.Close()
	}
	for _, l := range in.ipRules {
		l.Close()
	}
	if in.access != nil {
		in.access.Close()
	}
	in.closeFiles()
	in.closeAI()
}
