package clustered

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/cluster/clustertest"
	"github.com/verge-edge/verge/durable"
)

// alarmNode is one node's Durable Object stack for the alarm tests.
type alarmNode struct {
	name  string
	p     *Placement
	store *Store
	ns    *durable.Namespace
}

const alarmNS = "alarmed"

// firing is one run of OnAlarm.
type firing struct {
	node    string
	value   string // storage key "k" in the alarm's turn
	retries int
}

// startAlarmNode runs namespace alarmNS on node with the replicated store and the lease
// placement; OnAlarm records each run on fired unless dead says the node is gone.
func startAlarmNode(t *testing.T, node *cluster.Node, fired chan<- firing, dead *atomic.Bool) *alarmNode {
	t.Helper()
	log := nodeLogger(t, node)
	p, err := NewPlacement(node, LeaseOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	store := NewStore(t.TempDir(), p, NewLog(node))
	t.Cleanup(func() { store.Close() })
	name := node.Name()
	ns, err := durable.New(context.Background(), durable.Options{Name: alarmNS, Store: store, Placement: p, Logger: log,
		OnAlarm: func(ctx context.Context, tn *durable.Turn, retries int) error {
			if dead.Load() {
				return errors.New("this node is dead")
			}
			vs, err := tn.Get([]string{"k"})
			if err != nil {
				return err
			}
			fired <- firing{node: name, value: string(vs[0]), retries: retries}
			if string(vs[0]) == "run 1" {
				// The first run sets the next alarm: its Done must not remove that.
				if err := tn.Put([]durable.Entry{{Key: "k", Value: []byte("run 2")}}); err != nil {
					return err
				}
				return tn.SetAlarm(ctx, time.Now())
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close(context.Background()) })
	return &alarmNode{name: name, p: p, store: store, ns: ns}
}

// alarmIndex returns the node's alarm index of namespace.
func (n *alarmNode) alarmIndex(t *testing.T, ctx context.Context, namespace string) *Alarms {
	t.Helper()
	a, err := n.store.Alarms(ctx, namespace)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := a.(*lazyAlarms).index(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// waitAlarm waits until a's entry of id satisfies want, re-reading it whenever another
// node's change reaches a.
func waitAlarm(t *testing.T, ctx context.Context, a *Alarms, id durable.ID, what string, want func(durable.Alarm, bool) bool) {
	t.Helper()
	changed := make(chan struct{}, 1)
	stop := a.Notify(func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	defer stop()
	for {
		al, ok, err := a.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if want(al, ok) {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("waiting for %s: got %+v (set %v)", what, al, ok)
		}
	}
}

func noAlarm(_ durable.Alarm, ok bool) bool { return !ok }

// setWith stores k = value in object id and sets its alarm to at, through node n (which
// then owns the object). Like a client, it tries again while the cluster is unavailable
// (a fresh cluster's streams may not answer yet when the first object is activated).
func setWith(ctx context.Context, n *alarmNode, id durable.ID, value string, at time.Time) error {
	for {
		err := n.ns.Do(ctx, id, func(tn *durable.Turn) error {
			if err := tn.Put([]durable.Entry{{Key: "k", Value: []byte(value)}}); err != nil {
				return err
			}
			return tn.SetAlarm(ctx, at)
		})
		if err == nil || !errors.Is(err, cluster.ErrUnavailable) || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// TestAlarmsFireOnceOnOwner runs the namespace on three nodes over one shared alarm index:
// an alarm set through the object's owner fires exactly once in the cluster, on the owner.
// Then it checks the index's compare-and-set semantics across two nodes.
func TestAlarmsFireOnceOnOwner(t *testing.T) {
	c := clustertest.Start(t, 3)
	fired := make(chan firing, 16)
	var dead atomic.Bool // no node dies here
	nodes := make([]*alarmNode, 3)
	for i, n := range c.Nodes {
		nodes[i] = startAlarmNode(t, n, fired, &dead)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	// Every node's index is open (they open in the background) before an alarm is set,
	// so that every node sees it.
	for _, n := range nodes {
		n.alarmIndex(t, ctx, alarmNS)
	}

	t.Run("fires once on the owner", func(t *testing.T) {
		id := durable.IDFromName(alarmNS, "a")
		// First an hour ahead, until every node holds it (so that all three schedulers
		// know it and try to fire it), then moved to half a second ahead. Waiting for
		// every node to see a near alarm would race its firing on a slow machine.
		far := time.Now().Add(time.Hour)
		if err := setWith(ctx, nodes[0], id, "v", far); err != nil {
			t.Fatal(err)
		}
		owner, err := nodes[1].p.Owner(ctx, alarmNS, id)
		if err != nil || owner != nodes[0].name {
			t.Fatalf("owner: got %q, %v; want %s", owner, err, nodes[0].name)
		}
		for _, n := range nodes[1:] {
			waitAlarm(t, ctx, n.alarmIndex(t, ctx, alarmNS), id, "the alarm on "+n.name, func(a durable.Alarm, ok bool) bool {
				return ok && a.At.Equal(time.UnixMilli(far.UnixMilli()))
			})
		}
		if err := setWith(ctx, nodes[0], id, "v", time.Now().Add(500*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		var f firing
		select {
		case f = <-fired:
		case <-ctx.Done():
			t.Fatal("the alarm did not fire")
		}
		if f.node != owner || f.value != "v" || f.retries != 0 {
			t.Fatalf("fired: got %+v, want on %s with k = v and 0 retries", f, owner)
		}
		for _, n := range nodes {
			waitAlarm(t, ctx, n.alarmIndex(t, ctx, alarmNS), id, "the alarm removed on "+n.name, noAlarm)
		}
		// Every index is empty: no node can fire it any more. A node still trying would
		// have been refused the object (its owner holds the lease).
		select {
		case f := <-fired:
			t.Fatalf("fired twice: again on %s", f.node)
		default:
		}
	})

	t.Run("set again while it runs", func(t *testing.T) {
		id := durable.IDFromName(alarmNS, "again")
		if err := setWith(ctx, nodes[0], id, "run 1", time.Now()); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"run 1", "run 2"} {
			select {
			case f := <-fired:
				if f.node != nodes[0].name || f.value != want {
					t.Fatalf("got %+v, want on %s with k = %q", f, nodes[0].name, want)
				}
			case <-ctx.Done():
				t.Fatalf("the alarm did not fire for %q (the one set during the first run was lost?)", want)
			}
		}
		for _, n := range nodes {
			waitAlarm(t, ctx, n.alarmIndex(t, ctx, alarmNS), id, "the second alarm done on "+n.name, noAlarm)
		}
	})

	t.Run("compare-and-set", func(t *testing.T) {
		// A namespace with '.' needs the encoded bucket name.
		const ns = "alarms.cas"
		if name := AlarmBucketName(ns); !strings.HasPrefix(name, "verge_do_alarms-") {
			t.Fatalf("bucket name %q", name)
		}
		a0, a1 := nodes[0].alarmIndex(t, ctx, ns), nodes[1].alarmIndex(t, ctx, ns)
		if _, err := c.Nodes[2].JetStream().KeyValue(ctx, AlarmBucketName(ns)); err != nil {
			t.Fatalf("bucket %s: %v", AlarmBucketName(ns), err)
		}
		id := durable.IDFromName(ns, "x")
		base := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
		t1, t2, t3 := base, base.Add(time.Minute), base.Add(2*time.Minute)
		if err := a0.Set(ctx, id, t1); err != nil {
			t.Fatal(err)
		}
		if a, ok, err := a0.Next(ctx); err != nil || !ok || a.ID != id || !a.At.Equal(t1) {
			t.Fatalf("Next: got %+v, %v, %v; want %v", a, ok, err, t1)
		}
		// Set while a run of t1 is in progress: the run's Done and Reschedule are void.
		if err := a0.Set(ctx, id, t2); err != nil {
			t.Fatal(err)
		}
		if err := a0.Done(ctx, id, t1); err != nil {
			t.Fatal(err)
		}
		if err := a0.Reschedule(ctx, id, t1, t3, 1); err != nil {
			t.Fatal(err)
		}
		if a, ok, _ := a0.Get(ctx, id); !ok || !a.At.Equal(t2) || a.Retries != 0 {
			t.Fatalf("after a stale Done and Reschedule: got %+v (set %v), want %v with 0 retries", a, ok, t2)
		}
		// Another node sees it and reschedules it at its revision.
		waitAlarm(t, ctx, a1, id, "t2 on the other node", func(a durable.Alarm, ok bool) bool { return ok && a.At.Equal(t2) })
		if err := a1.Reschedule(ctx, id, t2, t3, 2); err != nil {
			t.Fatal(err)
		}
		if a, ok, _ := a1.Get(ctx, id); !ok || !a.At.Equal(t3) || a.Retries != 2 {
			t.Fatalf("after Reschedule: got %+v (set %v), want %v with 2 retries", a, ok, t3)
		}
		waitAlarm(t, ctx, a0, id, "the reschedule on the first node", func(a durable.Alarm, ok bool) bool {
			return ok && a.At.Equal(t3) && a.Retries == 2
		})
		// A deferral hides it from this node only.
		a0.Defer(id, t3, time.Now().Add(time.Hour))
		if a, ok, _ := a0.Next(ctx); ok {
			t.Fatalf("Next after Defer: got %+v, want none", a)
		}
		if a, ok, _ := a1.Next(ctx); !ok || a.ID != id {
			t.Fatalf("Next on the other node after Defer: got %+v (%v), want the alarm", a, ok)
		}
		if err := a0.Done(ctx, id, t3); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := a0.Get(ctx, id); ok {
			t.Fatal("Done at the current time left the alarm")
		}
		waitAlarm(t, ctx, a1, id, "Done on the other node", noAlarm)
		// Delete, and a Set after it, seen by the other node in order.
		if err := a0.Set(ctx, id, t1); err != nil {
			t.Fatal(err)
		}
		if err := a0.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := a0.Get(ctx, id); ok {
			t.Fatal("Delete left the alarm")
		}
		if err := a0.Set(ctx, id, t2); err != nil {
			t.Fatal(err)
		}
		waitAlarm(t, ctx, a1, id, "the last Set on the other node", func(a durable.Alarm, ok bool) bool { return ok && a.At.Equal(t2) })
		// A node that opens the index later reads every entry before it is used.
		a2, err := openAlarms(ctx, c.Nodes[2].JetStream(), 3, ns, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if a, ok, _ := a2.Get(ctx, id); !ok || !a.At.Equal(t2) {
			t.Fatalf("index opened later: got %+v (set %v), want %v", a, ok, t2)
		}
		if err := a2.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a1.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
		waitAlarm(t, ctx, a0, id, "the other node's Delete", noAlarm)
		if a, ok, _ := a0.Next(ctx); ok {
			t.Fatalf("Next on an empty index: got %+v", a)
		}
	})
}

// TestAlarmsSurviveOwnerDeath sets an alarm through the object's owner and kills the owner
// before it is due: the alarm fires once, on a survivor that takes the object over, and the
// alarm's turn sees the storage the owner wrote before it died.
func TestAlarmsSurviveOwnerDeath(t *testing.T) {
	c := clustertest.Start(t, 3)
	fired := make(chan firing, 16)
	dead := make([]atomic.Bool, 3)
	nodes := make([]*alarmNode, 3)
	for i, n := range c.Nodes {
		nodes[i] = startAlarmNode(t, n, fired, &dead[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	for _, n := range nodes {
		n.alarmIndex(t, ctx, alarmNS)
	}
	id := durable.IDFromName(alarmNS, "b")

	// The owner counts as dead from here on: its scheduler (the process lives on in the
	// test) never runs the alarm, as a killed process would not.
	dead[0].Store(true)
	if err := setWith(ctx, nodes[0], id, "before the kill", time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if owner, err := nodes[1].p.Owner(ctx, alarmNS, id); err != nil || owner != nodes[0].name {
		t.Fatalf("owner: got %q, %v; want %s", owner, err, nodes[0].name)
	}
	killed := time.Now()
	c.Kill(0)

	var f firing
	select {
	case f = <-fired:
	case <-ctx.Done():
		t.Fatal("the alarm did not fire after its owner died")
	}
	t.Logf("fired on %s %v after the kill", f.node, time.Since(killed).Round(time.Millisecond))
	if f.node == nodes[0].name || f.value != "before the kill" {
		t.Fatalf("fired: got %+v, want on a survivor with k = %q", f, "before the kill")
	}
	for _, n := range nodes[1:] {
		waitAlarm(t, ctx, n.alarmIndex(t, ctx, alarmNS), id, "the alarm removed on "+n.name, noAlarm)
	}
	t.Logf("removed from both survivors' indexes %v after the kill", time.Since(killed).Round(time.Millisecond))
	// Stop the survivors' schedulers, then nothing more may have fired.
	for _, n := range nodes[1:] {
		if err := n.ns.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case f := <-fired:
		t.Fatalf("fired twice: again on %s", f.node)
	default:
	}
}
