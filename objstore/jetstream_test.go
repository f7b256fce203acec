package objstore_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/cluster/clustertest"
	"github.com/verge-edge/verge/objstore"
)

// TestJetStreamBucket runs the bucket checks on a three-node cluster's object store, and
// reads through one node what another wrote.
func TestJetStreamBucket(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster")
	}
	c := clustertest.Start(t, 3)
	ctx := context.Background()
	s0 := objstore.NewJetStreamStore(c.Nodes[0].JetStream(), c.Nodes[0].Replicas())
	b0, err := s0.Bucket(ctx, "files")
	if err != nil {
		t.Fatal(err)
	}
	objstore.TestBucket(t, b0, false)
	s2 := objstore.NewJetStreamStore(c.Nodes[2].JetStream(), c.Nodes[2].Replicas())
	b2, _ := s2.Bucket(ctx, "files")
	res, err := objstore.Get(ctx, b2, "a/b.txt", objstore.GetOptions{RangeHeader: "bytes=7-12"})
	if err != nil || res.Status != 206 {
		t.Fatalf("read through another node: %+v %v", res, err)
	}
	data, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(data) != "object" {
		t.Fatalf("range through another node: %q", data)
	}
	if o, err := b2.Put(ctx, "from-2", strings.NewReader("two"), objstore.PutOptions{}); err != nil || o.Size != 3 {
		t.Fatalf("put through node 3: %+v %v", o, err)
	}
	// Another node's read may come from a replica a moment behind the put: wait for it.
	deadline := time.Now().Add(30 * time.Second) // a failure guard for a busy machine
	for {
		o, err := b0.Head(ctx, "from-2")
		if err == nil && o != nil && o.Size == 3 {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("head through node 1: %+v %v", o, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
