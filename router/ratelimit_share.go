package router

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/verge-edge/verge/limits"
)

// CountBus carries rate-limit counts between the nodes of a cluster: every node publishes
// what it counted and hears what the others did. The cluster package's RateLimitBus
// implements it over NATS.
type CountBus interface {
	// Publish sends data to every node (the sender included; its own are skipped).
	Publish(data []byte) error
	// Subscribe calls fn with every message published, until cancel.
	Subscribe(fn func(data []byte)) (cancel func(), err error)
}

// DefaultShareInterval is how often shared rules publish their counts.
const DefaultShareInterval = 100 * time.Millisecond

// sharing is the state of RateLimits.Share.
type sharing struct {
	bus      CountBus
	node     string
	interval time.Duration
	log      *slog.Logger
	cancel   func()
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
}

// Share makes the sliding-window rules marked shared count across the cluster: every
// interval (<= 0: DefaultShareInterval) each publishes the per-key counts it allowed since
// the last time, and adds the other nodes' to its own. A key's limit then holds across
// nodes, overshooting by at most what the key can send to the other nodes in one interval
// (plus the time a message takes). Close stops it.
func (rl *RateLimits) Share(bus CountBus, node string, interval time.Duration, log *slog.Logger) error {
	if interval <= 0 {
		interval = DefaultShareInterval
	}
	if log == nil {
		log = slog.Default()
	}
	sh := &sharing{bus: bus, node: node, interval: interval, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	cancel, err := bus.Subscribe(rl.receive)
	if err != nil {
		return err
	}
	sh.cancel = cancel
	rl.mu.Lock()
	rl.share = sh
	for _, r := range rl.rules {
		if r.shared.Load() && r.window != nil {
			r.window.Track()
		}
	}
	rl.mu.Unlock()
	go rl.publishLoop(sh)
	return nil
}

// Close stops sharing counts.
func (rl *RateLimits) Close() {
	rl.mu.Lock()
	sh := rl.share
	rl.mu.Unlock()
	if sh == nil {
		return
	}
	sh.once.Do(func() {
		close(sh.stop)
		<-sh.done
		sh.cancel()
	})
}

func (rl *RateLimits) publishLoop(sh *sharing) {
	defer close(sh.done)
	t := time.NewTicker(sh.interval)
	defer t.Stop()
	for {
		select {
		case <-sh.stop:
			return
		case <-t.C:
		}
		rl.mu.Lock()
		var rules []*limitRule
		for _, r := range rl.rules {
			if r.shared.Load() && r.window != nil {
				rules = append(rules, r)
			}
		}
		rl.mu.Unlock()
		for _, r := range rules {
			for _, win := range r.window.TakePending() {
				// Messages of at most about 256 KiB (keys are at most 512 bytes), well under
				// NATS's default 1 MiB payload limit.
				deltas := win.Deltas
				for len(deltas) > 0 {
					n, size := 0, 0
					for n < len(deltas) && size < 256<<10 {
						size += len(deltas[n].Key) + 12
						n++
					}
					if err := sh.bus.Publish(encodeCounts(sh.node, r.name, r.sig, win.Start, deltas[:n])); err != nil {
						sh.log.Warn("rate limits: counts not shared", "rule", r.name, "err", err)
					}
					deltas = deltas[n:]
				}
			}
		}
	}
}

// receive adds another node's counts to the rule they name, when this node has the same
// rule with the same settings.
func (rl *RateLimits) receive(data []byte) {
	m, err := decodeCounts(data)
	if err != nil {
		return
	}
	rl.mu.Lock()
	sh, r := rl.share, rl.rules[m.rule]
	rl.mu.Unlock()
	if sh == nil || m.node == sh.node || r == nil || !r.shared.Load() || r.window == nil || r.sig != m.sig {
		return
	}
	for _, d := range m.deltas {
		// A node can't have allowed more than the limit; a larger count is bogus and would
		// only wrap the counters.
		r.window.AddRemote(m.start, []byte(d.key), min(d.count, r.limit))
	}
}

type countsMsg struct {
	node, rule, sig string
	start           int64
	deltas          []struct {
		key   string
		count int64
	}
}

// encodeCounts: node, rule and settings as length-prefixed strings, the window start, then
// (key, count) pairs.
func encodeCounts(node, rule, sig string, start int64, deltas []limits.Delta) []byte {
	b := make([]byte, 0, 64+len(deltas)*24)
	for _, s := range []string{node, rule, sig} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendVarint(b, start)
	for _, d := range deltas {
		b = binary.AppendUvarint(b, uint64(len(d.Key)))
		b = append(b, d.Key...)
		b = binary.AppendVarint(b, d.Count)
	}
	return b
}

var errBadCounts = errors.New("malformed rate-limit counts")

func decodeCounts(b []byte) (*countsMsg, error) {
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	m := &countsMsg{}
	var ok bool
	if m.node, ok = str(); !ok {
		return nil, errBadCounts
	}
	if m.rule, ok = str(); !ok {
		return nil, errBadCounts
	}
	if m.sig, ok = str(); !ok {
		return nil, errBadCounts
	}
	start, k := binary.Varint(b)
	if k <= 0 {
		return nil, errBadCounts
	}
	m.start, b = start, b[k:]
	for len(b) > 0 {
		key, ok := str()
		if !ok {
			return nil, errBadCounts
		}
		n, k := binary.Varint(b)
		if k <= 0 || n < 0 {
			return nil, errBadCounts
		}
		b = b[k:]
		m.deltas = append(m.deltas, struct {
			key   string
			count int64
		}{key, n})
	}
	return m, nil
}
