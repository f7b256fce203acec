package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/cluster/clustertest"
)

func TestThreeNodesShareJetStream(t *testing.T) {
	c := clustertest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		if n.Replicas() != 3 {
			t.Fatalf("%s: replicas %d, want 3 by default with three servers", n.Name(), n.Replicas())
		}
	}
	kv, err := c.Nodes[0].JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "verge_test", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	kv2, err := c.Nodes[2].JetStream().KeyValue(ctx, "verge_test")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv2.Get(ctx, "k")
	if err != nil || string(e.Value()) != "v" {
		t.Fatalf("read on n3: %v %v", e, err)
	}
	ms := c.Nodes[1].Members(ctx, 2*time.Second)
	if len(ms) != 3 || ms[0].Node != "n1" || ms[2].Node != "n3" {
		t.Fatalf("members: %+v", ms)
	}
	st := c.Nodes[1].Status(ctx, time.Second)
	if st.Mode != "embedded" || st.MetaLeader == "" || len(st.Peers) != 3 || len(st.Members) != 3 {
		t.Fatalf("status: %+v", st)
	}
	found := false
	for _, s := range st.Streams {
		if s.Name == "KV_verge_test" {
			found = true
			if s.Replicas != 3 || s.Leader == "" {
				t.Fatalf("stream: %+v", s)
			}
		}
	}
	if !found {
		t.Fatalf("KV_verge_test not in %+v", st.Streams)
	}
	leaders := 0
	for _, n := range c.Nodes {
		if n.Status(ctx, 100*time.Millisecond).Role == "leader" {
			leaders++
		}
	}
	if leaders != 1 {
		t.Fatalf("%d meta leaders", leaders)
	}
}

// TestTwoOfThreeFreshNodesFormJetStream: the first two nodes of a new three-node cluster
// start (the third is not there yet) with routes listing every node, this one included, as
// docs/cluster.md's configs do: JetStream must answer. nats-server counted the route to
// itself as one more expected peer, so two fresh nodes waited forever for a third vote.
func TestTwoOfThreeFreshNodesFormJetStream(t *testing.T) {
	opts := clustertest.Options(t, 3, t.TempDir())
	var nodes []*cluster.Node
	for _, o := range opts[:2] {
		n, err := cluster.Start(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
		defer n.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := n.WaitJetStream(ctx); err != nil {
			t.Fatalf("%s: %v", n.Name(), err)
		}
	}
	kv, err := nodes[0].JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "verge_two", Replicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// The third node joins the group the first two formed.
	third, err := cluster.Start(context.Background(), opts[2])
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if err := third.WaitJetStream(ctx); err != nil {
		t.Fatalf("third node: %v", err)
	}
	for {
		st := nodes[0].Status(ctx, time.Second)
		if st.MetaLeader != "" && len(st.Peers) == 3 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the third node never joined the meta group: %+v", st.Peers)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestEmbeddedSyncAlways: Embedded.SyncAlways reaches the embedded server's options.
func TestEmbeddedSyncAlways(t *testing.T) {
	for _, always := range []bool{false, true} {
		n, err := cluster.Start(context.Background(), cluster.Options{Node: "s", Embedded: &cluster.Embedded{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), SyncAlways: always}})
		if err != nil {
			t.Fatal(err)
		}
		got := n.Server().JetStreamConfig().SyncAlways
		n.Close()
		if got != always {
			t.Errorf("SyncAlways %v: the server's JetStream config says %v", always, got)
		}
	}
}
