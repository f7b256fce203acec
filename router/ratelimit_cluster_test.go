package router

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/cluster/clustertest"
	"github.com/verge-edge/verge/limits"
)

// TestRateLimitSharedAcrossCluster runs the same per-address limit on three nodes of a real
// NATS cluster: a client spreading its requests over the nodes gets the limit it would get
// from one node, once the counts have travelled (at most one share interval).
func TestRateLimitSharedAcrossCluster(t *testing.T) {
	const y = `
listeners: [{name: main, address: 127.0.0.1:0}]
access_log: {output: "off"}
admin: {disabled: true}
rate_limits: [{name: api, limit: 30, period: 24h}]
routes: [{name: api, rate_limits: [api], respond: {body: ok}}]
`
	c := clustertest.Start(t, 3)
	var stores []*RateLimits
	send := make([]func(client string) int, 3)
	for i, n := range c.Nodes {
		rl := NewRateLimits()
		if err := rl.Share(cluster.RateLimitBus{Node: n}, n.Name(), 20*time.Millisecond, nil); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rl.Close)
		in, err := NewInstance(mustConfig(t, y), Deps{Transport: nopTransport{}, RateLimits: rl})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { in.Close(context.Background()) })
		h := in.Handler("main")
		send[i] = func(client string) int {
			ex := newExchange("GET", "www.example.com", "/")
			ex.conn.RemoteAddr = netip.MustParseAddrPort(client)
			h.ServeExchange(ex)
			return ex.resp.Status
		}
		stores = append(stores, rl)
	}
	// Ten requests to each node: thirty, the limit, all allowed.
	for i := range 3 {
		for j := range 10 {
			if st := send[i]("192.0.2.1:1000"); st != 200 {
				t.Fatalf("node %d request %d: %d", i, j, st)
			}
		}
	}
	// Each node learns the others' twenty.
	key := append(netip.MustParseAddr("192.0.2.1").AsSlice(), 0)
	deadline := time.Now().Add(30 * time.Second) // a failure guard for a busy machine
	for i, rl := range stores {
		for {
			rl.mu.Lock()
			w := rl.rules["api"].window
			rl.mu.Unlock()
			if w.Estimate(key, limits.Now()) >= 30 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d counts %d for the client, want 30", i, w.Estimate(key, limits.Now()))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for i := range 3 {
		if st := send[i]("192.0.2.1:1000"); st != 429 {
			t.Fatalf("node %d after the cluster-wide limit: %d, want 429", i, st)
		}
	}
	if st := send[1]("192.0.2.2:1000"); st != 200 {
		t.Fatalf("another client: %d", st)
	}
}
