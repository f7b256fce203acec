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
	if u == 0 || time.Now().UnixNano() < u {
		// Not ejected, or a request sent before the ejection finished late: the cool-down
		// stands.
		return
	}
	if s.ejectedUntil.CompareAndSwap(u, 0) {
		lb.emit(Event{Kind: BackendRestored, Backend: b})
	}
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
		until := now.Add(p.Cooldown)
		s.ejectedUntil.Store(until.UnixNano())
		s.ejections.Add(1)
		s.mu.Unlock()
		lb.emit(Event{Kind: BackendEjected, Backend: b, Until: until})
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
	until := now.Add(p.Cooldown)
	s.ejectedUntil.Store(until.UnixNano())
	s.ejections.Add(1)
	s.mu.Unlock()
	lb.emit(Event{Kind: BackendEjected, Backend: b, Until: until})
}
