package clustered

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/cluster/clustertest"
	"github.com/verge-edge/verge/durable"
)

// storeNode is one node's replicated store and namespace, with what its hooks saw.
type storeNode struct {
	node  *cluster.Node
	p     *Placement
	store *Store
	ns    *durable.Namespace

	mu        sync.Mutex
	replicate []replicateCall
	restore   []restoreCall
	snapshots chan uint64 // sequences of successful snapshots
	failures  chan error  // errors of failed ones
}

type replicateCall struct {
	d     time.Duration
	bytes int
}

type restoreCall struct {
	d       time.Duration
	records int
}

// startStoreNode runs namespace name on node with a replicated store whose log parts are
// partBytes long (0: the default) and which snapshots every snapEvery batches.
func startStoreNode(t *testing.T, node *cluster.Node, name string, partBytes, snapEvery int) *storeNode {
	t.Helper()
	log := nodeLogger(t, node)
	p, err := NewPlacement(node, LeaseOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	l := NewLog(node)
	l.PartBytes = partBytes
	n := &storeNode{node: node, p: p, store: NewStore(t.TempDir(), p, l), snapshots: make(chan uint64, 64), failures: make(chan error, 64)}
	n.store.SnapshotEvery = snapEvery
	n.store.OnReplicate = func(d time.Duration, bytes int) {
		n.mu.Lock()
		n.replicate = append(n.replicate, replicateCall{d, bytes})
		n.mu.Unlock()
	}
	n.store.OnRestore = func(d time.Duration, records int) {
		n.mu.Lock()
		n.restore = append(n.restore, restoreCall{d, records})
		n.mu.Unlock()
	}
	n.store.snapshotted = func(_ string, _ durable.ID, seq uint64, err error) {
		if err == nil {
			n.snapshots <- seq
		} else {
			n.failures <- err
		}
	}
	t.Cleanup(func() { n.store.Close() })
	if n.ns, err = durable.New(context.Background(), durable.Options{Name: name, Store: n.store, Placement: p, Logger: log}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.ns.Close(context.Background()) })
	return n
}

// put stores entries in object id in one turn (one batch).
func (n *storeNode) put(ctx context.Context, id durable.ID, entries ...durable.Entry) error {
	return n.ns.Do(ctx, id, func(t *durable.Turn) error { return t.Put(entries) })
}

// get reads keys of object id.
// checkRestored checks that node b, which took object id over, holds k0..k(n-1) as written
// (value(i))
// and restored it by replaying the one batch after snap.
func checkRestored(t *testing.T, ctx context.Context, b *storeNode, id durable.ID, n int, value func(int) []byte, snap string) {
	t.Helper()
	for i := range n {
		vs, err := b.get(ctx, id, fmt.Sprint("k", i))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(vs[0], value(i)) {
			t.Fatalf("restored k%d: %d bytes differ from the %d written", i, len(vs[0]), len(value(i)))
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.restore) != 1 || b.restore[0].records != 1 {
		t.Fatalf("OnRestore: %v, want one restore replaying the 1 batch after %s", b.restore, snap)
	}
}

func (n *storeNode) get(ctx context.Context, id durable.ID, keys ...string) ([][]byte, error) {
	var vs [][]byte
	err := n.ns.Do(ctx, id, func(t *durable.Turn) error {
		var err error
		vs, err = t.Get(keys)
		return err
	})
	return vs, err
}

// handOver closes from's namespace (releasing its leases) and waits until the lease of id
// is free for to.
func handOver(t *testing.T, ctx context.Context, from, to *storeNode, id durable.ID) {
	t.Helper()
	if err := from.ns.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := to.p.WaitReleased(ctx, to.ns.Name(), id, from.node.Name()); err != nil {
		t.Fatal(err)
	}
}

// TestStoreReplication runs objects through the replicated store on a 3-node cluster:
// batches of several 2 MiB values (far above the forced 64 KiB log message) are appended
// as parts and restored byte-exactly on another node; the timing hooks see each batch and
// each restore; a snapshot uploaded in the background is what the next activation restores
// from, replaying only the batches after it, also when batches were committed during the
// upload; closing an object while it uploads loses nothing.
func TestStoreReplication(t *testing.T) {
	c := clustertest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()

	t.Run("large batches and hooks", func(t *testing.T) {
		const name = "large"
		a := startStoreNode(t, c.Nodes[0], name, 64<<10, 0)
		b := startStoreNode(t, c.Nodes[1], name, 64<<10, 0)
		id := durable.IDFromName(name, "x")
		rng := rand.New(rand.NewPCG(3, 4))
		want := map[string][]byte{}
		var entries []durable.Entry
		for i := range 3 {
			k := "big" + strconv.Itoa(i)
			want[k] = make([]byte, durable.MaxValueBytes-i)
			for j := range want[k] {
				want[k][j] = byte(rng.Uint32())
			}
			entries = append(entries, durable.Entry{Key: k, Value: want[k]})
		}
		if err := a.put(ctx, id, entries...); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			k := "small" + strconv.Itoa(i)
			want[k] = []byte(k)
			if err := a.put(ctx, id, durable.Entry{Key: k, Value: want[k]}); err != nil {
				t.Fatal(err)
			}
		}
		a.mu.Lock()
		calls := a.replicate
		a.mu.Unlock()
		// The schema, the big batch and three small ones.
		if len(calls) != 5 {
			t.Fatalf("OnReplicate called %d times, want 5 (schema + 4 batches): %v", len(calls), calls)
		}
		for i, c := range calls {
			if c.d <= 0 || c.d > wait || c.bytes < 12+4+512 {
				t.Fatalf("OnReplicate call %d: %v for %d bytes", i, c.d, c.bytes)
			}
		}
		if got := calls[1].bytes; got < 3*durable.MaxValueBytes {
			t.Fatalf("OnReplicate: the big batch's record has %d bytes, want at least %d", got, 3*durable.MaxValueBytes)
		}
		if len(a.restore) != 1 || a.restore[0].records != 0 || a.restore[0].d <= 0 {
			t.Fatalf("OnRestore on the first owner: %v, want one call with 0 records", a.restore)
		}

		st, err := c.Nodes[2].JetStream().Stream(ctx, LogStreamName(name))
		if err != nil {
			t.Fatal(err)
		}
		parts := 0
		for _, h := range subjectParts(t, ctx, st, logSubject(name, id)) {
			if h != "" {
				parts++
			}
		}
		if want := 3 * durable.MaxValueBytes / (64 << 10); parts < want {
			t.Fatalf("the big batch was appended as %d parts, want at least %d", parts, want)
		}

		handOver(t, ctx, a, b, id)
		keys := make([]string, 0, len(want))
		for k := range want {
			keys = append(keys, k)
		}
		vs, err := b.get(ctx, id, keys...)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			if !bytes.Equal(vs[i], want[k]) {
				t.Fatalf("restored %s: %d bytes differ from the %d written", k, len(vs[i]), len(want[k]))
			}
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(b.restore) != 1 || b.restore[0].records != 5 || b.restore[0].d <= 0 || b.restore[0].d > wait {
			t.Fatalf("OnRestore on the new owner: %v, want one call with 5 records", b.restore)
		}
	})

	t.Run("async snapshot", func(t *testing.T) {
		const name = "snap"
		a := startStoreNode(t, c.Nodes[1], name, 0, 4)
		b := startStoreNode(t, c.Nodes[2], name, 0, 4)
		id := durable.IDFromName(name, "x")
		// The schema and three batches make four: the fourth commit hands the snapshot to
		// the uploader.
		for i := range 3 {
			if err := a.put(ctx, id, durable.Entry{Key: fmt.Sprint("k", i), Value: []byte(fmt.Sprint("v", i))}); err != nil {
				t.Fatal(err)
			}
		}
		var seq uint64
		select {
		case seq = <-a.snapshots:
		case <-ctx.Done():
			t.Fatal("no snapshot uploaded")
		}
		// Three more batches after the snapshot: the log's tail.
		for i := 3; i < 6; i++ {
			if err := a.put(ctx, id, durable.Entry{Key: fmt.Sprint("k", i), Value: []byte(fmt.Sprint("v", i))}); err != nil {
				t.Fatal(err)
			}
		}
		// The log before the snapshot is purged.
		st, err := c.Nodes[0].JetStream().Stream(ctx, LogStreamName(name))
		if err != nil {
			t.Fatal(err)
		}
		m, err := st.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(logSubject(name, id)))
		if err != nil || m.Sequence != seq {
			t.Fatalf("first log record: %v, %v; want the snapshot's %d", m, err, seq)
		}

		handOver(t, ctx, a, b, id)
		for i := range 6 {
			vs, err := b.get(ctx, id, fmt.Sprint("k", i))
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprint("v", i); string(vs[0]) != want {
				t.Fatalf("restored k%d: got %q, want %q", i, vs[0], want)
			}
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(b.restore) != 1 || b.restore[0].records != 3 {
			t.Fatalf("OnRestore: %v, want one restore replaying the 3 batches after the snapshot", b.restore)
		}
	})

	t.Run("commits during an upload", func(t *testing.T) {
		// The uploader holds the shadow while it uploads: batches shipped meanwhile wait
		// and are applied to the shadow after it, so the next snapshot holds them too.
		const name = "during"
		a := startStoreNode(t, c.Nodes[0], name, 0, 3)
		b := startStoreNode(t, c.Nodes[1], name, 0, 3)
		started, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		a.store.beforeUpload = func() { once.Do(func() { close(started); <-release }) }
		id := durable.IDFromName(name, "x")
		// Values of 8 KiB: each lives in overflow pages of its own, which no later batch
		// writes again, so a batch missing from the shadow stays missing from it.
		value := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 8<<10) }
		put := func(i int) {
			t.Helper()
			if err := a.put(ctx, id, durable.Entry{Key: fmt.Sprint("k", i), Value: value(i)}); err != nil {
				t.Fatal(err)
			}
		}
		nextSnapshot := func() uint64 {
			t.Helper()
			select {
			case seq := <-a.snapshots:
				return seq
			case <-ctx.Done():
				t.Fatal("no snapshot uploaded")
				return 0
			}
		}
		// The schema and two batches: the third hands the shadow to the uploader, which
		// waits.
		put(0)
		put(1)
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatal("no upload started")
		}
		for i := 2; i < 6; i++ {
			put(i)
		}
		close(release)
		first := nextSnapshot()
		put(6) // five batches since the first snapshot: the second one starts
		if second := nextSnapshot(); second <= first {
			t.Fatalf("second snapshot at %d, the first at %d", second, first)
		}
		put(7)

		handOver(t, ctx, a, b, id)
		checkRestored(t, ctx, b, id, 8, value, "the second snapshot")
	})

	t.Run("upload cancelled past the pending limit", func(t *testing.T) {
		// Batches shipped during an upload beyond the memory limit cancel it; they are
		// still applied to the shadow, and the next snapshot holds them.
		const name = "cancelled"
		a := startStoreNode(t, c.Nodes[2], name, 0, 2)
		b := startStoreNode(t, c.Nodes[0], name, 0, 2)
		a.store.maxPending = 1
		started, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		a.store.beforeUpload = func() { once.Do(func() { close(started); <-release }) }
		id := durable.IDFromName(name, "x")
		value := func(i int) []byte { return bytes.Repeat([]byte{byte('A' + i)}, 8<<10) }
		put := func(i int) {
			t.Helper()
			if err := a.put(ctx, id, durable.Entry{Key: fmt.Sprint("k", i), Value: value(i)}); err != nil {
				t.Fatal(err)
			}
		}
		put(0) // with the schema, two batches: the upload starts and waits
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatal("no upload started")
		}
		put(1) // pending past 1 byte: the upload is cancelled
		close(release)
		select {
		case err := <-a.failures:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled upload: got %v, want context.Canceled", err)
			}
		case seq := <-a.snapshots:
			t.Fatalf("upload at %d not cancelled", seq)
		case <-ctx.Done():
			t.Fatal("upload did not end")
		}
		put(2) // two batches since the cancelled snapshot: the next one starts
		select {
		case <-a.snapshots:
		case err := <-a.failures:
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatal("no snapshot uploaded")
		}
		put(3)
		handOver(t, ctx, a, b, id)
		checkRestored(t, ctx, b, id, 4, value, "the snapshot")
	})

	t.Run("close during upload", func(t *testing.T) {
		// Closing an object while its uploader may be busy returns (the upload is
		// abandoned or finished) and leaves nothing behind that the next activation needs.
		const name = "close"
		a := startStoreNode(t, c.Nodes[2], name, 0, 1)
		b := startStoreNode(t, c.Nodes[0], name, 0, 1)
		id := durable.IDFromName(name, "x")
		for i := range 5 {
			if err := a.put(ctx, id, durable.Entry{Key: "n", Value: []byte(strconv.Itoa(i))}); err != nil {
				t.Fatal(err)
			}
		}
		handOver(t, ctx, a, b, id)
		vs, err := b.get(ctx, id, "n")
		if err != nil {
			t.Fatal(err)
		}
		if string(vs[0]) != "4" {
			t.Fatalf("restored n: got %q, want 4", vs[0])
		}
	})
}
