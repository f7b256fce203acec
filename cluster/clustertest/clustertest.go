// Package clustertest starts clusters of embedded JetStream nodes on loopback for tests.
package clustertest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/verge-edge/verge/cluster"
)

// FreePorts returns n loopback ports free at the time of the call.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ls := make([]net.Listener, n)
	ports := make([]int, n)
	for i := range ls {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls[i] = l
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// Cluster is n embedded nodes named n1..nN, routed to each other.
type Cluster struct {
	Nodes   []*cluster.Node
	Options []cluster.Options
}

// Options returns the options of an n-node cluster with stores under dir, not started.
func Options(t testing.TB, n int, dir string) []cluster.Options {
	ports := FreePorts(t, 2*n)
	var routes []*url.URL
	for i := 0; i < n; i++ {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", ports[n+i])})
	}
	opts := make([]cluster.Options, n)
	for i := range opts {
		e := &cluster.Embedded{
			Listen:   fmt.Sprintf("127.0.0.1:%d", ports[i]),
			StoreDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			Name:     "verge-test",
		}
		if n > 1 {
			e.ClusterListen = routes[i].Host
			e.Routes = routes
		}
		opts[i] = cluster.Options{Node: fmt.Sprintf("n%d", i+1), Embedded: e}
	}
	return opts
}

// Start starts an n-node cluster and waits until JetStream answers on every node; the
// nodes are closed when the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{Options: Options(t, n, t.TempDir())}
	for _, o := range c.Options {
		node, err := cluster.Start(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, node)
	}
	t.Cleanup(func() {
		for _, node := range c.Nodes {
			if node != nil {
				node.Close()
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, node := range c.Nodes {
		if err := node.WaitJetStream(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// Restart starts node i again (after Kill) with its old options and store.
func (c *Cluster) Restart(t testing.TB, i int) *cluster.Node {
	t.Helper()
	node, err := cluster.Start(context.Background(), c.Options[i])
	if err != nil {
		t.Fatal(err)
	}
	c.Nodes[i] = node
	return node
}

// Kill closes node i abruptly (its server stops without leaving the cluster).
func (c *Cluster) Kill(i int) {
	c.Nodes[i].Close()
	c.Nodes[i] = nil
}
