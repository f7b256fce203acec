package acme

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/verge-edge/verge/cluster/clustertest"
)

func TestKeyEncoding(t *testing.T) {
	for _, k := range []string{
		"certificates/127.0.0.1:14000-dir/a.verge.test/a.verge.test.crt",
		"certificates/acme-v02.api.letsencrypt.org-directory/wildcard_.example.com/wildcard_.example.com.key",
		"acme/ca/users/ops@example.com/ops.json",
		"ocsp/a.example-1234",
	} {
		e := encodeKey(k)
		if got := decodeKey(e); got != k {
			t.Errorf("decodeKey(encodeKey(%q)) = %q (encoded %q)", k, got, e)
		}
		for i := 0; i < len(e); i++ {
			c := e[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '=') {
				t.Errorf("encodeKey(%q) = %q holds %q", k, e, c)
			}
		}
	}
}

// TestKVStorageShared: two nodes of a real embedded JetStream cluster share what either
// stores, list directories alike, and a lock taken on one excludes the other until released.
func TestKVStorageShared(t *testing.T) {
	c := clustertest.Start(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := NewKVStorage(c.Nodes[0].JetStream(), c.Nodes[0].Replicas())
	defer a.Close()
	b := NewKVStorage(c.Nodes[1].JetStream(), c.Nodes[1].Replicas())
	defer b.Close()

	crt := "certificates/ca.example-dir/a.verge.test/a.verge.test.crt"
	key := "certificates/ca.example-dir/a.verge.test/a.verge.test.key"
	if err := a.Store(ctx, crt, []byte("CERT")); err != nil {
		t.Fatal(err)
	}
	if err := a.Store(ctx, key, []byte("KEY")); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Load(ctx, crt); err != nil || !bytes.Equal(got, []byte("CERT")) {
		t.Errorf("node 2 loads %q, %v; want CERT", got, err)
	}
	if _, err := b.Load(ctx, "certificates/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing key: %v, want fs.ErrNotExist", err)
	}
	if !b.Exists(ctx, "certificates/ca.example-dir") || b.Exists(ctx, "certificates/other") {
		t.Error("Exists of a directory / of nothing is wrong")
	}
	all, err := b.List(ctx, "certificates", true)
	slices.Sort(all)
	if err != nil || !slices.Equal(all, []string{crt, key}) {
		t.Errorf("recursive list %v, %v", all, err)
	}
	top, err := b.List(ctx, "certificates", false)
	if err != nil || !slices.Equal(top, []string{"certificates/ca.example-dir"}) {
		t.Errorf("list %v, %v", top, err)
	}
	if st, err := b.Stat(ctx, crt); err != nil || !st.IsTerminal || st.Size != 4 {
		t.Errorf("stat %+v, %v", st, err)
	}
	if st, err := b.Stat(ctx, "certificates/ca.example-dir"); err != nil || st.IsTerminal {
		t.Errorf("stat of a directory %+v, %v", st, err)
	}

	// The lock excludes across nodes.
	if err := a.Lock(ctx, "issue_cert_a.verge.test"); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 1500*time.Millisecond)
	err = b.Lock(short, "issue_cert_a.verge.test")
	cancelShort()
	if err == nil {
		t.Fatal("node 2 took a lock node 1 holds")
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, "issue_cert_a.verge.test") }()
	select {
	case err := <-got:
		t.Fatalf("node 2 took the lock while node 1 holds it: %v", err)
	default:
	}
	if err := a.Unlock(ctx, "issue_cert_a.verge.test"); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("node 2 after release: %v", err)
	}
	if err := b.Unlock(ctx, "issue_cert_a.verge.test"); err != nil {
		t.Fatal(err)
	}

	// Deleting a directory deletes what is under it, for both nodes.
	if err := b.Delete(ctx, "certificates/ca.example-dir/a.verge.test"); err != nil {
		t.Fatal(err)
	}
	if a.Exists(ctx, crt) || a.Exists(ctx, key) {
		t.Error("keys survive the deletion of their directory")
	}
}

// TestKVStorageStaleLock: a lock whose holder stopped refreshing it is taken over after
// its expiry.
func TestKVStorageStaleLock(t *testing.T) {
	c := clustertest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := NewKVStorage(c.Nodes[0].JetStream(), 1)
	b := NewKVStorage(c.Nodes[0].JetStream(), 1)
	b.ttl = time.Second
	defer b.Close()
	// A crashed holder: nobody refreshes its lock. Its expiry, written by the old format in
	// the far future, is not believed: only the unchanged revision counts.
	val := []byte(`{"owner":"crashed","expires":"2999-01-01T00:00:00Z"}`)
	kv, err := a.bucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, lockKey("stale"), val); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if err := b.Lock(ctx, "stale"); err != nil {
		t.Fatalf("stale lock not taken over: %v", err)
	}
	if err := b.Unlock(ctx, "stale"); err != nil {
		t.Fatal(err)
	}
}

// waitEvent waits for one event on ch, failing after a guard for a busy machine.
func waitEvent(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(60 * time.Second):
		t.Fatalf("no %s", what)
	}
}

func events(n int) (chan struct{}, func()) {
	ch := make(chan struct{}, n)
	return ch, func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// TestKVStorageLockSurvivesFailedRefresh: refreshes that fail for a while (the cluster
// unreachable) are retried while the lease lasts, so a waiter on another node does not take
// the lock from a holder that is still alive.
func TestKVStorageLockSurvivesFailedRefresh(t *testing.T) {
	c := clustertest.Start(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	a := NewKVStorage(c.Nodes[0].JetStream(), c.Nodes[0].Replicas())
	defer a.Close()
	b := NewKVStorage(c.Nodes[1].JetStream(), c.Nodes[1].Replicas())
	defer b.Close()
	a.ttl, b.ttl = 3*time.Second, 3*time.Second
	var mu sync.Mutex
	failures := 2
	a.refreshFault = func() error {
		mu.Lock()
		defer mu.Unlock()
		if failures > 0 {
			failures--
			return errors.New("injected: cluster unreachable")
		}
		return nil
	}
	refreshed, onRefresh := events(16)
	a.onRefresh = onRefresh
	lost, onLost := events(1)
	a.onLost = onLost
	if err := a.Lock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	bctx, bcancel := context.WithCancel(ctx)
	defer bcancel()
	go func() { got <- b.Lock(bctx, "x") }()
	// Three good refreshes after the two failed ones: a full lease and more.
	for i := 0; i < 4; i++ {
		select {
		case <-refreshed:
		case err := <-got:
			t.Fatalf("node 2 took the lock from a live holder whose refresh failed (%v)", err)
		case <-lost:
			t.Fatal("the holder gave the lock up after a failed refresh")
		case <-time.After(60 * time.Second):
			t.Fatal("no refresh after a failed one")
		}
	}
	select {
	case err := <-got:
		t.Fatalf("node 2 took the lock from a live holder (%v)", err)
	default:
	}
	if err := a.Unlock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("node 2 after release: %v", err)
	}
	b.Unlock(ctx, "x")
}

// TestKVStorageLockPerHolder: two callers of one storage for the same name: the second waits
// for the first's Unlock even when the first's lease ran out, and the first's Unlock neither
// deletes the second's lock nor stops its refreshes.
func TestKVStorageLockPerHolder(t *testing.T) {
	c := clustertest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	a := NewKVStorage(c.Nodes[0].JetStream(), 1)
	defer a.Close()
	a.ttl = time.Second
	var mu sync.Mutex
	failing := true
	a.refreshFault = func() error {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return errors.New("injected: cluster unreachable")
		}
		return nil
	}
	lost, onLost := events(1)
	a.onLost = onLost
	waiting, onWait := events(1)
	a.onLocalWait = onWait
	if err := a.Lock(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, lost, "lease end for the first holder")
	mu.Lock()
	failing = false
	mu.Unlock()
	second := make(chan error, 1)
	go func() { second <- a.Lock(ctx, "y") }()
	select {
	case <-waiting:
	case err := <-second:
		t.Fatalf("the second caller took the name while the first holds it (%v)", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the second Lock neither waits nor returns")
	}
	refreshed, onRefresh := events(16)
	a.onRefresh = onRefresh // read by the second holder's refresher, started after this
	if err := a.Unlock(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	kv, err := a.bucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, lockKey("y"))
	if err != nil {
		t.Fatalf("the second holder's lock is gone: %v", err)
	}
	a.mu.Lock()
	h := a.held["y"]
	a.mu.Unlock()
	if h == nil || !strings.Contains(string(e.Value()), h.token) {
		t.Fatalf("lock key holds %s, not the second holder's token", e.Value())
	}
	waitEvent(t, refreshed, "refresh of the second holder")
	if err := a.Unlock(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, lockKey("y")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("lock left after the second Unlock: %v", err)
	}
}
