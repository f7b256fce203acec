package upstream

import (
	"time"
)

// Reaper cadence: half the smallest idle timeout, within these bounds.
const (
	minReapInterval = 5 * time.Millisecond
	maxReapInterval = time.Second
)

// startReaper starts the background reaper on the first pooled connection, so a Transport
// that is never used starts no goroutine.
func (p *Pool) startReaper() {
	if p.reaping.Load() {
		return
	}
	p.reapMu.Lock()
	defer p.reapMu.Unlock()
	if p.reaping.Load() || p.closed.Load() {
		return
	}
	p.reapStop = make(chan struct{})
	p.reapDone = make(chan struct{})
	p.reaping.Store(true)
	go p.reapLoop(p.reapStop, p.reapDone)
}

// stopReaper stops the reaper and waits for it to exit.
func (p *Pool) stopReaper() {
	p.reapMu.Lock()
	defer p.reapMu.Unlock()
	if !p.reaping.Load() {
		return
	}
	close(p.reapStop)
	<-p.reapDone
}

// reapInterval is half the smallest idle timeout, clamped to [5ms, 1s].
func (p *Pool) reapInterval() time.Duration {
	d := time.Duration(p.minIdle.Load()) / 2
	return min(max(d, minReapInterval), maxReapInterval)
}

// reapLoop closes idle connections past their idle timeout and drops unused buckets until
// stop is closed. It is the pool's only goroutine.
func (p *Pool) reapLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	timer := time.NewTimer(p.reapInterval())
	defer timer.Stop()
	var doomed []*pconn
	var empty []bucketKey
	for {
		select {
		case <-stop:
			return
		case <-timer.C:
		}
		doomed, empty = p.reap(time.Now(), doomed[:0], empty[:0])
		for i, pc := range doomed {
			pc.close()
			doomed[i] = nil
		}
		timer.Reset(p.reapInterval())
	}
}

// reap moves expired idle conns to doomed and removes buckets left empty for longer than their
// idle timeout (and at least a minute), folding their counters into p.retired.
func (p *Pool) reap(now time.Time, doomed []*pconn, empty []bucketKey) ([]*pconn, []bucketKey) {
	p.mu.RLock()
	for k, b := range p.buckets {
		b.mu.Lock()
		before := len(doomed)
		doomed = b.takeIdle(doomed, p, func(pc *pconn) bool { return pc.expired(now) })
		b.n.expired += uint64(len(doomed) - before)
		if b.conns == 0 && len(b.waiters) == 0 && now.Sub(b.used) > bucketLinger(b) {
			empty = append(empty, k)
		}
		b.mu.Unlock()
	}
	p.mu.RUnlock()
	if len(empty) == 0 {
		return doomed, empty
	}
	p.mu.Lock()
	for _, k := range empty {
		b := p.buckets[k]
		if b == nil {
			continue
		}
		b.mu.Lock()
		if b.conns == 0 && len(b.waiters) == 0 && now.Sub(b.used) > bucketLinger(b) {
			b.removed = true
			p.retired.add(&b.n)
			delete(p.buckets, k)
		}
		b.mu.Unlock()
	}
	p.mu.Unlock()
	return doomed, empty
}

// bucketLinger is how long an empty bucket is kept (with its TLS session cache and counters).
func bucketLinger(b *bucket) time.Duration {
	if b.idleTimeout > 0 {
		return max(b.idleTimeout, time.Minute)
	}
	return time.Minute
}
