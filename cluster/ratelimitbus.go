package cluster

import "github.com/nats-io/nats.go"

// RateLimitSubject is the subject rate-limit counts travel on between nodes.
const RateLimitSubject = SubjectPrefix + "ratelimit.counts"

// RateLimitBus carries rate-limit counts between the nodes over NATS core messaging
// (router.CountBus): at most once, no storage, a lost message only makes a limit looser for
// one interval.
type RateLimitBus struct{ Node *Node }

// Publish sends data to every node.
func (b RateLimitBus) Publish(data []byte) error { return b.Node.nc.Publish(RateLimitSubject, data) }

// Subscribe calls fn with every message until cancel.
func (b RateLimitBus) Subscribe(fn func(data []byte)) (func(), error) {
	sub, err := b.Node.nc.Subscribe(RateLimitSubject, func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return nil, err
	}
	return func() { sub.Unsubscribe() }, nil
}
