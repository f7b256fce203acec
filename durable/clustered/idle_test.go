package clustered

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/cluster/clustertest"
	"github.com/verge-edge/verge/durable"
)

// TestIdleObjectReleasesLease: an object idle for the namespace's IdleTimeout is evicted
// and its lease deleted (not left to expire), so any node can take it at once; the next
// request takes it back with its storage intact (restored from the log).
func TestIdleObjectReleasesLease(t *testing.T) {
	c := clustertest.Start(t, 1)
	node := c.Nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	p, err := NewPlacement(node, LeaseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	store := NewStore(t.TempDir(), p, NewLog(node))
	defer store.Close()
	ns, err := durable.New(ctx, durable.Options{Name: "idle", Store: store, Placement: p, IdleTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close(context.Background())
	id := durable.IDFromName("idle", "x")
	put := func(v string) {
		t.Helper()
		if err := ns.Do(ctx, id, func(t *durable.Turn) error {
			return t.Put([]durable.Entry{{Key: "k", Value: []byte(v)}})
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Watch the lease key from before the object's first request: it is created by the
	// acquisition, and its next change is its deletion by the owner, not an expiry.
	kv, err := node.JetStream().KeyValue(ctx, LeaseBucket)
	if err != nil {
		// The bucket is created by the first acquisition.
		kv, err = p.bucket(ctx)
		if err != nil {
			t.Fatal(err)
		}
	}
	w, err := kv.Watch(ctx, LeaseKey("idle", id))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	put("1")
	if st := p.Stats(); st.Owned > 1 || st.Acquired != 1 {
		t.Fatalf("after a request: %+v, want 1 acquired", st)
	}
	var ops []jetstream.KeyValueOp
	for e := range w.Updates() {
		if e == nil {
			continue // the end of the (empty) initial values
		}
		ops = append(ops, e.Operation())
		if len(ops) == 2 {
			break
		}
	}
	if len(ops) != 2 || ops[0] != jetstream.KeyValuePut || ops[1] != jetstream.KeyValueDelete {
		t.Fatalf("lease key changes: %v; want a put (acquired) then a delete (released)", ops)
	}
	if st := p.Stats(); st.Owned != 0 || st.Released != 1 || st.Lost != 0 || ns.Live() != 0 {
		t.Fatalf("after the idle time: %+v, %d live; want 0 owned, 1 released, 0 lost, none live", st, ns.Live())
	}
	// Back on the first process: restored from the log.
	var got []byte
	if err := ns.Do(ctx, id, func(t *durable.Turn) error {
		vs, err := t.Get([]string{"k"})
		got = vs[0]
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if string(got) != "1" {
		t.Fatalf("after re-activation: k = %q, want 1", got)
	}
}
