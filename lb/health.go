package lb

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// CheckType is the kind of active health check.
type CheckType uint8

const (
	// CheckTCP connects to the backend and closes the connection (the default).
	CheckTCP CheckType = iota
	// CheckHTTP sends an HTTP request (over TLS when the backend's peer uses TLS) and
	// checks the status and optionally the body.
	CheckHTTP
	// CheckTLS connects and completes a TLS handshake with the peer's TLS settings.
	CheckTLS
)

func (t CheckType) String() string {
	switch t {
	case CheckHTTP:
		return "http"
	case CheckTLS:
		return "tls"
	default:
		return "tcp"
	}
}

// Active health check defaults.
const (
	DefaultCheckInterval    = 5 * time.Second
	DefaultCheckTimeout     = 2 * time.Second
	DefaultRise             = 2
	DefaultFall             = 3
	DefaultCheckConcurrency = 32
	DefaultExpectStatus     = "200-399"
	// checkJitter is the fraction by which each interval is randomly shortened or
	// lengthened, so that many proxies do not probe in lockstep.
	checkJitter = 0.1
	// maxCheckBody bounds how much of a response body is searched for ExpectBody.
	maxCheckBody = 64 << 10
)

// HealthCheck configures active health checks. The zero value is a TCP connect check every
// 5s with a 2s timeout, rise 2 and fall 3.
//
// A backend's first check settles its state: a backend never checked before goes down at
// its first failure and up at its first success. After that it goes down after Fall failed
// checks in a row and up after Rise passed checks in a row.
type HealthCheck struct {
	// Type is the check. Zero means CheckTCP.
	Type CheckType
	// Interval is the time between rounds, randomly varied by ±10%. Zero means 5s.
	Interval time.Duration
	// Timeout bounds one check, including connect, handshake and response. Zero means 2s.
	Timeout time.Duration
	// Rise is the number of passed checks in a row that bring a backend up. Zero means 2.
	Rise int
	// Fall is the number of failed checks in a row that take a backend down. Zero means 3.
	Fall int
	// StartUnhealthy makes backends new to the state store start down, taking no traffic
	// until their first check passes. By default they start up and their first failed check
	// takes them down.
	StartUnhealthy bool
	// Port, when non-zero, is checked instead of the backend's port.
	Port int
	// Concurrency bounds the checks running at once. Zero means 32.
	Concurrency int

	// Method is the HTTP method. Empty means GET.
	Method string
	// Path is the HTTP request target. Empty means "/".
	Path string
	// Host is the Host header. Empty means the peer's Host, else the backend's address.
	Host string
	// ExpectStatus lists the passing statuses: comma-separated codes ("200"), ranges
	// ("200-299") and classes ("2xx"). Empty means "200-399".
	ExpectStatus string
	// ExpectBody, when non-empty, must occur in the first 64 KiB of the response body.
	ExpectBody string
}

// healthChecker is a HealthCheck with defaults applied and its status set parsed.
type healthChecker struct {
	cfg    HealthCheck
	status statusSet
}

func newHealthChecker(c HealthCheck) (*healthChecker, error) {
	if c.Type > CheckTLS {
		return nil, fmt.Errorf("lb: health check: unknown type %d", c.Type)
	}
	if c.Interval <= 0 {
		c.Interval = DefaultCheckInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultCheckTimeout
	}
	if c.Rise <= 0 {
		c.Rise = DefaultRise
	}
	if c.Fall <= 0 {
		c.Fall = DefaultFall
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultCheckConcurrency
	}
	if c.Port < 0 || c.Port > 65535 {
		return nil, fmt.Errorf("lb: health check: invalid port %d", c.Port)
	}
	if c.Method == "" {
		c.Method = "GET"
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.ExpectStatus == "" {
		c.ExpectStatus = DefaultExpectStatus
	}
	st, err := parseStatusSet(c.ExpectStatus)
	if err != nil {
		return nil, fmt.Errorf("lb: health check: %w", err)
	}
	return &healthChecker{cfg: c, status: st}, nil
}

// runHealthChecks probes every backend once per interval until ctx is done.
func (lb *Balancer) runHealthChecks(ctx context.Context) {
	defer lb.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lb.checkRound(ctx)
		t.Reset(jitter(lb.health.cfg.Interval))
	}
}

func jitter(d time.Duration) time.Duration {
	f := 1 + checkJitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}

// checkRound probes the current backends, at most Concurrency at once, and waits for all.
func (lb *Balancer) checkRound(ctx context.Context) {
	hc := lb.health
	sem := make(chan struct{}, hc.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, b := range lb.snap.Load().backends {
		// Another Balancer sharing the state (during a reload) may have just probed it.
		b.st.mu.Lock()
		recent := !b.st.lastProbe.IsZero() && time.Since(b.st.lastProbe) < hc.cfg.Interval/2
		b.st.mu.Unlock()
		if recent {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go lb.checkBackend(ctx, b, sem, &wg)
	}
	wg.Wait()
}

// checkBackend runs one probe of b and records the result.
func (lb *Balancer) checkBackend(ctx context.Context, b *Backend, sem chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	defer func() { <-sem }()
	pctx, cancel := context.WithTimeout(ctx, lb.health.cfg.Timeout)
	err := lb.health.probe(pctx, b)
	cancel()
	if ctx.Err() != nil {
		return // shutting down: the result says nothing about the backend
	}
	lb.recordProbe(b, err)
}

// recordProbe applies one probe result to b's health, honouring rise and fall.
func (lb *Balancer) recordProbe(b *Backend, err error) {
	cfg := &lb.health.cfg
	s := b.st
	s.mu.Lock()
	first := !s.checked
	s.checked = true
	s.lastProbe = time.Now()
	s.lastErr = err
	healthy := s.healthy.Load()
	change := false
	if err == nil {
		s.okRun++
		s.failRun = 0
		if !healthy && (first || s.okRun >= cfg.Rise) {
			s.healthy.Store(true)
			change = true
		}
	} else {
		s.failRun++
		s.okRun = 0
		if healthy && (first || s.failRun >= cfg.Fall) {
			s.healthy.Store(false)
			change = true
		}
	}
	s.mu.Unlock()
	if !change {
		return
	}
	if err == nil {
		lb.log.Info("lb: backend up", "backend", b.Address)
		lb.emit(Event{Kind: BackendUp, Backend: b})
	} else {
		lb.log.Warn("lb: backend down", "backend", b.Address, "check", cfg.Type.String(), "err", err)
		lb.emit(Event{Kind: BackendDown, Backend: b, Err: err})
	}
}
