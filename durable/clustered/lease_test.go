package clustered

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/cluster/clustertest"
	"github.com/verge-edge/verge/durable"
)

// wait is the failure guard of every wait in these tests: far above the lease TTL and a
// Raft election on a busy machine.
const wait = 60 * time.Second

func TestLeaseOptions(t *testing.T) {
	for _, c := range []struct {
		o  LeaseOptions
		ok bool
	}{
		{LeaseOptions{}, true},
		{LeaseOptions{TTL: 10 * time.Second, Renew: 2 * time.Second, Margin: 2 * time.Second}, true},
		{LeaseOptions{TTL: time.Second}, false},                                     // below 2s
		{LeaseOptions{TTL: 4 * time.Second, Renew: 3500 * time.Millisecond}, false}, // renew >= ttl - margin
	} {
		_, err := c.o.withDefaults()
		if (err == nil) != c.ok {
			t.Errorf("%+v: got err %v, want ok %v", c.o, err, c.ok)
		}
		if err != nil && !errors.Is(err, durable.ErrInvalid) {
			t.Errorf("%+v: got %v, want ErrInvalid", c.o, err)
		}
	}
}

func TestLeaseKey(t *testing.T) {
	id := durable.IDFromName("a..b", "x")
	k := LeaseKey("a..b", id)
	if strings.Contains(k, "..") || !strings.HasSuffix(k, "."+id.String()) {
		t.Fatalf("got key %q", k)
	}
	if LeaseKey("a..c", id) == k {
		t.Fatal("two namespaces share a key")
	}
}

// renewals returns a channel that receives the outcome of each renewal of p's leases.
func renewals(p *Placement) chan error {
	ch := make(chan error, 256)
	p.onRenew = func(_ *Lease, err error) {
		select {
		case ch <- err:
		default:
		}
	}
	return ch
}

func recvWithin(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wait):
		t.Fatalf("%s: not within %v", what, wait)
	}
}

// TestLeaseCluster runs the lease through one three-node cluster: acquire with CAS,
// renewals, release and takeover, loss when another process rewrites the key, adopting
// its own late write, and a killed owner whose leases expire and are taken by another node
// with a higher token while the dead owner's lease is no longer valid.
func TestLeaseCluster(t *testing.T) {
	c := clustertest.Start(t, 3)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ps := make([]*Placement, 3)
	for i, n := range c.Nodes {
		p, err := NewPlacement(n, LeaseOptions{Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		ps[i] = p
	}
	ren0 := renewals(ps[0])
	ren1 := renewals(ps[1])
	ctx, cancel := context.WithTimeout(context.Background(), 5*wait)
	defer cancel()
	const ns = "counter"
	bucket, err := c.Nodes[2].JetStream().KeyValue(ctx, LeaseBucket)
	if err == nil {
		t.Fatalf("lease bucket exists before the first acquire")
	}

	idA := durable.IDFromName(ns, "a")
	var lease *Lease

	t.Run("acquire", func(t *testing.T) {
		var err error
		lease, err = ps[0].Acquire(ctx, ns, idA)
		if err != nil {
			t.Fatal(err)
		}
		if !lease.Valid() || lease.Token() == 0 {
			t.Fatalf("fresh lease: valid %v, token %d", lease.Valid(), lease.Token())
		}
		for _, p := range ps[1:] {
			_, err := p.Acquire(ctx, ns, idA)
			var no *NotOwnerError
			if !errors.As(err, &no) || no.Owner != "n1" || !errors.Is(err, ErrNotOwner) {
				t.Fatalf("second acquire: got %v, want NotOwnerError for n1", err)
			}
		}
		if owner, err := ps[2].Owner(ctx, ns, idA); err != nil || owner != "n1" {
			t.Fatalf("owner: got %q, %v; want n1", owner, err)
		}
		if _, err := ps[0].Acquire(ctx, ns, idA); !errors.Is(err, durable.ErrInvalid) {
			t.Fatalf("acquire of a held lease: got %v, want ErrInvalid", err)
		}
		if owner, err := ps[2].Owner(ctx, ns, durable.IDFromName(ns, "nobody")); err != nil || owner != "" {
			t.Fatalf("owner of a free object: got %q, %v", owner, err)
		}
		bucket, err = c.Nodes[2].JetStream().KeyValue(ctx, LeaseBucket)
		if err != nil {
			t.Fatal(err)
		}
	})
	if lease == nil {
		t.FailNow()
	}

	t.Run("renew", func(t *testing.T) {
		first := currentRev(lease)
		for ok := 0; ok < 2; {
			select {
			case err := <-ren0:
				if err == nil {
					ok++
				}
			case <-time.After(wait):
				t.Fatal("no renewals")
			}
		}
		if rev := currentRev(lease); rev <= first {
			t.Fatalf("revision after renewals: got %d, want > %d", rev, first)
		}
		if !lease.Valid() || lease.Token() != first {
			t.Fatalf("renewed lease: valid %v, token %d (want %d)", lease.Valid(), lease.Token(), first)
		}
		if _, err := ps[2].Acquire(ctx, ns, idA); !errors.Is(err, ErrNotOwner) {
			t.Fatalf("acquire of a renewed lease: got %v", err)
		}
	})

	var lease1 *Lease
	t.Run("release and acquire elsewhere", func(t *testing.T) {
		lease.Release()
		if lease.Valid() {
			t.Fatal("released lease still valid")
		}
		if err := ps[1].WaitReleased(ctx, ns, idA, ""); err != nil {
			t.Fatal(err)
		}
		var err error
		lease1, err = ps[1].Acquire(ctx, ns, idA)
		if err != nil {
			t.Fatal(err)
		}
		if lease1.Token() <= lease.Token() {
			t.Fatalf("token after takeover: got %d, want > %d", lease1.Token(), lease.Token())
		}
		if st := ps[0].Stats(); st.Owned != 0 || st.Acquired != 1 || st.Released != 1 || st.Lost != 0 {
			t.Fatalf("stats of n1: %+v", st)
		}
	})
	if lease1 == nil {
		t.FailNow()
	}

	t.Run("adopt own late write", func(t *testing.T) {
		// What a renewal whose acknowledgement was lost leaves behind: this process's
		// value at a higher revision.
		if _, err := bucket.Update(ctx, lease1.key, lease1.value, currentRev(lease1)); err != nil {
			t.Fatal(err)
		}
		for ok := 0; ok < 2; {
			select {
			case err := <-ren1:
				if err == nil {
					ok++
				}
			case <-lease1.Lost():
				t.Fatal("lease lost over its own write")
			case <-time.After(wait):
				t.Fatal("no renewals")
			}
		}
		if !lease1.Valid() {
			t.Fatal("lease not valid after adopting its own write")
		}
	})

	t.Run("lost to another writer", func(t *testing.T) {
		if _, err := bucket.Put(ctx, lease1.key, []byte(`{"node":"intruder","incarnation":"x"}`)); err != nil {
			t.Fatal(err)
		}
		recvWithin(t, "lease lost", lease1.Lost())
		if lease1.Valid() {
			t.Fatal("lost lease still valid")
		}
		if st := ps[1].Stats(); st.Lost != 1 || st.Owned != 0 {
			t.Fatalf("stats of n2: %+v", st)
		}
		_, err := ps[0].Acquire(ctx, ns, idA)
		var no *NotOwnerError
		if !errors.As(err, &no) || no.Owner != "intruder" {
			t.Fatalf("acquire after intruder: got %v", err)
		}
		if err := bucket.Delete(ctx, lease1.key); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("killed owner", func(t *testing.T) {
		idK := durable.IDFromName(ns, "k")
		dead, err := ps[2].Acquire(ctx, ns, idK)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ps[0].Acquire(ctx, ns, idK); !errors.Is(err, ErrNotOwner) {
			t.Fatalf("acquire before the kill: got %v", err)
		}
		c.Kill(2)
		killed := time.Now()
		var took *Lease
		attempt := 0
		for ; took == nil; attempt++ {
			if attempt == 20 {
				t.Fatal("no acquire after the owner died")
			}
			wctx, wcancel := context.WithTimeout(ctx, wait)
			err := ps[0].WaitReleased(wctx, ns, idK, "n3")
			wcancel()
			if err != nil && !errors.Is(err, cluster.ErrUnavailable) {
				t.Fatal(err)
			}
			took, err = ps[0].Acquire(ctx, ns, idK)
			if err != nil && !errors.Is(err, ErrNotOwner) && !errors.Is(err, cluster.ErrUnavailable) {
				t.Fatal(err)
			}
		}
		t.Logf("acquired on n1 %v after the kill (%d attempts)", time.Since(killed).Round(time.Millisecond), attempt)
		// The dead owner stopped serving before its key could expire.
		if dead.Valid() {
			t.Fatal("two nodes hold a valid lease on one object")
		}
		if took.Token() <= dead.Token() {
			t.Fatalf("token after failover: got %d, want > %d", took.Token(), dead.Token())
		}
		recvWithin(t, "dead owner's lease lost", dead.Lost())
		if _, err := ps[1].Acquire(ctx, ns, idK); !errors.Is(err, ErrNotOwner) {
			t.Fatalf("acquire after failover: got %v", err)
		}
	})
}

func currentRev(l *Lease) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev
}
