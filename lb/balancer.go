package lb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/upstream"
)

// Options configure a Balancer. The zero value is a round-robin balancer with no backends,
// no active health checks and passive ejection with its defaults.
type Options struct {
	// Backends is the static backend set, or the initial set until Discovery first succeeds.
	Backends []BackendConfig
	// Peer is the template peer for backends whose BackendConfig.Peer is nil, including every
	// discovered backend. Nil means plain HTTP/1.1 with the transport's default timeouts.
	Peer *upstream.Peer
	// Selector is the policy. Nil means a new RoundRobin. Policies with state (RoundRobin,
	// WeightedRoundRobin, LeastConn, ConsistentHash) should not be shared between Balancers.
	Selector Selector
	// HealthCheck configures active health checks. Nil means none: backends count as healthy
	// unless passive health ejects them.
	HealthCheck *HealthCheck
	// Passive configures ejection after consecutive failures; see PassiveHealth.
	Passive PassiveHealth
	// Discovery, when non-nil, refreshes the backend set every DiscoveryInterval.
	Discovery Discoverer
	// DiscoveryInterval is the time between discovery rounds. Zero means 30s.
	DiscoveryInterval time.Duration
	// DiscoveryTimeout bounds one discovery round. Zero means 5s.
	DiscoveryTimeout time.Duration
	// Store holds the backends' live state. Share one store between the Balancer of the old
	// configuration and the one of the new to carry health, drain flags and counters over a
	// reload. Nil means a private store.
	Store *StateStore
	// Observer receives health, ejection and membership events. Nil means none.
	Observer Observer
	// Logger logs health changes and discovery failures. Nil means slog.Default().
	Logger *slog.Logger
}

// Discovery defaults.
const (
	DefaultDiscoveryInterval = 30 * time.Second
	DefaultDiscoveryTimeout  = 5 * time.Second
)

// Balancer holds a backend set and chooses among it. Select, Report and Done are safe for
// concurrent use and do not allocate; Update swaps the set atomically without blocking them.
type Balancer struct {
	sel      Selector
	passive  PassiveHealth
	health   *healthChecker // nil without active checks
	disc     Discoverer
	discIvl  time.Duration
	discTO   time.Duration
	tmpl     *upstream.Peer
	store    *StateStore
	obs      Observer
	log      *slog.Logger
	initGood bool // initial health of backends new to the store

	snap atomic.Pointer[snapshot]

	mu     sync.Mutex // serializes Update and Close
	closed bool

	ejectMu sync.Mutex    // serializes passive ejection decisions (never eject the last)
	panicRR atomic.Uint64 // rotates panic-mode picks

	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{}
}

type snapshot struct {
	backends []*Backend
	byKey    map[Key]*Backend
}

// ErrDuplicateBackend is returned when two backends in a set have the same Key.
var ErrDuplicateBackend = errors.New("lb: duplicate backend")

// New builds a Balancer from opts and starts its health-check and discovery goroutines,
// which Close stops. The first health-check and discovery rounds start at once; New does
// not wait for them (call Refresh to wait for discovery).
func New(opts Options) (*Balancer, error) {
	lb := &Balancer{
		sel:      opts.Selector,
		passive:  opts.Passive.withDefaults(),
		disc:     opts.Discovery,
		discIvl:  opts.DiscoveryInterval,
		discTO:   opts.DiscoveryTimeout,
		tmpl:     opts.Peer,
		store:    opts.Store,
		obs:      opts.Observer,
		log:      opts.Logger,
		initGood: true,
		done:     make(chan struct{}),
	}
	if lb.sel == nil {
		lb.sel = &RoundRobin{}
	}
	if lb.discIvl <= 0 {
		lb.discIvl = DefaultDiscoveryInterval
	}
	if lb.discTO <= 0 {
		lb.discTO = DefaultDiscoveryTimeout
	}
	if lb.store == nil {
		lb.store = NewStateStore()
	}
	if lb.log == nil {
		lb.log = slog.Default()
	}
	if opts.HealthCheck != nil {
		hc, err := newHealthChecker(*opts.HealthCheck)
		if err != nil {
			return nil, err
		}
		lb.health = hc
		lb.initGood = !hc.cfg.StartUnhealthy
	}
	lb.snap.Store(&snapshot{byKey: map[Key]*Backend{}})
	if err := lb.Update(opts.Backends); err != nil {
		return nil, err
	}
	// State carried over from the previous configuration follows this one's passive settings.
	lb.reevaluate()
	ctx, cancel := context.WithCancel(context.Background())
	lb.cancel = cancel
	if lb.health != nil {
		lb.wg.Add(1)
		go lb.runHealthChecks(ctx)
	}
	if lb.disc != nil {
		lb.wg.Add(1)
		go lb.runDiscovery(ctx)
	}
	return lb, nil
}

// Select chooses an available backend for a request and counts it in flight; key feeds
// hashing policies and may be nil. When the policy finds none available because passive
// health ejected them all, Select is in panic mode: it picks, in turn, among the ejected
// backends that are healthy and not draining, since a request that may fail beats a certain
// 503. It returns nil when no backend can take the request (answer 503). Every non-nil
// result must be finished with Report or Done. Select does not allocate.
func (lb *Balancer) Select(key []byte) *Backend {
	backends := lb.snap.Load().backends
	b := lb.sel.Select(backends, key)
	if b == nil {
		b = lb.panicSelect(backends)
	}
	if b != nil {
		b.st.inflight.Add(1)
	}
	return b
}

// panicSelect picks among the ejected backends that are otherwise usable, in turn.
func (lb *Balancer) panicSelect(backends []*Backend) *Backend {
	n := uint64(len(backends))
	if n == 0 {
		return nil
	}
	start := lb.panicRR.Add(1) - 1
	for i := uint64(0); i < n; i++ {
		if b := backends[(start+i)%n]; b.usable() {
			b.st.panicked.Store(true)
			return b
		}
	}
	return nil
}

// Backends returns the current backend set, in configuration order. The slice is a copy;
// the backends' live state can be read with their Status method.
func (lb *Balancer) Backends() []*Backend {
	return append([]*Backend(nil), lb.snap.Load().backends...)
}

// Backend returns the backend with the given address in the current set, or nil. When
// several backends share the address (different TLS settings), the first is returned.
func (lb *Balancer) Backend(address string) *Backend {
	for _, b := range lb.snap.Load().backends {
		if b.Address == address {
			return b
		}
	}
	return nil
}

// Update replaces the backend set. Backends whose Key stays keep their live state; new ones
// start healthy (or unhealthy with HealthCheck.StartUnhealthy) unless the shared store
// already knows them. Two configs with the same Key are an error (ErrDuplicateBackend) and
// leave the set unchanged. An Update that changes nothing (same backends, weights, peers
// and order) keeps the current snapshot, so selection state is not disturbed. Update after
// Close is an error.
func (lb *Balancer) Update(configs []BackendConfig) error {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return errors.New("lb: update of a closed balancer")
	}
	old := lb.snap.Load()
	next := &snapshot{
		backends: make([]*Backend, 0, len(configs)),
		byKey:    make(map[Key]*Backend, len(configs)),
	}
	for _, c := range configs {
		b, err := newBackend(c, lb.tmpl)
		if err != nil {
			return err
		}
		if _, dup := next.byKey[b.key]; dup {
			return fmt.Errorf("%w: %s", ErrDuplicateBackend, b.Address)
		}
		if prev := old.byKey[b.key]; prev != nil && prev.Weight == b.Weight && *prev.Peer == *b.Peer {
			b = prev // unchanged: keep the published object as is
		}
		next.backends = append(next.backends, b)
		next.byKey[b.key] = b
	}
	if sameBackends(old.backends, next.backends) {
		// Nothing changed (a discovery round that resolved the same set): keep the published
		// snapshot, so policies that key their state by it (WeightedRoundRobin's scores,
		// ConsistentHash's ring) carry on instead of restarting mid-cycle.
		return nil
	}
	// Bind the new objects to their state before publishing them; reused objects are already
	// bound and may be in use concurrently.
	var added []*Backend
	for _, b := range next.backends {
		if b.bal != nil {
			continue
		}
		b.bal = lb
		if prev := old.byKey[b.key]; prev != nil {
			b.st = prev.st // same identity, new weight or peer settings
			continue
		}
		b.st = lb.store.acquire(b.key, lb.initGood)
		added = append(added, b)
	}
	lb.snap.Store(next)
	for _, b := range old.backends {
		if next.byKey[b.key] == nil {
			lb.store.release(b.key)
			lb.emit(Event{Kind: BackendRemoved, Backend: b})
		}
	}
	for _, b := range added {
		lb.emit(Event{Kind: BackendAdded, Backend: b})
	}
	return nil
}

// Close stops health checks and discovery, waits for them and releases the backends' state
// in the store (other Balancers sharing it keep theirs). Select keeps working on the last
// set so requests racing a reload still find a backend; Report and Done stay valid.
func (lb *Balancer) Close() error {
	return lb.Shutdown(context.Background())
}

// Shutdown is Close bounded by ctx: it returns ctx's error if the goroutines have not
// stopped in time (they are already told to stop and exit after their current probe or
// lookup).
func (lb *Balancer) Shutdown(ctx context.Context) error {
	lb.mu.Lock()
	if !lb.closed {
		lb.closed = true
		lb.cancel()
		go lb.waitStopped()
		for _, b := range lb.snap.Load().backends {
			lb.store.release(b.key)
		}
	}
	lb.mu.Unlock()
	select {
	case <-lb.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("lb: shutdown: %w", ctx.Err())
	}
}

// sameBackends reports whether a and b hold the same Backend objects in the same order.
func sameBackends(a, b []*Backend) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// waitStopped closes done once the health-check and discovery goroutines have returned.
func (lb *Balancer) waitStopped() {
	lb.wg.Wait()
	close(lb.done)
}

func (lb *Balancer) emit(e Event) {
	if lb.obs != nil {
		lb.obs.Observe(e)
	}
}
