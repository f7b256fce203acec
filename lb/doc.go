// Package lb chooses which upstream peer serves a request: backends with live state that
// survives a configuration reload, small selection policies (one type per policy behind the
// one-method Selector interface), active health checks, passive ejection after consecutive
// failures, and discovery of the backend set from a static list or DNS (A/AAAA and SRV).
//
// The proxy engine uses a Balancer from its "choose upstream peer" phase:
//
//	b := bal.Select(key) // key feeds hashing policies; nil is fine for the others
//	if b == nil {
//		// no available backend: answer 503
//	}
//	peer := b.Peer
//	// ... exchange with peer ...
//	bal.Report(b, err) // or b.Done(ok): exactly once per successful Select
//
// Select, Report and Done do not allocate in steady state. See docs/load-balancing.md for
// policies, defaults, health checks, ejection and discovery.
package lb
