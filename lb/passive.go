package lb

import (
	"context"
	"errors"
	"time"

	"github.com/verge-edge/verge/fault"
)

// Passive health defaults.
const (
	DefaultMaxFails     = 3
	DefaultFailWindow   = 10 * time.Second
	DefaultEjectionTime = 30 * time.Second
)

// PassiveHealth ejects a backend after consecutive failed requests. The zero value enables it
// with the defaults.
//
// A backend is never ejected when no other backend of its Balancer is available: a group of
// one server, or the last server standing, keeps getting requests, which fail while it is
// down and succeed as soon as it is back (NGINX likewise ignores max_fails for a one-server
// upstream). If every backend still ends up ejected (failures racing, an active health check
// taking the last one down), Select falls back to the ejected backends that are healthy and
// not draining, and a success there restores the backend at once (Envoy's panic mode).
type PassiveHealth struct {
	// MaxFails is how many consecutive failures eject a backend. Zero means 3; negative
	// disables passive ejection (failures are still counted).
	MaxFails int
	// Window bounds a failure streak: a failure more than Window after the streak's first
	// failure starts a new streak. Zero means 10s.
	Window time.Duration
	// Cooldown is how long an ejected backend gets no requests. Afterwards it is on trial:
	// the next request that succeeds restores it, the next that fails ejects it again for
	// another Cooldown. Zero means 30s.
	Cooldown time.Duration
}

func (p PassiveHealth) withDefaults() PassiveHealth {
	if p.MaxFails == 0 {
		p.MaxFails = DefaultMaxFails
	}
	if p.Window <= 0 {
		p.Window = DefaultFailWindow
	}
	if p.Cooldown <= 0 {
		p.Cooldown = DefaultEjectionTime
	}
	return p
}

// Report finishes a request obtained from Select, like b.Done, classifying err:
//   - nil is a success;
//   - a cancellation (context.Canceled, or a *fault.Error of kind Canceled or from the
//     Downstream source) says nothing about the backend: only the in-flight count changes;
//   - anything else is a failure that counts towards ejection.
//
// The caller decides what is a failure by what it passes: connect errors and timeouts
// typically, and a 5xx response if it wants those to count (wrap it in an error).
func (lb *Balancer) Report(b *Backend, err error) {
	if err == nil {
		b.Done(true)
		return
	}
	if neutral(err) {
		b.st.inflight.Add(-1)
		return
	}
	b.Done(false)
}

func neutral(err error) bool {
	if errors.Is(err, context.Canceled) {
		return true
	}
	var fe *fault.Error
	if errors.As(err, &fe) {
		return fe.Kind == fault.Canceled || fe.Source == fault.Downstream
	}
	return false
}

// passiveSuccess resets the failure streak and ends a trial.
func (lb *Balancer) passiveSuccess(b *Backend) {
	s := b.st
	if s.consecutive.Load() != 0 {
		s.consecutive.Store(0)
	}
	u := s.ejectedUntil.Load()
	if u == 0 {
		return
	}
	if time.Now().UnixNano() < u && !s.panicked.Load() {
		// A request sent before the ejection finished late: the cool-down stands. (One sent
		// to the backend in panic mode, with every backend ejected, ends it.)
		return
	}
	if s.ejectedUntil.CompareAndSwap(u, 0) {
		s.panicked.Store(false)
		lb.emit(Event{Kind: BackendRestored, Backend: b})
	}
}

// othersAvailable reports whether a backend of the current set other than b is available.
func (lb *Balancer) othersAvailable(b *Backend) bool {
	for _, o := range lb.snap.Load().backends {
		if o != b && o.st != b.st && o.Available() {
			return true
		}
	}
	return false
}

// eject starts a cool-down for b, unless no other backend is available: the last one is
// never ejected. It reports whether b was ejected. Called with b.st.mu held; lb.ejectMu
// serializes the decisions so that two backends failing together cannot both go.
func (lb *Balancer) eject(b *Backend, now time.Time) (time.Time, bool) {
	lb.ejectMu.Lock()
	defer lb.ejectMu.Unlock()
	if !lb.othersAvailable(b) {
		return time.Time{}, false
	}
	s := b.st
	until := now.Add(lb.passive.Cooldown)
	s.ejectedUntil.Store(until.UnixNano())
	s.panicked.Store(false)
	s.ejections.Add(1)
	return until, true
}

// passiveFailure counts a failure and ejects the backend when the streak reaches MaxFails or
// when it fails its trial.
func (lb *Balancer) passiveFailure(b *Backend) {
	s := b.st
	s.fails.Add(1)
	p := lb.passive
	now := time.Now()
	s.mu.Lock()
	if u := s.ejectedUntil.Load(); u != 0 {
		if now.UnixNano() < u || p.MaxFails < 0 {
			s.mu.Unlock()
			return
		}
		until, ok := lb.eject(b, now)
		s.mu.Unlock()
		if ok {
			lb.emit(Event{Kind: BackendEjected, Backend: b, Until: until})
		}
		return
	}
	n := s.consecutive.Load()
	if n == 0 || now.Sub(s.streakStart) > p.Window {
		s.streakStart = now
		n = 0
	}
	n++
	if p.MaxFails < 0 || int(n) < p.MaxFails {
		s.consecutive.Store(n)
		s.mu.Unlock()
		return
	}
	s.consecutive.Store(0)
	until, ok := lb.eject(b, now)
	s.mu.Unlock()
	if ok {
		lb.emit(Event{Kind: BackendEjected, Backend: b, Until: until})
	}
}

// reevaluate applies a new passive configuration to the state a reload carried over: with
// passive ejection disabled every ejection ends now; otherwise a cool-down longer than the
// new one is shortened to it.
func (lb *Balancer) reevaluate() {
	p := lb.passive
	now := time.Now()
	for _, b := range lb.snap.Load().backends {
		s := b.st
		s.mu.Lock()
		u := s.ejectedUntil.Load()
		restored := false
		switch {
		case p.MaxFails < 0:
			s.consecutive.Store(0)
			if u != 0 {
				s.ejectedUntil.Store(0)
				restored = now.UnixNano() < u
			}
		case u != 0 && u > now.Add(p.Cooldown).UnixNano():
			s.ejectedUntil.Store(now.Add(p.Cooldown).UnixNano())
		}
		s.mu.Unlock()
		if restored {
			s.panicked.Store(false)
			lb.emit(Event{Kind: BackendRestored, Backend: b})
		}
	}
}
