package lb

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/verge-edge/verge/upstream"
)

// MaxWeight is the largest backend weight; larger weights are clamped to it.
const MaxWeight = 1000

// BackendConfig describes one backend in a configuration.
type BackendConfig struct {
	// Address is the host:port to dial. Required.
	Address string
	// Weight is the backend's share for weighted policies. Zero or negative means 1; values
	// above MaxWeight are clamped.
	Weight int
	// Peer is the template for how to talk to the backend: TLS, protocol, timeouts, Host
	// override. It is copied and its Address set from Address. Nil means Options.Peer, and if
	// that is nil too, plain HTTP/1.1 with the transport's default timeouts.
	Peer *upstream.Peer
}

// Backend is one origin a Balancer may choose. Address, Weight and Peer are configuration
// and read-only; the live state (health, in-flight requests, failures, drain) lives in the
// Balancer's StateStore under the backend's Key and survives a reload.
type Backend struct {
	// Address is the host:port dialed.
	Address string
	// Weight is the normalized weight, 1..MaxWeight.
	Weight int
	// Peer is the peer to use for requests to this backend; its Address equals Address.
	Peer *upstream.Peer

	key Key
	st  *hostState
	bal *Balancer
}

// newBackend validates c and returns a backend not yet bound to any state.
func newBackend(c BackendConfig, tmpl *upstream.Peer) (*Backend, error) {
	host, port, err := net.SplitHostPort(c.Address)
	if err != nil {
		return nil, fmt.Errorf("lb: backend address %q: %w", c.Address, err)
	}
	if host == "" {
		return nil, fmt.Errorf("lb: backend address %q: missing host", c.Address)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return nil, fmt.Errorf("lb: backend address %q: invalid port", c.Address)
	}
	w := c.Weight
	if w <= 0 {
		w = 1
	}
	if w > MaxWeight {
		w = MaxWeight
	}
	p := c.Peer
	if p == nil {
		p = tmpl
	}
	peer := &upstream.Peer{}
	if p != nil {
		*peer = *p
	}
	peer.Address = c.Address
	return &Backend{Address: c.Address, Weight: w, Peer: peer, key: keyOf(peer)}, nil
}

// Key returns the backend's identity for state carry-over.
func (b *Backend) Key() Key { return b.key }

// Available reports whether the backend may take a new request: healthy, not draining and
// not ejected (or past its ejection cool-down, on trial). With passive ejection disabled in
// its Balancer an ejection (carried over a reload, or made by another Balancer sharing the
// state) does not count.
func (b *Backend) Available() bool {
	s := b.st
	if !s.healthy.Load() || s.draining.Load() {
		return false
	}
	if u := s.ejectedUntil.Load(); u != 0 && time.Now().UnixNano() < u && b.bal.passive.MaxFails >= 0 {
		return false
	}
	return true
}

// usable reports whether the backend could take a request if ejections were ignored:
// healthy and not draining. Select's panic mode uses it.
func (b *Backend) usable() bool {
	return b.st.healthy.Load() && !b.st.draining.Load()
}

// InFlight returns the number of requests selected for the backend and not yet finished,
// across every Balancer sharing its state.
func (b *Backend) InFlight() int64 { return b.st.inflight.Load() }

// Healthy reports the backend's health as seen by active checks (true when none run).
func (b *Backend) Healthy() bool { return b.st.healthy.Load() }

// Draining reports whether the backend is draining.
func (b *Backend) Draining() bool { return b.st.draining.Load() }

// Drain stops new requests from being sent to the backend; requests in flight finish. The
// flag is live state: it survives a reload for backends with the same Key.
func (b *Backend) Drain() { b.st.draining.Store(true) }

// Undrain lets the backend take new requests again.
func (b *Backend) Undrain() { b.st.draining.Store(false) }

// Done finishes a request obtained from Balancer.Select: it decrements the in-flight count
// and feeds passive health, ok=false counting as a failure. Call it, or Balancer.Report,
// exactly once per selected backend.
func (b *Backend) Done(ok bool) {
	b.st.inflight.Add(-1)
	if ok {
		b.bal.passiveSuccess(b)
	} else {
		b.bal.passiveFailure(b)
	}
}

// Status is a point-in-time view of a backend for admin endpoints and metrics.
type Status struct {
	Address  string
	Weight   int
	Healthy  bool
	Draining bool
	// Ejected is true while a passive-health cool-down runs (never with passive ejection
	// disabled in the backend's Balancer); EjectedUntil is when it ends.
	Ejected      bool
	EjectedUntil time.Time
	InFlight     int64
	// ConsecutiveFails is the current passive failure streak; Fails and Ejections are totals
	// since the state was created.
	ConsecutiveFails int
	Fails            uint64
	Ejections        uint64
	// LastCheck is when an active health check last finished; LastError is its error, nil
	// when it passed.
	LastCheck time.Time
	LastError error
}

// Status returns the backend's current state.
func (b *Backend) Status() Status {
	s := b.st
	st := Status{
		Address:          b.Address,
		Weight:           b.Weight,
		Healthy:          s.healthy.Load(),
		Draining:         s.draining.Load(),
		InFlight:         s.inflight.Load(),
		ConsecutiveFails: int(s.consecutive.Load()),
		Fails:            s.fails.Load(),
		Ejections:        s.ejections.Load(),
	}
	if u := s.ejectedUntil.Load(); u != 0 {
		st.EjectedUntil = time.Unix(0, u)
		st.Ejected = time.Now().UnixNano() < u && b.bal.passive.MaxFails >= 0
	}
	s.mu.Lock()
	st.LastCheck, st.LastError = s.lastProbe, s.lastErr
	s.mu.Unlock()
	return st
}
