package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
