package upstream

// Stats is a snapshot of a pool's counters. Counters are cumulative since the Transport was
// first used; gauges are the state at the time of the snapshot. Metrics code reads it without
// any metrics dependency in this package.
type Stats struct {
	// Dials counts connections established (TCP connect plus TLS handshake).
	Dials uint64
	// DialErrors counts failed connection attempts.
	DialErrors uint64
	// Requests counts round trips that asked the pool for a connection, retries included.
	Requests uint64
	// ReusedRequests counts requests served on a connection that existed before: a pooled
	// HTTP/1 conn or an already open HTTP/2 conn.
	ReusedRequests uint64
	// Retries counts transparent retries after a reused connection failed before any response
	// byte arrived.
	Retries uint64
	// StaleClosed counts idle HTTP/1 conns found closed by the origin at checkout.
	StaleClosed uint64
	// Expired counts idle conns closed after their idle timeout.
	Expired uint64
	// Evicted counts reusable HTTP/1 conns closed because an idle cap was reached.
	Evicted uint64

	// OpenConns is the number of connections open or being dialed (HTTP/1 and HTTP/2,
	// upgraded ones excluded).
	OpenConns int
	// IdleConns is the number of idle pooled HTTP/1 conns.
	IdleConns int
	// ActiveConns is the number of HTTP/1 conns carrying a request.
	ActiveConns int
	// H2Conns is the number of open multiplexed (HTTP/2 and HTTP/3) conns.
	H2Conns int
	// Keys is the number of pool keys with state (buckets).
	Keys int
}

// ReuseRatio is ReusedRequests/Requests, or 0 before any request.
func (s Stats) ReuseRatio() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.ReusedRequests) / float64(s.Requests)
}

func (s *Stats) addCounts(c *counts) {
	s.Dials += c.dials
	s.DialErrors += c.dialErrors
	s.Requests += c.requests
	s.ReusedRequests += c.reused
	s.Retries += c.retries
	s.StaleClosed += c.stale
	s.Expired += c.expired
	s.Evicted += c.evicted
}

// addBucket adds b's counters and gauges. Called with b.mu held.
func (s *Stats) addBucket(b *bucket) {
	s.addCounts(&b.n)
	s.OpenConns += b.conns
	s.IdleConns += len(b.idle)
	s.ActiveConns += b.active
	s.H2Conns += len(b.h2)
	s.Keys++
}

// Stats returns a snapshot of the pool's counters, including those of keys the reaper has
// since dropped.
func (p *Pool) Stats() Stats {
	var s Stats
	p.mu.RLock()
	defer p.mu.RUnlock()
	s.addCounts(&p.retired)
	for _, b := range p.buckets {
		b.mu.Lock()
		s.addBucket(b)
		b.mu.Unlock()
	}
	return s
}

// KeyStats returns a snapshot per pool key currently held. Keys unused for longer than their
// idle timeout (at least a minute) are dropped with their counters, which then only count in
// Stats. Buckets that differ only by timeouts are merged under their PoolKey.
func (p *Pool) KeyStats() map[PoolKey]Stats {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make(map[PoolKey]Stats, len(p.buckets))
	for k, b := range p.buckets {
		s := out[k.PoolKey]
		b.mu.Lock()
		s.addBucket(b)
		b.mu.Unlock()
		out[k.PoolKey] = s
	}
	return out
}
