package clustered

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/cluster/clustertest"
	"github.com/verge-edge/verge/durable"
)

// counterNode is one node's Durable Object stack for the counter: placement, namespace on
// its own SQLite, and forwarder.
type counterNode struct {
	p  *Placement
	ns *durable.Namespace
	f  *Forwarder
}

const counterNS = "counter"

func startCounterNode(t *testing.T, node *cluster.Node) *counterNode {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", node.Name())
	p, err := NewPlacement(node, LeaseOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	store := NewStore(t.TempDir(), p, NewLog(node))
	store.SnapshotEvery = 16
	t.Cleanup(func() { store.Close() })
	ns, err := durable.New(context.Background(), durable.Options{Name: counterNS, Store: store, Placement: p, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close(context.Background()) })
	f, err := NewForwarder(node, p, ForwardOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	f.Handle(counterNS, func(ctx context.Context, id durable.ID, payload []byte) ([]byte, error) {
		var n int64
		err := ns.Do(ctx, id, func(t *durable.Turn) error {
			vs, err := t.Get([]string{"n"})
			if err != nil {
				return err
			}
			if vs[0] != nil {
				if n, err = strconv.ParseInt(string(vs[0]), 10, 64); err != nil {
					return err
				}
			}
			n++
			return t.Put([]durable.Entry{{Key: "n", Value: []byte(strconv.FormatInt(n, 10))}})
		})
		if err != nil {
			return nil, err
		}
		return []byte(strconv.FormatInt(n, 10)), nil
	})
	return &counterNode{p: p, ns: ns, f: f}
}

// testWriter logs to the test.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}

// increments runs clients × perClient sequential increments of object id through each of
// nodes at once and returns each client's answers.
func increments(t *testing.T, ctx context.Context, nodes []*counterNode, id durable.ID, clients, perClient int) [][]int64 {
	t.Helper()
	var mu sync.Mutex
	var all [][]int64
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes)*clients)
	for _, n := range nodes {
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var got []int64
				for range perClient {
					b, err := n.f.Call(ctx, counterNS, id, nil)
					if err != nil {
						errs <- err
						return
					}
					v, err := strconv.ParseInt(string(b), 10, 64)
					if err != nil {
						errs <- err
						return
					}
					got = append(got, v)
				}
				mu.Lock()
				all = append(all, got)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return all
}

// checkExactlyOnce checks that each client saw increasing values and that together they
// saw from+1 .. from+N, each once.
func checkExactlyOnce(t *testing.T, all [][]int64, from int64) {
	t.Helper()
	var flat []int64
	for _, got := range all {
		if !slices.IsSorted(got) {
			t.Fatalf("a client saw values out of order: %v", got)
		}
		flat = append(flat, got...)
	}
	slices.Sort(flat)
	for i, v := range flat {
		if want := from + int64(i) + 1; v != want {
			t.Fatalf("values seen: got %d at position %d, want %d (a value lost or repeated)", v, i, want)
		}
	}
}

// TestForwardCounter increments one object through all three nodes at once: one node
// acquires it, the other two forward to it, and every value is returned exactly once and
// in order per client. Then its owner is killed: the survivors wait out its lease, one of
// them rebuilds the object from the replicated log and serves it, and the values go on
// from where they were (no acknowledged increment lost).
func TestForwardCounter(t *testing.T) {
	c := clustertest.Start(t, 3)
	nodes := make([]*counterNode, 3)
	for i, n := range c.Nodes {
		nodes[i] = startCounterNode(t, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	id := durable.IDFromName(counterNS, "c")

	const clients, perClient = 3, 20
	checkExactlyOnce(t, increments(t, ctx, nodes, id, clients, perClient), 0)

	owner, err := nodes[0].p.Owner(ctx, counterNS, id)
	if err != nil {
		t.Fatal(err)
	}
	oi := slices.IndexFunc(c.Nodes, func(n *cluster.Node) bool { return n.Name() == owner })
	if oi < 0 {
		t.Fatalf("owner %q is no node", owner)
	}
	var out, in uint64
	for i, n := range nodes {
		st := n.f.Stats()
		out += st.Out
		in += st.In
		if live := n.ns.Live(); (live == 1) != (i == oi) {
			t.Fatalf("node %s has %d live objects; the owner is %s", c.Nodes[i].Name(), live, owner)
		}
	}
	if want := uint64(2 * clients * perClient); out < want || in < want {
		t.Fatalf("forwarded: out %d, in %d; want at least %d (every request of the two other nodes)", out, in, want)
	}

	t.Run("request too large", func(t *testing.T) {
		big := make([]byte, c.Nodes[0].Conn().MaxPayload())
		other := nodes[(oi+1)%3]
		if _, err := other.f.Forward(ctx, owner, counterNS, id, big); !errors.Is(err, durable.ErrInvalid) {
			t.Fatalf("got %v, want ErrInvalid", err)
		}
	})

	t.Run("bad id", func(t *testing.T) {
		m := nats.NewMsg(ForwardSubject(owner))
		m.Header.Set(hdrNamespace, counterNS)
		m.Header.Set(hdrID, durable.IDFromName("other", "c").String())
		m.Header.Set(hdrDeadline, "0")
		r, err := c.Nodes[(oi+1)%3].Conn().RequestMsgWithContext(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Header.Get(hdrError); got != errClassInvalid {
			t.Fatalf("error class: got %q, want %q (%s)", got, errClassInvalid, r.Data)
		}
	})

	t.Run("snapshot", func(t *testing.T) {
		// 180 increments make more than 16 batches: the owner has snapshotted and purged
		// its log before the snapshot.
		path := filepath.Join(t.TempDir(), "snap")
		seq, err := NewLog(c.Nodes[(oi+1)%3]).GetSnapshot(ctx, counterNS, id, path)
		if err != nil || seq == 0 {
			t.Fatalf("snapshot: seq %d, %v", seq, err)
		}
		st, err := c.Nodes[(oi+1)%3].JetStream().Stream(ctx, LogStreamName(counterNS))
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.FirstSeq < seq {
			t.Fatalf("log starts at %d, before the snapshot's %d: not purged", info.State.FirstSeq, seq)
		}
	})

	t.Run("owner killed", func(t *testing.T) {
		var survivors []*counterNode
		for i, n := range nodes {
			if i != oi {
				survivors = append(survivors, n)
			}
		}
		start := time.Now()
		survivors[0].f.onRoute = func(owner string, err error) {
			t.Logf("%v after the kill: %s: %v", time.Since(start).Round(time.Millisecond), owner, err)
		}
		c.Kill(oi)
		// A request the servers still routed to the dead owner fails with its outcome
		// unknown (it is not repeated behind the caller's back); the caller tries again.
		var b []byte
		for attempt := 0; ; attempt++ {
			b, err = survivors[0].f.Call(ctx, counterNS, id, nil)
			if err == nil {
				break
			}
			if !errors.Is(err, cluster.ErrUnavailable) || attempt == 5 {
				t.Fatal(err)
			}
			t.Logf("call after the kill failed: %v", err)
		}
		t.Logf("served again %v after the kill", time.Since(start).Round(time.Millisecond))
		// The new owner rebuilt the object from the log: no acknowledged increment lost.
		before := int64(3 * clients * perClient)
		if want := strconv.FormatInt(before+1, 10); string(b) != want {
			t.Fatalf("first value after the kill: got %s, want %s", b, want)
		}
		checkExactlyOnce(t, increments(t, ctx, survivors, id, clients, perClient), before+1)
		live := 0
		for _, n := range survivors {
			live += n.ns.Live()
		}
		if live != 1 {
			t.Fatalf("live instances on the survivors: got %d, want 1", live)
		}
	})
}
