package router

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/verge-edge/verge/ai"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/observe"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/worker"
)

// AIMetrics receives one observation per ai_gateway request; *observe.Metrics implements it.
// A Deps.Metrics without it records only the ordinary request metrics.
type AIMetrics interface {
	ObserveAI(s *observe.AISample)
}

var _ AIMetrics = (*observe.Metrics)(nil)

// AIProviders builds the ai.Providers of a validated config: reads their API keys and opens
// the local models.
func AIProviders(cfg *config.Config) ([]ai.Provider, error) { return aiProviders(cfg.AI.Providers) }

func aiProviders(pcs []config.AIProvider) ([]ai.Provider, error) {
	var out []ai.Provider
	for _, pc := range pcs {
		p := ai.Provider{
			Name: pc.Name, BaseURL: pc.BaseURL, Models: pc.Models, Priority: pc.Priority,
			ConnectTimeout: pc.Timeouts.Connect.Std(), FirstTokenTimeout: pc.Timeouts.FirstToken.Std(),
			TotalTimeout: pc.Timeouts.Total.Std(), MaxConcurrency: pc.MaxConcurrency,
		}
		if len(pc.Prices) > 0 {
			p.Prices = map[string]ai.Price{}
			for m, pr := range pc.Prices {
				p.Prices[m] = ai.Price{Input: pr.Input, Output: pr.Output}
			}
		}
		if pc.APIKey != nil {
			k, err := config.ReadSecret(*pc.APIKey)
			if err != nil {
				return nil, fmt.Errorf("ai provider %s: api_key: %w", pc.Name, err)
			}
			p.APIKey = k
		}
		if pc.Type == "local" {
			m, err := openLocalModel(pc.Model, pc.MaxConcurrency)
			if err != nil {
				return nil, fmt.Errorf("ai provider %s: %w", pc.Name, err)
			}
			p.Handler, p.BaseURL = m.h, "/v1"
			if len(p.Models) == 0 {
				p.Models = []string{m.name} // the model answers only to its name
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// localModels keeps the opened local models by path for the life of the process: a reload
// does not load them again.
var localModels sync.Map // path -> *localModel

// builtinProvider is what an AI binding reaches when no provider is configured: the tiny
// model built into the binary.
var builtinProvider = config.AIProvider{Name: "builtin", Type: "local", MaxConcurrency: config.DefaultAILocalMaxConcurrency,
	Timeouts: config.AITimeouts{Connect: config.Duration(config.DefaultAIConnectTimeout),
		FirstToken: config.Duration(config.DefaultAIFirstTokenTimeout), Total: config.Duration(config.DefaultAITotalTimeout)}}

// workerAI builds a worker's AI binding, with a client of its own: the worker version
// deployed with it closes the client when it is released, so a reload that changes the
// grants leaves no connections to the old providers behind. Key, the hash of the granted
// providers' configuration, is part of the version's configHash: a reload that changes
// nothing keeps the version (and its client) and drops the client built here unused.
func workerAI(w *config.WorkerAI) (*worker.AIBinding, error) {
	granted := w.Granted
	if granted == nil {
		granted = []config.AIProvider{builtinProvider}
	}
	ps, err := aiProviders(granted)
	if err != nil {
		return nil, err
	}
	key, err := workerAIKey(granted, ps)
	if err != nil {
		return nil, err
	}
	c, err := ai.NewClient(ps)
	if err != nil {
		return nil, err
	}
	return &worker.AIBinding{Name: w.Binding, Client: c, Key: key}, nil
}

// workerAIKey identifies the configuration of the granted providers, and the API keys read
// for them (so that a rotated key file redeploys the worker), without pointer addresses: the
// same configuration loaded again gives the same key.
func workerAIKey(granted []config.AIProvider, ps []ai.Provider) (string, error) {
	b, err := json.Marshal(granted)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(b)
	for _, p := range ps {
		fmt.Fprintf(h, "\x00%s\x00%s", p.Name, p.APIKey)
	}
	return hex.EncodeToString(h.Sum(nil)[:12]), nil
}

// aiClient returns the instance's AI client, built on first use.
func (in *Instance) aiClientFor(cfg *config.Config) (*ai.Client, error) {
	if in.aiClient != nil {
		return in.aiClient, nil
	}
	ps, err := AIProviders(cfg)
	if err != nil {
		return nil, err
	}
	c, err := ai.NewClient(ps)
	if err != nil {
		return nil, err
	}
	in.aiClient = c
	return c, nil
}

// compileAIGateway builds the route's ai_gateway, with the state its predecessor of the same
// name left in store.
func (in *Instance) compileAIGateway(r *route, c *config.Route, store *RateLimits) error {
	g := c.AIGateway
	if g == nil {
		return nil
	}
	all, err := in.aiClientFor(in.Config)
	if err != nil {
		return err
	}
	client, err := all.Subset(g.Providers)
	if err != nil {
		return err
	}
	gc := ai.GatewayConfig{Client: client, MaxBody: int64(g.MaxBody)}
	if len(g.Keys) > 0 {
		gc.Keys = map[string]string{}
		for _, k := range g.Keys {
			v, err := config.ReadSecret(k.Key)
			if err != nil {
				return fmt.Errorf("ai_gateway key %s: %w", k.Name, err)
			}
			gc.Keys[v] = k.Name
		}
	}
	if k := g.Cache; k != nil {
		gc.Cache = &ai.CacheConfig{TTL: k.TTL.Std(), MaxEntries: k.MaxEntries, MaxBytes: int64(k.MaxBytes),
			MaxEntrySize: int64(k.MaxEntrySize), Shared: k.Shared}
	}
	if rl := g.RateLimit; rl != nil {
		gc.RateLimit, gc.RatePeriod = rl.Requests, rl.Period.Std()
	}
	if b := g.TokenBudget; b != nil {
		gc.TokenBudget, gc.BudgetPeriod = b.Tokens, b.Period.Std()
	}
	// The state goes from generation to generation with the rate-limit rules' (Deps.RateLimits),
	// by route name: a reload that leaves the settings alone resets no count and no cache.
	if prev, ok := store.gateways.Load(c.Name); ok {
		gc.Reuse = prev.(*ai.GatewayState)
	}
	if r.ai, err = ai.NewGateway(gc); err != nil {
		return err
	}
	store.gateways.Store(c.Name, r.ai.State())
	return nil
}

func (in *Instance) closeAI() {
	if in.aiClient != nil {
		in.aiClient.Close()
	}
}

// serveAI answers the request with the route's gateway.
func (p *phases) serveAI(s *proxy.Session, c *reqCtx, r *route) (bool, error) {
	req := s.Req
	hr := &http.Request{
		Method: req.Method, URL: &url.URL{Path: req.Path(), RawQuery: req.RawQuery()},
		Proto: req.Proto, Header: http.Header{}, Host: req.Authority, ContentLength: req.ContentLength,
	}
	for _, f := range req.Header.Fields() {
		hr.Header.Add(f.Name, f.Value)
	}
	if req.Body != nil {
		hr.Body = &countingBody{r: req.Body, n: &s.BytesReceived}
	} else {
		hr.Body = http.NoBody
	}
	if ca := s.ClientAddr(); ca.IsValid() {
		hr.RemoteAddr = ca.String()
	}
	hr = hr.WithContext(s.Context())
	w := &exchangeWriter{s: s, p: p, c: c, r: r, header: http.Header{}}
	res := r.ai.Serve(w, hr)
	c.ai = &res
	if !w.wrote {
		w.WriteHeader(http.StatusInternalServerError)
	}
	if res.Err != nil || w.err != nil {
		err := res.Err
		if err == nil {
			err = w.err
		}
		if w.err != nil {
			return true, fault.ClassifyWrite(fault.Downstream, w.err)
		}
		return true, &fault.Error{Source: fault.Upstream, Kind: fault.ConnectionClosed, Cause: err}
	}
	if err := s.Exchange().Finish(nil); err != nil {
		return true, fault.ClassifyWrite(fault.Downstream, err)
	}
	return true, nil
}

// exchangeWriter is an http.ResponseWriter over the session's exchange: the head goes out
// with the route's response header operations, each Flush pushes the bytes to the client.
type exchangeWriter struct {
	s      *proxy.Session
	p      *phases
	c      *reqCtx
	r      *route
	header http.Header
	resp   message.Response
	wrote  bool
	err    error
}

func (w *exchangeWriter) Header() http.Header { return w.header }

func (w *exchangeWriter) WriteHeader(status int) {
	if w.wrote || w.err != nil {
		return
	}
	w.wrote = true
	resp := &w.resp
	resp.Status, resp.Proto, resp.ContentLength = status, w.s.Req.Proto, -1
	if v := w.header.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			resp.ContentLength = n
		}
	}
	for name, vals := range w.header {
		if name == "Content-Length" {
			continue
		}
		for _, v := range vals {
			resp.Header.Add(name, v)
		}
	}
	w.r.respOps.apply(&resp.Header)
	if w.r.ext != nil {
		w.r.ext.response(w.s, w.c, status, &resp.Header)
	}
	w.p.addRequestID(w.c, &resp.Header)
	if w.c.limitHeader != nil {
		w.c.limitHeader.addFields(&resp.Header, w.c.limitDecision)
	}
	if err := w.s.Exchange().WriteHeader(resp); err != nil {
		w.err = err
		return
	}
	w.s.Status = status
}

func (w *exchangeWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.s.Req.Method == http.MethodHead {
		return len(b), nil
	}
	n, err := w.s.Exchange().Write(b)
	w.s.BytesSent += int64(n)
	if err != nil {
		w.err = err
	}
	return n, err
}

func (w *exchangeWriter) Flush() {
	if w.err == nil && w.wrote {
		if err := w.s.Exchange().Flush(); err != nil {
			w.err = err
		}
	}
}

// aiSample converts a gateway result for the metrics.
func aiSample(route string, res *ai.Result) *observe.AISample {
	s := &observe.AISample{Route: route, Key: res.Key, Op: res.Op, Model: res.Model, Provider: res.Provider,
		Cache: res.Cache, Status: res.Status, FirstByte: res.FirstByte, Stream: res.Stream,
		TokensIn: res.TokensIn, TokensOut: res.TokensOut, Cost: res.Cost}
	for _, f := range res.Failed {
		s.Failed = append(s.Failed, f.Provider)
	}
	return s
}

// observeAI records the request's AI numbers in the metrics.
func (p *phases) observeAI(route string, c *reqCtx) {
	if m, ok := p.metric.(AIMetrics); ok && c.ai != nil {
		m.ObserveAI(aiSample(route, c.ai))
	}
}

// recordAI adds the request's AI numbers to its access-log record.
func recordAI(rec *observe.Record, c *reqCtx) {
	res := c.ai
	if res == nil {
		return
	}
	rec.AI = &observe.AIRecord{Key: res.Key, Provider: res.Provider, Model: res.Model, Cache: res.Cache,
		FirstByte: res.FirstByte, TokensIn: res.TokensIn, TokensOut: res.TokensOut, Cost: res.Cost}
	if rec.Error == nil && len(res.Failed) > 0 {
		errs := make([]error, len(res.Failed))
		for i, f := range res.Failed {
			errs[i] = f
		}
		rec.Error = errors.Join(errs...)
	}
}

// countingBody counts the request body bytes read.
type countingBody struct {
	r io.Reader
	n *int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	*b.n += int64(n)
	return n, err
}

func (b *countingBody) Close() error { return nil }
