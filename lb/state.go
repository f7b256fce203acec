package lb

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/upstream"
)

// Key identifies a backend for carrying its live state (health, in-flight count, failure
// counters, drain flag) from one Balancer to the next across a configuration reload. It is
// the backend's address plus the parts of its peer's pool key that change what is being
// talked to: protocol, whether TLS is used, and the TLS server name. Pointer-valued TLS
// material (CA pool, client certificate) is left out on purpose: a reload rebuilds those
// objects, and the health of an address does not depend on which copy was loaded.
type Key struct {
	Address    string
	Protocol   upstream.Protocol
	TLS        bool
	ServerName string
}

// keyOf returns the identity of a backend dialing p.
func keyOf(p *upstream.Peer) Key {
	k := Key{Address: p.Address, Protocol: p.Protocol}
	if p.TLS != nil {
		k.TLS = true
		k.ServerName = p.TLS.ServerName
	}
	return k
}

// hostState is the live state of one backend, shared by every Backend with the same Key in
// the Balancers that use the same StateStore.
type hostState struct {
	healthy      atomic.Bool
	draining     atomic.Bool
	inflight     atomic.Int64
	ejectedUntil atomic.Int64 // unix nanoseconds; 0 means not ejected
	panicked     atomic.Bool  // selected in panic mode while ejected: a success restores it
	consecutive  atomic.Int32 // consecutive passive failures in the current streak
	fails        atomic.Uint64
	ejections    atomic.Uint64

	refs int // guarded by StateStore.mu

	mu          sync.Mutex // guards the fields below
	streakStart time.Time  // first failure of the current passive streak
	checked     bool       // probed at least once
	okRun       int        // consecutive successful probes
	failRun     int        // consecutive failed probes
	lastProbe   time.Time
	lastErr     error
}

// StateStore holds backend live state keyed by Key. Balancers built from successive
// configurations that share one store (Options.Store) carry health, drain flags, failure
// counters and in-flight counts over a reload. State is reference counted by the Balancers
// that use it and dropped when the last one removes the backend or closes. The zero value is
// not usable; call NewStateStore. A StateStore is safe for concurrent use.
type StateStore struct {
	mu    sync.Mutex
	hosts map[Key]*hostState
}

// NewStateStore returns an empty store.
func NewStateStore() *StateStore {
	return &StateStore{hosts: make(map[Key]*hostState)}
}

// acquire returns the state for k, creating it with the given initial health if it does not
// exist, and takes a reference.
func (s *StateStore) acquire(k Key, healthy bool) *hostState {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hosts[k]
	if h == nil {
		h = &hostState{}
		h.healthy.Store(healthy)
		s.hosts[k] = h
	}
	h.refs++
	return h
}

// release drops a reference to k's state, forgetting it when none remain.
func (s *StateStore) release(k Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hosts[k]
	if h == nil {
		return
	}
	h.refs--
	if h.refs <= 0 {
		delete(s.hosts, k)
	}
}

// Len reports how many backends currently have state in the store.
func (s *StateStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.hosts)
}
